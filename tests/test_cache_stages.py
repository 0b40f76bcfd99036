"""The cache stages an incremental cycle runs on a synced audience (match,
Odoo-only, duplicates) look at the rows a change can concern, found
through their indexes, and still find every row the whole cache would."""

from datetime import datetime, timedelta

from odoo.tests import TransactionCase, tagged

from ..mailchimp_sync.client import subscriber_hash
from .common import audience_of


@tagged("post_install", "-at_install")
class TestIncrementalCacheStages(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.newsletter = cls.env["mailing.list"].create({"name": "Newsletter"})
        cls.audience = audience_of(cls.env, cls.newsletter)
        cls.Member = cls.env["mailchimp.member"]

    def contact(self, email, subscribed=True, lists=None):
        contact = self.env["mailing.contact"].create({
            "name": email, "email": email,
            "list_ids": [(4, lst.id) for lst in (lists or self.newsletter)] if subscribed else []})
        self.env.flush_all()
        return contact

    def fetched(self, email, status="unsubscribed", audience=None):
        """A member as a fetch writes it (Mailchimp's id as its hash), then
        settled: in sync, no longer to do."""
        audience = audience or self.audience
        self.Member._merge_page(audience, [{
            "id": subscriber_hash(email), "email_address": email, "status": status,
            "last_changed": "2026-01-01T10:00:00+00:00", "merge_fields": {}}])
        row = self.Member.search([("audience_id", "=", audience.id), ("email", "=", email)])
        row.sync_status = "ok"
        self.env.flush_all()
        return row

    def age(self, contact):
        """As if the contact had last been written long before the cycle."""
        self.env.flush_all()
        self.env.cr.execute("UPDATE mailing_contact SET write_date = '2020-01-01' WHERE id = %s", (contact.id,))
        contact.invalidate_recordset()

    def test_incremental_match_finds_a_synced_row_by_its_address(self):
        row = self.fetched("eve@example.org")
        since = datetime.utcnow() - timedelta(minutes=1)
        eve = self.contact("Eve@Example.org")  # written since the last cycle
        self.env.flush_all()
        self.Member._match_contacts(self.audience, since=since)
        row.invalidate_recordset()
        self.assertEqual(row.contact_id, eve, "found through the hash of the contact's address")
        self.assertEqual(row.sync_status, "todo", "its new Odoo side is reconciled")

    def test_incremental_match_looks_at_rows_to_do_and_contacts_written_since(self):
        old = self.contact("old@example.org")
        self.age(old)
        untouched = self.fetched("old@example.org")
        changed = self.fetched("moved@example.org")
        moved = self.contact("moved@example.org")
        self.age(moved)
        changed.sync_status = "todo"  # the fetch found a change at Mailchimp
        self.env.flush_all()
        since = datetime.utcnow() - timedelta(minutes=1)
        self.Member._match_contacts(self.audience, since=since)
        (untouched | changed).invalidate_recordset()
        self.assertEqual(changed.contact_id, moved, "a row to do is matched whenever its contact was written")
        self.assertFalse(untouched.contact_id,
                         "a synced row and a contact neither cycle touched: only a full cycle looks again")
        self.Member._match_contacts(self.audience)
        untouched.invalidate_recordset()
        self.assertEqual(untouched.contact_id, old)

    def test_odoo_only_rows_are_added_per_audience(self):
        events = self.env["mailing.list"].create({"name": "Events"})
        other = audience_of(self.env, events, name="B", mailchimp_list_id="f6e5d4c3b2")
        ann = self.contact("ann@example.org", lists=self.newsletter | events)
        self.Member._add_odoo_only(other)
        for lateral in (True, False):
            self.Member._add_odoo_only(self.audience, lateral=lateral)
            rows = self.Member.search([("contact_id", "=", ann.id)])
            self.assertEqual(rows.audience_id, self.audience | other,
                             "a row in another audience does not stand for this one's")
            self.assertEqual(len(rows), 2, "and a contact gets one row per audience")

    def test_duplicates_drop_only_the_odoo_only_row_of_a_contact_mailchimp_knows(self):
        bob = self.contact("bob@example.org")
        self.Member._add_odoo_only(self.audience)
        odoo_only = self.Member.search([("audience_id", "=", self.audience.id), ("contact_id", "=", bob.id)])
        self.assertTrue(odoo_only)
        known = self.fetched("bob.renamed@example.org", status="subscribed")
        known.contact_id = bob  # Mailchimp's own member of the same person
        cid = self.contact("cid@example.org", subscribed=False)
        first, second = self.fetched("cid1@example.org"), self.fetched("cid2@example.org")
        (first | second).contact_id = cid
        self.env.flush_all()
        self.Member._drop_duplicates(self.audience)
        self.assertFalse(odoo_only.exists(), "the Odoo-only row gives way to the row Mailchimp knows")
        self.assertTrue(known.exists())
        self.assertEqual(len((first | second).exists()), 2, "two rows Mailchimp knows both stay")
