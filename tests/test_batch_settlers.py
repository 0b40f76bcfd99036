"""The batch poller settles the batches it took on two connections at once,
each batch in a transaction of its own, as webhooks arriving together do."""
# The committed tests settle on real connections, which commit.
# pylint: disable=invalid-commit

import threading
from unittest.mock import patch

from odoo.tests import tagged

from ..models import mailchimp_batch
from .common import SyncCase
from .test_engine import CommittedFixture


@tagged("post_install", "-at_install")
class TestSettlersOnRealConnections(CommittedFixture, SyncCase):
    def sent_batches(self):
        """Four batches of three members, sent and run by Mailchimp."""
        self.setup_committed(odoo_only=12)
        with patch.object(mailchimp_batch, "MAX_OPERATIONS", 3):
            self.run_steps()
        self.emulator.control.run_batches()

    def states(self):
        with self.db.cursor() as cr:
            cr.execute("SELECT result_state FROM mailchimp_batch WHERE audience_id = %s ORDER BY id",
                       (self.ids["audience"],))
            batches = [state for (state,) in cr.fetchall()]
            cr.execute("SELECT sync_status, count(*) FROM mailchimp_member WHERE audience_id = %s GROUP BY 1",
                       (self.ids["audience"],))
            return batches, dict(cr.fetchall())

    def test_batches_settle_at_once_and_each_once(self):
        """Each settler's first batch waits at a barrier for the others'
        (settled one after another, they never meet, and settling fails);
        every batch is then settled once and every member is in sync."""
        self.sent_batches()
        barrier = threading.Barrier(mailchimp_batch.SETTLERS, timeout=20)
        settlers, settled = set(), []
        real = mailchimp_batch.MailchimpBatch._settle

        def settle_after_a_meeting(batch, results):
            name = threading.current_thread().name
            if name not in settlers:
                settlers.add(name)
                barrier.wait()
            settled.append(batch.id)
            return real(batch, results)

        with patch.object(mailchimp_batch.MailchimpBatch, "_settle", settle_after_a_meeting), \
                self.db.cursor() as cr:
            self.env_on(cr)["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0, limit=10, recheck_seconds=0)
            cr.commit()
        self.assertEqual(len(settlers), mailchimp_batch.SETTLERS, "every settler worked")
        self.assertEqual(len(settled), 4)
        self.assertEqual(len(set(settled)), 4, "each batch settled once")
        self.assertEqual(self.states(), (["done"] * 4, {"ok": 12}))

    def test_a_transaction_that_wrote_settles_on_its_own_connection(self):
        """A caller that wrote first (a script, a test's transaction) has its
        batches settled in its own transaction: lanes would not see what it
        wrote, and nothing is committed for it."""
        self.sent_batches()
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            env["mailchimp.audience"].browse(self.ids["audience"]).write({"max_time": 31})
            env.flush_all()
            with patch.object(mailchimp_batch.MailchimpBatch, "_settle_on_lanes",
                              side_effect=AssertionError("no lanes here")):
                env["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0, limit=10, recheck_seconds=0)
            self.assertEqual(self.states(), (["waiting"] * 4, {"live": 12}), "nothing committed meanwhile")
            cr.commit()
        self.assertEqual(self.states(), (["done"] * 4, {"ok": 12}))
