"""The batches a submit step claimed are POSTed by two senders at once,
each on a connection of its own, once the step has committed."""
# The committed tests run the sender on real connections, which commit.
# pylint: disable=invalid-commit

import threading
from unittest.mock import patch

from odoo.tests import tagged
from odoo.tools import mute_logger

from ..mailchimp_sync.client import MailchimpClient
from ..models import mailchimp_batch
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
        senders, real = set(), MailchimpClient.start_batch

        def start_batch_after_a_meeting(client, operations):
            name = threading.current_thread().name
            if name not in senders:
                senders.add(name)
                barrier.wait()
            return real(client, operations)

        with patch.object(mailchimp_batch, "MAX_OPERATIONS", 3), \
                patch.object(MailchimpClient, "start_batch", start_batch_after_a_meeting):
            self.run_steps()
        self.assertEqual(len(senders), 2, "two senders POSTed")
        batches = self.batches()
        self.assertEqual([state for state, _id in batches], ["submitted"] * 4)
        self.assertEqual(len({batch_id for _state, batch_id in batches}), 4, "four batches at Mailchimp")
        self.emulator.control.run_batches()
        for i in range(12):
            self.assertEqual(self.mc(f"racer{i}@example.org")["status"], "subscribed")
        self.assertEqual(len(self.emulator.control.state(self.list_id)["batches"]), 4, "each POSTed once")

    def test_a_batch_refused_for_too_many_connections_goes_back_in_line_without_a_pause(self):
        """Mailchimp refuses the first POST for its limit of simultaneous
        connections (the account's other requests held them): that batch's
        updates go back in line at once and sending does not pause; a batch
        the other sender had started is sent, the ones no sender started
        yet stay claimed; every member is created, once."""
        self.setup_committed(odoo_only=12)
        self.run_steps(until="submit")
        self.emulator.control.faults(rules=[{"method": "POST", "path": "^/batches$", "kind": "429_json",
                                             "count": 1}])
        with patch.object(mailchimp_batch, "MAX_OPERATIONS", 3), mute_logger(BATCH):
            with self.db.cursor() as cr:
                env = self.env_on(cr)
                audience = env["mailchimp.audience"].browse(self.ids["audience"])
                self.assertEqual(env["mailchimp.sync"]._step(audience), "partial")
                cr.commit()  # the senders POST now
            with self.db.cursor() as cr:
                cr.execute("""SELECT submit_state, throttled_at IS NOT NULL, result_message FROM mailchimp_batch
                               WHERE audience_id = %s ORDER BY id""", (self.ids["audience"],))
                batches = cr.fetchall()
            states = [state for state, _paused, _message in batches]
            self.assertEqual(states.count("lost"), 1, states)
            self.assertEqual(states.count("submitted") + states.count("claimed"), 3, states)
            lost = [message for state, _paused, message in batches if state == "lost"][0]
            self.assertIn("too many requests open at once", lost)
            self.assertFalse(any(paused for _state, paused, _message in batches), "sending does not pause")
            with self.db.cursor() as cr:
                env = self.env_on(cr)
                audience = env["mailchimp.audience"].browse(self.ids["audience"])
                self.assertEqual(env["mailchimp.sync"]._step(audience), "partial", "the next step sends at once")
                cr.commit()
            self.run_steps()
        self.emulator.control.run_batches()
        for i in range(12):
            self.assertEqual(self.mc(f"racer{i}@example.org")["status"], "subscribed")
        with self.db.cursor() as cr:
            cr.execute("""SELECT count(*), count(DISTINCT member_id) FROM mailchimp_update
                           WHERE audience_id = %s AND state = 'sent'""", (self.ids["audience"],))
            self.assertEqual(cr.fetchone(), (12, 12), "each member's update is out once")
