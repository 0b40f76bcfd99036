"""The reconcile stage on two lanes: connections of its own, each claiming
the next chunk of rows to do, deciding it and committing it, while the
step's own transaction waits and keeps the run."""
# The committed tests race real transactions on real connections, which commit.
# pylint: disable=invalid-commit

import threading
import time
from contextlib import contextmanager
from unittest.mock import patch

from odoo.tests import tagged
from odoo.tools import mute_logger

from ..models import mailchimp_reconcile
from ..models.mailchimp_reconcile import LaneBoard
from .common import SyncCase
from .test_engine import CommittedFixture

RECONCILE = "odoo.addons.mailchimp_sync.models.mailchimp_reconcile"
SYNC = "odoo.addons.mailchimp_sync.models.mailchimp_sync"


@tagged("post_install", "-at_install")
class TestLaneBoard(SyncCase):
    def test_the_next_step_goes_on_after_the_last_chunk_committed_without_a_gap(self):
        board = LaneBoard(run_id=1, after_id=100, deadline=0)
        self.assertEqual(board.done_up_to(100), 100, "nothing committed: from where it started")
        board.chunks = [[101, 110, True], [111, 120, False], [121, 130, True]]
        self.assertEqual(board.done_up_to(100), 110, "the chunk a lane gave up is taken again")
        board.chunks[1][2] = True
        self.assertEqual(board.done_up_to(100), 130)
        self.assertFalse(board.finished, "rows may be left: no claim found the end yet")
        board.exhausted = True
        self.assertTrue(board.finished)


@tagged("post_install", "-at_install")
class TestReconcileInLanes(SyncCase):
    def test_every_chunk_is_decided_once_whatever_the_lanes(self):
        """Chunks of seven rows in a test's transaction (which has written,
        so the step decides them itself, as it does for any caller that did
        not commit), then with one lane set: the same outcome, every row
        decided once."""
        self.seed([{"email_address": f"mc{i}@example.net", "status": "subscribed"} for i in range(12)])
        odoo_only = [self.contact(f"odoo{i}@example.org", [self.newsletter]) for i in range(17)]
        with patch.object(mailchimp_reconcile, "CHUNK", 7):
            run = self.sync(settle=False)
        self.assertEqual(run.reconciled, 29)
        self.assertEqual(run.to_add, 17)
        self.env.cr.execute(
            """SELECT count(*), count(DISTINCT member_id) FROM mailchimp_update
                WHERE audience_id = %s AND kind = 'member'""", (self.audience.id,))
        self.assertEqual(self.env.cr.fetchone(), (17, 17), "one update per Odoo-only contact, none twice")
        for i in range(12):
            self.assertTrue(self.subscribed(self.row(f"mc{i}@example.net").contact_id))
        self.assertFalse(self.Member.search_count([("audience_id", "=", self.audience.id),
                                                   ("sync_status", "=", "todo")]))
        # One lane (the system parameter): the same decisions.
        self.env["ir.config_parameter"].set_param("mailchimp_sync.reconcile_lanes", "1")
        self.assertEqual(self.env["mailchimp.reconcile"]._lanes(), 1)
        late = self.contact("late@example.org", [self.newsletter])
        self.settle()
        self.mailchimp_later()
        self.sync(settle=False)
        self.assertEqual(self.row("late@example.org").contact_id, late)
        self.assertEqual(self.row("late@example.org").sync_status, "live")
        self.assertTrue(all(self.row(c.email).sync_status == "ok" for c in odoo_only))

    def test_a_wrong_lanes_parameter_falls_back_to_the_default(self):
        self.env["ir.config_parameter"].set_param("mailchimp_sync.reconcile_lanes", "many")
        self.assertEqual(self.env["mailchimp.reconcile"]._lanes(), mailchimp_reconcile.LANES)
        self.env["ir.config_parameter"].set_param("mailchimp_sync.reconcile_lanes", "0")
        self.assertEqual(self.env["mailchimp.reconcile"]._lanes(), 1)


@tagged("post_install", "-at_install")
class TestLanesOnRealConnections(CommittedFixture, SyncCase):
    @contextmanager
    def lanes_must_meet(self):
        """Each lane's first chunk waits at a barrier for the others': lanes
        taking turns never meet, and the chunk fails.  Yields the names of
        the lanes seen."""
        Reconcile = type(self.env["mailchimp.reconcile"])
        barrier = threading.Barrier(mailchimp_reconcile.LANES, timeout=20)
        lanes_seen, real = set(), Reconcile._reconcile_chunk

        def chunk_with_a_meeting(model, *args):
            name = threading.current_thread().name
            if name not in lanes_seen:
                lanes_seen.add(name)
                barrier.wait()
            return real(model, *args)

        with patch.object(Reconcile, "_reconcile_chunk", chunk_with_a_meeting):
            yield lanes_seen

    def counts(self):
        with self.db.cursor() as cr:
            cr.execute(
                """SELECT count(*), count(DISTINCT member_id) FROM mailchimp_update
                    WHERE audience_id = %s AND kind = 'member'""", (self.ids["audience"],))
            updates = cr.fetchone()
            cr.execute("""SELECT sync_status, count(*) FROM mailchimp_member WHERE audience_id = %s
                       GROUP BY sync_status""", (self.ids["audience"],))
            statuses = dict(cr.fetchall())
            run = self.env_on(cr)["mailchimp.sync.run"].search([("audience_id", "=", self.ids["audience"])],
                                                               order="id desc", limit=1)
            # progress is that of the stage the run is in
            return updates, statuses, (run.reconciled, run.progress_done if run.stage == "reconcile" else None,
                                       run.stage)

    def sixty_rows_on_meeting_lanes(self, setting, value):
        """Reconcile sixty Odoo-only contacts with the reconcile's ``setting``
        patched to ``value``; every lane must hold a chunk at once (a barrier
        each lane's first chunk must pass with the others: taking turns, they
        would never meet), and every row is still decided once, and counted
        once."""
        self.setup_committed(odoo_only=60)
        with patch.object(mailchimp_reconcile, setting, value), self.lanes_must_meet() as lanes_seen:
            self.run_steps()
        self.assertEqual(len(lanes_seen), mailchimp_reconcile.LANES, lanes_seen)
        updates, statuses, (reconciled, _done, _stage) = self.counts()
        self.assertEqual(updates, (60, 60), "one update per contact, none twice")
        self.assertEqual(statuses, {"live": 60})
        self.assertEqual(reconciled, 60)

    def test_the_lanes_decide_chunks_at_the_same_time(self):
        self.sixty_rows_on_meeting_lanes("CHUNK", 10)

    def test_fewer_rows_than_a_chunk_each_are_shared_between_the_lanes(self):
        """Fewer rows to do than a chunk for each lane: each lane takes its
        share, instead of one lane deciding them all while the other has
        nothing."""
        self.sixty_rows_on_meeting_lanes("MIN_LANE_CHUNK", 10)

    def test_a_step_lost_after_its_lanes_committed_counts_their_chunks_once(self):
        """Steps of a chunk or two each: one step's own transaction is lost
        after its lanes committed (a worker killed before its commit).  The
        next step counts those chunks from their tallies; the chunks of the
        steps that committed are not counted again."""
        self.setup_committed(odoo_only=45)
        self.run_steps(until="reconcile")

        def step(lost=False):
            with self.db.cursor() as cr:
                env = self.env_on(cr)
                result = env["mailchimp.sync"]._step(env["mailchimp.audience"].browse(self.ids["audience"]),
                                                     budget=0.001)
                if lost:
                    cr.rollback()
                else:
                    cr.commit()
            return result

        with patch.object(mailchimp_reconcile, "CHUNK", 10):
            step()
            _updates, statuses, (counted, _done, _stage) = self.counts()
            self.assertTrue(0 < counted < 45, counted)
            step(lost=True)
            _updates, statuses, (reconciled, _done, _stage) = self.counts()
            self.assertEqual(reconciled, counted, "the lost step's counts are not on the run")
            self.assertLess(statuses.get("todo", 0), 45 - counted, "its lanes' chunks stay decided")
            for _i in range(20):
                if step() != "partial" or self.counts()[2][2] != "reconcile":
                    break
        self.run_steps()
        updates, statuses, (reconciled, _done, _stage) = self.counts()
        self.assertEqual(statuses, {"live": 45})
        self.assertEqual(updates, (45, 45), "one update per contact, none twice")
        self.assertEqual(reconciled, 45, "every chunk counted once")
        with self.db.cursor() as cr:
            cr.execute("""SELECT count(*) FROM mailchimp_reconcile_tally t
                            JOIN mailchimp_sync_run r ON r.id = t.run_id WHERE r.audience_id = %s""",
                       (self.ids["audience"],))
            self.assertLessEqual(cr.fetchone()[0], 5, "only the last step's tallies are left, counted")

    def test_a_row_a_webhook_holds_is_waited_for_and_decided_once(self):
        """A webhook holds one row of the third chunk, decides it and commits
        while a lane waits for it: the lane's lock then fails (the row
        changed since its snapshot), the lane starts the chunk again without
        that row, and the other rows are decided once."""
        self.setup_committed(odoo_only=40)
        self.run_steps(until="reconcile")
        with self.db.cursor() as cr:
            cr.execute("SELECT id FROM mailchimp_member WHERE audience_id = %s ORDER BY id",
                       (self.ids["audience"],))
            held = [r[0] for r in cr.fetchall()][25]
        outcome = {}

        def step(env):
            outcome["result"] = env["mailchimp.sync"]._step(env["mailchimp.audience"].browse(self.ids["audience"]))
            env.cr.commit()

        # The step's environment is made here: the test runner holds the
        # registries' lock, which making one in another thread waits for.
        with self.db.cursor() as webhook_cr, self.db.cursor() as step_cr, \
                patch.object(mailchimp_reconcile, "CHUNK", 10), mute_logger(RECONCILE):
            webhook_cr.execute("SELECT id FROM mailchimp_member WHERE id = %s FOR NO KEY UPDATE", (held,))
            worker = threading.Thread(target=step, args=(self.env_on(step_cr),))
            worker.start()
            waiting = False
            for _i in range(200):
                # (the activity view is read once per transaction unless cleared)
                webhook_cr.execute("SELECT pg_stat_clear_snapshot()")
                webhook_cr.execute(
                    """SELECT count(*) FROM pg_stat_activity
                        WHERE datname = current_database() AND wait_event_type = 'Lock'""")
                if webhook_cr.fetchone()[0]:
                    waiting = True
                    break
                time.sleep(0.05)
            webhook_cr.execute("UPDATE mailchimp_member SET sync_status = 'ok', sync_error = 'by the webhook' "
                               "WHERE id = %s", (held,))
            webhook_cr.commit()
            worker.join(60)
        self.assertTrue(waiting, "a lane waits for the row the webhook holds")
        self.assertFalse(worker.is_alive())
        self.assertEqual(outcome["result"], "partial", "the stage finished; submit is next")
        self.run_steps()
        updates, statuses, (reconciled, done, _stage) = self.counts()
        self.assertEqual(updates, (39, 39), "the webhook's row is not decided again")
        self.assertEqual(statuses, {"live": 39, "ok": 1})
        with self.db.cursor() as cr:
            cr.execute("SELECT sync_error FROM mailchimp_member WHERE id = %s", (held,))
            # On the snapshot it began with, the lane would have decided the
            # row again: it read it afresh.
            self.assertEqual(cr.fetchone()[0], "by the webhook", "the webhook's decision stands")
        self.assertEqual(reconciled, 39)

    def test_a_failing_lane_keeps_the_chunks_committed_before(self):
        """A row breaks the reconcile in the last chunk: the step fails, the
        chunks the lanes committed stay decided and counted, and after the
        second failure the rows are decided one by one, the broken one
        failed with its reason."""
        self.setup_committed(odoo_only=45)
        self.run_steps(until="reconcile")
        with self.db.cursor() as cr:
            cr.execute("""SELECT id FROM mailchimp_member WHERE audience_id = %s ORDER BY id DESC LIMIT 1""",
                       (self.ids["audience"],))
            bad = cr.fetchone()[0]
            # Agreed data that is not an object: deciding the row fails.
            cr.execute("""UPDATE mailchimp_member SET sent_data = '"not an object"' WHERE id = %s""", (bad,))
            cr.commit()
        with patch.object(mailchimp_reconcile, "CHUNK", 10), mute_logger(SYNC, RECONCILE):
            with self.db.cursor() as cr:
                env = self.env_on(cr)
                result = env["mailchimp.sync"]._step(env["mailchimp.audience"].browse(self.ids["audience"]))
                cr.commit()
            self.assertEqual(result, "failed")
            updates, statuses, (reconciled, done, stage) = self.counts()
            self.assertEqual(stage, "reconcile")
            self.assertEqual(statuses.get("todo"), 5, "the last chunk is left to do, the broken row in it")
            self.assertEqual((reconciled, done), (40, 40), "what the lanes committed is counted")
            self.assertEqual(updates, (40, 40))
            with self.db.cursor() as cr:
                cr.execute("UPDATE mailchimp_sync_run SET next_retry_at = NULL WHERE audience_id = %s",
                           (self.ids["audience"],))
                cr.commit()
            for _attempt in range(2):
                with self.db.cursor() as cr:
                    env = self.env_on(cr)
                    result = env["mailchimp.sync"]._step(env["mailchimp.audience"].browse(self.ids["audience"]))
                    cr.execute("UPDATE mailchimp_sync_run SET next_retry_at = NULL WHERE audience_id = %s",
                               (self.ids["audience"],))
                    cr.commit()
                if result != "failed":
                    break
            self.run_steps()
        updates, statuses, (reconciled, done, _stage) = self.counts()
        self.assertEqual(statuses, {"live": 44, "fail": 1})
        self.assertEqual(updates, (44, 44), "no row decided twice")
        self.assertEqual(reconciled, 44, "the failed row is counted as failed, not as reconciled")

    def test_steps_run_in_one_transaction_reconcile_in_it(self):
        """A script that runs the stages in one transaction without
        committing (the lanes' own connections could not see its rows):
        the reconcile decides every row in that transaction."""
        self.setup_committed(odoo_only=25)
        with patch.object(mailchimp_reconcile, "CHUNK", 10), self.db.cursor() as cr:
            env = self.env_on(cr)
            audience = env["mailchimp.audience"].browse(self.ids["audience"])
            for _i in range(50):
                if env["mailchimp.sync"]._step(audience) == "done":
                    break
            run = env["mailchimp.sync.run"].search([("audience_id", "=", audience.id)], limit=1)
            self.assertEqual(run.reconciled, 25)
            cr.execute("SELECT sync_status, count(*) FROM mailchimp_member WHERE audience_id = %s GROUP BY 1",
                       (audience.id,))
            self.assertEqual(dict(cr.fetchall()), {"live": 25})
            cr.rollback()

    def test_odoos_cron_runner_runs_the_lanes(self):
        """The audience's scheduled action, run by Odoo's own cron runner
        (a job acquired, called until done, committed between calls),
        reconciles on every lane at once: the runner's transaction has
        written nothing when the step begins."""
        self.setup_committed(odoo_only=40)
        IrCron = self.registry["ir.cron"]
        with patch.object(mailchimp_reconcile, "CHUNK", 10), self.lanes_must_meet() as lanes_seen:
            for _round in range(30):
                with self.db.cursor() as cr:
                    cr.execute("""UPDATE ir_cron SET nextcall = now() AT TIME ZONE 'UTC' - interval '1 minute'
                                   WHERE id = %s""", (self.ids["cron"],))
                    cr.execute("UPDATE mailchimp_sync_run SET next_retry_at = NULL WHERE audience_id = %s",
                               (self.ids["audience"],))
                    cr.commit()
                with self.db.cursor() as cron_cr:
                    job = IrCron._acquire_one_job(cron_cr, self.ids["cron"])
                    self.assertTrue(job)
                    IrCron._process_job(self.db, cron_cr, job)
                _updates, _statuses, (_reconciled, _done, stage) = self.counts()
                if stage != "reconcile" and lanes_seen:
                    break
        self.assertEqual(len(lanes_seen), mailchimp_reconcile.LANES, "every lane ran under the cron runner")
        updates, statuses, (reconciled, _done, _stage) = self.counts()
        self.assertEqual(updates, (40, 40))
        self.assertEqual(reconciled, 40)
