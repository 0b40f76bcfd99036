from odoo.exceptions import AccessError
from odoo.tests import TransactionCase, new_test_user, tagged


@tagged("post_install", "-at_install")
class TestAccess(TransactionCase):
    """Mailchimp users see the sync, managers configure it, only system
    administrators ever see an API key or a webhook secret."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.account = cls.env["mailchimp.account"].create(
            {"name": "Main", "api_key": "0123456789abcdef0123456789abcdef-us21"}
        )
        cls.user = new_test_user(
            cls.env, login="mc_user", groups="base.group_user,mailchimp_sync.group_mailchimp_user"
        )
        cls.manager = new_test_user(
            cls.env,
            login="mc_manager",
            groups="base.group_user,mailchimp_sync.group_mailchimp_manager",
        )
        cls.marketer = new_test_user(
            cls.env, login="mc_marketer", groups="base.group_user,mass_mailing.group_mass_mailing_user"
        )
        cls.admin = new_test_user(cls.env, login="mc_admin", groups="base.group_user,base.group_system")

    def test_user_cannot_read_secrets(self):
        for user in (self.user, self.manager, self.marketer):
            account = self.account.with_user(user)
            self.assertEqual(account.name, "Main", "the account itself is visible")
            with self.assertRaises(AccessError, msg=user.login):
                account.read(["api_key"])
            with self.assertRaises(AccessError, msg=user.login):
                account.read(["webhook_secret"])
            self.assertNotIn("api_key", account.fields_get())

    def test_admin_reads_secrets(self):
        account = self.account.with_user(self.admin)
        self.assertEqual(account.api_key, "0123456789abcdef0123456789abcdef-us21")
        self.assertTrue(account.webhook_secret)

    def test_user_reads_but_cannot_configure(self):
        Audience = self.env["mailchimp.audience"].with_user(self.user)
        self.assertFalse(Audience.search([]))
        with self.assertRaises(AccessError):
            Audience.create(
                {"name": "X", "account_id": self.account.id, "mailchimp_list_id": "a1b2c3d4e5"}
            )
        with self.assertRaises(AccessError):
            self.account.with_user(self.user).write({"name": "Renamed"})

    def test_manager_configures_without_key(self):
        audience = (
            self.env["mailchimp.audience"]
            .with_user(self.manager)
            .create({"name": "X", "account_id": self.account.id, "mailchimp_list_id": "a1b2c3d4e5"})
        )
        self.assertEqual(audience.account_id, self.account)
        self.account.with_user(self.manager).write({"name": "Renamed"})
        with self.assertRaises(AccessError):
            self.account.with_user(self.manager).write({"api_key": "f" * 32 + "-us1"})

    def test_marketing_user_sees_status(self):
        self.assertTrue(self.marketer.has_group("mailchimp_sync.group_mailchimp_user"))
        self.env["mailchimp.member"].with_user(self.marketer).search([])
        self.assertTrue(self.admin.has_group("mailchimp_sync.group_mailchimp_manager"))
