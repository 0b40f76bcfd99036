"""A member whose address changed at Mailchimp, seen by a fetch (no
webhook): Mailchimp keeps the member's ``contact_id``, so the cycle moves
the old row's contact to the new address instead of creating a second
contact and leaving the first one subscribed under an address Mailchimp
no longer has."""
# The race test runs real transactions on real connections, which commit.
# pylint: disable=invalid-commit

import time
from unittest.mock import patch

from odoo.tests import tagged
from odoo.tools import mute_logger

from ..mailchimp_sync.client import subscriber_hash
from ..models import mailchimp_sync as mailchimp_sync_engine
from .common import SyncCase
from .test_engine import CommittedFixture
from .test_webhook_routes import WebhookCase


@tagged("post_install", "-at_install")
class TestAddressChangedAtMailchimp(SyncCase):
    def test_a_fetch_follows_a_member_renamed_at_mailchimp(self):
        self.seed([{"email_address": "carl@example.org", "status": "subscribed",
                    "merge_fields": {"FNAME": "Carl", "LNAME": "Berg"}}])
        carl = self.contact("carl@example.org", [self.newsletter], name="Carl Berg")
        self.sync()
        old_row = self.row("carl@example.org")
        self.assertEqual(old_row.contact_id, carl)
        self.assertEqual(old_row.mc_contact_id, self.mc("carl@example.org")["contact_id"])
        self.mailchimp_later()
        self.emulator.control.admin_update(self.list_id, "carl@example.org", email_address="carl@new.example.org")
        contacts = self.Contact.search_count([])
        run = self.sync()
        self.assertEqual(self.Contact.search_count([]), contacts, "no second contact for the renamed member")
        self.assertFalse(run.full, "an incremental fetch")
        self.assertEqual((run.renamed, run.created, run.updates_queued, run.odoo_opt_outs), (1, 0, 0, 0))
        carl.invalidate_recordset()
        self.assertEqual(carl.email, "carl@new.example.org")
        self.assertTrue(self.subscribed(carl))
        self.assertIn("carl@example.org", carl.message_ids[:1].body, "the old address stays in the chatter")
        new_row = self.row("carl@new.example.org")
        self.assertEqual(new_row.contact_id, carl)
        self.assertEqual((new_row.mc_status, new_row.sync_status), ("subscribed", "ok"))
        self.assertFalse(old_row.exists(), "the old address's row was emptied, then dropped")
        self.assertEqual(self.mc("carl@new.example.org")["status"], "subscribed")
        # Nothing is left to do on either side.
        run = self.sync()
        self.assertEqual((run.created, run.updates_queued, run.odoo_changes), (0, 0, 0))

    def test_the_later_of_two_rows_of_one_person_keeps_the_contact(self):
        """Renamed while a full fetch pages the audience: both addresses
        were read, the later change is the member as it is now."""
        self.seed([])
        person = "0123456789abcdef0123456789abcdef"
        dana = self.contact("dana@example.org", [self.newsletter])
        self.Member._merge_page(self.audience, [
            {"id": subscriber_hash("dana@new.example.org"), "email_address": "dana@new.example.org",
             "status": "subscribed", "last_changed": "2026-01-02T09:00:00+00:00", "contact_id": person},
            {"id": subscriber_hash("dana@example.org"), "email_address": "dana@example.org",
             "status": "subscribed", "last_changed": "2026-01-01T10:00:00+00:00", "contact_id": person},
            {"id": subscriber_hash("eve@example.org"), "email_address": "eve@example.org",
             "status": "subscribed", "last_changed": "2026-01-03T10:00:00+00:00",
             "contact_id": "fedcba9876543210fedcba9876543210"},
        ])
        self.env.flush_all()
        self.Member._match_contacts(self.audience)
        self.assertEqual(self.row("dana@example.org").contact_id, dana)
        self.assertEqual(self.Member._follow_renames(self.audience), 1, "Eve, another person, is not moved")
        self.assertEqual(self.row("dana@new.example.org").contact_id, dana)
        old_row = self.row("dana@example.org")
        self.assertFalse(old_row.mc_status or old_row.contact_id, "the old address's row is emptied")
        self.assertIn("dana@new.example.org", old_row.sync_error)
        dana.invalidate_recordset()
        self.assertEqual(dana.email, "dana@new.example.org")
        self.assertEqual(self.Member._follow_renames(self.audience), 0, "done once")

    def test_renamed_twice_the_contact_goes_to_the_latest_address(self):
        self.seed([])
        person = "33333333333333333333333333333333"
        gus = self.contact("gus@example.org", [self.newsletter])
        self.env.flush_all()
        for email, day in (("gus@example.org", 1), ("gus@second.example.org", 2), ("gus@third.example.org", 3)):
            self.Member._merge_page(self.audience, [
                {"id": subscriber_hash(email), "email_address": email, "status": "subscribed",
                 "last_changed": f"2026-01-0{day}T10:00:00+00:00", "contact_id": person}])
            if day == 1:
                self.Member._match_contacts(self.audience)
        self.assertEqual(self.Member._follow_renames(self.audience), 2)
        self.assertEqual(self.row("gus@third.example.org").contact_id, gus)
        self.assertFalse(self.row("gus@second.example.org").contact_id)
        gus.invalidate_recordset()
        self.assertEqual(gus.email, "gus@third.example.org")

    def test_a_whole_domain_renamed_is_moved_a_budget_at_a_time(self):
        self.seed([])
        renamed = [f"person{i}@old.example.org" for i in range(5)]
        contacts = [self.contact(email, [self.newsletter]) for email in renamed]
        self.env.flush_all()
        for day, domain in ((1, "old"), (2, "new")):
            self.Member._merge_page(self.audience, [
                {"id": subscriber_hash(email.replace("old", domain)), "email_address": email.replace("old", domain),
                 "status": "subscribed", "last_changed": f"2026-01-0{day}T10:00:00+00:00",
                 "contact_id": f"{i:032x}"} for i, email in enumerate(renamed)])
            self.Member._match_contacts(self.audience)
        Sync = self.env["mailchimp.sync"]
        run = self.env["mailchimp.sync.run"].create({"audience_id": self.audience.id, "stage": "renames"})
        with patch.object(mailchimp_sync_engine, "RENAMES_CHUNK", 2):
            spent = time.monotonic()
            self.assertFalse(Sync._call_stage(Sync._stage_renames, self.audience, run, spent),
                             "the budget is spent after one round")
            self.assertEqual(sum(c.email.endswith("new.example.org") for c in contacts), 2)
            self.assertTrue(Sync._call_stage(Sync._stage_renames, self.audience, run, time.monotonic() + 60))
        for contact in contacts:
            self.assertTrue(contact.email.endswith("@new.example.org"), contact.email)
            self.assertEqual(self.row(contact.email).contact_id, contact)

    def test_an_older_fetch_window_is_not_looked_at_again(self):
        self.seed([])
        person = "00112233445566778899aabbccddeeff"
        self.Member._merge_page(self.audience, [
            {"id": subscriber_hash("finn@example.org"), "email_address": "finn@example.org",
             "status": "subscribed", "last_changed": "2026-01-01T10:00:00+00:00", "contact_id": person},
            {"id": subscriber_hash("finn@new.example.org"), "email_address": "finn@new.example.org",
             "status": "subscribed", "last_changed": "2026-01-02T10:00:00+00:00", "contact_id": person},
        ])
        self.assertEqual(self.Member._follow_renames(self.audience, since="2026-01-03 00:00:00"), 0,
                         "the new address was not fetched since then")
        self.assertEqual(self.Member._follow_renames(self.audience, since="2026-01-02 00:00:00"), 1)


@tagged("post_install", "-at_install")
class TestRenameSeenByFetchThenWebhook(WebhookCase):
    def test_the_late_upemail_changes_nothing(self):
        """The fetch followed the rename first; Mailchimp's upemail event
        for it, delivered late, finds the move done."""
        hana = self.synced([{"email_address": "hana@example.org", "status": "subscribed"}],
                           {"hana@example.org": [self.newsletter]})["hana@example.org"]
        self.register()
        self.mailchimp_later()
        bodies = self.captured("admin_update", self.list_id, "hana@example.org", email_address="hana@new.example.org")
        upemail = [b for b in bodies if "type=upemail" in b]
        self.assertEqual(len(upemail), 1, bodies)
        run = self.sync()
        self.assertEqual((run.created, run.updates_queued), (0, 0))
        hana.invalidate_recordset()
        self.assertEqual(hana.email, "hana@new.example.org")
        before = self.counts()
        self.assertEqual(self.post(self.member_url(), upemail[0]).status_code, 200)
        self.assertEqual(self.counts(), before, "nobody moved twice, nothing queued")
        self.assertEqual(self.row("hana@new.example.org").contact_id, hana)
        self.assertTrue(self.subscribed(hana))


@tagged("post_install", "-at_install")
class TestRenameRaces(CommittedFixture, SyncCase):
    def test_a_webhook_moving_the_member_first_wins_and_the_stage_starts_again(self):
        """Two real transactions: the cycle's renames stage read its pairs
        before a webhook moved the same member and committed.  The stage's
        lock on the rows then fails (another writer changed them), the
        step starts again on fresh rows, and the member is moved once."""
        self.setup_committed(odoo_only=1)
        self.run_steps()
        self.emulator.control.run_batches()
        with self.db.cursor() as cr:
            self.env_on(cr)["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0, limit=100, recheck_seconds=0)
            cr.commit()
        self.mailchimp_later()
        self.emulator.control.admin_update(self.list_id, "racer0@example.org", email_address="racer0.new@example.org")
        self.emulator.control.clock(real=True)
        self.run_steps(until="renames")
        with self.db.cursor() as cycle_cr:
            cycle_env = self.env_on(cycle_cr)
            cycle_cr.execute("SELECT 1")  # the step's snapshot begins here
            with self.db.cursor() as webhook_cr:
                env = self.env_on(webhook_cr)
                audience = env["mailchimp.audience"].browse(self.ids["audience"])
                Member = env["mailchimp.member"]
                rows = Member._row_of(audience, "racer0@example.org") | Member._row_of(
                    audience, "racer0.new@example.org")
                self.assertEqual(len(rows), 2, "the fetch wrote the new address's row")
                Member._lock_rows(rows.ids)
                Member._move_email(audience, "racer0@example.org", "racer0.new@example.org")
                webhook_cr.commit()
            with mute_logger("odoo.addons.mailchimp_sync.models.mailchimp_sync"):
                result = cycle_env["mailchimp.sync"]._step(cycle_env["mailchimp.audience"].browse(self.ids["audience"]))
            self.assertEqual(result, "partial")
            self.assertEqual(cycle_env["mailchimp.audience"].browse(self.ids["audience"]).current_run_id.stage,
                             "renames", "the stage starts again")
            cycle_cr.commit()
        self.run_steps()
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            contact = env["mailing.contact"].browse(self.ids["contacts"][0])
            self.assertEqual(contact.email, "racer0.new@example.org")
            self.assertEqual(env["mailing.contact"].search_count([("email", "like", "racer0%")]), 1)
            notes = contact.message_ids.filtered(lambda m: "racer0.new@example.org" in (m.body or ""))
            self.assertEqual(len(notes), 1, "moved once")
