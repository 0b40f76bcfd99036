"""The screens: every view and action of the addon loads, the actions
behind the buttons do what the screens promise, and each kind of user sees
and may do what the access rules say."""

from lxml import etree

from odoo.exceptions import AccessError
from odoo.tests import Form, new_test_user, tagged

from .common import SyncCase

MODELS = [
    "mailchimp.account",
    "mailchimp.audience",
    "mailchimp.interest",
    "mailchimp.member",
    "mailchimp.update",
    "mailchimp.batch",
    "mailchimp.sync.run",
]


@tagged("post_install", "-at_install")
class TestViews(SyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.marketer = new_test_user(
            cls.env, login="mc_view_marketer", groups="base.group_user,mass_mailing.group_mass_mailing_user"
        )
        cls.manager = new_test_user(
            cls.env,
            login="mc_view_manager",
            groups="base.group_user,mass_mailing.group_mass_mailing_user,mailchimp_sync.group_mailchimp_manager",
        )
        cls.admin = new_test_user(
            cls.env,
            login="mc_view_admin",
            groups="base.group_user,mass_mailing.group_mass_mailing_user,base.group_system",
        )

    # ------------------------------------------------------------------
    # Every view and action loads
    # ------------------------------------------------------------------

    def _module_views(self):
        return self.env["ir.ui.view"].browse(
            self.env["ir.model.data"]
            .search([("module", "=", "mailchimp_sync"), ("model", "=", "ir.ui.view")])
            .mapped("res_id")
        )

    def test_every_view_loads(self):
        views = self._module_views()
        self.assertGreaterEqual(len(views), 15)
        for view in views:
            for user in (self.env.user, self.marketer, self.manager, self.admin):
                if not self.env[view.model].with_user(user).has_access("read"):
                    continue  # (the settings: administrators only, as all of Settings)
                with self.subTest(view=view.xml_id, user=user.login):
                    result = self.env[view.model].with_user(user).get_views([(view.id, view.type)])
                    arch = result["views"][view.type]["arch"]
                    self.assertTrue(etree.fromstring(arch) is not None)

    def test_default_views_of_every_model(self):
        for model in MODELS:
            for view_type in ("list", "form", "search"):
                with self.subTest(model=model, view_type=view_type):
                    self.env[model].with_user(self.marketer).get_views([(False, view_type)])
        self.env["mailchimp.audience"].get_views([(False, "kanban")])

    @staticmethod
    def _menu_names(menus):
        return {m["name"] for m in menus.values() if isinstance(m, dict) and "name" in m}

    def test_every_action_and_menu_loads(self):
        data = self.env["ir.model.data"].search(
            [("module", "=", "mailchimp_sync"), ("model", "=", "ir.actions.act_window")]
        )
        self.assertTrue(data)
        for xmlid in data:
            action = self.env["ir.actions.act_window"]._for_xml_id(f"mailchimp_sync.{xmlid.name}")
            model = self.env[action["res_model"]]
            views = [(view_id, view_type) for view_id, view_type in action["views"]]
            model.with_user(self.marketer).get_views(views, {"search_view_id": action.get("search_view_id")})
        for user in (self.marketer, self.manager):
            menus = self.env["ir.ui.menu"].with_user(user).load_menus(debug=False)
            names = self._menu_names(menus)
            expected = {"Mailchimp", "Dashboard", "Members", "Batches", "Audiences"}
            self.assertLessEqual(expected, names, user.login)
            self.assertEqual("Accounts" in names, user == self.manager, user.login)

    def test_inherited_forms_show_smart_buttons(self):
        self.seed()
        contact = self.contact("anna@example.org", [self.newsletter])
        self.sync()
        row = self.row("anna@example.org")
        self.assertEqual(row.contact_id, contact)
        for record, button in (
            (self.newsletter, "action_view_mailchimp_audience"),
            (contact, "action_view_mailchimp_members"),
        ):
            arch = record.get_views([(False, "form")])["views"]["form"]["arch"]
            self.assertIn(button, arch)
            action = getattr(record, button)()
            self.assertEqual(action["type"], "ir.actions.act_window")
        self.assertEqual(contact.mailchimp_member_count, 1)
        self.assertEqual(self.newsletter.mailchimp_audience_id, self.audience)
        partner_arch = self.env["res.partner"].get_views([(False, "form")])["views"]["form"]["arch"]
        self.assertIn("action_view_mailchimp_members", partner_arch)

    def test_forms_render(self):
        self.seed()
        with Form(self.audience) as form:
            form.double_optin = True
            form.max_time = 120
        self.assertTrue(self.audience.double_optin)
        with Form(self.account.with_user(self.admin)) as form:
            form.name = "Renamed"
        self.assertEqual(self.account.name, "Renamed")
        with Form(self.env["mailchimp.account"].with_user(self.manager)) as form:
            form.name = "New"
            self.assertNotIn("api_key", form._view["fields"])

    # ------------------------------------------------------------------
    # Fetch audiences
    # ------------------------------------------------------------------

    def test_fetch_audiences_is_idempotent_and_keeps_mappings(self):
        answer = self.emulator.control.seed(
            lists=[
                {"name": "Newsletter",
                 "interest_categories": [
                     {"title": "Topics", "interests": [{"name": "Events"}, {"name": "News"}]}
                 ]},
                {"name": "Customers"},
            ]
        )
        list_id = answer["lists"][0]["id"]
        result = self.account.with_user(self.manager).action_fetch_audiences()
        self.assertEqual(result["params"]["type"], "success")
        audiences = self.account.audience_ids
        self.assertEqual(sorted(audiences.mapped("name")), ["Customers", "Newsletter"])
        newsletter = audiences.filtered(lambda a: a.mailchimp_list_id == list_id)
        self.assertEqual(sorted(newsletter.interest_ids.mapped("name")), ["Events", "News"])
        self.assertEqual(set(newsletter.interest_ids.mapped("category_name")), {"Topics"})
        self.assertIn("FNAME", {f["tag"] for f in newsletter.merge_fields})
        self.assertIn("FNAME", newsletter.merge_fields_text)
        # Map, then fetch again: nothing is duplicated, mappings survive.
        events = newsletter.interest_ids.filtered(lambda i: i.name == "Events")
        newsletter.mailing_list_id = self.newsletter
        events.mailing_list_id = self.events_list
        self.account.action_fetch_audiences()
        self.assertEqual(len(self.account.audience_ids), 2)
        self.assertEqual(len(newsletter.interest_ids), 2)
        self.assertEqual(newsletter.mailing_list_id, self.newsletter)
        self.assertEqual(events.mailing_list_id, self.events_list)

    def test_fetch_audiences_needs_a_manager(self):
        with self.assertRaises(AccessError):
            self.account.with_user(self.marketer).action_fetch_audiences()

    # ------------------------------------------------------------------
    # Live status and what needs attention
    # ------------------------------------------------------------------

    def test_stats_follow_the_sync(self):
        self.seed(members=[
            {"email_address": "anna@example.org", "status": "subscribed"},
            {"email_address": "bob@example.org", "status": "subscribed"},
        ])
        self.contact("carl@example.org", [self.newsletter])
        self.assertFalse(self.audience.in_sync, "never synced")
        self.sync(settle=False)
        self.audience.invalidate_recordset()
        audience = self.audience
        self.assertEqual(audience.mc_subscribed_count, 2)
        self.assertEqual(audience.odoo_subscribed_count, 3)
        self.assertEqual(audience.live_count, 1, "carl is being added")
        self.assertEqual(audience.to_add_count, 1)
        self.assertEqual(audience.open_batch_count, 1)
        self.assertFalse(audience.in_sync)
        self.settle()
        audience.invalidate_recordset()
        self.assertEqual(audience.mc_subscribed_count, 3)
        self.assertEqual((audience.to_add_count, audience.to_remove_count, audience.todo_count,
                          audience.live_count, audience.unsent_count, audience.open_batch_count), (0,) * 6)
        self.assertTrue(audience.in_sync)
        # Nothing needs attention: the card opens the audience itself.
        self.assertEqual(audience.action_view_attention()["res_model"], "mailchimp.audience")

    def test_failed_rows_show_why_and_can_be_retried(self):
        self.seed(members=[{"email_address": "carl@example.org", "status": "cleaned"}])
        self.contact("carl@example.org", [self.newsletter])
        self.sync()
        row = self.row("carl@example.org")
        self.assertEqual(row.sync_status, "fail")
        self.assertTrue(row.sync_error)
        self.audience.invalidate_recordset()
        self.assertEqual(self.audience.failed_count, 1)
        action = self.audience.action_view_attention()
        self.assertEqual(self.env["mailchimp.member"].search(action["domain"]), row)
        # A marketing user puts it back in line, then retries it at once.
        row.with_user(self.marketer).action_include_in_next_sync()
        self.assertEqual(row.sync_status, "todo")
        result = row.with_user(self.marketer).action_retry()
        row.invalidate_recordset()
        self.assertEqual(row.sync_status, "fail", "a cleaned address fails again")
        self.assertEqual(result["params"]["type"], "warning")
        self.assertTrue(row.sync_error)

    # ------------------------------------------------------------------
    # Access
    # ------------------------------------------------------------------

    def test_marketing_user_maps_lists_and_runs_syncs(self):
        self.seed(members=[{"email_address": "anna@example.org", "status": "subscribed"}])
        self.audience.mailing_list_id = False
        audience = self.audience.with_user(self.marketer)
        other = self.env["mailing.list"].create({"name": "Other"})
        with Form(audience) as form:
            form.mailing_list_id = other
        self.assertEqual(self.audience.mailing_list_id, other)
        # A list mapped nowhere else (issue 11 item 11: a list is mapped once).
        webinars = self.env["mailing.list"].create({"name": "Webinars"})
        audience.interest_ids[:1].write({"mailing_list_id": webinars.id})
        audience.action_sync_now()
        self.sync(settle=False)  # the audience's scheduled action, as the cron runner would run it
        self.assertTrue(self.row("anna@example.org"))
        audience.action_full_resync()
        audience.action_abort()
        self.assertEqual(self.audience.sync_stage, "idle")
        # ...but neither creates audiences nor touches the account.
        with self.assertRaises(AccessError):
            audience.create({"name": "X", "account_id": self.account.id, "mailchimp_list_id": "zzz"})
        with self.assertRaises(AccessError):
            self.account.with_user(self.marketer).write({"api_base_url": "http://evil.example"})
        with self.assertRaises(AccessError):
            self.row("anna@example.org").with_user(self.marketer).write({"sync_status": "ok"})

    def test_only_administrators_see_keys_and_secrets(self):
        for user, sees in ((self.marketer, False), (self.manager, False), (self.admin, True)):
            arch = (
                self.env["mailchimp.account"].with_user(user)
                .get_views([(False, "form")])["views"]["form"]["arch"]
            )
            self.assertEqual('name="api_key"' in arch, sees, user.login)
            self.assertEqual('name="webhook_secret"' in arch, sees, user.login)
            self.assertEqual('name="action_fetch_audiences"' in arch, user != self.marketer, user.login)

    def test_user_without_mailchimp_group_sees_nothing(self):
        stranger = new_test_user(self.env, login="mc_view_stranger", groups="base.group_user")
        with self.assertRaises(AccessError):
            self.env["mailchimp.audience"].with_user(stranger).search([])
        menus = self.env["ir.ui.menu"].with_user(stranger).load_menus(debug=False)
        self.assertNotIn("Mailchimp", self._menu_names(menus))
