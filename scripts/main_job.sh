#!/usr/bin/env bash
# The main job (README.rst): install what is needed, then run a full sync
# against the bundled Mailchimp emulator (no Mailchimp account needed).
# The python is the one that runs Odoo 18 (scripts/odoo_python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(bash scripts/odoo_python.sh)
"$PY" -m pip install -q --disable-pip-version-check -e .
exec "$PY" scripts/main_job.py "$@"
