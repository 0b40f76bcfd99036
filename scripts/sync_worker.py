#!/usr/bin/env python3
"""Run one audience's sync cycle from the command line, as the audience's
scheduled action does under Odoo's cron runner: one step, a commit, again,
until the cycle ends.  Prints a line as each step begins (``begin <stage>``)
and one as it ends (``step <stage> <state>``: where the run is then),
flushed, so a supervisor can follow it.

    python3 scripts/sync_worker.py DATABASE AUDIENCE_ID

Useful to run a cycle by hand on a server without cron workers, and used
by the test that kills workers at random moments (tests/test_engine_kill.py).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from odoo_env import environment  # noqa: E402


def main(dbname, audience_id):
    with environment(dbname) as env:
        audience = env["mailchimp.audience"].browse(audience_id)
        for _call in range(100000):
            print(f"begin {audience.current_run_id.stage or 'fetch'}", flush=True)
            env["mailchimp.audience"]._cron_sync_audience(audience_id)
            env.cr.commit()  # runs the batch sender, as the runner's commit does
            run = audience.current_run_id
            print(f"step {run.stage if run else 'done'} {run.state if run else 'done'}", flush=True)
            if not run:
                return 0
            if run.state == "confirm":
                print(f"waiting for a manager's confirmation: {run.message}", flush=True)
                return 3
            if run.state == "failing":
                print(f"failing: {run.message}", flush=True)
                return 1
            if run.next_retry_at:
                return 2  # waiting (a lost answer is being checked): the cron would come back later
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
