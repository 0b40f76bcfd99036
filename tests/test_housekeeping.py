from datetime import timedelta

from odoo import fields
from odoo.exceptions import ValidationError
from odoo.tests import TransactionCase, tagged
from odoo.tools import mute_logger


@tagged("post_install", "-at_install")
class TestUpdatePurge(TransactionCase):
    """Settled updates are deleted after the retention; nothing still on its
    way, and no failure a person may still need to read, goes with them."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        mailing_list = cls.env["mailing.list"].create({"name": "Newsletter"})
        account = cls.env["mailchimp.account"].create(
            {"name": "Main", "api_key": "0123456789abcdef0123456789abcdef-us21"})
        cls.audience = cls.env["mailchimp.audience"].create({
            "name": "Main audience", "account_id": account.id, "mailchimp_list_id": "a1b2c3d4e5",
            "mailing_list_id": mailing_list.id,
        })
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
        with mute_logger("odoo.addons.mailchimp_sync.models.mailchimp_update"):
            self.assertEqual(self.env["mailchimp.update"]._retention_days(), 30, "a bad value falls back to 30")


@tagged("post_install", "-at_install")
class TestArrayLiterals(TransactionCase):
    """The bulk stages pass lists as one array literal (tools/sql): the
    database reads back exactly the values given, and free text, which
    would need quoting, is refused rather than mangled."""

    def test_literals_round_trip(self):
        from ..tools.sql import int_array, token_array

        self.env.cr.execute(
            "SELECT %s::int[], %s::varchar[], %s::bool[], %s::int[]",
            (int_array([3, 1, 2]), token_array(["live", "ok", "fail"]), token_array(["t", "f"]), int_array([])),
        )
        self.assertEqual(self.env.cr.fetchone(), ([3, 1, 2], ["live", "ok", "fail"], [True, False], []))

    def test_free_text_is_refused(self):
        from ..tools.sql import token_array

        for bad in ("a,b", "x}", "two words", "", None):
            with self.assertRaises(ValueError):
                token_array([bad])
