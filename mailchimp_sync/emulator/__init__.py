"""A local, stateful emulator of the Mailchimp Marketing API v3.

Pure Python (stdlib + requests), no Odoo.  Built to
``shared/mailchimp/API-BEHAVIOUR.md``; every behaviour tagged [U] there is a
setting (see ``settings.DEFAULTS``).  Start it with
``python -m mailchimp_sync.emulator --port 8055 --seed-members 1000`` or, in
tests, ``EmulatorServer(port=0).start()``; arrange and inspect it through
``EmulatorControl`` (``/_emulator/...``).
"""

from .control import EmulatorControl, EmulatorControlError
from .server import DEFAULT_API_KEY, EmulatorServer
from .settings import DEFAULTS as DEFAULT_SETTINGS

__all__ = [
           "DEFAULT_API_KEY",
           "DEFAULT_SETTINGS",
           "EmulatorControl",
           "EmulatorControlError",
           "EmulatorServer",
]
