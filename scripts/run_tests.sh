#!/usr/bin/env bash
# The project's test command (README.rst, "Running the tests"; .ci/run calls it).
# 1. installs the addon and its Python dependencies into python3 (editable),
# 2. runs the core tests (no Odoo needed) under pytest,
# 3. runs the Odoo suite in a fresh database where Odoo 18 is importable,
#    or says plainly that it was skipped and why.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

echo "== installing the addon and its dependencies"
"$PY" -m pip install -q --disable-pip-version-check -e '.[test]' || exit 1

echo "== core tests (no Odoo)"
mkdir -p .cache
"$PY" -m pytest tests/core --junitxml=.cache/core-junit.xml
core_rc=$?

echo "== Odoo suite"
if "$PY" -c "import odoo" >/dev/null 2>&1; then
  # The browser tour needs Chromium and websocket-client; only worth
  # installing where the Odoo suite can run at all.
  sh scripts/install_browser.sh
fi
"$PY" scripts/run_odoo_suite.py
odoo_rc=$?

"$PY" - <<'PY'
import xml.etree.ElementTree as ET
try:
    suite = ET.parse(".cache/core-junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, fail = int(suite.get("tests")), int(suite.get("failures")) + int(suite.get("errors"))
    skipped = int(suite.get("skipped"))
    print(f"core: {total - fail - skipped} passed, {fail} failed, {skipped} skipped")
except Exception as exc:  # noqa: BLE001
    print(f"core: summary unavailable ({exc})")
PY
if [ $core_rc -ne 0 ] || [ $odoo_rc -ne 0 ]; then
  echo "TESTS FAILED (core exit $core_rc, odoo exit $odoo_rc)"
  exit 1
fi
echo "all tests passed"
