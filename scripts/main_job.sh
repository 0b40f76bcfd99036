#!/usr/bin/env bash
# The main job (README.rst): install what is needed, then run a full sync
# against the bundled Mailchimp emulator (no Mailchimp account needed).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e . 
exec python3 scripts/main_job.py "$@"
