from psycopg2 import IntegrityError

from odoo.tests import TransactionCase, tagged
from odoo.tools import mute_logger


@tagged("post_install", "-at_install")
class TestModels(TransactionCase):
    """Every model of the addon can be created, linked and read through the ORM."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.mailing_list = cls.env["mailing.list"].create({"name": "Newsletter"})
        cls.interest_list = cls.env["mailing.list"].create({"name": "Events"})
        cls.account = cls.env["mailchimp.account"].create(
            {"name": "Main", "api_key": "0123456789abcdef0123456789abcdef-us21"}
        )
        cls.audience = cls.env["mailchimp.audience"].create(
            {
                "name": "Main audience",
                "account_id": cls.account.id,
                "mailchimp_list_id": "a1b2c3d4e5",
                "mailing_list_id": cls.mailing_list.id,
            }
        )

    def test_account(self):
        self.assertEqual(self.account.data_center, "us21")
        self.assertTrue(self.account.webhook_secret, "a webhook secret is generated")
        self.assertFalse(self.account.is_sandbox)
        self.account.api_base_url = "http://127.0.0.1:8055/3.0"
        self.assertTrue(self.account.is_sandbox)
        self.assertEqual(self.account.audience_count, 1)
        other = self.env["mailchimp.account"].create({"name": "Other"})
        self.assertNotEqual(other.webhook_secret, self.account.webhook_secret)
        self.assertFalse(other.data_center)

    def test_audience_and_interest(self):
        interest = self.env["mailchimp.interest"].create(
            {
                "audience_id": self.audience.id,
                "mailchimp_interest_id": "9143cf3bd1",
                "mailchimp_category_id": "0a1b2c3d4e",
                "category_name": "Topics",
                "name": "Events",
                "mailing_list_id": self.interest_list.id,
                "trust_override": "odoo",
            }
        )
        self.assertEqual(interest.display_name, "Topics / Events")
        self.assertEqual(self.audience.interest_ids, interest)
        self.assertEqual(self.audience.sync_stage, "idle")
        self.assertEqual(self.audience.max_time, 30)
        self.assertEqual(self.mailing_list.mailchimp_audience_id, self.audience)
        self.assertEqual(self.interest_list.mailchimp_audience_id, self.audience)
        action = self.mailing_list.action_view_mailchimp_audience()
        self.assertEqual(action["res_id"], self.audience.id)

    def test_one_audience_per_list(self):
        with mute_logger("odoo.sql_db"), self.assertRaises(IntegrityError), self.cr.savepoint():
            self.env["mailchimp.audience"].create(
                {
                    "name": "Second",
                    "account_id": self.account.id,
                    "mailchimp_list_id": "ffffffffff",
                    "mailing_list_id": self.mailing_list.id,
                }
            )

    def test_member_update_batch_run(self):
        partner = self.env["res.partner"].create({"name": "Anna", "email": "anna@example.org"})
        contact = self.env["mailing.contact"].create(
            {
                "name": "Anna",
                "email": "anna@example.org",
                "partner_id": partner.id,
                "list_ids": [(4, self.mailing_list.id)],
            }
        )
        member = self.env["mailchimp.member"].create(
            {
                "audience_id": self.audience.id,
                "email": "anna@example.org",
                "subscriber_hash": "5c0b9b8a5a3b6a4c3c8c5d7e6f1a2b3c",
                "mc_status": "subscribed",
                "mc_interests": {"9143cf3bd1": True},
                "contact_id": contact.id,
                "partner_id": partner.id,
                "odoo_subscribed": True,
            }
        )
        self.assertEqual(member.sync_status, "todo")
        self.assertEqual(member.mc_interests, {"9143cf3bd1": True})
        batch = self.env["mailchimp.batch"].create(
            {
                "account_id": self.account.id,
                "audience_id": self.audience.id,
                "mailchimp_batch_id": "sqge4cgzfk",
            }
        )
        update = self.env["mailchimp.update"].create(
            {
                "member_id": member.id,
                "audience_id": self.audience.id,
                "payload": {"status": "subscribed"},
                "batch_id": batch.id,
            }
        )
        self.assertEqual(update.state, "queued")
        self.assertEqual(update.email, "anna@example.org")
        self.assertEqual(member.pending_update_count, 1)
        self.assertEqual(batch.update_count, 1)
        self.assertEqual(batch.result_state, "waiting")
        run = self.env["mailchimp.sync.run"].create(
            {"audience_id": self.audience.id, "stage_timings": {"fetch": 1.5}, "fetched": 3}
        )
        self.assertEqual(run.state, "running")
        self.assertEqual(self.audience.member_count, 1)
        # Smart buttons on the contact and the partner
        self.assertEqual(contact.mailchimp_member_count, 1)
        self.assertEqual(partner.mailchimp_member_count, 1)
        self.assertEqual(partner.mailing_contact_ids, contact)
        action = contact.action_view_mailchimp_members()
        self.assertEqual(self.env["mailchimp.member"].search(action["domain"]), member)
        action = partner.action_view_mailchimp_members()
        self.assertEqual(self.env["mailchimp.member"].search(action["domain"]), member)
        # Removing the contact keeps the cache row, unlinked
        contact.unlink()
        self.assertFalse(member.contact_id)

    def test_hash_unique_per_audience(self):
        vals = {
            "audience_id": self.audience.id,
            "email": "x@example.org",
            "subscriber_hash": "0" * 32,
        }
        self.env["mailchimp.member"].create(vals)
        # Odoo-only rows have no hash yet: any number of them may exist.
        self.env["mailchimp.member"].create({"audience_id": self.audience.id, "email": "a@example.org"})
        self.env["mailchimp.member"].create({"audience_id": self.audience.id, "email": "b@example.org"})
        with mute_logger("odoo.sql_db"), self.assertRaises(IntegrityError), self.cr.savepoint():
            self.env["mailchimp.member"].create(vals)
