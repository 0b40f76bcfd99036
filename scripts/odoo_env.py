"""Open an Odoo 18 environment from a plain script (main job, benchmark).

Creates a fresh database with the addon installed (through Odoo's own
command line, as an administrator would) and yields an environment on a
real cursor that commits like a cron worker does.
"""

import contextlib
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

# Seconds of a run's wait that run_like_the_cron_runner waits out.
SHORT_WAIT = 30


def odoo_status():
    """(True, version) if Odoo 18 is importable, else (False, why)."""
    try:
        import odoo.release
    except ImportError:
        return False, f"Odoo is not installed for {sys.executable}"
    if odoo.release.version_info[0] != 18:
        return False, f"Odoo {odoo.release.version} is installed; this addon needs 18.0"
    return True, odoo.release.version


def reexec_with_odoo():
    """Re-run this script with the python that runs Odoo 18 when the current
    one has none: scripts/odoo_python.sh finds it (or installs Odoo 18 from
    ../shared/odoo into .cache/odoo) and the addon is installed into it, so
    ``python3 bench/sync_bench.py`` works on a fresh checkout.  Returns
    quietly where no Odoo 18 can be had: the caller then says it skipped."""
    if odoo_status()[0] or os.environ.get("MAILCHIMP_NO_REEXEC"):
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = subprocess.run(["bash", os.path.join(root, "scripts", "odoo_python.sh")],
                           capture_output=True, text=True, check=False)
    python = found.stdout.strip().splitlines()[-1] if found.stdout.strip() else ""
    # (not realpath: a venv's python is a link to the very interpreter it wraps)
    if found.returncode or not python or os.path.abspath(python) == os.path.abspath(sys.executable):
        return
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", root],
                   check=True)
    os.environ["MAILCHIMP_NO_REEXEC"] = "1"
    os.execv(python, [python, *sys.argv])  # noqa: S606 - the same script, with the python that has Odoo


def db_args():
    """Odoo's database options from the usual PG* variables (none: local socket)."""
    args = []
    for env, opt in (("PGHOST", "--db_host"), ("PGPORT", "--db_port"), ("PGUSER", "--db_user")):
        if os.environ.get(env):
            args += [opt, os.environ[env]]
    return args


def dropdb_args():
    """The same connection options, spelled for PostgreSQL's dropdb."""
    args = []
    for env, opt in (("PGHOST", "-h"), ("PGPORT", "-p"), ("PGUSER", "-U")):
        if os.environ.get(env):
            args += [opt, os.environ[env]]
    return args


def create_database(dbname, log_path):
    """Drop ``dbname`` if it exists, create it and install mailchimp_sync."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    subprocess.run(["dropdb", "--if-exists", *dropdb_args(), dbname], check=False)
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "odoo", "-d", dbname, *db_args(), "-i", "mailchimp_sync",
             "--stop-after-init", "--without-demo", "all", "--no-http", "--max-cron-threads", "0",
             "--log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT, check=False,
        )
    if proc.returncode:
        raise RuntimeError(f"installing mailchimp_sync into {dbname} failed; see {log_path}")


def drop_database(dbname):
    subprocess.run(["dropdb", "--if-exists", *dropdb_args(), dbname], check=False)


@contextlib.contextmanager
def environment(dbname):
    """Yield a superuser environment on ``dbname``; commit on success."""
    import odoo
    from odoo import SUPERUSER_ID, api
    from odoo.modules.registry import Registry

    argv = ["-d", dbname, *db_args(), "--log-level", os.environ.get("ODOO_LOG_LEVEL", "warn")]
    odoo.tools.config.parse_config(argv)
    registry = Registry(dbname)
    try:
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            yield env
            cr.commit()
    finally:
        # Close the pool so the database can be dropped afterwards.
        Registry.delete(dbname)
        odoo.sql_db.close_db(dbname)


def run_like_the_cron_runner(env, audience, max_calls=100000, confirm=False):
    """Run ``audience``'s cycle to its end as Odoo's cron runner runs the
    audience's scheduled action: one call, then a commit (which also sends
    the batches claimed in that call), again and again.  A run that waits
    long (a lost answer being checked) is woken at once here; a short wait
    (at most SHORT_WAIT seconds: Mailchimp's queue of batches is full) is
    waited out, as the trigger would.  A plan the safety valve stopped is
    confirmed when ``confirm`` is set (as a manager would, after reading
    it; the message is printed), else it raises.  Returns the run."""
    Audience = env["mailchimp.audience"]
    run = audience.current_run_id
    for _call in range(max_calls):
        Audience._cron_sync_audience(audience.id)
        env.cr.commit()
        run = run or env["mailchimp.sync.run"].search([("audience_id", "=", audience.id)], limit=1)
        if not audience.current_run_id:
            return run
        if audience.current_run_id.state == "failing":
            raise RuntimeError(f"the sync failed: {audience.current_run_id.message}")
        if audience.current_run_id.state == "confirm":
            if not confirm:
                raise RuntimeError(f"the safety valve stopped the sync: {audience.current_run_id.message}")
            print(f"   safety valve: {audience.current_run_id.message} -> confirmed", flush=True)
            audience.action_confirm_plan()
            env.cr.commit()
        retry_at = audience.current_run_id.next_retry_at
        if retry_at:
            # A short wait (Mailchimp's queue of batches is full) is waited
            # out, as the trigger would; a long one (a lost answer being
            # checked) is woken at once.
            wait = (retry_at - datetime.now(timezone.utc).replace(tzinfo=None)).total_seconds()
            if 0 < wait <= SHORT_WAIT:
                time.sleep(wait)
            audience.current_run_id.next_retry_at = False
    raise RuntimeError("the cycle did not end")
