from datetime import datetime, timedelta

from odoo.tests import TransactionCase, tagged

from ..mailchimp_sync.client import subscriber_hash
from .common import audience_of


@tagged("post_install", "-at_install")
class TestOdooHistory(TransactionCase):
    """Every way Odoo changes a membership of a mapped list leaves the time
    it happened, raw SQL paths included; the sync reads it back."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.newsletter = cls.env["mailing.list"].create({"name": "Newsletter"})
        cls.other = cls.env["mailing.list"].create({"name": "Other"})
        cls.audience = audience_of(cls.env, cls.newsletter)
        cls.Member = cls.env["mailchimp.member"]

    def setUp(self):
        super().setUp()
        self.before = datetime.utcnow() - timedelta(seconds=1)

    def contact(self, email="anna@example.org", lists=()):
        return self.env["mailing.contact"].create(
            {"name": "Anna", "email": email, "list_ids": [(4, lst.id) for lst in lists]}
        )

    def sub(self, contact, mailing_list=None):
        mailing_list = mailing_list or self.newsletter
        self.env.flush_all()
        return self.env["mailing.subscription"].search(
            [("contact_id", "=", contact.id), ("list_id", "=", mailing_list.id)]
        )

    def odoo_state(self, contact):
        """(subscribed, changed) as the sync computes it for the contact's row."""
        member = self.env["mailchimp.member"].search([("contact_id", "=", contact.id)])
        if not member:
            member = self.env["mailchimp.member"].create(
                {"audience_id": self.audience.id, "email": contact.email, "contact_id": contact.id}
            )
        self.env.flush_all()
        self.env["mailchimp.odoo.changes"]._refresh_odoo_state(self.audience, [member.id])
        member.invalidate_recordset()
        return member.odoo_subscribed, member.odoo_changed

    def assertChangedNow(self, changed):
        self.assertTrue(changed, "a change time is recorded")
        self.assertGreaterEqual(changed, self.before)

    def test_contact_form(self):
        contact = self.contact(lists=[self.newsletter])
        self.assertChangedNow(self.sub(contact).mailchimp_changed_at)
        subscribed, changed = self.odoo_state(contact)
        self.assertTrue(subscribed)
        self.assertChangedNow(changed)

    def test_opt_out_and_back_on_the_subscription(self):
        contact = self.contact(lists=[self.newsletter])
        sub = self.sub(contact)
        self.env.cr.execute("UPDATE mailing_subscription SET mailchimp_changed_at = '2020-01-01' WHERE id = %s",
                            (sub.id,))
        sub.invalidate_recordset()
        sub.write({"opt_out": True})
        self.env.flush_all()
        sub.invalidate_recordset()
        self.assertChangedNow(sub.mailchimp_changed_at)
        self.assertFalse(self.odoo_state(contact)[0])
        # Writing something else does not move the time
        self.env.cr.execute("UPDATE mailing_subscription SET mailchimp_changed_at = '2020-01-01' WHERE id = %s",
                            (sub.id,))
        sub.invalidate_recordset()
        sub.write({"opt_out_reason_id": False, "opt_out": True})
        self.env.flush_all()
        sub.invalidate_recordset()
        self.assertEqual(sub.mailchimp_changed_at, datetime(2020, 1, 1))

    def test_add_to_list_wizard(self):
        contact = self.contact()
        self.env["mailing.contact.to.list"].create(
            {"contact_ids": [(6, 0, contact.ids)], "mailing_list_id": self.newsletter.id}
        ).action_add_contacts()
        subscribed, changed = self.odoo_state(contact)
        self.assertTrue(subscribed)
        self.assertChangedNow(changed)

    def test_import_wizard(self):
        self.env["mailing.contact.import"].create(
            {"mailing_list_ids": [(6, 0, self.newsletter.ids)], "contact_list": "Bea <bea@example.org>"}
        ).action_import()
        contact = self.env["mailing.contact"].search([("email", "=", "bea@example.org")])
        subscribed, changed = self.odoo_state(contact)
        self.assertTrue(subscribed)
        self.assertChangedNow(changed)

    def test_list_merge_raw_sql(self):
        contact = self.contact(lists=[self.other])
        self.env["mailing.list.merge"].create(
            {"src_list_ids": [(6, 0, (self.other | self.newsletter).ids)], "dest_list_id": self.newsletter.id,
             "merge_options": "existing", "archive_src_lists": False}
        ).action_mailing_lists_merge()
        sub = self.sub(contact)
        self.assertTrue(sub, "merged in by raw SQL")
        self.assertChangedNow(sub.mailchimp_changed_at)
        self.assertTrue(self.odoo_state(contact)[0])

    def test_unsubscribe_page_path(self):
        contact = self.contact(lists=[self.newsletter])
        # The unsubscribe page runs in a request of its own: nothing cached.
        self.env.invalidate_all()
        self.newsletter._update_subscription_from_email("anna@example.org", opt_out=True)
        subscribed, changed = self.odoo_state(contact)
        self.assertFalse(subscribed)
        self.assertChangedNow(changed)
        self.newsletter._update_subscription_from_email("anna@example.org", opt_out=False)
        self.assertTrue(self.odoo_state(contact)[0])

    def test_blacklist_add_and_remove(self):
        contact = self.contact(lists=[self.newsletter])
        self.env.cr.execute("UPDATE mailing_subscription SET mailchimp_changed_at = '2020-01-01'")
        self.env["mail.blacklist"]._add("anna@example.org")
        subscribed, changed = self.odoo_state(contact)
        self.assertFalse(subscribed, "blacklisted counts as not subscribed")
        self.assertChangedNow(changed)
        self.env["mail.blacklist"]._remove("anna@example.org")
        subscribed, changed = self.odoo_state(contact)
        self.assertTrue(subscribed)
        self.assertChangedNow(changed)
        # The audience may choose to ignore the blacklist
        self.audience.blacklist_unsubscribes = False
        self.env["mail.blacklist"]._add("anna@example.org")
        self.assertTrue(self.odoo_state(contact)[0])

    def test_remove_from_list_and_delete_contact(self):
        contact = self.contact(lists=[self.newsletter])
        member = self.env["mailchimp.member"].create(
            {"audience_id": self.audience.id, "email": contact.email, "contact_id": contact.id,
             "mc_status": "subscribed", "sync_status": "ok"}
        )
        self.sub(contact).unlink()
        subscribed, changed = self.odoo_state(contact)
        self.assertFalse(subscribed)
        self.assertChangedNow(changed)
        removal = self.env["mailchimp.list.removal"].search([("contact_id", "=", contact.id)])
        self.assertEqual(removal.list_id, self.newsletter.id)
        contact.unlink()
        self.env.flush_all()
        member.invalidate_recordset()
        self.assertFalse(member.contact_id)
        self.assertChangedNow(member.odoo_deleted_at)
        self.assertEqual(member.sync_status, "todo", "a deleted contact is work for the next sync")

    def test_odoo_only_rows_the_same_looked_up_or_hashed(self):
        """An incremental cycle looks the Odoo side of its few new Odoo-only
        rows up per row; a full one hashes the memberships of every mapped
        list: both give the same rows."""
        events = self.env["mailing.list"].create({"name": "Events"})
        audience = audience_of(self.env, self.other, interest_ids=[
            (0, 0, {"mailchimp_interest_id": "ev1", "name": "Events", "mailing_list_id": events.id})])
        self.contact("both@example.org", [self.other, events])
        self.contact("plain@example.org", [self.other])
        left = self.contact("left@example.org", [self.other, events])
        self.sub(left, events).opt_out = True
        removed = self.contact("removed@example.org", [self.other, events])
        self.sub(removed, events).unlink()
        self.contact("blocked@example.org", [self.other])
        self.env["mail.blacklist"]._add("blocked@example.org")
        self.contact("elsewhere@example.org", [self.newsletter])

        def rows():
            self.env.flush_all()
            self.env.cr.execute(
                """SELECT email, odoo_subscribed, odoo_changed, odoo_interests, odoo_interests_changed
                     FROM mailchimp_member WHERE audience_id = %s ORDER BY email""", (audience.id,))
            return self.env.cr.fetchall()

        self.Member._add_odoo_only(audience, lateral=True)
        looked_up = rows()
        self.env.cr.execute("DELETE FROM mailchimp_member WHERE audience_id = %s", (audience.id,))
        self.Member._add_odoo_only(audience, lateral=False)
        self.assertEqual(rows(), looked_up)
        self.assertEqual([(email, sub, interests) for email, sub, _at, interests, _times in looked_up], [
            ("both@example.org", True, {"ev1": True}),
            ("left@example.org", True, {"ev1": False}),
            ("plain@example.org", True, {"ev1": False}),
            ("removed@example.org", True, {"ev1": False}),
        ])
        times = {email: itimes["ev1"] for email, _sub, _at, _i, itimes in looked_up}
        self.assertIsNone(times["plain@example.org"], "never on the interest's list")
        self.assertTrue(times["left@example.org"] and times["removed@example.org"], "left it: stamped")

    def test_blacklist_entry_deleted(self):
        """A deleted blacklist entry is a change too, from its deletion: with
        only the membership's older time, Mailchimp's unsubscribe (made for
        the blacklist) would win and opt the contact out in Odoo."""
        contact = self.contact(lists=[self.newsletter])
        self.env.cr.execute("UPDATE mailing_subscription SET mailchimp_changed_at = '2020-01-01'")
        Blacklist = self.env["mail.blacklist"].with_context(active_test=False)
        Blacklist._add("anna@example.org")
        self.assertFalse(self.odoo_state(contact)[0])
        member = self.Member.search([("contact_id", "=", contact.id)])
        since = datetime.utcnow()
        Blacklist.search([("email", "=", "anna@example.org")]).unlink()
        subscribed, changed = self.odoo_state(contact)
        self.assertTrue(subscribed)
        self.assertGreaterEqual(changed, since, "out of the blacklist since the deletion")
        self.assertIn(member.id, self.env["mailchimp.odoo.changes"]._changed_in_odoo_since(
            self.audience, since, stamped_only=True), "an incremental cycle looks at the row")
        # The whole audience's refresh (a full cycle) reads it the same way.
        self.env.cr.execute("UPDATE mailchimp_member SET odoo_subscribed = FALSE WHERE id = %s", (member.id,))
        self.env["mailchimp.odoo.changes"]._refresh_odoo_state(self.audience)
        member.invalidate_recordset()
        self.assertEqual((member.odoo_subscribed, member.odoo_changed), (True, changed))
        # Blacklisted again, the address counts as blacklisted again.
        Blacklist._add("anna@example.org")
        self.assertFalse(self.odoo_state(contact)[0])
        # An entry archived, then deleted, keeps the time the address left.
        Blacklist._remove("anna@example.org")
        left = self.odoo_state(contact)[1]
        self.env.cr.execute("SELECT pg_sleep(0.01)")
        Blacklist.search([("email", "=", "anna@example.org")]).unlink()
        self.assertEqual(self.odoo_state(contact), (True, left))

    def test_the_rows_an_incremental_cycle_looks_at(self):
        """The Odoo-changes stage of an incremental cycle looks at the rows
        changed since the last one, found by their stamps, not at every row."""
        contacts = {name: self.contact(f"{name}@example.org", [self.newsletter]) for name in ("kept", "gone", "out")}
        rows = {name: self.Member.create({
            "audience_id": self.audience.id, "email": contact.email, "contact_id": contact.id,
            "mc_status": "subscribed", "sync_status": "ok", "odoo_subscribed": True})
            for name, contact in contacts.items()}
        # never given its Odoo side (created through the ORM)
        rows["unknown"] = self.Member.create({"audience_id": self.audience.id, "email": "unknown@example.org",
                                              "mc_status": "subscribed", "sync_status": "ok"})
        rows["todo"] = self.Member.create({"audience_id": self.audience.id, "email": "todo@example.org",
                                           "mc_status": "subscribed", "odoo_subscribed": False})
        self.env.flush_all()
        since = datetime.utcnow()
        contacts["gone"].unlink()
        self.sub(contacts["out"]).opt_out = True
        self.env.flush_all()
        Changes = self.env["mailchimp.odoo.changes"]
        stamped = {rows[name].id for name in ("gone", "out", "unknown")}
        self.assertEqual(set(Changes._changed_in_odoo_since(self.audience, since, stamped_only=True)), stamped)
        self.assertEqual(set(Changes._changed_in_odoo_since(self.audience, since)), stamped | {rows["todo"].id},
                         "a row to do is looked at too, unless the cycle wrote every row's Odoo side")

    def test_unmapped_lists_keep_no_removals(self):
        contact = self.contact(lists=[self.other])
        self.sub(contact, self.other).unlink()
        self.assertFalse(self.env["mailchimp.list.removal"].search([("contact_id", "=", contact.id)]))


@tagged("post_install", "-at_install")
class TestOdooSideWithContact(TransactionCase):
    """The stages that give a cache row its contact (match, create,
    Odoo-only) write the contact's Odoo side in the same statement: the
    Odoo-changes stage, which computes it again for every row of a first
    sync, then finds nothing left to write.  A synced row whose Odoo side
    so changes is marked to do, as that stage would mark it."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.newsletter = cls.env["mailing.list"].create({"name": "Newsletter"})
        cls.events = cls.env["mailing.list"].create({"name": "Events"})
        cls.audience = audience_of(cls.env, cls.newsletter, interest_ids=[(0, 0, {
            "name": "Events", "mailchimp_interest_id": "ev1", "mailing_list_id": cls.events.id})])

    def contact(self, email, lists):
        return self.env["mailing.contact"].create(
            {"name": email, "email": email, "list_ids": [(4, lst.id) for lst in lists]})

    def row(self, email, **values):
        return self.env["mailchimp.member"].create(dict({
            "audience_id": self.audience.id, "email": email, "mc_status": "subscribed",
            "mc_status_changed": "2026-01-01 00:00:00"}, **values))

    def test_rows_given_a_contact_carry_its_odoo_side(self):
        matched = self.contact("anna@example.org", [self.newsletter, self.events])
        odoo_only = self.contact("bob@example.org", [self.newsletter])
        anna = self.row("anna@example.org")
        cleo = self.row("cleo@example.org")  # nobody in Odoo: a contact is created
        Member = self.env["mailchimp.member"]
        # Fetched, unsubscribed, nobody in Odoo: it stays without a contact.
        Member._merge_page(self.audience, [{
            "id": subscriber_hash("dan@example.org"), "email_address": "dan@example.org",
            "status": "unsubscribed", "last_changed": "2026-01-01T10:00:00+00:00", "merge_fields": {}}])
        self.env.flush_all()
        Member._match_contacts(self.audience)
        self.env["mailing.contact"]._mailchimp_create_for_members(self.audience)
        Member._add_odoo_only(self.audience)
        bob = Member.search([("audience_id", "=", self.audience.id), ("contact_id", "=", odoo_only.id)])
        (anna | cleo | bob).invalidate_recordset()
        self.assertEqual(anna.contact_id, matched)
        self.assertTrue(cleo.contact_id)
        self.assertEqual((anna.odoo_subscribed, anna.odoo_interests), (True, {"ev1": True}))
        self.assertEqual((cleo.odoo_subscribed, cleo.odoo_interests), (False, {"ev1": False}))
        self.assertEqual((bob.odoo_subscribed, bob.odoo_interests), (True, {"ev1": False}))
        self.assertTrue(anna.odoo_changed and bob.odoo_changed)
        dan = Member.search([("audience_id", "=", self.audience.id), ("email", "=", "dan@example.org")])
        self.assertEqual((dan.contact_id.id, dan.odoo_subscribed), (False, False))
        self.assertEqual(
            self.env["mailchimp.odoo.changes"]._refresh_odoo_state(self.audience), 0,
            "the Odoo-changes stage finds every row's Odoo side already written")

    def test_synced_row_matched_to_a_subscribed_contact_is_to_do(self):
        row = self.row("dora@example.org", mc_status="unsubscribed", sync_status="ok")
        self.env.flush_all()
        since = datetime.utcnow() - timedelta(minutes=1)  # an incremental cycle
        self.contact("dora@example.org", [self.newsletter])
        self.env.flush_all()
        self.env["mailchimp.member"]._match_contacts(self.audience, since=since)
        row.invalidate_recordset()
        self.assertTrue(row.contact_id)
        self.assertTrue(row.odoo_subscribed)
        self.assertEqual(row.sync_status, "todo", "its new Odoo side is reconciled")
