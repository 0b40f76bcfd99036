"""Install the mailchimp_sync Odoo addon and its Odoo-free core.

The repository root *is* the addon.  Odoo finds addons as directories named
``odoo/addons/<name>`` on ``sys.path`` (``odoo.addons`` extends its
``__path__`` with ``pkgutil.extend_path``), so we ship the addon as the
package ``odoo.addons.mailchimp_sync`` through the committed shim
``.odoo/odoo/addons/mailchimp_sync -> ../../..``.  That works whatever the
checkout folder is called, as a regular install (files copied into
``site-packages/odoo/addons/``) and in editable mode (a ``.pth`` pointing at
``.odoo``).  The core is also installed as the top-level package
``mailchimp_sync`` so that it can be used and tested without Odoo.

``odoo`` itself is deliberately not a dependency: it is not on the package
index, and requiring it would make ``pip install`` fail there.
"""

import ast
import pathlib

from setuptools import setup

HERE = pathlib.Path(__file__).resolve().parent
MANIFEST = ast.literal_eval((HERE / "__manifest__.py").read_text())
ADDON = "odoo.addons.mailchimp_sync"

# Sub-packages are listed, not discovered: discovery would walk the shim
# symlink back into the repository forever.
ADDON_SUBPACKAGES = ["models", "controllers", "wizards", "tests"]
CORE_PACKAGES = ["mailchimp_sync", "mailchimp_sync.emulator"]

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
    packages=[ADDON]
    + [f"{ADDON}.{sub}" for sub in ADDON_SUBPACKAGES if (HERE / sub / "__init__.py").exists()]
    + CORE_PACKAGES,
    package_data={
        ADDON: [
            "README.rst",
            "readme/*.rst",
            "data/*.xml",
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
