"""The engine at its seams: concurrent writers on two real database
connections, lost answers from Mailchimp, and per-audience scheduled
actions.  (Killed workers: tests/test_engine_kill.py.)"""
# These tests race real transactions on real connections, which commit.
# pylint: disable=invalid-commit

import threading
import time
from datetime import timedelta
from unittest.mock import patch

from psycopg2 import errors

from odoo import SUPERUSER_ID, api, fields
from odoo.exceptions import UserError
from odoo.sql_db import db_connect
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..models.mailchimp_sync import VACUUM_THREAD_NAME
from .common import SyncCase


class CommittedFixture:
    """An account, lists, an audience and contacts committed on real
    connections (so two transactions can race over them), removed again
    afterwards.  ``self.db`` opens real cursors."""

    def setup_committed(self, odoo_only=0, members=(), generate=0):
        self.db = db_connect(self.env.cr.dbname)
        # Cursors the code opens itself (the batch sender) are real ones
        # here, as in production, not views of the test's transaction.
        if self.registry.test_cr is not None:
            test_cr = self.registry.test_cr
            self.registry.leave_test_mode()
            self.addCleanup(self.registry.enter_test_mode, test_cr)
        answer = self.emulator.control.seed(lists=[{"name": "Race", "members": list(members),
                                                            "generate_members": generate}])["lists"][0]
        self.list_id = answer["id"]
        with self.db.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            account = env["mailchimp.account"].create({
                "name": "Race account", "api_key": self.emulator.api_key,
                "api_base_url": self.emulator.api_base, "timeout": 5,
            })
            newsletter = env["mailing.list"].create({"name": "Race newsletter"})
            audience = env["mailchimp.audience"].create({
                "name": "Race", "account_id": account.id, "mailchimp_list_id": self.list_id,
                "mailing_list_id": newsletter.id,
            })
            contacts = env["mailing.contact"].create([
                {"name": f"Racer {i}", "email": f"racer{i}@example.org", "list_ids": [(4, newsletter.id)]}
                for i in range(odoo_only)
            ])
            cr.commit()
            self.ids = {"account": account.id, "list": newsletter.id, "audience": audience.id,
                        "contacts": contacts.ids, "cron": audience.cron_id.id}
        self.addCleanup(self.cleanup_committed)

    def cleanup_committed(self):
        with self.db.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["mailchimp.audience"].browse(self.ids["audience"]).unlink()
            env["mailchimp.account"].browse(self.ids["account"]).unlink()
            env["mailing.contact"].browse(self.ids["contacts"]).unlink()
            env["mailing.contact"].search([("email", "like", "racer%@example.org")]).unlink()
            env["mailing.list"].browse(self.ids["list"]).unlink()
            cr.commit()

    def env_on(self, cr):
        return api.Environment(cr, SUPERUSER_ID, {})

    def run_steps(self, until=None, limit=200):
        """Steps on a real cursor, committed between, as the cron runner does."""
        for _i in range(limit):
            with self.db.cursor() as cr:
                env = self.env_on(cr)
                audience = env["mailchimp.audience"].browse(self.ids["audience"])
                if until and audience.current_run_id.stage == until:
                    return audience.current_run_id.stage
                result = env["mailchimp.sync"]._step(audience)
                cr.commit()
            if result == "done":
                return result
            self.assertIn(result, ("partial", "waiting"))
        self.fail("the cycle did not end")


@tagged("post_install", "-at_install")
class TestEngineRaces(CommittedFixture, SyncCase):
    def test_two_first_workers_one_is_refused(self):
        self.setup_committed(odoo_only=3)
        with self.db.cursor() as cr1, self.db.cursor() as cr2:
            audience1 = self.env_on(cr1)["mailchimp.audience"].browse(self.ids["audience"])
            audience2 = self.env_on(cr2)["mailchimp.audience"].browse(self.ids["audience"])
            first = self.env_on(cr1)["mailchimp.sync"]._step(audience1)
            second = self.env_on(cr2)["mailchimp.sync"]._step(audience2)
            self.assertEqual(first, "partial")
            self.assertEqual(second, "busy", "the second worker is refused, not crashed")
            cr1.commit()
            cr2.rollback()
            # Once the first committed, the audience is free again.
            third = self.env_on(cr2)["mailchimp.sync"]._step(audience2)
            self.assertEqual(third, "partial")
            cr2.rollback()
        with self.db.cursor() as cr:
            cr.execute("SELECT count(*) FROM mailchimp_sync_run WHERE audience_id = %s", (self.ids["audience"],))
            self.assertEqual(cr.fetchone()[0], 1, "one cycle, not two")

    def test_two_audiences_step_at_the_same_time_within_the_account_cap(self):
        """Two workers (two cron threads) on two audiences of one account
        run their steps at the same time; with the account's cap at one,
        the second is told it is busy instead."""
        self.setup_committed(odoo_only=2)
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            second_list = env["mailing.list"].create({"name": "Race second list"})
            answer = self.emulator.control.seed(lists=[{"name": "Race 2", "members": []}])["lists"][0]
            second = env["mailchimp.audience"].create({
                "name": "Race 2", "account_id": self.ids["account"], "mailchimp_list_id": answer["id"],
                "mailing_list_id": second_list.id,
            })
            cr.commit()
            second_id, second_list_id = second.id, second_list.id

        def cleanup():
            with self.db.cursor() as cr:
                env = self.env_on(cr)
                env["mailchimp.audience"].browse(second_id).unlink()
                env["mailing.list"].browse(second_list_id).unlink()
                cr.commit()
        self.addCleanup(cleanup)
        for cap, expected in ((3, "partial"), (1, "busy")):
            with self.db.cursor() as cr:
                cr.execute("UPDATE mailchimp_account SET max_parallel_syncs = %s WHERE id = %s",
                           (cap, self.ids["account"]))
                cr.commit()
            with self.db.cursor() as cr1, self.db.cursor() as cr2:
                env1, env2 = self.env_on(cr1), self.env_on(cr2)
                first = env1["mailchimp.sync"]._step(env1["mailchimp.audience"].browse(self.ids["audience"]))
                other = env2["mailchimp.sync"]._step(env2["mailchimp.audience"].browse(second_id))
                self.assertEqual(first, "partial")
                self.assertEqual(other, expected, f"cap {cap}")
                cr1.rollback()
                cr2.rollback()

    def test_abort_refused_while_a_step_runs(self):
        self.setup_committed(odoo_only=3)
        self.run_steps(until="submit")
        with self.db.cursor() as cr1, self.db.cursor() as cr2:
            env1, env2 = self.env_on(cr1), self.env_on(cr2)
            self.assertEqual(env1["mailchimp.sync"]._step(env1["mailchimp.audience"].browse(self.ids["audience"])),
                             "done", "the submit step's senders claimed and sent the updates")
            with self.assertRaises(UserError) as caught:
                env2["mailchimp.audience"].browse(self.ids["audience"]).action_abort()
            self.assertIn("running right now", str(caught.exception))
            cr2.rollback()
            # The step never committed (killed, say): its senders' batch,
            # committed on their own connections, is at Mailchimp.
            cr1.rollback()
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            audience = env["mailchimp.audience"].browse(self.ids["audience"])
            result = audience.action_abort()
            cr.commit()
            self.assertIn("0 unsent update(s) cancelled and 1 batch(es) stopped at Mailchimp",
                          result["params"]["message"])
            members = env["mailchimp.member"].search([("audience_id", "=", audience.id)])
            self.assertEqual(set(members.mapped("sync_status")), {"todo"}, "the rows go back in line")
            self.assertFalse(audience.current_run_id)
            self.assertFalse(audience.in_sync)
        # The next cycle sends them, once.
        self.run_steps()
        self.emulator.control.run_batches()
        self.assertEqual(self.emulator.control.member(self.list_id, "racer1@example.org")["status"], "subscribed")
        with self.db.cursor() as cr:
            cr.execute("""SELECT count(*) FROM mailchimp_update
                           WHERE audience_id = %s AND state IN ('sent', 'done')""", (self.ids["audience"],))
            self.assertEqual(cr.fetchone()[0], 3)

    def test_webhook_during_a_reconcile_chunk(self):
        """The chunk holds its rows; the webhook's one-row reconcile waits,
        retries on a fresh snapshot (as Odoo's HTTP layer does) and finds
        the chunk's update: one operation for the member, never two."""
        self.setup_committed(odoo_only=3)
        self.run_steps(until="reconcile")
        with self.db.cursor() as cr:
            cr.execute("SELECT id FROM mailchimp_member WHERE audience_id = %s AND email = 'racer1@example.org'",
                       (self.ids["audience"],))
            member_id = cr.fetchone()[0]
        outcome = {}
        chunk_cr = self.db.cursor()
        try:
            env1 = self.env_on(chunk_cr)
            audience1 = env1["mailchimp.audience"].browse(self.ids["audience"])
            rows = env1["mailchimp.reconcile"]._load_rows(audience1)  # locks the chunk's rows

            # The webhook's environment is made here: making one takes the
            # registry's lock, which the test runner's thread holds.
            cr2 = self.db.cursor()
            env2 = self.env_on(cr2)
            audience2 = env2["mailchimp.audience"].browse(self.ids["audience"])

            def webhook():
                # What Odoo's HTTP layer does around a request
                # (odoo.service.model.retrying): on a serialization
                # failure, roll back and run the request again.
                for _try in range(5):
                    try:
                        with mute_logger("odoo.sql_db"):
                            env2["mailchimp.reconcile"]._sync_members(audience2, [member_id], from_mailchimp=True)
                        cr2.commit()
                        outcome["done"] = True
                        break
                    except (errors.SerializationFailure, errors.LockNotAvailable) as exc:
                        outcome.setdefault("retries", []).append(type(exc).__name__)
                        cr2.rollback()
                        env2.invalidate_all()
                    except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                        outcome["error"] = repr(exc)[:500]
                        break
                cr2.close()

            thread = threading.Thread(target=webhook)
            thread.start()
            thread.join(1.0)
            self.assertTrue(thread.is_alive(), "the webhook waits for the chunk's lock")
            env1["mailchimp.reconcile"]._reconcile_rows(audience1, audience1.current_run_id, rows)
            chunk_cr.commit()
            thread.join(30)
            self.assertTrue(outcome.get("done"), outcome)
            self.assertEqual(outcome.get("retries"), ["SerializationFailure"],
                             "the webhook ran again on a fresh snapshot, once")
        finally:
            chunk_cr.close()
        with self.db.cursor() as cr:
            cr.execute("""SELECT count(*) FROM mailchimp_update
                           WHERE member_id = %s AND state IN ('queued', 'sent')""", (member_id,))
            self.assertEqual(cr.fetchone()[0], 1, "one live operation for the member")

    def test_update_cancelled_before_its_batch_is_sent(self):
        """A claimed batch not yet sending: an unsubscribe cancels the
        update, and the sender sends what is left (here: nothing)."""
        self.setup_committed(odoo_only=1)
        self.run_steps(until="submit")
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            audience = env["mailchimp.audience"].browse(self.ids["audience"])
            self.assertEqual(env["mailchimp.batch"]._stage_submit(audience, audience.current_run_id, 1e18), False)
            batch_id = env["mailchimp.batch"].search([("audience_id", "=", audience.id)]).id
            cr.postcommit.clear()  # the worker dies before its commit runs the sender
            cr.commit()
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            self.assertEqual(env["mailchimp.batch"].browse(batch_id).submit_state, "claimed")
            update_ids = env["mailchimp.batch"].browse(batch_id).update_ids.ids
            cancelled = env["mailchimp.update"]._cancel(update_ids, "The person left")
            cr.commit()
        self.assertEqual(cancelled, update_ids)
        before = self.emulator.control.stats()["requests"]
        with self.db.cursor() as cr:
            self.env_on(cr)["mailchimp.batch"]._send_claimed(cr.dbname, [batch_id])
        with self.db.cursor() as cr:
            cr.execute("SELECT submit_state FROM mailchimp_batch WHERE id = %s", (batch_id,))
            self.assertEqual(cr.fetchone()[0], "lost")
        self.assertEqual(self.emulator.control.stats()["requests"], before, "nothing was sent")

    def test_unsubscribe_webhook_while_the_subscribe_is_in_flight(self):
        """The subscribe already left: it runs at Mailchimp, and the
        webhook queues the unsubscribe that follows it; nobody is mailed a
        confirmation after they left."""
        self.setup_committed(odoo_only=1)
        self.run_steps()  # submitted, not run yet by Mailchimp
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            audience = env["mailchimp.audience"].browse(self.ids["audience"])
            row = env["mailchimp.member"].search([("audience_id", "=", audience.id)])
            self.assertEqual(row.update_ids.batch_id.submit_state, "submitted")
        # Mailchimp runs the subscribe, then the person unsubscribes there.
        self.emulator.control.run_batches()
        self.mailchimp_later()  # clearly after the Odoo side's change (Mailchimp counts in seconds)
        self.emulator.control.admin_update(self.list_id, "racer0@example.org", status="unsubscribed")
        self.emulator.control.clock(real=True)
        member = self.emulator.control.member(self.list_id, "racer0@example.org")
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            audience = env["mailchimp.audience"].browse(self.ids["audience"])
            env["mailchimp.member"]._merge_page(audience, [member])
            row = env["mailchimp.member"].search([("audience_id", "=", audience.id)])
            env["mailchimp.reconcile"]._sync_members(audience, row.ids, from_mailchimp=True)
            cr.commit()
            contact = row.contact_id
            self.assertTrue(contact.subscription_ids.opt_out, "Mailchimp's later unsubscribe reaches Odoo")
            queued = row.update_ids.filtered(lambda u: u.state == "queued")
            self.assertEqual(queued.payload, {"status": "unsubscribed"})
        # The batch settles (the subscribe went through), then the next
        # cycle sends the unsubscribe.
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            env["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0, limit=10, recheck_seconds=0)
            cr.commit()
        self.run_steps()
        self.emulator.control.run_batches()
        self.assertEqual(self.emulator.control.member(self.list_id, "racer0@example.org")["status"], "unsubscribed")


@tagged("post_install", "-at_install")
class TestPollerAtItsSeams(CommittedFixture, SyncCase):
    """The batch poller settles each batch in a savepoint of its own: one
    that meets a deadlock (or any error) waits for the next call, and the
    others settle in this one."""

    def test_a_batch_caught_in_a_deadlock_waits_and_the_next_one_settles(self):
        self.setup_committed(odoo_only=1)
        self.run_steps()
        with self.db.cursor() as cr:
            self.env_on(cr)["mailing.contact"].create(
                {"name": "Racer 1", "email": "racer1@example.org", "list_ids": [(4, self.ids["list"])]})
            cr.commit()
        self.run_steps()
        self.emulator.control.run_batches()
        with self.db.cursor() as cr:
            cr.execute(
                """SELECT b.id, u.member_id FROM mailchimp_batch b JOIN mailchimp_update u ON u.batch_id = b.id
                    WHERE b.audience_id = %s ORDER BY b.id""", (self.ids["audience"],))
            (first, first_member), (second, _member) = cr.fetchall()
        holder, poll_cr, watch = self.db.cursor(), self.db.cursor(), self.db.cursor()
        outcome = {}
        try:
            poll_env = self.env_on(poll_cr)  # made here: making one takes the registry's lock
            # A webhook's transaction holds the first batch's member ...
            holder.execute("SET lock_timeout = '20s'")  # a failing poller never hangs the suite
            holder.execute("SELECT id FROM mailchimp_member WHERE id = %s FOR UPDATE", (first_member,))

            def poll():
                try:
                    with mute_logger("odoo.sql_db"):
                        poll_env["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0, limit=10,
                                                                      recheck_seconds=0)
                    poll_cr.commit()
                    outcome["done"] = True
                except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                    outcome["error"] = repr(exc)[:500]
                    poll_cr.rollback()

            thread = threading.Thread(target=poll)
            thread.start()
            # ... the poller, holding that batch, waits for the member (on
            # the connection of the settler that took it) ...
            holder_pid = holder._cnx.get_backend_pid()
            for _i in range(100):
                watch.execute("SELECT pg_stat_clear_snapshot()")  # else read once per transaction
                watch.execute(
                    """SELECT count(*) FROM pg_stat_activity
                        WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> %s""",
                    (holder_pid,))
                if watch.fetchone()[0]:
                    break
                time.sleep(0.05)
            else:
                self.fail("the poller never waited for the member's lock")
            # ... and the webhook then asks for the batch: a deadlock, which
            # PostgreSQL breaks in the poller (it waited first).
            holder.execute("SELECT id FROM mailchimp_batch WHERE id = %s FOR UPDATE", (first,))
            thread.join(30)
            self.assertEqual(outcome, {"done": True}, "the poller's call ends normally")
            holder.rollback()
        finally:
            for cr in (holder, poll_cr, watch):
                cr.close()
        with self.db.cursor() as cr:
            cr.execute("SELECT id, result_state FROM mailchimp_batch WHERE id IN %s ORDER BY id", ((first, second),))
            self.assertEqual(cr.fetchall(), [(first, "waiting"), (second, "done")])
        with self.db.cursor() as cr:
            self.env_on(cr)["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0, limit=10, recheck_seconds=0)
            cr.commit()
            cr.execute("SELECT result_state FROM mailchimp_batch WHERE id = %s", (first,))
            self.assertEqual(cr.fetchone()[0], "done", "settled by the next call")
            cr.execute("SELECT sync_status FROM mailchimp_member WHERE audience_id = %s", (self.ids["audience"],))
            self.assertEqual({status for (status,) in cr.fetchall()}, {"ok"})


@tagged("post_install", "-at_install")
class TestExactlyOnceSubmit(SyncCase):
    def test_lost_answer_is_found_at_mailchimp_not_sent_again(self):
        for i in range(3):
            self.contact(f"lost{i}@example.org", [self.newsletter])
        self.seed()
        self.account.timeout = 1
        # Mailchimp takes the batch but answers after the client gave up.
        self.emulator.control.faults(rules=[{"method": "POST", "path": "/batches$", "kind": "timeout",
                                             "delay": 2, "count": 1}])
        with mute_logger("odoo.addons.mailchimp_sync.models.mailchimp_batch"):
            run = self.sync(settle=False, until="submit")
            self.assertEqual(self.step(), "partial")  # claims and (after the commit) sends
        batch = self.env["mailchimp.batch"].search([("audience_id", "=", self.audience.id)])
        self.assertEqual((batch.submit_state, batch.mailchimp_batch_id), ("sending", False))
        # Before any answer could have come, the next step waits.
        self.assertEqual(self.step(), "waiting")
        self.assertTrue(run.next_retry_at)
        # Later (the wait simulated by ageing the batch), Mailchimp is asked.
        self.emulator.control.faults(rules=[])
        time.sleep(2.5)  # the emulator's delayed request has been handled
        batch.sending_at = fields.Datetime.now() - timedelta(minutes=5)
        self.assertEqual(self.step(), "waiting", "an unfinished candidate: wait for its results")
        self.emulator.control.run_batches()
        batch.sending_at = fields.Datetime.now() - timedelta(minutes=5)
        for _i in range(5):
            if self.step() == "done":
                break
        batch.invalidate_recordset()
        self.assertEqual(batch.submit_state, "submitted")
        self.assertTrue(batch.mailchimp_batch_id, "adopted the batch Mailchimp holds")
        self.settle()
        self.assertEqual(len(self.emulator.control.state(self.list_id)["batches"]), 1,
                         "Mailchimp received one batch, not two")
        self.assertEqual(self.env["mailchimp.batch"].search_count(
            [("audience_id", "=", self.audience.id), ("submit_state", "=", "submitted")]), 1)
        updates = self.env["mailchimp.update"].search([("audience_id", "=", self.audience.id)])
        self.assertEqual(set(updates.mapped("state")), {"done"})
        self.assertEqual(len(updates), 3, "each update sent once")

    def test_refused_connection_requeues_at_once(self):
        self.contact("gone@example.org", [self.newsletter])
        self.seed()
        self.sync(settle=False, until="submit")
        self.emulator.control.faults(rules=[{"method": "POST", "path": "/batches$", "kind": "500", "count": 1}])
        with mute_logger("odoo.addons.mailchimp_sync.models.mailchimp_batch"):
            self.step()
        batch = self.env["mailchimp.batch"].search([("audience_id", "=", self.audience.id)])
        self.assertEqual(batch.submit_state, "sending", "a 500 may still have created it")
        batch.sending_at = fields.Datetime.now() - timedelta(minutes=5)
        self.assertEqual(self.step(), "partial")
        batch.invalidate_recordset()
        self.assertEqual(batch.submit_state, "lost", "Mailchimp has no such batch: queued again")
        run = self.sync()
        self.assertEqual(self.mc("gone@example.org")["status"], "subscribed")
        self.assertEqual(run.batches_sent, 2)


    def test_update_queued_again_folds_into_a_newer_one(self):
        self.contact("fold@example.org", [self.newsletter], name="Fold Me")
        self.seed()
        self.sync(settle=False, until="submit")
        Update, Batch = self.env["mailchimp.update"], self.env["mailchimp.batch"]
        row = self.row("fold@example.org")
        old = Update.search([("member_id", "=", row.id), ("kind", "=", "member")])
        self.assertEqual(old.payload["merge_fields"]["FNAME"], "Fold")
        batch = Batch.create({"account_id": self.account.id, "audience_id": self.audience.id,
                              "submit_state": "sending", "sending_at": fields.Datetime.now()})
        self.assertEqual(len(Update._claim(self.audience, batch, 1000)), 1)
        # While it is on its way, a webhook decides the row again.
        Update._queue(self.audience, [(row.id, "member", {"status": "unsubscribed"})],
                      Update._unsent_for([row.id]))
        newer = Update.search([("member_id", "=", row.id), ("state", "=", "queued")])
        # Mailchimp never got the batch: the old update must not follow the newer one.
        batch._mark_lost("never arrived")
        old.invalidate_recordset()
        newer.invalidate_recordset()
        self.assertEqual(old.state, "cancelled")
        self.assertEqual(newer.payload["status"], "unsubscribed", "the newer decision stands")
        self.assertEqual(newer.payload["merge_fields"]["FNAME"], "Fold", "the older data is kept")
        # A claim from past the newer update finds nothing; from the start, it.
        second = Batch.create({"account_id": self.account.id, "audience_id": self.audience.id,
                               "submit_state": "claimed"})
        self.assertFalse(Update._claim(self.audience, second, 1000, after_id=newer.id))
        self.assertEqual([u for u, _m in Update._claim(self.audience, second, 1000)], [newer.id])

    def test_full_queue_at_mailchimp_pauses_sending_and_requeues_at_once(self):
        for i in range(3):
            self.contact(f"queue{i}@example.org", [self.newsletter])
        self.seed()
        # Mailchimp already holds as many pending batches as it takes.
        self.emulator.control.settings(max_pending_batches=1)
        self.account._get_client().start_batch([{"method": "GET", "path": f"/lists/{self.list_id}"}])
        run = self.sync(settle=False, until="submit")
        with mute_logger("odoo.addons.mailchimp_sync.models.mailchimp_batch"):
            self.assertEqual(self.step(), "partial")  # claims, then the POST is refused
        batch = self.env["mailchimp.batch"].search([("audience_id", "=", self.audience.id)])
        self.assertEqual(batch.submit_state, "lost", "a 429 is an answer: nothing was created")
        self.assertTrue(batch.throttled_at)
        self.assertIn("too many batches waiting", batch.result_message)
        updates = self.env["mailchimp.update"].search([("audience_id", "=", self.audience.id)])
        self.assertEqual(set(updates.mapped("state")), {"queued"}, "back in line at once")
        # Sending pauses instead of asking again at once.
        self.assertEqual(self.step(), "waiting")
        self.assertGreater(run.next_retry_at, fields.Datetime.now())
        self.emulator.control.run_batches()
        batch.throttled_at = fields.Datetime.now() - timedelta(minutes=1)
        for _i in range(5):
            if self.step() == "done":
                break
        self.assertEqual(self.audience.current_run_id, self.env["mailchimp.sync.run"], "the cycle ended")
        self.settle()
        self.assertEqual(self.mc("queue1@example.org")["status"], "subscribed")
        self.assertEqual(set(updates.mapped("state")), {"done"})
        self.assertEqual(run.batches_sent, 2)


@tagged("post_install", "-at_install")
class TestTableUpkeep(CommittedFixture, SyncCase):
    def dead_rows(self, cr):
        cr.execute("SELECT pg_stat_clear_snapshot()")
        cr.execute("SELECT n_dead_tup, vacuum_count FROM pg_stat_user_tables WHERE relname = 'mailchimp_member'")
        return cr.fetchone()

    def reported(self, cr, read, least):
        """What ``read(cr)`` says once another session's writes are counted
        (its first figure at least ``least``): a session reports its counts
        when it is idle, not at once."""
        for _i in range(50):
            figures = read(cr)
            if figures[0] >= least:
                break
            time.sleep(0.1)
        self.assertGreaterEqual(figures[0], least)
        return figures

    def test_a_step_sorts_and_hashes_in_memory_for_its_transaction(self):
        cr = self.env.cr
        cr.execute("SET LOCAL work_mem = '4MB'")
        cr.execute("SET LOCAL jit = on")
        self.env["mailchimp.sync"]._tune_bulk_transaction()
        cr.execute("SHOW work_mem")
        self.assertEqual(cr.fetchone()[0], "64MB")
        cr.execute("SHOW jit")
        self.assertEqual(cr.fetchone()[0], "off")
        # A server that gives more already keeps its setting.
        cr.execute("SET LOCAL work_mem = '256MB'")
        self.env["mailchimp.sync"]._tune_bulk_transaction()
        cr.execute("SHOW work_mem")
        self.assertEqual(cr.fetchone()[0], "256MB")

    @staticmethod
    def vacuum_threads(but=()):
        """The background VACUUM threads alive now, but those in ``but``."""
        return [t for t in threading.enumerate() if t.name == VACUUM_THREAD_NAME and t not in but]

    def bloat_cache(self):
        """Committed data, and a cache a stage rewrote: 30,000 dead row versions."""
        # A VACUUM an earlier test's settling left running would be counted here.
        for thread in self.vacuum_threads():
            thread.join(timeout=60)
        self.setup_committed()
        with self.db.cursor() as cr:
            cr.execute(
                """INSERT INTO mailchimp_member (audience_id, email, subscriber_hash, sync_status)
                   SELECT %s, 'bloat' || i || '@example.org', md5('bloat' || i), 'todo'
                     FROM generate_series(1, 30000) AS i""",
                (self.ids["audience"],),
            )
            cr.commit()
            cr.execute("DELETE FROM mailchimp_member WHERE audience_id = %s", (self.ids["audience"],))
            cr.execute("SELECT pg_stat_force_next_flush()")  # report the counts when idle, not seconds later
            cr.commit()

    def test_a_bloated_cache_is_vacuumed_once_after_the_commit(self):
        self.bloat_cache()
        with self.db.cursor() as cr:
            dead, vacuums = self.reported(cr, self.dead_rows, 30000)
            cr.commit()
            env = self.env_on(cr)
            env["mailchimp.sync"]._vacuum_if_bloated()
            env["mailchimp.sync"]._vacuum_if_bloated()
            self.assertEqual(self.dead_rows(cr), (dead, vacuums), "nothing before the commit")
            cr.commit()  # runs the post-commit VACUUM on a connection of its own
            _dead, vacuums_after = self.dead_rows(cr)
        # (The test's own transaction, open since before the rows were
        # written, keeps VACUUM from removing them: only the run is seen.)
        self.assertEqual(vacuums_after, vacuums + 1, "vacuumed once, however many asked")

    def test_settling_does_not_wait_for_the_vacuum(self):
        """Settling a batch (the poller, the batch webhook) leaves the VACUUM
        its bloat asks for to a thread of its own: the commit returns while
        the VACUUM still waits for a lock another session holds, and the
        VACUUM runs once that session lets go."""
        self.bloat_cache()
        with self.db.cursor() as holder, self.db.cursor() as cr:
            _dead, vacuums = self.reported(cr, self.dead_rows, 30000)
            cr.commit()
            # Another session's lock that VACUUM must wait for (it waits
            # at most 2 s, then skips the table).
            holder.execute("LOCK TABLE mailchimp_member IN SHARE UPDATE EXCLUSIVE MODE")
            before = self.vacuum_threads()
            self.env_on(cr)["mailchimp.sync"]._vacuum_if_bloated(wait=False)
            cr.commit()
            vacuuming = self.vacuum_threads(but=before)
            self.assertEqual(len(vacuuming), 1, "the commit returned with the VACUUM under way")
            self.assertTrue(vacuuming[0].is_alive(), "the VACUUM still waits for the lock")
            # The next batch settled meanwhile finds the table as bloated:
            # no second VACUUM of it is started beside the first; the first
            # thread does it again once through (the last batch of a sync
            # wants statistics of what it wrote).
            self.env_on(cr)["mailchimp.sync"]._vacuum_if_bloated(wait=False)
            cr.commit()
            self.assertEqual(self.vacuum_threads(but=before), vacuuming, "one VACUUM of the table at a time")
            holder.rollback()
            vacuuming[0].join(timeout=30)
            self.assertFalse(vacuuming[0].is_alive())
            _dead, vacuums_after = self.dead_rows(cr)
        self.assertEqual(vacuums_after, vacuums + 2, "vacuumed once the lock was let go, then once more as asked")

    def test_a_finished_cycle_refreshes_stale_statistics(self):
        """The cycle's last step has the statistics left stale (by its own
        stages: the updates it queued; here by a bulk import into the
        blacklist just before it) refreshed after its commit, in the
        background: the first batch settled plans with them, instead of
        analyzing the table itself on each of its lanes."""
        for thread in self.vacuum_threads():
            thread.join(timeout=60)
        self.setup_committed(odoo_only=3)
        self.assertEqual(self.run_steps(until="submit"), "submit")
        with self.db.cursor() as cr:
            _changed, analyzes, _vacuums = self.stale_blacklist(cr)
        before = self.vacuum_threads()
        self.assertEqual(self.run_steps(), "done")
        for thread in self.vacuum_threads(but=before):
            thread.join(timeout=60)
        with self.db.cursor() as cr:
            self.assertEqual(self.blacklist_counts(cr)[1], analyzes + 1, "analyzed after the last step")

    def test_a_large_full_fetch_leaves_statistics_for_the_next_stage(self):
        """A full fetch that wrote many rows has the cache analyzed in its
        last step: the renames stage, next, planned on statistics that
        said the cache was nearly empty (a million-member first sync
        sorted every row on disk)."""
        self.setup_committed(generate=1500)
        Sync = type(self.env["mailchimp.sync"])
        analyze = Sync._ensure_statistics
        forced = []

        def recorded(sync, force=(), stale=True):
            forced.append((sync.env["mailchimp.audience"].browse(self.ids["audience"]).current_run_id.stage,
                           tuple(force)))
            return analyze(sync, force=force, stale=stale)

        with patch.object(Sync, "_ensure_statistics", recorded):
            self.assertEqual(self.run_steps(until="renames"), "renames")
        self.assertEqual(forced, [("fetch", ("mailchimp_member",))])

    def test_the_last_settled_batch_refreshes_stale_statistics(self):
        """Once the last batch of a sync is settled, an Odoo table the stages
        join whose statistics are stale (here: a bulk import into the
        blacklist) is analyzed after the commit, and not vacuumed: the next
        cycle's plans are right without waiting for it."""
        self.setup_committed()
        with self.db.cursor() as cr:
            _changed, analyzes, vacuums = self.stale_blacklist(cr)
            env = self.env_on(cr)
            env["mailchimp.sync"]._vacuum_if_bloated()
            cr.commit()
            self.assertEqual(self.blacklist_counts(cr)[1:], (analyzes, vacuums), "not before the last batch is settled")
            env["mailchimp.sync"]._vacuum_if_bloated(analyze_stale=True)
            cr.commit()
            self.assertEqual(self.blacklist_counts(cr)[1:], (analyzes + 1, vacuums), "analyzed, not vacuumed")

    @staticmethod
    def blacklist_counts(cr):
        cr.execute("SELECT pg_stat_clear_snapshot()")
        cr.execute("""SELECT n_mod_since_analyze, analyze_count, vacuum_count
                        FROM pg_stat_user_tables WHERE relname = 'mail_blacklist'""")
        return cr.fetchone()

    def stale_blacklist(self, cr):
        """Make the blacklist's statistics stale (a bulk import); return
        its counts once they are reported, committed on ``cr``."""
        cr.execute("""INSERT INTO mail_blacklist (email, active, create_date, write_date)
                      SELECT 'stale' || i || '@example.org', TRUE, now(), now()
                        FROM generate_series(1, 3000) AS i""")
        cr.execute("SELECT pg_stat_force_next_flush()")
        cr.commit()
        self.addCleanup(self.drop_stale_blacklist)
        counts = self.reported(cr, self.blacklist_counts, 3000)
        cr.commit()
        return counts

    def drop_stale_blacklist(self):
        with self.db.cursor() as cr:
            cr.execute("DELETE FROM mail_blacklist WHERE email LIKE 'stale%%@example.org'")
            cr.commit()


@tagged("post_install", "-at_install")
class TestScheduledActions(SyncCase):
    def test_each_mapped_audience_has_its_own_action(self):
        self.seed()
        cron = self.audience.cron_id
        self.assertTrue(cron.active)
        self.assertIn(f"_cron_sync_audience({self.audience.id})", cron.code)
        self.audience.mailing_list_id = False
        self.assertFalse(self.audience.cron_id)
        self.assertFalse(cron.exists(), "unmapping removes the action")

    def test_failure_is_recorded_on_its_audience_and_retried_later(self):
        self.contact("fail@example.org", [self.newsletter])
        self.seed()
        self.emulator.control.faults(rules=[{"method": "GET", "path": "/members$", "kind": "503", "count": 1}])
        with mute_logger("odoo.addons.mailchimp_sync.models.mailchimp_sync"):
            self.env["mailchimp.audience"]._cron_sync_audience(self.audience.id)
        run = self.audience.current_run_id
        self.assertEqual(self.audience.sync_stage, "failing")
        self.assertIn("will retry", dict(self.audience._fields["sync_stage"].selection)["failing"])
        self.assertGreater(run.next_retry_at, fields.Datetime.now())
        self.assertNotIn("object at 0x", run.message)
        triggers = self.env["ir.cron.trigger"].search([("cron_id", "=", self.audience.cron_id.id)])
        self.assertTrue(triggers.filtered(lambda t: t.call_at >= run.next_retry_at - timedelta(seconds=1)))
        # Called again before the retry time: nothing happens.
        self.env["mailchimp.audience"]._cron_sync_audience(self.audience.id)
        self.assertEqual(run.failure_count, 1)

    def test_an_unexpected_error_stops_only_its_audience(self):
        self.seed()
        other_list = self.env["mailing.list"].create({"name": "Other"})
        broken = self.env["mailchimp.audience"].create({
            "name": "Broken", "account_id": self.env["mailchimp.account"].create({"name": "No key"}).id,
            "mailchimp_list_id": "nokey00001", "mailing_list_id": other_list.id,
        })
        with mute_logger("odoo.addons.mailchimp_sync.models.mailchimp_sync"):
            self.env["mailchimp.audience"]._cron_sync_audience(broken.id)
        self.assertEqual(broken.sync_stage, "failing")
        self.assertTrue(broken.current_run_id.message)
        self.env["mailchimp.audience"]._cron_sync_audience(self.audience.id)
        self.assertEqual(self.audience.sync_stage, "renames", "the other audience goes on")

    def test_two_audiences_sync_at_the_same_time(self):
        """Two cron workers, two audiences: both hold their audience at once."""
        self.seed()
        other_list = self.env["mailing.list"].create({"name": "Second"})
        second = self.env["mailchimp.audience"].create({
            "name": "Second", "account_id": self.account.id, "mailchimp_list_id": self.list_id + "x",
            "mailing_list_id": other_list.id,
        })
        self.assertTrue(self.audience._lock_for_step())
        self.assertTrue(second._lock_for_step(), "a second audience is not blocked by the first")

    def test_sync_now_triggers_the_action(self):
        self.seed()
        result = self.audience.action_sync_now()
        self.assertEqual(result["params"]["title"], "Sync started")
        self.assertTrue(self.env["ir.cron.trigger"].search([("cron_id", "=", self.audience.cron_id.id)]))
        self.assertFalse(self.audience.current_run_id, "nothing ran in the request itself")

    def test_step_stays_bounded(self):
        self.seed(generate=3000)
        result = self.env["mailchimp.sync"]._step(self.audience, 0.0001)
        self.assertEqual(result, "partial")
        self.assertEqual(self.audience.current_run_id.fetch_offset, 1000, "one page, then the step ends")


@tagged("post_install", "-at_install")
class TestSerializationIsRetried(CommittedFixture, SyncCase):
    def test_step_meeting_a_concurrent_write_ends_cleanly(self):
        self.setup_committed(odoo_only=2)
        self.run_steps(until="reconcile")
        with self.db.cursor() as cr1, self.db.cursor() as cr2:
            env1 = self.env_on(cr1)
            audience1 = env1["mailchimp.audience"].browse(self.ids["audience"])
            cr1.execute("SELECT 1")  # the step's snapshot starts here
            cr2.execute("UPDATE mailchimp_member SET sync_error = 'x' WHERE audience_id = %s",
                        (self.ids["audience"],))
            cr2.commit()
            with mute_logger("odoo.sql_db"):
                result = env1["mailchimp.sync"]._step(audience1)
            self.assertIn(result, ("partial", "busy"))
            cr1.rollback()
        self.assertEqual(self.run_steps(), "done")

