"""Install the mailchimp_sync Odoo addon and its Odoo-free core.

The repository root *is* the addon.  Odoo finds addons as directories named
``odoo/addons/<name>`` on ``sys.path`` (``odoo.addons`` extends its
``__path__`` with ``pkgutil.extend_path``), so we ship the addon as the
package ``odoo.addons.mailchimp_sync`` through the committed shim
``.odoo/odoo/addons/mailchimp_sync/``: a real directory holding one symlink
per part of the addon (``__init__.py -> ../../../../__init__.py``,
``models -> ../../../../models``, ...).  It deliberately does not link the
repository root itself: tools that walk ``odoo.addons.__path__`` following
symlinks (Odoo's own ``trans_export``, setuptools' package discovery) would
come back to ``.odoo`` through it and loop, and would also wander into
``.cache``, ``bench``, ``doc`` and ``scripts``.  ``tests/core/test_packaging.py``
checks that every part of the addon is linked.

That works whatever the checkout folder is called, as a regular install
(files copied into ``site-packages/odoo/addons/``) and in editable mode (a
``.pth`` pointing at ``.odoo``).  The core is also installed as the top-level
package ``mailchimp_sync`` (``.odoo/mailchimp_sync -> ../mailchimp_sync``) so
that it can be used and tested without Odoo.

``odoo`` itself is deliberately not a dependency: it is not on the package
index, and requiring it would make ``pip install`` fail there.
"""

import ast
import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).resolve().parent
MANIFEST = ast.literal_eval((HERE / "__manifest__.py").read_text())
ADDON = "odoo.addons.mailchimp_sync"

# The shim links only the addon's parts, so discovery through it ends (and
# finds the core again as odoo.addons.mailchimp_sync.mailchimp_sync, which
# the addon imports relatively).
ADDON_PACKAGES = [ADDON] + [
    f"{ADDON}.{name}" for name in find_packages(str(HERE / ".odoo" / "odoo" / "addons" / "mailchimp_sync"))
]
CORE_PACKAGES = find_packages(str(HERE / ".odoo"), include=["mailchimp_sync", "mailchimp_sync.*"])

setup(
    name="odoo-addon-mailchimp_sync",
    version=MANIFEST["version"],
    description=MANIFEST["summary"],
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license=MANIFEST["license"],
    author=MANIFEST["author"],
    python_requires=">=3.10",
    package_dir={"": ".odoo"},
    packages=ADDON_PACKAGES + CORE_PACKAGES,
    package_data={
        ADDON: [
            "README.rst",
            "readme/*.rst",
            "data/*.xml",
            "data/*.sql",
            "i18n/*.pot",
            "i18n/*.po",
            "security/*.xml",
            "security/*.csv",
            "views/*.xml",
            "wizards/*.xml",
            "static/description/*",
            "static/src/*/*",
            "static/src/*/*/*",
        ],
    },
    install_requires=MANIFEST["external_dependencies"]["python"],
    extras_require={"test": ["pytest>=7"]},
    zip_safe=False,
)
