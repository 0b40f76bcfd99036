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


class KillsWorkers:
    """Run the audience's cycle in worker processes (scripts/sync_worker.py)
    and kill them with SIGKILL at random moments until the cycle ends."""

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

    def run_killing(self, rng, max_kills, pause=0.4, rounds=40, stages=None):
        """Start workers until one ends the cycle: each of the first
        ``max_kills`` is killed at a random moment (up to ``pause`` seconds)
        after its first or second step; with ``stages`` ({stage: kills}),
        after a step of one of them begins, that many times per stage.
        Returns the stages the kills were aimed at."""
        kills = []
        for _round in range(rounds):
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
                kind, stage = (line.split() + ["", ""])[:2]
                if kind == ("begin" if stages else "step"):
                    lines += 1
                    due = kills.count(stage) < stages.get(stage, 0) if stages else lines >= rng.randint(1, 2)
                    if len(kills) < max_kills and due:
                        time.sleep(rng.uniform(0.0, pause))
                        os.kill(proc.pid, signal.SIGKILL)
                        killed = True
                        kills.append(stage)
                        break
            proc.wait(timeout=60)
            proc.stdout.close()
            if not killed and proc.returncode == 0:
                return kills
            # Time passes: Mailchimp runs what it received, the lost answers
            # may be looked up.
            self.emulator.control.run_batches()
            self.age_sending_batches()
        self.fail("the cycle never ended; the last worker said:\n" + "".join(output[-30:]))


@tagged("post_install", "-at_install")
class TestKilledWorkers(KillsWorkers, CommittedFixture, SyncCase):
    def test_killed_at_random_moments_then_restarted(self):
        rng = random.Random(int(os.environ.get("MAILCHIMP_KILL_SEED", "7")))
        # 2,500 Odoo-only contacts: three batches, several steps per stage.
        self.setup_committed(odoo_only=2500)
        # Slow batch POSTs, so some kills land inside the sender.
        self.emulator.control.faults(rules=[{"method": "POST", "path": "/batches$", "kind": "timeout",
                                             "delay": 0.3, "count": 1000}])
        kills = len(self.run_killing(rng, max_kills=8))
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


@tagged("post_install", "-at_install")
class TestKilledWorkersOnLanes(KillsWorkers, CommittedFixture, SyncCase):
    """Kills aimed at the stages whose lanes (connections of their own)
    merge pages, create contacts and reconcile chunks, each committing its
    own work while the step that started them holds the run.  (The narrow
    moment after a lane's commit and before its step's is tested on its
    own: tests/test_stage_lanes.py, tests/test_reconcile_lanes.py.)"""

    def add_shared_contacts(self, count):
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            env["mailing.contact"].create([
                {"name": f"Racer {i}", "email": f"racer{i}@example.net", "list_ids": [(4, self.ids["list"])]}
                for i in range(count)
            ])
            # Steps of a second at most: a kill finds part of a stage's
            # work committed by its lanes and part not yet done.
            env["mailchimp.audience"].browse(self.ids["audience"]).max_time = 1
            cr.commit()
        self.addCleanup(self.cleanup_contacts)

    def cleanup_contacts(self):
        with self.db.cursor() as cr:
            self.env_on(cr)["mailing.contact"].search([("email", "like", "racer%@example.net")]).unlink()
            cr.commit()

    def test_killed_while_lanes_commit_then_restarted(self):
        rng = random.Random(int(os.environ.get("MAILCHIMP_KILL_SEED", "11")))
        # 12,000 members (12 pages), 10,000 of them new to Odoo (two create
        # chunks), 1,000 Odoo-only contacts: three reconcile chunks.
        self.setup_committed(odoo_only=1000, members=[
            {"email_address": f"racer{i}@example.net", "status": "subscribed"} for i in range(12000)])
        self.add_shared_contacts(2000)
        kills = self.run_killing(rng, max_kills=6, pause=0.8, stages={"fetch": 2, "create": 2, "reconcile": 2})
        self.emulator.control.run_batches()
        with self.db.cursor() as cr:
            cr.execute("""SELECT count(*), count(DISTINCT subscriber_hash), count(contact_id),
                                 count(*) FILTER (WHERE sync_status NOT IN ('ok', 'live'))
                            FROM mailchimp_member WHERE audience_id = %s""", (self.ids["audience"],))
            self.assertEqual(cr.fetchone(), (13000, 13000, 13000, 0), "each member once, with a contact, synced")
            cr.execute("""SELECT count(*), count(DISTINCT email_normalized) FROM mailing_contact
                           WHERE email_normalized LIKE 'racer%%@example.net'""")
            self.assertEqual(cr.fetchone(), (12000, 12000), "no member was given two contacts")
            cr.execute("""SELECT count(*) FROM mailing_subscription s JOIN mailing_contact c ON c.id = s.contact_id
                           WHERE s.list_id = %s AND NOT COALESCE(s.opt_out, FALSE)
                             AND c.email_normalized LIKE 'racer%%'""",
                       (self.ids["list"],))
            self.assertEqual(cr.fetchone()[0], 13000, "everyone subscribed on both sides")
            cr.execute("""SELECT count(*), count(DISTINCT member_id) FROM mailchimp_update
                           WHERE audience_id = %s AND state = 'sent'""", (self.ids["audience"],))
            updates, rows = cr.fetchone()
            self.assertEqual(updates, rows, "one update per member")
            run = self.env_on(cr)["mailchimp.sync.run"].search([("audience_id", "=", self.ids["audience"])])
            self.assertEqual(len(run), 1, "one run: each killed step was done again in it")
            self.assertEqual((run.fetched, run.created, run.reconciled), (12000, 10000, 13000),
                             "every page, contact and decision counted once")
        state = self.emulator.control.state(self.list_id, limit=20000)
        members = state["lists"][0]["members"]
        self.assertEqual(len(members), 13000, "every contact reached Mailchimp")
        self.assertEqual({m["status"] for m in members}, {"subscribed"})
        self.assertEqual(sum(b["total_operations"] for b in state["batches"]), updates,
                         "no operation was sent twice")
        # (A kill aimed at a step can land after it: the stage may be over.)
        self.assertEqual(set(kills), {"fetch", "create", "reconcile"}, "a kill in each stage on lanes")
