#!/usr/bin/env python3
"""Run the addon's Odoo test suite in a fresh PostgreSQL database.

Creates a database, installs ``mailchimp_sync`` (with its dependencies) with
tests enabled, runs the suite tagged ``/mailchimp_sync`` through Odoo's own
runner, then checks that installing produced no warning or error, and drops
the database.  Where Odoo 18 is not importable it says so and exits 0: the
core suite alone is then all that can run.

Every skipped test is listed as ``odoo skipped: <test>: <reason>``.  With
``MAILCHIMP_REQUIRE_ODOO=1`` (CI, where Odoo is installed from ../shared) a
missing Odoo or any skipped test is a failure, so the browser tour cannot
silently drop out of the gate.

Exit status: 0 when the suite passed (or was skipped), 1 otherwise.
Last line: ``odoo: N passed, N failed, N skipped`` (or the skip notice).
"""

import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from odoo_env import db_args, dropdb_args, odoo_status  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SUMMARY_RE = re.compile(r"(\d+) failed, (\d+) error\(s\) of (\d+) tests when loading database")
SKIP_RE = re.compile(r" INFO \S+ (odoo\.addons\.mailchimp_sync\.\S+): skipped (.*?) : (.*)$")
REQUIRE_ODOO = os.environ.get("MAILCHIMP_REQUIRE_ODOO") == "1"
LOG_LINE_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \d+ (\w+) (\S+) (\S+): (.*)$")
# Odoo itself logs these on a fresh database whatever the addon does; they
# say nothing about mailchimp_sync.
BENIGN_WARNINGS = (
    "Two fields (",  # stock Odoo field-label clashes in core modules
    "unaccent",
    "wkhtmltopdf",
    "Unable to find Wkhtmltopdf",
    "You need Wkhtmltopdf",
    "Some modules are not loaded",
)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main():
    ok, info = odoo_status()
    if not ok and REQUIRE_ODOO:
        print(f"odoo suite could not run: {info}, and MAILCHIMP_REQUIRE_ODOO=1 requires it.")
        print("odoo: 0 passed, 1 failed")
        return 1
    if not ok:
        print(f"odoo suite SKIPPED: {info}.")
        print("  Only the core (Odoo-free) tests ran. Install Odoo 18 beside the project")
        print("  to run the Odoo suite (see README.rst, 'Running the tests').")
        return 0
    dbname = f"mailchimp_sync_test_{os.getpid()}_{int(time.time())}"
    log_path = os.path.join(ROOT, ".cache", f"{dbname}.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    cmd = [
        sys.executable, "-m", "odoo",
        "-d", dbname, *db_args(),
        "-i", "mailchimp_sync",
        "--test-enable", "--test-tags", os.environ.get("ODOO_TEST_TAGS", "/mailchimp_sync"),
        "--stop-after-init", "--without-demo", "all",
        "--http-interface", "127.0.0.1", "--http-port", str(free_port()),
        "--log-level", "info", "--max-cron-threads", "0",
    ]
    extra_path = os.environ.get("ODOO_ADDONS_PATH")
    if extra_path:
        cmd += ["--addons-path", extra_path]
    print(f"odoo suite: Odoo {info}, database {dbname}; log in {log_path}", flush=True)
    started = time.time()
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, check=False)
        uninstall_problem = check_uninstall(dbname, log_path) if proc.returncode == 0 else None
    finally:
        subprocess.run(["dropdb", "--if-exists", *dropdb_args(), dbname], check=False)
    with open(log_path) as log:
        lines = log.read().splitlines()
    problems, summary, skipped = [], None, []
    for line in lines:
        skip = SKIP_RE.search(line)
        if skip:
            skipped.append(f"{skip.group(2)}: {skip.group(3)}")
        match = SUMMARY_RE.search(line)
        if match:
            summary = tuple(int(x) for x in match.groups())
        parsed = LOG_LINE_RE.match(line)
        if not parsed:
            continue
        level, message = parsed.group(1), parsed.group(4)
        if level in ("ERROR", "CRITICAL"):
            problems.append(line)
        elif level == "WARNING" and not any(b in message for b in BENIGN_WARNINGS):
            problems.append(line)
    if uninstall_problem:
        problems.append(f"uninstall: {uninstall_problem}")
    for line in problems:
        print("  " + line[:2000])
    elapsed = time.time() - started
    if summary is None:
        print(f"odoo suite: no test summary found (exit {proc.returncode}); see {log_path}")
        print("odoo: 0 passed, 1 failed")
        return 1
    failed, errors, total = summary
    bad = failed + errors
    print(f"odoo suite: {total} tests in {elapsed:.0f}s, exit {proc.returncode}, "
          f"{len(problems)} warning/error log lines")
    for line in skipped:
        print(f"odoo skipped: {line}")
    if skipped and REQUIRE_ODOO:
        print(f"odoo suite: {len(skipped)} test(s) skipped, and MAILCHIMP_REQUIRE_ODOO=1 forbids skips")
    print(f"odoo: {total - bad - len(skipped)} passed, {bad} failed, {len(skipped)} skipped")
    refused = bool(skipped) and REQUIRE_ODOO
    return 0 if (proc.returncode == 0 and bad == 0 and not problems and not refused) else 1


UNINSTALL_SCRIPT = """
module = env["ir.module.module"].search([("name", "=", "mailchimp_sync")])
module.button_immediate_uninstall()
env.cr.commit()
env.cr.execute("SELECT state FROM ir_module_module WHERE name = 'mailchimp_sync'")
state = env.cr.fetchone()[0]
env.cr.execute(
    "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'mailchimp%%'"
)
tables = env.cr.fetchone()[0]
env.cr.execute(
    "SELECT count(*) FROM ir_model_data WHERE module = 'mailchimp_sync'"
)
xmlids = env.cr.fetchone()[0]
env.cr.execute(
    "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'mailchimp%%')"
    " + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'mailchimp%%')"
    " + (SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'mailchimp%%')"
)
xmlids += env.cr.fetchone()[0]
print("UNINSTALL-RESULT", state, tables, xmlids)
"""


def check_uninstall(dbname, log_path):
    """Uninstall the addon from the test database; return what went wrong, if anything."""
    cmd = [sys.executable, "-m", "odoo", "shell", "-d", dbname, *db_args(),
           "--log-level", "warn", "--http-port", str(free_port()), "--no-http"]
    proc = subprocess.run(cmd, input=UNINSTALL_SCRIPT, capture_output=True, text=True,
                          cwd=ROOT, check=False)
    with open(log_path, "a") as log:
        log.write("\n# uninstall\n" + proc.stdout + proc.stderr)
    result = re.search(r"UNINSTALL-RESULT (\w+) (\d+) (\d+)", proc.stdout)
    if not result:
        return f"no result (exit {proc.returncode}): {proc.stderr[-500:]}"
    state, tables, xmlids = result.group(1), int(result.group(2)), int(result.group(3))
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line or " CRITICAL " in line]
    if state != "uninstalled" or tables or xmlids or errors:
        return (f"state {state}, {tables} tables and {xmlids} xml ids/triggers/functions/indexes left, "
                f"errors: {errors[:3]}")
    print("odoo suite: uninstalled cleanly (no table, xml id, trigger, function or index left)")
    return None


if __name__ == "__main__":
    sys.exit(main())
