#!/usr/bin/env bash
# Prints the python that runs Odoo 18 for this checkout, as its last line:
#   1. $PYTHON, if set (a user's own Odoo 18: its python);
#   2. python3, if it imports Odoo 18 itself;
#   3. else, where ../shared/odoo/install-odoo.sh is beside the checkout (CI,
#      the project's machines), the python of Odoo 18 installed by it into
#      .cache/odoo (about a minute the first time, reused after);
#   4. else python3, with which only the Odoo-free layer can run.
# Progress goes to stderr, so `py=$(bash scripts/odoo_python.sh)` works.
set -euo pipefail
cd "$(dirname "$0")/.."
has_odoo18() {
  "$1" -c "import odoo.release, sys; sys.exit(0 if odoo.release.version_info[0] == 18 else 1)" >/dev/null 2>&1
}
if [ -n "${PYTHON:-}" ]; then
  echo "$PYTHON"
elif has_odoo18 python3; then
  command -v python3
elif [ -x ../shared/odoo/install-odoo.sh ] || [ -f ../shared/odoo/install-odoo.sh ]; then
  echo "odoo_python: Odoo 18 is not importable by python3; installing it from ../shared/odoo into .cache/odoo" >&2
  mkdir -p .cache
  py=$(bash ../shared/odoo/install-odoo.sh .cache/odoo | tail -n 1)
  has_odoo18 "$py" || { echo "odoo_python: the install in .cache/odoo does not import Odoo 18" >&2; exit 1; }
  echo "$py"
else
  echo "odoo_python: no Odoo 18 here and no ../shared/odoo to install it from" >&2
  command -v python3
fi
