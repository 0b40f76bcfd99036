"""The packaging shim exposes the addon as odoo.addons.mailchimp_sync without
trapping tools that walk it following symlinks (Odoo's trans_export,
setuptools' discovery): one link per part of the addon, none to the root."""

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHIM = ROOT / ".odoo" / "odoo" / "addons" / "mailchimp_sync"
# Parts of the repository that are not part of the addon: tooling and
# packaging, never imported or loaded by Odoo.
NOT_ADDON = {"bench", "doc", "scripts", "setup.py", "ruff.toml", "build", "dist", "__pycache__"}


def addon_parts():
    return sorted(
        p.name for p in ROOT.iterdir()
        if not p.name.startswith(".") and p.name not in NOT_ADDON and not p.name.endswith(".egg-info")
    )


def test_shim_is_a_directory_of_links():
    assert SHIM.is_dir() and not SHIM.is_symlink(), "the shim must not link the repository root"
    for entry in SHIM.iterdir():
        if entry.name == "__pycache__":
            continue
        assert entry.is_symlink(), f"{entry.name} in the shim should be a symlink"
        assert os.readlink(entry) == f"../../../../{entry.name}", entry.name
        assert entry.resolve() == ROOT / entry.name, entry.name


def test_every_part_of_the_addon_is_linked():
    linked = sorted(e.name for e in SHIM.iterdir() if e.name != "__pycache__")
    missing = sorted(set(addon_parts()) - set(linked))
    assert not missing, (
        f"not linked in the packaging shim: {missing}; add each with "
        f"`ln -s ../../../../NAME .odoo/odoo/addons/mailchimp_sync/NAME` "
        f"(or list it in NOT_ADDON here if Odoo never needs it)"
    )


def test_walking_the_shim_with_followlinks_ends_inside_the_addon():
    # What Odoo's TranslationModuleReader does with each odoo.addons path.
    seen = 0
    for root, _dirs, files in os.walk(SHIM.parent, followlinks=True):
        rel = pathlib.Path(root).relative_to(SHIM.parent)
        assert not set(rel.parts) & {".odoo", ".cache", ".git", ".ci"}, root
        assert len(rel.parts) < 8, f"walk went too deep: {root}"
        assert not set(rel.parts) & {"bench", "scripts"}, root
        seen += len(files)
    assert seen > 20
