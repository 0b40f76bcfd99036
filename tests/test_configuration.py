"""Configuration defects of issue 11 (items 7, 9, 11, 12 and 14): a stale
interest is not sent, an upemail Mailchimp does not confirm renames nobody,
a list is mapped once, a mapping change is a data change that opts nobody
out, and "In Sync" tells the truth."""

from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from odoo.exceptions import UserError, ValidationError
from odoo.tests import new_test_user, tagged
from odoo.tools.safe_eval import safe_eval

from odoo.addons.mailchimp_sync.mailchimp_sync.client import subscriber_hash

from .common import SyncCase
from .test_webhook_routes import WebhookCase


class ConfigurationCase(SyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # A marketing user: maps lists and runs syncs, configures no account.
        cls.marketer = new_test_user(
            cls.env, login="cfg_marketer", groups="base.group_user,mass_mailing.group_mass_mailing_user"
        )
        cls.webinars = cls.env["mailing.list"].create({"name": "Webinars"})

    @contextmanager
    def refused(self, exception, pattern):
        """assertRaises (which rolls the refused change back) and the sentence."""
        with self.assertRaises(exception) as caught:
            yield
        self.assertRegex(str(caught.exception), pattern)

    def as_marketer(self, records):
        return records.with_user(self.marketer)

    def interest(self, name):
        return self.audience.interest_ids.filtered(lambda i: i.name == name)


@tagged("post_install", "-at_install")
class TestStaleInterests(ConfigurationCase):
    """Item 7: an interest Mailchimp no longer has is not sent."""

    def delete_interest_at_mailchimp(self, name):
        client = self.account._get_client()
        remote = next(i for i in client.get_all_interests(self.list_id) if i["name"] == name)
        client._sdk.lists.delete_interest_category_interest(self.list_id, remote["category_id"], remote["id"])

    def test_gone_interest_is_skipped_and_shown(self):
        self.seed([{"email_address": "ivy@example.org", "status": "subscribed"}])
        ivy = self.contact("ivy@example.org", [self.newsletter])
        self.sync()
        self.delete_interest_at_mailchimp("News")
        # Odoo gives Ivy the interest the audience no longer has.
        ivy.list_ids = [(4, self.news_list.id)]
        self.env["mailchimp.interest"]._refresh_stale(self.audience)
        news = self.interest("News")
        self.assertTrue(news.stale)
        self.assertFalse(self.interest("Events").stale)
        self.assertIn("News", self.audience.stale_interest_names, "the form names the stale mapping")
        run = self.sync()
        row = self.row("ivy@example.org")
        self.assertNotEqual(row.sync_status, "fail", row.sync_error)
        self.assertEqual(run.updates_queued, 0, "nothing is sent for the stale interest")
        self.assertTrue(self.subscribed(ivy, self.news_list), "nor is Odoo's list emptied")

    def test_fetch_audiences_keeps_mapped_stale_and_drops_unmapped(self):
        self.seed()
        self.interest("Events").mailing_list_id = False
        self.delete_interest_at_mailchimp("News")
        self.delete_interest_at_mailchimp("Events")
        self.account.action_fetch_audiences()
        news = self.interest("News")
        self.assertTrue(news.stale, "a mapped interest gone at Mailchimp is kept, marked stale")
        self.assertEqual(news.mailing_list_id, self.news_list)
        self.assertFalse(self.interest("Events"), "an unmapped one is removed")
        # The interest list no longer includes it in the Odoo side of the rows.
        self.contact("jo@example.org", [self.newsletter, self.news_list])
        self.sync()
        self.assertEqual(self.row("jo@example.org").odoo_interests, {})
        self.assertEqual(self.mc("jo@example.org")["status"], "subscribed")


@tagged("post_install", "-at_install")
class TestMappedOnce(ConfigurationCase):
    """Item 11: a list is mapped once, across all audiences."""

    def other_audience(self, mailing_list=False):
        other = self.emulator.control.seed(lists=[{"name": "Other"}])["lists"][0]
        return self.env["mailchimp.audience"].create(
            {"name": "Other", "account_id": self.account.id, "mailchimp_list_id": other["id"],
             "mailing_list_id": mailing_list and mailing_list.id}
        )

    def test_interest_on_its_own_subscription_list_is_refused(self):
        self.seed()
        with self.refused(ValidationError, "subscription list of the audience Newsletter"):
            self.as_marketer(self.interest("News")).mailing_list_id = self.newsletter
            self.env.flush_all()

    def test_list_mapped_elsewhere_is_refused(self):
        self.seed()
        other = self.other_audience(self.webinars)
        with self.refused(ValidationError, "mapped twice"):
            self.as_marketer(self.interest("News")).mailing_list_id = self.webinars
            self.env.flush_all()
        with self.refused(ValidationError, "mapped twice"):
            self.as_marketer(other).mailing_list_id = self.events_list
            self.env.flush_all()
        with self.refused(ValidationError, "mapped twice"):
            self.as_marketer(self.interest("News")).mailing_list_id = self.events_list
            self.env.flush_all()
        # An archived audience still holds its list.
        other.action_archive()
        with self.refused(ValidationError, "mapped twice"):
            self.as_marketer(self.interest("News")).mailing_list_id = self.webinars
            self.env.flush_all()

    def test_form_offers_only_free_lists(self):
        self.seed()
        other = self.other_audience(self.webinars)
        free = self.env["mailing.list"].create({"name": "Free"})
        arch = self.env["mailchimp.audience"].with_user(self.marketer).get_views([(False, "form")])
        arch = arch["views"]["form"]["arch"]
        subscription_domain = arch.split('name="mailing_list_id" string="Subscription List"')[1]
        subscription_domain = subscription_domain.split('domain="')[1].split('"')[0].replace("&#39;", "'")
        interest_domain = arch.split('name="mailing_list_id" string="Mailing List"')[1]
        interest_domain = interest_domain.split('domain="')[1].split('"')[0].replace("&#39;", "'")
        Lists = self.env["mailing.list"].with_user(self.marketer)
        offered = Lists.search(safe_eval(subscription_domain))
        self.assertIn(free, offered)
        self.assertFalse(offered & (self.newsletter | self.events_list | self.news_list | self.webinars))
        parent = type("Parent", (), {"mailing_list_id": self.newsletter.id})()
        offered = Lists.search(safe_eval(interest_domain, {"parent": parent}))
        self.assertIn(free, offered)
        self.assertFalse(offered & (self.newsletter | self.events_list | self.news_list | self.webinars))
        self.assertTrue(other)


@tagged("post_install", "-at_install")
class TestMappingChange(ConfigurationCase):
    """Item 12: a mapping change is refused while a cycle runs; on a synced
    audience it makes the next sync a full one and asks which side to trust,
    and nobody is opted out because a list was newly mapped."""

    def test_refused_while_a_cycle_runs(self):
        self.seed([{"email_address": "kim@example.org", "status": "subscribed"}])
        self.sync(settle=False, until="reconcile")
        self.assertTrue(self.audience.current_run_id)
        with self.refused(UserError, "is running: its mapping cannot change now"):
            self.as_marketer(self.interest("News")).mailing_list_id = self.webinars
        with self.refused(UserError, "is running: its mapping cannot change now"):
            self.as_marketer(self.audience).mailing_list_id = self.webinars
        # Through the form's one2many too.
        with self.refused(UserError, "is running"):
            self.as_marketer(self.audience).write(
                {"interest_ids": [(1, self.interest("News").id, {"mailing_list_id": self.webinars.id})]}
            )
        self.sync()
        self.as_marketer(self.interest("News")).mailing_list_id = self.webinars
        self.assertEqual(self.interest("News").mailing_list_id, self.webinars)

    def test_newly_mapped_interest_list_opts_nobody_out(self):
        emails = [f"reader{i}@example.org" for i in range(6)]
        # Mailchimp gave them the interest an hour ago.
        past = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(microsecond=0)
        self.emulator.control.clock(now=past.isoformat())
        self.seed([{"email_address": e, "status": "subscribed", "interests": {"News": True}} for e in emails])
        self.emulator.control.clock(real=True)
        contacts = [self.contact(e, [self.newsletter]) for e in emails]
        self.sync()
        self.assertTrue(all(self.subscribed(c, self.news_list) for c in contacts))
        # The Webinars list is empty in Odoo, but has history: its readers
        # left it just now, later than anything Mailchimp did.
        for contact in contacts:
            contact.list_ids = [(4, self.webinars.id)]
        self.env["mailing.subscription"].search([("list_id", "=", self.webinars.id)]).opt_out = True
        self.env.flush_all()
        news = self.interest("News")
        self.as_marketer(news).mailing_list_id = self.webinars
        self.assertTrue(self.audience.full_sync_requested, "the next sync is a full one")
        self.assertEqual(news.trust_override, "add", "until someone chooses, nobody is removed")
        self.assertTrue(self.audience.mapping_review_needed, "the form asks for a choice")
        # The wizard offers the choice; its default is kept.
        action = self.as_marketer(self.audience).action_review_mapping()
        wizard = self.env[action["res_model"]].with_user(self.marketer).with_context(**action["context"]).create({})
        self.assertEqual(wizard.choice, "add")
        self.assertIn("Webinars", wizard.summary)
        wizard.action_apply()
        self.assertFalse(self.audience.mapping_review_needed)
        run = self.sync()
        self.assertTrue(run.full)
        for email, contact in zip(emails, contacts, strict=True):
            self.assertTrue(self.mc(email)["interests"][self.interest_ids["News"]], f"{email} kept the interest")
            self.assertTrue(self.subscribed(contact, self.webinars), "Odoo gained it instead")
        self.assertFalse(news.trust_override, "the choice held for that one full sync")

    def test_wizard_choice_is_stored_and_subscription_change(self):
        self.seed([{"email_address": "lou@example.org", "status": "subscribed"}])
        self.sync()
        self.as_marketer(self.audience).mailing_list_id = self.webinars
        self.assertTrue(self.audience.full_sync_requested)
        self.assertEqual(self.audience.trust_override, "add")
        self.assertTrue(self.audience.mapping_review_needed)
        wizard = self.env["mailchimp.mapping.wizard"].with_user(self.marketer).create(
            {"audience_id": self.audience.id, "choice": "mailchimp"}
        )
        self.assertIn("Subscription list: Webinars", wizard.summary)
        wizard.action_apply()
        self.assertEqual(self.audience.trust_override, "mailchimp")
        self.assertFalse(self.audience.mapping_review_needed)
        # A never-synced audience asks nothing: its first sync is full anyway.
        self.audience.write({"last_fetch_at": False, "last_sync_end": False, "trust_override": False,
                             "full_sync_requested": False})
        self.as_marketer(self.audience).mailing_list_id = self.newsletter
        self.assertFalse(self.audience.trust_override)
        self.assertFalse(self.audience.mapping_review_needed)


@tagged("post_install", "-at_install")
class TestInSyncTellsTheTruth(ConfigurationCase):
    """Item 14: "In Sync" is shown only when it is true."""

    def test_in_sync_after_a_clean_sync(self):
        self.seed([{"email_address": "mia@example.org", "status": "subscribed"}])
        self.contact("mia@example.org", [self.newsletter])
        self.sync()
        self.audience.invalidate_recordset()
        self.assertTrue(self.audience.in_sync)
        self.assertFalse(self.audience.needs_attention)

    def test_failed_rows_need_attention(self):
        past = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(microsecond=0)
        self.emulator.control.clock(now=past.isoformat())
        self.seed([{"email_address": "ned@example.org", "status": "cleaned"},
                   {"email_address": "ola@example.org", "status": "subscribed"}])
        self.emulator.control.clock(real=True)
        # Odoo subscribed Ned later: a cleaned address cannot be resubscribed.
        self.contact("ned@example.org", [self.newsletter])
        self.contact("ola@example.org", [self.newsletter])
        self.sync()
        self.sync()
        self.audience.invalidate_recordset()
        self.assertEqual(self.row("ned@example.org").sync_status, "fail")
        self.assertFalse(self.audience.in_sync)
        self.assertTrue(self.audience.needs_attention)

    def test_abort_is_not_in_sync(self):
        emails = [f"left{i}@example.org" for i in range(4)]
        self.seed([{"email_address": e, "status": "subscribed"} for e in emails])
        contacts = [self.contact(e, [self.newsletter]) for e in emails]
        self.sync()
        self.sync()
        self.audience.invalidate_recordset()
        self.assertTrue(self.audience.in_sync)
        # They unsubscribe in Odoo; the sync that would tell Mailchimp is aborted.
        self.env["mailing.subscription"].search(
            [("contact_id", "in", [c.id for c in contacts]), ("list_id", "=", self.newsletter.id)]
        ).opt_out = True
        self.sync(settle=False, until="submit")
        self.audience.action_abort()
        self.commit_like_the_runner()
        self.audience.invalidate_recordset()
        self.assertEqual(self.audience.sync_stage, "idle")
        self.assertEqual(self.audience.mc_subscribed_count, 4)
        self.assertEqual(self.audience.odoo_subscribed_count, 0)
        self.assertFalse(self.audience.in_sync, "people still subscribed at Mailchimp only: not in sync")
        self.assertTrue(self.audience.needs_attention)
        # The next sync sends what the aborted one did not.
        self.sync()
        self.sync()
        self.audience.invalidate_recordset()
        self.assertEqual([self.mc(e)["status"] for e in emails], ["unsubscribed"] * 4)
        self.assertTrue(self.audience.in_sync)


@tagged("post_install", "-at_install")
class TestUpemailConfirmed(WebhookCase):
    """Item 9: an upemail changes nothing unless Mailchimp confirms the
    member at the new address, and never when it is older than the cache."""

    def upemail(self, old, new, new_id, fired_at=None):
        fired_at = fired_at or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return [("type", "upemail"), ("fired_at", fired_at), ("data[new_id]", new_id),
                ("data[new_email]", new), ("data[old_email]", old), ("data[list_id]", self.list_id)]

    def rename_at_mailchimp(self, old, new):
        bodies = [b for b in self.captured("admin_update", self.list_id, old, email_address=new)
                  if "type=upemail" in b]
        self.assertEqual(len(bodies), 1)
        return bodies[0]

    def assert_untouched(self, body, contact, email):
        before = self.counts()
        self.assertEqual(self.post(self.member_url(), body).status_code, 200)
        self.assertEqual(self.counts(), before, "nobody renamed, nobody unsubscribed")
        self.assertEqual(contact.email, email)
        self.assertTrue(self.subscribed(contact))

    def test_forged_upemail_to_an_unknown_address(self):
        anna = self.synced([{"email_address": "anna@example.org", "status": "subscribed"}],
                           {"anna@example.org": [self.newsletter]})["anna@example.org"]
        self.assert_untouched(self.upemail("anna@example.org", "mallory@example.net", "0123456789"),
                              anna, "anna@example.org")
        self.assertEqual(self.mc("anna@example.org")["status"], "subscribed")

    def test_forged_upemail_between_two_members(self):
        made = self.synced(
            [{"email_address": "anna@example.org", "status": "subscribed"},
             {"email_address": "bob@example.org", "status": "subscribed"}],
            {"anna@example.org": [self.newsletter], "bob@example.org": [self.newsletter]},
        )
        bob_id = self.mc("bob@example.org")["unique_email_id"]
        # Even naming Bob's real id, Anna's address is still hers at Mailchimp.
        self.assert_untouched(self.upemail("anna@example.org", "bob@example.org", bob_id),
                              made["anna@example.org"], "anna@example.org")
        # A wrong id for a real rename target is refused too.
        self.assert_untouched(self.upemail("anna@example.org", "bob@example.org", "ffffffffff"),
                              made["anna@example.org"], "anna@example.org")

    def test_replayed_upemail_after_the_rename_was_undone(self):
        carl = self.synced([{"email_address": "carl@example.org", "status": "subscribed"}],
                           {"carl@example.org": [self.newsletter]})["carl@example.org"]
        self.register()
        there = self.rename_at_mailchimp("carl@example.org", "carl@new.example.org")
        self.assertEqual(self.post(self.member_url(), there).status_code, 200)
        self.assertEqual(carl.email, "carl@new.example.org", "a confirmed rename is applied")
        back = self.rename_at_mailchimp("carl@new.example.org", "carl@example.org")
        self.assertEqual(self.post(self.member_url(), back).status_code, 200)
        self.assertEqual(carl.email, "carl@example.org")
        # The first event again (a replay, or a late retry): undone since.
        self.assert_untouched(there, carl, "carl@example.org")
        self.assertEqual(self.row("carl@example.org").contact_id, carl)

    def test_upemail_older_than_the_cache(self):
        dana = self.synced([{"email_address": "dana@example.org", "status": "subscribed"}],
                           {"dana@example.org": [self.newsletter]})["dana@example.org"]
        self.register()
        self.mailchimp_later()
        late = self.rename_at_mailchimp("dana@example.org", "dana@new.example.org")
        # Later, someone signs up with the old address; the sync sees it...
        self.control("clock", advance=60)
        self.control("user_signup", self.list_id, "dana@example.org")
        self.sync()
        self.assertEqual(self.row("dana@example.org").contact_id, dana)
        # ...and Mailchimp forgets that member before the rename's event comes.
        self.client()._sdk.lists.delete_list_member_permanent(self.list_id, subscriber_hash("dana@example.org"))
        self.assert_untouched(late, dana, "dana@example.org")

