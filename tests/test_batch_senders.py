"""A submit step's two senders, each on a connection of its own, claim a
batch, commit the claim and POST it, at the same time."""
# The committed tests run the sender on real connections, which commit.
# pylint: disable=invalid-commit

import threading
from unittest.mock import patch

from odoo.tests import tagged
from odoo.tools import mute_logger

from ..mailchimp_sync.client import MailchimpClient
from ..models import mailchimp_batch
from ..tools.threads import own_cursor_env
from .common import SyncCase
from .test_engine import CommittedFixture

BATCH = "odoo.addons.mailchimp_sync.models.mailchimp_batch"


@tagged("post_install", "-at_install")
class TestSendersOnRealConnections(CommittedFixture, SyncCase):
    def batches(self):
        with self.db.cursor() as cr:
            cr.execute("""SELECT submit_state, mailchimp_batch_id FROM mailchimp_batch
                           WHERE audience_id = %s ORDER BY id""", (self.ids["audience"],))
            return cr.fetchall()

    def test_two_batches_leave_at_once_and_each_update_once(self):
        """Four batches of three: each sender's first POST waits at a
        barrier for the other's (sent one after another, they never meet,
        and the POST fails).  Every batch then holds its Mailchimp id, and
        Mailchimp creates each member once."""
        self.setup_committed(odoo_only=12)
        self.run_steps(until="submit")
        barrier = threading.Barrier(2, timeout=20)
        senders, real, posted = set(), MailchimpClient.start_batch, []

        def start_batch_after_a_meeting(client, operations):
            name = threading.current_thread().name
            posted.extend(operations)
            if name not in senders:
                senders.add(name)
                barrier.wait()
            return real(client, operations)

        with patch.object(mailchimp_batch, "MAX_OPERATIONS", 3), \
                patch.object(MailchimpClient, "start_batch", start_batch_after_a_meeting):
            self.run_steps()
        self.assertEqual(len(senders), 2, "two senders POSTed")
        # Each sender read the fields Mailchimp answers with once, for all
        # its batches: what settling reads.
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            answer_fields = ",".join(env["mailchimp.merge.field"]._fetch_fields(
                env["mailchimp.audience"].browse(self.ids["audience"])))
        self.assertEqual(len(posted), 12)
        self.assertEqual({op["params"]["fields"] for op in posted}, {answer_fields})
        batches = self.batches()
        self.assertEqual([state for state, _id in batches], ["submitted"] * 4)
        self.assertEqual(len({batch_id for _state, batch_id in batches}), 4, "four batches at Mailchimp")
        self.emulator.control.run_batches()
        for i in range(12):
            self.assertEqual(self.mc(f"racer{i}@example.org")["status"], "subscribed")
        self.assertEqual(len(self.emulator.control.state(self.list_id)["batches"]), 4, "each POSTed once")
        with self.db.cursor() as cr:
            cr.execute("""SELECT count(*), count(sent_at), bool_and(sent_at >= queued_at) FROM mailchimp_update
                           WHERE audience_id = %s""", (self.ids["audience"],))
            self.assertEqual(cr.fetchone(), (12, 12, True), "each update shows when it left")

    def test_a_batch_refused_for_too_many_connections_goes_back_in_line_without_a_pause(self):
        """Mailchimp refuses the first POST for its limit of simultaneous
        connections (the account's other requests held them): that batch's
        updates go back in line at once and sending does not pause; the
        batches the other sender claimed before the refusal came back are
        sent, and no sender claims another: the other updates stay
        queued, in no batch, for the next step; every member is created,
        once."""
        self.setup_committed(odoo_only=12)
        self.run_steps(until="submit")
        self.emulator.control.faults(rules=[{"method": "POST", "path": "^/batches$", "kind": "429_json",
                                             "count": 1}])
        with patch.object(mailchimp_batch, "MAX_OPERATIONS", 3), mute_logger(BATCH):
            with self.db.cursor() as cr:
                env = self.env_on(cr)
                audience = env["mailchimp.audience"].browse(self.ids["audience"])
                self.assertEqual(env["mailchimp.sync"]._step(audience), "partial")
                cr.commit()
            with self.db.cursor() as cr:
                cr.execute("""SELECT submit_state, throttled_at IS NOT NULL, result_message FROM mailchimp_batch
                               WHERE audience_id = %s ORDER BY id""", (self.ids["audience"],))
                batches = cr.fetchall()
                cr.execute("""SELECT count(*) FROM mailchimp_update
                               WHERE audience_id = %s AND state = 'queued' AND batch_id IS NULL""",
                           (self.ids["audience"],))
                queued = cr.fetchone()[0]
            states = [state for state, _paused, _message in batches]
            self.assertEqual(states.count("lost"), 1, states)
            # The other sender's batches, claimed before the refusal came
            # back, are sent; none is left claimed or sending.
            self.assertEqual(len(states), 1 + states.count("submitted"), states)
            self.assertEqual(queued, 12 - 3 * states.count("submitted"), "the refused batch's updates are queued")
            lost = [message for state, _paused, message in batches if state == "lost"][0]
            self.assertIn("too many requests open at once", lost)
            self.assertFalse(any(paused for _state, paused, _message in batches), "sending does not pause")
            with self.db.cursor() as cr:
                env = self.env_on(cr)
                audience = env["mailchimp.audience"].browse(self.ids["audience"])
                self.assertIn(env["mailchimp.sync"]._step(audience), ("partial", "done"),
                              "the next step sends at once")
                cr.commit()
            with self.db.cursor() as cr:
                cr.execute("""SELECT count(*) FROM mailchimp_update
                               WHERE audience_id = %s AND state = 'queued'""", (self.ids["audience"],))
                self.assertEqual(cr.fetchone()[0], 0, "the next step sent every queued update")
            self.run_steps()
        self.emulator.control.run_batches()
        for i in range(12):
            self.assertEqual(self.mc(f"racer{i}@example.org")["status"], "subscribed")
        with self.db.cursor() as cr:
            cr.execute("""SELECT count(*), count(DISTINCT member_id) FROM mailchimp_update
                           WHERE audience_id = %s AND state = 'sent'""", (self.ids["audience"],))
            self.assertEqual(cr.fetchone(), (12, 12), "each member's update is out once")

    def run_record(self):
        with self.db.cursor() as cr:
            cr.execute("""SELECT stage, batches_sent FROM mailchimp_sync_run
                           WHERE audience_id = %s ORDER BY id DESC LIMIT 1""", (self.ids["audience"],))
            return cr.fetchone()

    def test_a_step_lost_after_its_senders_sent_counts_each_batch_once(self):
        """A submit step is lost before its own commit (a worker killed)
        after its senders claimed and POSTed their batches: those batches
        stay submitted, the next steps send the other updates and never
        these again, and the run counts every batch once, the lost step's
        from their tallies."""
        self.setup_committed(odoo_only=12)
        self.run_steps(until="submit")
        with patch.object(mailchimp_batch, "MAX_OPERATIONS", 3):
            with self.db.cursor() as cr:
                env = self.env_on(cr)
                audience = env["mailchimp.audience"].browse(self.ids["audience"])
                self.assertEqual(env["mailchimp.sync"]._step(audience, budget=0.001), "partial")
                cr.rollback()
            sent_by_lost_step = [state for state, _id in self.batches()]
            self.assertTrue(1 <= len(sent_by_lost_step) < 4, sent_by_lost_step)
            self.assertEqual(set(sent_by_lost_step), {"submitted"})
            self.assertEqual(self.run_record(), ("submit", 0), "the lost step's count is not on the run")
            self.run_steps()
        self.assertEqual([state for state, _id in self.batches()], ["submitted"] * 4)
        self.assertEqual(self.run_record(), ("done", 4), "each batch counted once")
        self.emulator.control.run_batches()
        self.assertEqual(len(self.emulator.control.state(self.list_id)["batches"]), 4, "each POSTed once")
        for i in range(12):
            self.assertEqual(self.mc(f"racer{i}@example.org")["status"], "subscribed")

    def test_a_claimed_update_is_in_flight_before_its_post_leaves(self):
        """A sender commits its claim with the batch ``sending``: while the
        POST is under way, a writer (an unsubscribe webhook) can no longer
        cancel the update, and finds it in flight (it then queues what
        follows it), so Mailchimp never receives an update Odoo thinks was
        cancelled."""
        self.setup_committed(odoo_only=2)
        self.run_steps(until="submit")
        seen, real = [], MailchimpClient.start_batch

        def start_batch_while_a_writer_tries(client, operations):
            # (In the sender's thread: an Environment of its own would wait
            # for the registries' lock, which the test runner holds.)
            with own_cursor_env(self.env) as env:
                env.cr.execute("SELECT id, member_id FROM mailchimp_update WHERE audience_id = %s",
                               (self.ids["audience"],))
                update_ids, member_ids = zip(*env.cr.fetchall(), strict=True)
                seen.append((env["mailchimp.update"]._cancel(list(update_ids), "The person left"),
                             env["mailchimp.update"]._in_flight_members(list(member_ids)) == set(member_ids)))
            return real(client, operations)

        with patch.object(MailchimpClient, "start_batch", start_batch_while_a_writer_tries):
            self.run_steps()
        self.assertEqual(seen, [([], True)], "nothing cancelled; every member in flight")
        self.emulator.control.run_batches()
        for i in range(2):
            self.assertEqual(self.mc(f"racer{i}@example.org")["status"], "subscribed")

    def test_the_next_cycle_drops_the_tallies_the_last_one_left(self):
        """The senders' tallies of a step that finished the cycle stay (its
        snapshot does not show them, so it cannot delete them); the next
        cycle deletes them as it opens, and the run keeps its counts."""
        self.setup_committed(odoo_only=6)

        def tallies():
            with self.db.cursor() as cr:
                cr.execute("""SELECT count(*) FROM mailchimp_reconcile_tally t
                                JOIN mailchimp_sync_run r ON r.id = t.run_id
                               WHERE r.audience_id = %s AND t.batches_sent > 0""", (self.ids["audience"],))
                return cr.fetchone()[0]

        with patch.object(mailchimp_batch, "MAX_OPERATIONS", 3):
            self.assertEqual(self.run_steps(), "done")
        self.assertEqual(tallies(), 2, "one tally per batch a sender claimed")
        self.assertEqual(self.run_record(), ("done", 2))
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            self.assertEqual(env["mailchimp.sync"]._step(env["mailchimp.audience"].browse(self.ids["audience"])),
                             "partial")
            cr.commit()
        self.assertEqual(tallies(), 0)
        with self.db.cursor() as cr:
            cr.execute("""SELECT batches_sent FROM mailchimp_sync_run WHERE audience_id = %s
                        ORDER BY id""", (self.ids["audience"],))
            self.assertEqual(cr.fetchall()[0], (2,), "the closed run keeps its count")
