"""Workers killed with SIGKILL at random moments, then restarted: the cycle
still ends with every member sent once and nothing lost.

The worker is a real process (scripts/sync_worker.py) running the
audience's scheduled action step by step with real commits, against the
committed test data and the emulator; the test kills it at a random moment
after a step (inside the next one, or inside the batch sender after its
commit), restarts it, and checks the invariants at the end."""
# These tests race real transactions on real connections, which commit.
# pylint: disable=invalid-commit

import os
import random
import signal
import subprocess
import sys
import time

from odoo.tests import tagged

from .common import SyncCase
from .test_engine import CommittedFixture

# The repository (tests/ may be reached through the packaging shim).
ADDON = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
WORKER = os.path.join(ADDON, "scripts", "sync_worker.py")


@tagged("post_install", "-at_install")
class TestKilledWorkers(CommittedFixture, SyncCase):
    def start_worker(self):
        return subprocess.Popen(
            [sys.executable, WORKER, self.env.cr.dbname, str(self.ids["audience"])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def age_sending_batches(self):
        """Time passes: a batch whose answer was lost may now be looked up."""
        with self.db.cursor() as cr:
            cr.execute("""UPDATE mailchimp_batch SET sending_at = sending_at - interval '1 hour'
                           WHERE submit_state = 'sending'""")
            cr.execute("UPDATE mailchimp_sync_run SET next_retry_at = NULL WHERE audience_id = %s",
                       (self.ids["audience"],))
            cr.commit()

    def test_killed_at_random_moments_then_restarted(self):
        rng = random.Random(int(os.environ.get("MAILCHIMP_KILL_SEED", "7")))
        # 2,500 Odoo-only contacts: three batches, several steps per stage.
        self.setup_committed(odoo_only=2500)
        # Slow batch POSTs, so some kills land inside the sender.
        self.emulator.control.faults(rules=[{"method": "POST", "path": "/batches$", "kind": "timeout",
                                             "delay": 0.3, "count": 1000}])
        kills = 0
        for _round in range(40):
            proc = self.start_worker()
            lines = 0
            deadline = time.monotonic() + 120
            killed = False
            output = []
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                output.append(line)
                if line.startswith("step"):
                    lines += 1
                    if kills < 8 and lines >= rng.randint(1, 2):
                        time.sleep(rng.uniform(0.0, 0.4))
                        os.kill(proc.pid, signal.SIGKILL)
                        killed = True
                        kills += 1
                        break
            proc.wait(timeout=60)
            proc.stdout.close()
            if not killed and proc.returncode == 0:
                break
            # Time passes: Mailchimp runs what it received, the lost answers
            # may be looked up.
            self.emulator.control.run_batches()
            self.age_sending_batches()
        else:
            self.fail("the cycle never ended; the last worker said:\n" + "".join(output[-30:]))
        self.assertGreaterEqual(kills, 4, "the worker was killed several times")
        self.emulator.control.faults(rules=[])
        self.emulator.control.run_batches()
        state = self.emulator.control.state(self.list_id)
        members = state["lists"][0]["members"]
        self.assertEqual(len(members), 2500, "every contact reached Mailchimp")
        self.assertEqual({m["status"] for m in members}, {"subscribed"})
        sent = sum(b["total_operations"] for b in state["batches"])
        self.assertEqual(sent, 2500, "no operation was sent twice")
        with self.db.cursor() as cr:
            cr.execute("""SELECT count(*), count(DISTINCT member_id) FROM mailchimp_update
                           WHERE audience_id = %s AND state = 'sent'""", (self.ids["audience"],))
            updates, rows = cr.fetchone()
            self.assertEqual((updates, rows), (2500, 2500), "one update per member, none lost")
