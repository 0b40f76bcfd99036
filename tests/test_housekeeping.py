from contextlib import contextmanager
from datetime import timedelta

from odoo import fields
from odoo.exceptions import ValidationError
from odoo.tests import TransactionCase, tagged
from odoo.tools import mute_logger

from .common import audience_of


class UpdatesFixture(TransactionCase):
    """An audience with a synced and a failing row, and two old batches."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.audience = audience_of(cls.env, cls.env["mailing.list"].create({"name": "Newsletter"}))
        account = cls.audience.account_id
        Member = cls.env["mailchimp.member"]
        cls.synced = Member.create({"audience_id": cls.audience.id, "email": "ok@example.org", "sync_status": "ok"})
        cls.failing = Member.create({"audience_id": cls.audience.id, "email": "ko@example.org", "sync_status": "fail"})
        cls.old_batch = cls.env["mailchimp.batch"].create({
            "account_id": account.id, "audience_id": cls.audience.id, "result_state": "done",
            "submitted_at": fields.Datetime.now() - timedelta(days=45)})
        cls.kept_batch = cls.env["mailchimp.batch"].create({
            "account_id": account.id, "audience_id": cls.audience.id, "result_state": "done",
            "submitted_at": fields.Datetime.now() - timedelta(days=45)})

    def _update(self, member, state, age_days, batch=None):
        when = fields.Datetime.now() - timedelta(days=age_days)
        return self.env["mailchimp.update"].create({
            "member_id": member.id, "audience_id": self.audience.id, "payload": {"status": "subscribed"},
            "state": state, "queued_at": when, "sent_at": when if state != "queued" else False,
            "done_at": when if state == "done" else False, "batch_id": batch and batch.id,
        })


@tagged("post_install", "-at_install")
class TestUpdatePurge(UpdatesFixture):
    """Settled updates are deleted after the retention; nothing still on its
    way, and no failure a person may still need to read, goes with them."""

    def test_old_settled_updates_go_the_rest_stay(self):
        Update = self.env["mailchimp.update"]
        gone = (self._update(self.synced, "done", 40, self.old_batch)
                | self._update(self.synced, "cancelled", 40)
                | self._update(self.synced, "failed", 40))
        kept = (self._update(self.synced, "done", 5)
                | self._update(self.synced, "queued", 40)
                | self._update(self.synced, "sent", 40, self.kept_batch)
                | self._update(self.failing, "failed", 40))
        self.env["ir.config_parameter"].sudo().set_param("mailchimp_sync.update_retention_days", "30")
        Update._cron_purge_settled()
        self.assertFalse(gone.exists(), "settled updates older than 30 days are deleted")
        self.assertEqual(kept.exists(), kept, "recent, unsettled and still-explaining updates stay")
        self.assertFalse(self.old_batch.exists(), "a settled batch left without updates goes too")
        self.assertTrue(self.kept_batch.exists(), "a batch with an update still on its way stays")

    def test_zero_days_keeps_everything(self):
        update = self._update(self.synced, "done", 400, self.old_batch)
        self.env["ir.config_parameter"].sudo().set_param("mailchimp_sync.update_retention_days", "0")
        self.env["mailchimp.update"]._cron_purge_settled()
        self.assertTrue(update.exists())
        self.assertTrue(self.old_batch.exists())

    def test_purge_works_in_bounded_chunks(self):
        updates = self.env["mailchimp.update"]
        for _i in range(5):
            updates |= self._update(self.synced, "done", 40)
        cutoff = fields.Datetime.now() - timedelta(days=30)
        self.assertEqual(self.env["mailchimp.update"]._purge_settled(cutoff, limit=2), 2)
        self.assertEqual(len(updates.exists()), 3)
        self.assertEqual(self.env["mailchimp.update"]._purge_settled(cutoff, limit=2), 2)
        self.assertEqual(self.env["mailchimp.update"]._purge_settled(cutoff, limit=2), 1)
        self.assertFalse(updates.exists())

    def test_retention_setting(self):
        settings = self.env["res.config.settings"].create({"mailchimp_update_retention_days": 7})
        settings.execute()
        self.assertEqual(self.env["mailchimp.update"]._retention_days(), 7)
        with self.assertRaises(ValidationError):
            self.env["res.config.settings"].create({"mailchimp_update_retention_days": -1})
        self.env["ir.config_parameter"].sudo().set_param("mailchimp_sync.update_retention_days", "many")
        with mute_logger("odoo.addons.mailchimp_sync.tools.settings"):
            self.assertEqual(self.env["mailchimp.update"]._retention_days(), 30, "a bad value falls back to 30")


@tagged("post_install", "-at_install")
class TestRunPurge(TransactionCase):
    """Finished sync runs are deleted after their retention (a year by
    default); each audience keeps its current run and its last done one,
    which the next cycle starts from."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        account = cls.env["mailchimp.account"].create(
            {"name": "Main", "api_key": "0123456789abcdef0123456789abcdef-us21"})
        cls.audiences = cls.env["mailchimp.audience"].create([
            {"name": name, "account_id": account.id, "mailchimp_list_id": list_id,
             "mailing_list_id": cls.env["mailing.list"].create({"name": name}).id}
            for name, list_id in (("First", "a1b2c3d4e5"), ("Second", "f6a7b8c9d0"))
        ])

    def _run(self, audience, state, age_days):
        when = fields.Datetime.now() - timedelta(days=age_days)
        return self.env["mailchimp.sync.run"].create({
            "audience_id": audience.id, "state": state, "started_at": when,
            "ended_at": when if state in ("done", "failed", "aborted") else False,
        })

    def test_old_runs_go_the_ones_a_cycle_needs_stay(self):
        first, second = self.audiences
        old_done = self._run(first, "done", 400)
        old_failed = self._run(first, "failed", 390)
        last_done = self._run(first, "done", 380)  # first's last done run, however old
        old_aborted = self._run(first, "aborted", 370)
        recent = self._run(first, "done", 10)
        only_done = self._run(second, "done", 500)  # second's only done run
        current = self._run(second, "failing", 450)
        second.current_run_id = current
        # first's newest done run is the recent one: the 380-day one may go.
        deleted = self.env["mailchimp.sync.run"]._purge_finished()
        self.assertEqual(deleted, 4)
        self.assertFalse((old_done | old_failed | last_done | old_aborted).exists())
        self.assertEqual((recent | only_done | current).exists(), recent | only_done | current)
        self.assertEqual(first.run_ids, recent)
        recent.unlink()
        self.assertEqual(self.env["mailchimp.sync.run"]._purge_finished(), 0)

    def test_the_last_done_run_stays_when_newer_ones_failed(self):
        first = self.audiences[0]
        last_done = self._run(first, "done", 800)
        failed = self._run(first, "failed", 700)
        self.assertEqual(self.env["mailchimp.sync.run"]._purge_finished(), 1)
        self.assertTrue(last_done.exists())
        self.assertFalse(failed.exists())
        self.assertEqual(self.env["mailchimp.sync.run"]._last_done(first), last_done)

    def test_retention_setting_and_zero_keeps_everything(self):
        first = self.audiences[0]
        old = self._run(first, "done", 40)
        self._run(first, "done", 1)
        settings = self.env["res.config.settings"].create({"mailchimp_run_retention_days": 30})
        settings.execute()
        # The daily cron purges the runs too, even with updates kept forever.
        self.env["ir.config_parameter"].sudo().set_param("mailchimp_sync.update_retention_days", "0")
        self.env["mailchimp.update"]._cron_purge_settled()
        self.assertFalse(old.exists())
        kept = self._run(first, "done", 4000)
        self.env["res.config.settings"].create({"mailchimp_run_retention_days": 0}).execute()
        self.assertEqual(self.env["mailchimp.sync.run"]._purge_finished(), 0)
        self.assertTrue(kept.exists())
        with self.assertRaises(ValidationError):
            self.env["res.config.settings"].create({"mailchimp_run_retention_days": -1})


@tagged("post_install", "-at_install")
class TestArrayLiterals(TransactionCase):
    """The bulk stages pass lists of ids as one array literal (tools/sql):
    the database reads back exactly the ids given."""

    def test_literals_round_trip(self):
        from ..tools.sql import int_array

        self.env.cr.execute("SELECT %s::int[], %s::int[]", (int_array([3, 1, 2]), int_array([])))
        self.assertEqual(self.env.cr.fetchone(), ([3, 1, 2], []))


@tagged("post_install", "-at_install")
class TestStatistics(TransactionCase):
    def test_statistics_found_present_are_not_asked_for_again_in_the_transaction(self):
        Sync = self.env["mailchimp.sync"]
        Sync._ensure_statistics(stale=False)  # may analyze a table that had none
        Sync._ensure_statistics(stale=False)  # finds them all present
        with self.assertQueryCount(0):
            Sync._ensure_statistics(stale=False)  # settling the next batch in the same call
        # A stage still asks whether they are out of date.
        before = self.env.cr.sql_log_count
        Sync._ensure_statistics()
        self.assertGreater(self.env.cr.sql_log_count, before)

    def test_a_table_never_analyzed_is_analyzed_by_its_size_before_its_counts_arrive(self):
        # Rows written and not yet counted by the statistics views (here
        # uncommitted; after an import, for seconds after its commit): the
        # table's size on disk says it needs statistics.
        cr = self.env.cr
        cr.execute("CREATE TABLE mailchimp_test_import (id int, email varchar)")
        cr.execute("INSERT INTO mailchimp_test_import SELECT n, 'c' || n || '@example.org' "
                   "FROM generate_series(1, 5000) n")
        cr.execute("SELECT s.n_live_tup, c.reltuples FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
                   "WHERE s.relname = 'mailchimp_test_import'")
        self.assertEqual(cr.fetchone(), (0, -1))  # no count, never analyzed
        self.env["mailchimp.sync"]._ensure_statistics(stale=False, tables=("mailchimp_test_import",))
        cr.execute("SELECT reltuples FROM pg_class WHERE relname = 'mailchimp_test_import'")
        self.assertEqual(cr.fetchone()[0], 5000)
        # a small one is left to autovacuum (analyzing it would cost more than planning without)
        cr.execute("CREATE TABLE mailchimp_test_small (id int)")
        cr.execute("INSERT INTO mailchimp_test_small SELECT generate_series(1, 10)")
        self.env["mailchimp.sync"]._ensure_statistics(stale=False, tables=("mailchimp_test_small",))
        cr.execute("SELECT reltuples FROM pg_class WHERE relname = 'mailchimp_test_small'")
        self.assertEqual(cr.fetchone()[0], -1)


@contextmanager
def nested_loop_plans(cr):
    """Plan as PostgreSQL may where its statistics say a table is nearly
    empty (right after a large sync, before ANALYZE): a semi-join run as a
    nested loop that runs its subquery again for each outer row.  A
    subquery with LIMIT ... FOR UPDATE SKIP LOCKED, run again, skips the
    rows its own statement just changed and takes the next ones."""
    settings = ("enable_hashjoin", "enable_mergejoin", "enable_material", "enable_sort", "enable_hashagg")
    cr.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(settings),))
    before = cr.fetchall()
    for name, _setting in before:
        cr.execute("SELECT set_config(%s, 'off', true)", (name,))
    try:
        yield
    finally:
        for name, setting in before:
            cr.execute("SELECT set_config(%s, %s, true)", (name, setting))


@tagged("post_install", "-at_install")
class TestBoundedWhateverThePlan(UpdatesFixture):
    """A claim takes at most its batch's size and a purge at most its chunk,
    whatever plan PostgreSQL picks (both lock the rows they take)."""

    def test_purge_deletes_at_most_its_chunk(self):
        updates = self.env["mailchimp.update"]
        for _i in range(5):
            updates |= self._update(self.synced, "done", 40)
        cutoff = fields.Datetime.now() - timedelta(days=30)
        with nested_loop_plans(self.env.cr):
            self.assertEqual(self.env["mailchimp.update"]._purge_settled(cutoff, limit=2), 2)
        self.assertEqual(len(updates.exists()), 3)

    def test_claim_takes_at_most_a_batch(self):
        updates = self.env["mailchimp.update"]
        for _i in range(5):
            updates |= self._update(self.synced, "queued", 0)
        batch = self.env["mailchimp.batch"].create({
            "account_id": self.audience.account_id.id, "audience_id": self.audience.id, "submit_state": "claimed"})
        with nested_loop_plans(self.env.cr):
            claimed = self.env["mailchimp.update"]._claim(self.audience, batch, 2)
        self.assertEqual([update_id for update_id, _member in claimed], updates.ids[:2])
        self.assertEqual(updates.mapped("state"), ["sent", "sent", "queued", "queued", "queued"])
