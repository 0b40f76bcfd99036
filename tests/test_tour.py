"""The screens in a real browser: an Odoo tour, run by HttpCase in headless
Chromium against the Mailchimp emulator.

``scripts/install_browser.sh`` installs Chromium and ``websocket-client``
on a fresh machine; where either is still missing the test is skipped with
the reason (Odoo itself would only log a warning, which the suite treats as
a failure).  With ``MAILCHIMP_SCREENSHOTS=1`` the tour's marked steps are
saved as PNGs into ``readme/screenshots/`` for README.rst.
"""

import base64
import importlib.util
import json
import logging
import os
import pathlib
from unittest.mock import patch

from odoo.tests import HttpCase, tagged
from odoo.tests.common import ChromeBrowser, _find_executable

from odoo.addons.mailchimp_sync.mailchimp_sync.emulator import EmulatorServer

_logger = logging.getLogger(__name__)

SCREENSHOT_MARK = "mailchimp_screenshot:"
SCREENSHOT_DIR = pathlib.Path(__file__).resolve().parent.parent / "readme" / "screenshots"


def browser_missing():
    """Why the browser test cannot run here, or None."""
    if importlib.util.find_spec("websocket") is None:
        return "websocket-client is not installed (run scripts/install_browser.sh)"
    try:
        _find_executable()
    except Exception:  # noqa: BLE001 - any failure means no usable browser
        return "no Chromium/Chrome executable on PATH (run scripts/install_browser.sh)"
    return None


def _screenshot_console(original):
    """Wrap ChromeBrowser._handle_console: a console line
    ``mailchimp_screenshot:<name>`` captures the page into <name>.png."""

    def handle_console(browser, type, args=None, stackTrace=None, **kw):  # noqa: A002
        value = args and args[0].get("value")
        if isinstance(value, str) and value.startswith(SCREENSHOT_MARK):
            name = value[len(SCREENSHOT_MARK):].strip() or "screen"
            future = browser._websocket_send("Page.captureScreenshot", with_future=True)

            def save(done, name=name):
                data = (done.result(timeout=0) or {}).get("data")
                if data:
                    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
                    (SCREENSHOT_DIR / f"{name}.png").write_bytes(base64.b64decode(data))
                    _logger.info("Screenshot saved: %s.png", name)

            future.add_done_callback(save)
            return None
        return original(browser, type, args=args, stackTrace=stackTrace, **kw)

    return handle_console


@tagged("post_install", "-at_install")
class TestMailchimpTour(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.emulator = EmulatorServer(port=0).start()
        cls.addClassCleanup(cls.emulator.stop)

    def setUp(self):
        super().setUp()
        why = browser_missing()
        if why:
            self.skipTest(why)
        # Odoo's own onboarding tours (Email Marketing's) would run alongside.
        self.env.ref("base.user_admin").tour_enabled = False
        self.emulator.control.reset(settings={"batch_auto_run": False, "webhook_delivery": "off"})
        answer = self.emulator.control.seed(
            lists=[
                {
                    "name": "Tour Newsletter",
                    "interest_categories": [
                        {"title": "Topics", "type": "checkboxes",
                         "interests": [{"name": "Events"}, {"name": "News"}]}
                    ],
                    "members": [
                        {"email_address": "anna@example.org", "status": "subscribed",
                         "merge_fields": {"FNAME": "Anna", "LNAME": "Ames"}},
                        {"email_address": "bob@example.org", "status": "subscribed"},
                        {"email_address": "dan@example.org", "status": "unsubscribed"},
                    ],
                }
            ]
        )
        self.list_id = answer["lists"][0]["id"]
        self.subscribers = self.env["mailing.list"].create({"name": "Tour Subscribers"})
        self.events = self.env["mailing.list"].create({"name": "Tour Events"})
        self.env["mailing.contact"].create(
            {"name": "Carla", "email": "carla@example.org", "list_ids": [(4, self.subscribers.id)]}
        )

    def test_new_user_connects_maps_syncs_and_reads_the_dashboard(self):
        data = {"api_key": self.emulator.api_key, "api_base": self.emulator.api_base}
        code = (
            f"window.sessionStorage.setItem('mailchimp_sync_tour', {json.dumps(json.dumps(data))});"
            "odoo.startTour('mailchimp_sync_tour', {stepDelay: 0, keepWatchBrowser: false, "
            "debug: false, startUrl: '/odoo'})"
        )
        patches = []
        if os.environ.get("MAILCHIMP_SCREENSHOTS"):
            handler = _screenshot_console(ChromeBrowser._handle_console)
            patches.append(patch.object(ChromeBrowser, "_handle_console", handler))
        for p in patches:
            p.start()
            self.addCleanup(p.stop)
        self.start_tour("/odoo", "mailchimp_sync_tour", login="admin", code=code, timeout=180)

        # What the tour did is really in the database.
        account = self.env["mailchimp.account"].search([("name", "=", "Tour Mailchimp")])
        self.assertEqual(account.api_base_url, self.emulator.api_base)
        self.assertTrue(account.is_sandbox)
        audience = account.audience_ids
        self.assertEqual(audience.mailchimp_list_id, self.list_id)
        self.assertEqual(audience.mailing_list_id, self.subscribers)
        events = audience.interest_ids.filtered(lambda i: i.name == "Events")
        self.assertEqual(events.mailing_list_id, self.events)
        self.assertEqual(audience.run_ids[:1].state, "done")
        self.assertEqual(
            sorted(audience.member_ids.mapped("email")),
            ["anna@example.org", "bob@example.org", "carla@example.org", "dan@example.org"],
        )
        self.assertEqual((audience.mc_subscribed_count, audience.odoo_subscribed_count), (2, 3))
        # Carla, subscribed only in Odoo, is on her way to Mailchimp.
        self.emulator.control.run_batches()
        self.env["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0)
        carla = self.emulator.control.member(self.list_id, "carla@example.org")
        self.assertEqual(carla["status"], "subscribed")
