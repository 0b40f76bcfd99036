"""Issue 15, against the emulator: merge fields mapped on the audience form
(each way, converted by type, the later change winning), tags both ways,
email changes made in Odoo, and partners following their contacts."""

from datetime import datetime, timedelta, timezone

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import new_test_user, tagged

from odoo.addons.mailchimp_sync.mailchimp_sync.client import subscriber_hash
from odoo.addons.mailchimp_sync.mailchimp_sync.emulator.control import EmulatorControlError

from .common import SyncCase

EXTRA_FIELDS = [
    {"tag": "COMPANY", "name": "Company", "type": "text"},
    {"tag": "COUNTRY", "name": "Country", "type": "text"},
    {"tag": "COLOUR", "name": "Colour", "type": "dropdown", "options": {"choices": ["Red", "Green"]}},
    {"tag": "JOINED", "name": "Joined", "type": "date"},
    {"tag": "KIND", "name": "Kind", "type": "radio", "options": {"choices": ["Contact", "Invoice Address"]}},
    {"tag": "LTV", "name": "Lifetime value", "type": "number"},
]


class DataSyncCase(SyncCase):
    def seed_data(self, members=(), update_partners=False, tag_prefix=False):
        """The SyncCase audience, its list given more merge fields (and
        then its members), read by Fetch Audiences as an operator does."""
        self.seed()
        self.emulator.control.seed([{"id": self.list_id, "add_merge_fields": EXTRA_FIELDS,
                                     "members": list(members)}])
        self.account.action_fetch_audiences()
        self.audience.write({"update_partners": update_partners, "tag_prefix": tag_prefix})

    def map(self, tag, model, field, direction="both"):
        mapping = self.audience.merge_field_ids.filtered(lambda m: m.tag == tag)
        mapping.write({"odoo_field_id": self.env["ir.model.fields"]._get(model, field).id, "direction": direction})
        return mapping

    def mailchimp_earlier(self):
        """Make the next Mailchimp changes happen clearly before any Odoo
        one; a full fetch then reads them (an incremental one reads recent
        changes only)."""
        past = datetime.now(timezone.utc) - timedelta(days=1)
        self.emulator.control.clock(now=past.replace(microsecond=0).isoformat())
        self.audience.full_sync_requested = True

    def mc_tags(self, email):
        return sorted(t["name"] for t in self.mc(email)["tags"])

    def tag_at_mailchimp(self, email, **changes):
        client = self.account._get_client()
        client._call(client._sdk.lists.update_list_member_tags, self.list_id, subscriber_hash(email),
                     {"tags": [{"name": n, "status": s} for n, s in changes.items()]})

    def tag(self, name):
        return self.env["res.partner.category"].search([("name", "=", name)], limit=1) or \
            self.env["res.partner.category"].create({"name": name})

    def assertQuiet(self, run):
        self.assertEqual((run.updates_queued, run.odoo_changes, run.failed), (0, 0, 0),
                         "a second sync finds nothing to do")


@tagged("post_install", "-at_install")
class TestMergeFieldMapping(DataSyncCase):
    def test_fetch_audiences_lists_merge_fields_and_keeps_mappings(self):
        self.seed_data()
        mappings = {m.tag: m for m in self.audience.merge_field_ids}
        self.assertTrue({"FNAME", "LNAME", "PHONE", "ADDRESS", "BIRTHDAY", "COMPANY", "COLOUR"} <= set(mappings))
        self.assertEqual(mappings["FNAME"].odoo_field_id.name, "first_name", "a default mapping")
        self.assertEqual(mappings["LNAME"].odoo_field_id.name, "last_name")
        self.assertFalse(mappings["COMPANY"].odoo_field_id, "a new field is not synced until mapped")
        self.assertEqual((mappings["COLOUR"].field_type, mappings["COLOUR"].choices), ("dropdown", "Red, Green"))
        self.map("COMPANY", "mailing.contact", "company_name", "to_mailchimp")
        self.account.action_fetch_audiences()
        self.assertEqual(mappings["COMPANY"].odoo_field_id.name, "company_name", "kept by a second fetch")
        self.assertEqual(mappings["COMPANY"].direction, "to_mailchimp")
        self.assertEqual(len(self.audience.merge_field_ids.filtered(lambda m: m.tag == "COMPANY")), 1)

    def test_mailchimp_users_map_fields_and_managers_fetch_them(self):
        manager = new_test_user(self.env, login="mf_manager",
                                groups="base.group_user,mailchimp_sync.group_mailchimp_manager")
        user = new_test_user(self.env, login="mf_user", groups="base.group_user,mailchimp_sync.group_mailchimp_user")
        self.seed()
        self.emulator.control.seed([{"id": self.list_id, "add_merge_fields": EXTRA_FIELDS}])
        self.account.with_user(manager).action_fetch_audiences()
        company = self.audience.merge_field_ids.filtered(lambda m: m.tag == "COMPANY").with_user(user)
        company.odoo_field_id = self.env["ir.model.fields"]._get("mailing.contact", "company_name")
        self.assertEqual(company.odoo_field_id.display_name, "Company Name (Mailing Contact)")
        with self.assertRaises(AccessError):
            company.unlink()

    def test_values_go_in_the_company_language_as_it_is_now(self):
        """Names and option labels go to Mailchimp in the company's language
        (read in SQL), a change the ORM has not written yet included."""
        self.env["res.lang"]._activate_lang("fr_FR")
        partner = self.env.ref("base.main_company").partner_id
        Mapping = self.env["mailchimp.merge.field"]
        partner.lang = "fr_FR"
        self.assertEqual(Mapping._lang(), "fr_FR")
        partner.lang = False
        self.assertEqual(Mapping._lang(), "en_US")

    def test_a_field_that_cannot_hold_the_type_is_refused(self):
        self.seed_data()
        with self.assertRaisesRegex(Exception, "cannot hold it"):
            self.map("LTV", "mailing.contact", "country_id")

    def test_values_both_ways_then_nothing_to_do(self):
        self.seed_data([
            {"email_address": "anna@example.org", "status": "subscribed",
             "merge_fields": {"FNAME": "Anna", "COMPANY": "Acme", "COUNTRY": "belgium", "JOINED": "2024-02-09",
                              "KIND": "Invoice Address"}},
        ])
        for tag, model, field in (("COMPANY", "mailing.contact", "company_name"),
                                  ("COUNTRY", "mailing.contact", "country_id"),
                                  ("JOINED", "res.partner", "ref"),
                                  ("KIND", "res.partner", "type"),
                                  ("PHONE", "res.partner", "phone")):
            self.map(tag, model, field)
        self.audience.create_partners = True
        france = self.env.ref("base.fr")
        bob_partner = self.env["res.partner"].create({"name": "Bob Stone", "email": "bob@example.org",
                                                      "phone": "+33 1 23 45 67 89", "ref": "2023-12-31"})
        bob = self.contact("bob@example.org", [self.newsletter], name="Bob Stone", company_name="Bobcorp",
                           country_id=france.id, partner_id=bob_partner.id)
        run = self.sync()
        # Mailchimp → Odoo: names, a text, a many2one found by name, and on
        # the partner created for the new member a date into a text field
        # and a selection found by its label
        anna = self.Contact.search([("email", "=", "anna@example.org")])
        self.assertEqual((anna.first_name, anna.company_name, anna.country_id),
                         ("Anna", "Acme", self.env.ref("base.be")))
        self.assertEqual((anna.partner_id.ref, anna.partner_id.type), ("2024-02-09", "invoice"))
        # Odoo → Mailchimp, converted by type
        merges = self.mc("bob@example.org")["merge_fields"]
        self.assertEqual((merges["FNAME"], merges["LNAME"], merges["COMPANY"], merges["COUNTRY"]),
                         ("Bob", "Stone", "Bobcorp", "France"))
        self.assertEqual((merges["PHONE"], merges["JOINED"], merges["KIND"]),
                         ("+33 1 23 45 67 89", "2023-12-31", "Contact"))
        self.assertEqual(run.failed, 0)
        self.assertQuiet(self.sync())

        # A change on each side, each goes the other way
        bob.company_name = "Bob & Sons"
        bob_partner.phone = "+33 9 99 99 99 99"
        self.mailchimp_later()
        self.emulator.control.admin_update(self.list_id, "anna@example.org",
                                           merge_fields={"COUNTRY": "Germany", "JOINED": "2024-03-01"})
        self.emulator.control.clock(real=True)
        self.sync()
        self.assertEqual(self.mc("bob@example.org")["merge_fields"]["COMPANY"], "Bob & Sons")
        self.assertEqual(self.mc("bob@example.org")["merge_fields"]["PHONE"], "+33 9 99 99 99 99")
        self.assertEqual(anna.country_id, self.env.ref("base.de"))
        self.assertEqual(anna.partner_id.ref, "2024-03-01")
        self.assertQuiet(self.sync())

    def test_an_address_mapped_to_the_partners_street_is_its_postal_address(self):
        self.seed_data([
            {"email_address": "cleo@example.org", "status": "subscribed",
             "merge_fields": {"ADDRESS": {"addr1": "1 Main St", "addr2": "Apt 2", "city": "Springfield",
                                          "state": "IL", "zip": "62701", "country": "US"}}},
        ])
        self.map("ADDRESS", "res.partner", "street")
        self.audience.create_partners = True
        us = self.env.ref("base.us")
        state = self.env["res.country.state"].search
        illinois, new_york = (state([("country_id", "=", us.id), ("code", "=", code)]) for code in ("IL", "NY"))
        dan_partner = self.env["res.partner"].create({
            "name": "Dan Hill", "email": "dan@example.org", "street": "5 Elm St", "city": "Albany",
            "state_id": new_york.id, "zip": "12207", "country_id": us.id})
        self.contact("dan@example.org", [self.newsletter], name="Dan Hill", partner_id=dan_partner.id)
        # A partner known by its country only has no postal address to send.
        eve_partner = self.env["res.partner"].create({"name": "Eve", "email": "eve@example.org",
                                                      "country_id": us.id})
        self.contact("eve@example.org", [self.newsletter], name="Eve", partner_id=eve_partner.id)
        run = self.sync()
        self.assertEqual(run.failed, 0)
        self.assertEqual(self.mc("eve@example.org")["merge_fields"]["ADDRESS"], "")
        cleo = self.Contact.search([("email", "=", "cleo@example.org")]).partner_id
        self.assertEqual((cleo.street, cleo.street2, cleo.city, cleo.state_id, cleo.zip, cleo.country_id),
                         ("1 Main St", "Apt 2", "Springfield", illinois, "62701", us))
        self.assertEqual(self.mc("dan@example.org")["merge_fields"]["ADDRESS"],
                         {"addr1": "5 Elm St", "addr2": "", "city": "Albany", "state": "NY", "zip": "12207",
                          "country": "US"})
        self.assertQuiet(self.sync())
        # One part changed in Odoo sends the address; a country Odoo does
        # not know fails the member's row with the reason.
        dan_partner.city = "Troy"
        self.mailchimp_later()
        self.emulator.control.admin_update(self.list_id, "cleo@example.org", merge_fields={"ADDRESS": {
            "addr1": "1 Main St", "city": "Springfield", "state": "IL", "zip": "62701", "country": "ZZ"}})
        self.emulator.control.clock(real=True)
        run = self.sync()
        self.assertEqual(self.mc("dan@example.org")["merge_fields"]["ADDRESS"]["city"], "Troy")
        self.assertEqual(run.failed, 1)
        row = self.row("cleo@example.org")
        self.assertIn("ZZ", row.sync_error)
        self.assertIn(self.env["ir.model.fields"]._get("res.partner", "country_id").field_description, row.sync_error)
        self.assertEqual(cleo.country_id, us, "the partner keeps its address")
        # Cleared at Mailchimp, the postal address is cleared; the country,
        # which Odoo uses beyond mailings, stays.
        self.mailchimp_later(seconds=10)  # a later second than the change before
        self.emulator.control.admin_update(self.list_id, "cleo@example.org", merge_fields={"ADDRESS": ""})
        self.emulator.control.clock(real=True)
        self.sync()
        self.assertEqual((cleo.street, cleo.city, cleo.state_id, cleo.zip, cleo.country_id),
                         (False, False, self.env["res.country.state"], False, us))

    def test_an_address_and_one_of_its_parts_are_not_both_written(self):
        self.seed_data()
        self.map("ADDRESS", "res.partner", "street")
        with self.assertRaises(ValidationError):
            self.map("COUNTRY", "res.partner", "country_id")
        self.map("COUNTRY", "res.partner", "country_id", direction="to_mailchimp")

    def test_each_direction(self):
        self.seed_data([{"email_address": "cleo@example.org", "status": "subscribed",
                         "merge_fields": {"COMPANY": "Mailchimp Co", "COUNTRY": "Spain"}}])
        cleo = self.contact("cleo@example.org", [self.newsletter], company_name="Odoo Co",
                            country_id=self.env.ref("base.it").id)
        self.map("COMPANY", "mailing.contact", "company_name", "to_mailchimp")
        self.map("COUNTRY", "mailing.contact", "country_id", "to_odoo")
        self.sync()
        self.assertEqual(self.mc("cleo@example.org")["merge_fields"]["COMPANY"], "Odoo Co")
        self.assertEqual(cleo.country_id, self.env.ref("base.es"))
        # Changed on the side that does not lead: put back by the one that does
        cleo.country_id = self.env.ref("base.pt")
        self.mailchimp_later()
        self.emulator.control.admin_update(self.list_id, "cleo@example.org", merge_fields={"COMPANY": "Edited"})
        self.emulator.control.clock(real=True)
        self.sync()
        self.assertEqual(self.mc("cleo@example.org")["merge_fields"]["COMPANY"], "Odoo Co")
        self.assertEqual(self.mc("cleo@example.org")["merge_fields"]["COUNTRY"], "Spain",
                         "Odoo → Mailchimp is not this field's way")
        self.assertEqual(cleo.country_id, self.env.ref("base.es"))
        self.assertQuiet(self.sync())

    def test_both_changed_the_later_change_wins(self):
        self.seed_data([{"email_address": "dan@example.org", "status": "subscribed",
                         "merge_fields": {"COMPANY": "Start", "COUNTRY": "Spain"}}])
        dan = self.contact("dan@example.org", [self.newsletter], company_name="Start",
                           country_id=self.env.ref("base.es").id)
        self.map("COMPANY", "mailing.contact", "company_name")
        self.sync()
        # Mailchimp's change comes after Odoo's: Mailchimp wins
        dan.company_name = "Odoo first"
        self.mailchimp_later()
        self.emulator.control.admin_update(self.list_id, "dan@example.org", merge_fields={"COMPANY": "MC later"})
        self.emulator.control.clock(real=True)
        self.sync()
        self.assertEqual((dan.company_name, self.mc("dan@example.org")["merge_fields"]["COMPANY"]),
                         ("MC later", "MC later"))
        # Mailchimp's change comes before Odoo's: Odoo wins
        self.mailchimp_earlier()
        self.emulator.control.admin_update(self.list_id, "dan@example.org", merge_fields={"COMPANY": "MC first"})
        self.emulator.control.clock(real=True)
        dan.write({"company_name": "Odoo later"})
        self.sync()
        self.assertEqual((dan.company_name, self.mc("dan@example.org")["merge_fields"]["COMPANY"]),
                         ("Odoo later", "Odoo later"))
        self.assertQuiet(self.sync())

    def test_a_value_mailchimp_would_refuse_fails_that_row_only(self):
        self.seed_data()
        self.map("COLOUR", "mailing.contact", "company_name")
        eve = self.contact("eve@example.org", [self.newsletter], company_name="Blue")
        fay = self.contact("fay@example.org", [self.newsletter], company_name="green")
        self.sync()
        row = self.row("eve@example.org")
        self.assertEqual(row.sync_status, "fail")
        self.assertIn("“Blue” is not one of the values Mailchimp offers for this field (Red, Green)", row.sync_error)
        self.assertEqual(self.mc("eve@example.org")["status"], "subscribed", "the rest of the row still went")
        self.assertEqual(self.mc("eve@example.org")["merge_fields"]["COLOUR"], "")
        self.assertEqual(self.mc("fay@example.org")["merge_fields"]["COLOUR"], "Green", "spelt as Mailchimp does")
        self.assertEqual(self.row("fay@example.org").sync_status, "ok")
        self.assertQuiet(self.sync())
        # Corrected in Odoo: the next sync takes it
        eve.company_name = "red"
        self.sync()
        self.assertEqual(self.mc("eve@example.org")["merge_fields"]["COLOUR"], "Red")
        self.assertEqual(self.row("eve@example.org").sync_status, "ok")
        self.assertFalse(fay.message_bounce)

    def test_a_value_mailchimp_refuses_fails_that_row_with_its_message(self):
        self.seed_data([{"email_address": "gil@example.org", "status": "subscribed"},
                        {"email_address": "hal@example.org", "status": "subscribed"}])
        colour = self.map("COLOUR", "mailing.contact", "company_name", "to_mailchimp")
        # Our copy of the field's choices is out of date: Mailchimp refuses the value
        colour.options = {"choices": ["Red", "Green", "Blue"]}
        self.contact("gil@example.org", [self.newsletter], company_name="Blue")
        self.contact("hal@example.org", [self.newsletter], company_name="Red")
        self.sync()
        self.assertEqual(self.row("gil@example.org").sync_status, "fail")
        self.assertIn("Value must be one of: Red, Green (not Blue)", self.row("gil@example.org").sync_error)
        self.assertEqual(self.row("hal@example.org").sync_status, "ok")
        self.assertEqual(self.mc("hal@example.org")["merge_fields"]["COLOUR"], "Red")


@tagged("post_install", "-at_install")
class TestTagsBothWays(DataSyncCase):
    def test_tags_follow_each_other_then_nothing_to_do(self):
        self.seed_data([{"email_address": "ivy@example.org", "status": "subscribed", "tags": ["Donor", "Imported"]}])
        ivy = self.contact("ivy@example.org", [self.newsletter], tag_ids=[(6, 0, [self.tag("VIP").id])])
        self.sync()
        self.assertEqual(self.mc_tags("ivy@example.org"), ["Donor", "Imported", "VIP"])
        self.assertEqual(sorted(ivy.tag_ids.mapped("name")), ["Donor", "Imported", "VIP"])
        self.assertQuiet(self.sync())
        # Removed in Odoo, added at Mailchimp
        ivy.tag_ids = [(3, self.tag("Donor").id), (4, self.tag("Press").id)]
        self.mailchimp_later()
        self.tag_at_mailchimp("ivy@example.org", Volunteer="active", Imported="inactive")
        self.emulator.control.clock(real=True)
        self.sync()
        self.assertEqual(self.mc_tags("ivy@example.org"), ["Press", "VIP", "Volunteer"])
        self.assertEqual(sorted(ivy.tag_ids.mapped("name")), ["Press", "VIP", "Volunteer"])
        self.assertQuiet(self.sync())

    def test_prefix_scopes_the_tags_that_sync(self):
        self.seed_data([{"email_address": "jo@example.org", "status": "subscribed",
                         "tags": ["MC: Donor", "Imported"]}], tag_prefix="MC: ")
        jo = self.contact("jo@example.org", [self.newsletter],
                          tag_ids=[(6, 0, [self.tag("MC: VIP").id, self.tag("Internal").id])])
        self.sync()
        self.assertEqual(self.mc_tags("jo@example.org"), ["Imported", "MC: Donor", "MC: VIP"])
        self.assertEqual(sorted(jo.tag_ids.mapped("name")), ["Internal", "MC: Donor", "MC: VIP"])
        # Removing an unscoped tag changes nothing on the other side
        self.tag_at_mailchimp("jo@example.org", Imported="inactive")
        jo.tag_ids = [(3, self.tag("Internal").id)]
        self.assertQuiet(self.sync())
        self.assertEqual(self.mc_tags("jo@example.org"), ["MC: Donor", "MC: VIP"])


    def test_bulk_tag_and_name_writes_count_every_row(self):
        """The writers a reconcile chunk calls, with more rows than a page
        of 100: every link is made and counted, every name written."""
        contacts = self.env["mailing.contact"].create(
            [{"name": f"T{i}", "email": f"t{i}@example.org"} for i in range(250)])
        self.tag("Keep")
        Contact = self.env["mailing.contact"]
        added = Contact._mailchimp_apply_tags([(c.id, "Donor") for c in contacts]
                                              + [(c.id, "Keep") for c in contacts[:10]], [])
        self.assertEqual(added, 260)
        self.assertEqual(len(contacts.filtered(lambda c: "Donor" in c.tag_ids.mapped("name"))), 250)
        removed = Contact._mailchimp_apply_tags([], [(c.id, "Donor") for c in contacts[:120]])
        self.assertEqual(removed, 120)
        contacts.invalidate_recordset()
        self.assertEqual(len(contacts.filtered(lambda c: "Donor" in c.tag_ids.mapped("name"))), 130)
        Contact._mailchimp_apply_names([(c.id, f"First{c.id}", "O'Last" if c.id % 2 else "") for c in contacts])
        contacts.invalidate_recordset()
        odd = contacts.filtered(lambda c: c.id % 2)
        self.assertEqual(odd[:1].name, f"First{odd[:1].id} O'Last")
        even = contacts - odd
        self.assertEqual((even[:1].first_name, even[:1].last_name), (f"First{even[:1].id}", False))


@tagged("post_install", "-at_install")
class TestEmailChanges(DataSyncCase):
    def test_email_changed_in_odoo_renames_the_member(self):
        self.seed_data([{"email_address": "kim@example.org", "status": "subscribed",
                         "merge_fields": {"FNAME": "Kim"}, "tags": ["Donor"]}])
        kim = self.contact("kim@example.org", [self.newsletter], name="Kim")
        self.sync()
        before = self.mc("kim@example.org")
        row = self.row("kim@example.org")
        kim.email = "kim.new@example.org"
        run = self.sync()
        self.assertEqual(run.to_add, 0, "not a new member")
        after = self.mc("kim.new@example.org")
        self.assertEqual((after["contact_id"], after["web_id"], after["status"]),
                         (before["contact_id"], before["web_id"], "subscribed"), "the same member, renamed")
        self.assertEqual([t["name"] for t in after["tags"]], ["Donor"])
        with self.assertRaises(EmulatorControlError, msg="no orphan left at the old address"):
            self.mc("kim@example.org")
        client = self.account._get_client()
        listing = client._call(client._sdk.lists.get_list_members_info, self.list_id, count=10)
        self.assertEqual([m["email_address"] for m in listing["members"]], ["kim.new@example.org"])
        row.invalidate_recordset()
        self.assertEqual((row.email, row.sudo().subscriber_hash), ("kim.new@example.org",
                                                                  subscriber_hash("kim.new@example.org")))
        self.assertEqual(self.Member.search_count([("audience_id", "=", self.audience.id)]), 1)
        self.assertQuiet(self.sync())

    def test_new_address_of_another_member_fails_the_row(self):
        self.seed_data([{"email_address": "lea@example.org", "status": "subscribed"},
                        {"email_address": "max@example.org", "status": "subscribed"}])
        lea = self.contact("lea@example.org", [self.newsletter])
        self.sync()
        lea.email = "max@example.org"
        self.sync()
        row = self.row("lea@example.org")
        self.assertEqual(row.sync_status, "fail")
        self.assertIn("another member of this audience at Mailchimp already has it", row.sync_error)
        self.assertEqual(self.mc("lea@example.org")["status"], "subscribed", "nothing changed at Mailchimp")

    def test_new_address_taken_at_mailchimp_meanwhile_fails_with_the_reason(self):
        self.seed_data([{"email_address": "ned@example.org", "status": "subscribed"}])
        ned = self.contact("ned@example.org", [self.newsletter])
        self.sync()
        ned.email = "ned.new@example.org"
        self.sync(settle=False)
        # Someone signs up with that address before the batch runs
        self.emulator.control.user_signup(self.list_id, "ned.new@example.org")
        self.settle()
        row = self.row("ned@example.org")
        self.assertEqual(row.sync_status, "fail")
        self.assertIn("The address changed in Odoo to ned.new@example.org", row.sync_error)
        self.assertEqual(self.mc("ned@example.org")["status"], "subscribed")


@tagged("post_install", "-at_install")
class TestPartnersFollowContacts(DataSyncCase):
    def _seed_with_partner(self, update_partners):
        self.seed_data([{"email_address": "ola@example.org", "status": "subscribed",
                         "merge_fields": {"FNAME": "Ola", "LNAME": "Berg"}}], update_partners=update_partners)
        partner = self.env["res.partner"].create({"name": "Ola Berg", "email": "ola@example.org"})
        contact = self.contact("ola@example.org", [self.newsletter], name="Ola Berg", partner_id=partner.id)
        self.sync()
        return contact, partner

    def test_partner_takes_the_contacts_name_and_email(self):
        contact, partner = self._seed_with_partner(True)
        self.mailchimp_later()
        self.emulator.control.admin_update(self.list_id, "ola@example.org", merge_fields={"LNAME": "Nordmann"})
        self.emulator.control.clock(real=True)
        self.sync()
        self.assertEqual((contact.name, partner.name), ("Ola Nordmann", "Ola Nordmann"))
        contact.email = "ola.n@example.org"
        self.sync()
        self.assertEqual(partner.email, "ola.n@example.org")
        self.assertEqual(self.mc("ola.n@example.org")["merge_fields"]["LNAME"], "Nordmann")

    def test_partner_left_alone_otherwise(self):
        contact, partner = self._seed_with_partner(False)
        self.mailchimp_later()
        self.emulator.control.admin_update(self.list_id, "ola@example.org", merge_fields={"LNAME": "Nordmann"})
        self.emulator.control.clock(real=True)
        self.sync()
        contact.email = "ola.n@example.org"
        self.sync()
        self.assertEqual(contact.name, "Ola Nordmann")
        self.assertEqual((partner.name, partner.email), ("Ola Berg", "ola@example.org"))
