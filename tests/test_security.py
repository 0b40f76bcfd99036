"""Security of the account (issue 12) and the account form (issue 14, item 7):
the API key goes nowhere but where an administrator sent it; a neutralized
copy stays quiet; notes are signed by the system; configuration changes are
tracked; the webhook secret rotates in one step without breaking delivery."""

import contextlib
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.modules.neutralize import get_neutralization_queries
from odoo.tests import Form, new_test_user, tagged
from odoo.tools import mute_logger

from .common import MailchimpCase, SyncCase
from .test_webhook_routes import WebhookCase


class Listener:
    """A real HTTP server on 127.0.0.1 that records every request and its
    headers: where a stolen key would arrive."""

    def __init__(self):
        self.requests = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                listener.requests.append({"path": self.path, "headers": dict(self.headers)})
                body = b'{"health_status": "Everything\'s Chimpy!", "lists": [], "total_items": 0}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _record

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/3.0"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def saw_key(self, key):
        return [r for r in self.requests if key in str(r["headers"])]


def requests_seen(emulator):
    return emulator.control.stats()["requests"]


@tagged("post_install", "-at_install")
class TestKeyStaysHome(MailchimpCase):
    """Only system administrators decide where the key is sent."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.listener = Listener()
        cls.addClassCleanup(cls.listener.stop)
        cls.manager = new_test_user(
            cls.env, login="sec_manager", groups="base.group_user,mailchimp_sync.group_mailchimp_manager"
        )
        cls.admin = new_test_user(cls.env, login="sec_admin", groups="base.group_user,base.group_system")
        cls.key = cls.emulator.api_key

    def setUp(self):
        super().setUp()
        self.listener.requests.clear()

    def press_buttons(self, account):
        """Test Connection and Fetch Audiences, whatever they answer."""
        account.action_test_connection()
        with contextlib.suppress(UserError):  # refusing is fine: only where the key went matters
            account.action_fetch_audiences()

    def test_manager_cannot_send_the_key_to_a_listener(self):
        account = self.account.with_user(self.manager)
        # Through RPC (the ORM), whatever the view shows...
        with self.assertRaises(AccessError):
            account.write({"api_base_url": self.listener.url})
        with self.assertRaises(AccessError):
            account.write({"api_base_url": False})  # Mailchimp itself is another host too
        with self.assertRaises(AccessError):
            self.env["mailchimp.account"].with_user(self.manager).create(
                {"name": "Trap", "api_base_url": self.listener.url}
            )
        # ...and through the form, where the field is read-only for them.
        with Form(account) as form, self.assertRaises(AssertionError):
            form.api_base_url = self.listener.url
        self.assertEqual(self.account.api_base_url, self.emulator.api_base)
        # Writing the value it already has, or other fields, is fine.
        account.write({"api_base_url": self.emulator.api_base, "name": "Renamed", "timeout": 7})
        # The buttons still talk to the emulator, never to the listener.
        before = requests_seen(self.emulator)
        self.press_buttons(account)
        self.assertGreater(requests_seen(self.emulator), before)
        self.assertEqual(self.listener.requests, [])

    def test_moving_the_host_removes_the_key(self):
        account = self.account.with_user(self.admin)
        account.write({"api_base_url": self.emulator.api_base + "/"})  # same host and port: kept
        self.assertEqual(self.account.sudo().api_key, self.key)
        account.write({"api_base_url": self.listener.url})
        self.assertFalse(self.account.sudo().api_key, "the key must not follow the URL")
        self.assertIn("the API key was removed", self.account.message_ids[:1].body)
        self.assertNotIn(self.key, "".join(self.account.message_ids.mapped("body")))
        self.press_buttons(account)
        self.assertEqual(self.account.last_connection_state, "failed")
        self.assertIn("no API key", self.account.last_connection_message)
        self.assertEqual(self.listener.saw_key(self.key), [])
        self.assertEqual(self.listener.requests, [], "without a key nothing is sent at all")
        # A key given in the same write is meant for the new host.
        other_key = "0123456789abcdef0123456789abcdef-us9"
        account.write({"api_base_url": self.emulator.api_base, "api_key": other_key})
        self.assertEqual(self.account.sudo().api_key, other_key)
        account.write({"api_key": self.key})
        self.assertEqual(self.account.sudo().api_key, self.key)
        # Back to Mailchimp itself (no base URL): another host again.
        account.write({"api_base_url": False})
        self.assertFalse(self.account.sudo().api_key)

    def test_key_changes_are_noted_without_the_key(self):
        self.account.with_user(self.admin).write({"api_key": "f" * 32 + "-us1"})
        bodies = "".join(self.account.message_ids.mapped("body"))
        self.assertIn("The API key was changed.", bodies)
        values = self.env["mail.tracking.value"].search([("mail_message_id", "in", self.account.message_ids.ids)])
        everything = bodies + str(values.mapped("old_value_char")) + str(values.mapped("new_value_char"))
        self.assertNotIn("f" * 32, everything)
        self.assertNotIn(self.key, everything)


@tagged("post_install", "-at_install")
class TestAccountForm(MailchimpCase):
    """Issue 14, item 7: the key's form, the data centre, recorded failures,
    no raw texts."""

    def test_key_form_is_validated(self):
        with self.assertRaises(ValidationError) as caught:
            self.account.api_key = "my-key"
        self.assertIn("not a Mailchimp API key", str(caught.exception))
        self.assertNotIn("my-key", str(caught.exception), "the key is not repeated back")
        for bad in ("0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdeg-us1",
                    "0123456789abcdef0123456789abcdef-eu1"):
            with self.assertRaises(ValidationError, msg=bad):
                self.env["mailchimp.account"].create({"name": "Bad", "api_key": bad})
        # Pasted with spaces around it: accepted, stored clean.
        account = self.env["mailchimp.account"].create(
            {"name": "Pasted", "api_key": "  0123456789abcdef0123456789abcdef-us21\n"}
        )
        self.assertEqual(account.api_key, "0123456789abcdef0123456789abcdef-us21")
        self.assertEqual(account.data_center, "us21")

    def test_data_center_only_for_a_valid_key(self):
        draft = self.env["mailchimp.account"].new({"name": "Draft", "api_key": "my-key"})
        self.assertFalse(draft.data_center, "'my-key' has no data centre")
        draft.api_key = "0123456789abcdef0123456789abcdef-us7"
        self.assertEqual(draft.data_center, "us7")
        arch = self.env["mailchimp.account"].get_views([(False, "form")])["views"]["form"]["arch"]
        self.assertIn('name="data_center" invisible="not data_center"', arch)

    def test_failed_connection_is_recorded(self):
        self.account.api_key = "f" * 32 + "-us1"  # well formed, unknown to Mailchimp
        result = self.account.action_test_connection()  # no exception: nothing rolls back
        self.assertEqual(result["params"]["type"], "danger")
        self.assertEqual(self.account.last_connection_state, "failed")
        self.assertTrue(self.account.last_connection_check)
        message = self.account.last_connection_message
        self.assertEqual(result["params"]["message"], message)
        self.assertIn("API key", message)
        self.assertNotIn("f" * 32, message)
        self.assertNotIn("401", message, "a sentence, not a status code")
        # Unreachable: a sentence too, not a repr.
        self.account.sudo().write({"api_base_url": "http://127.0.0.1:9/3.0", "api_key": self.emulator.api_key})
        self.account.action_test_connection()
        self.assertEqual(self.account.last_connection_state, "failed")
        self.assertNotIn("object at 0x", self.account.last_connection_message)
        self.assertNotIn("HTTPConnectionPool", self.account.last_connection_message)

    def test_successful_connection_says_it_plainly(self):
        result = self.account.action_test_connection()
        self.assertEqual(result["params"]["type"], "success")
        self.assertEqual(result["params"]["title"], "Connection works")
        self.assertEqual(self.account.last_connection_state, "ok")
        for text in (result["params"]["message"], self.account.last_connection_message):
            self.assertNotIn("Chimpy", text)
            self.assertIn("sandbox", text)


@tagged("post_install", "-at_install")
class TestNeutralizedCopy(SyncCase):
    """``odoo neutralize`` runs every installed module's data/neutralize.sql."""

    def neutralize(self):
        self.env.flush_all()
        queries = list(get_neutralization_queries(["mailchimp_sync"]))
        self.assertEqual(len(queries), 1, "data/neutralize.sql is found where Odoo looks for it")
        for query in queries:
            self.env.cr.execute(query)
        self.env.invalidate_all()

    def test_neutralized_copy_polls_nothing_and_goes_on(self):
        self.seed()
        self.contact("bob@example.org", [self.newsletter])
        self.sync(settle=False)
        batch = self.env["mailchimp.batch"].search([("audience_id", "=", self.audience.id)])
        self.assertEqual(len(batch), 1)
        self.emulator.control.run_batches()
        self.neutralize()
        before = requests_seen(self.emulator)
        with self.assertLogs("odoo.addons.mailchimp_sync.models.mailchimp_batch", "WARNING") as logs:
            self.env["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0, recheck_seconds=0)
        self.assertIn("neutralized copy", logs.output[0])
        self.assertEqual(requests_seen(self.emulator), before, "a neutralized copy asked about its batch")
        self.assertEqual(batch.result_state, "waiting")
        self.assertTrue(batch.last_checked, "polled again later, not first in line at every call")

    def test_neutralized_copy_sends_nothing(self):
        self.seed(members=[{"email_address": "anna@example.org", "status": "subscribed"}])
        self.contact("bob@example.org", [self.newsletter])
        self.neutralize()
        account = self.account.sudo()
        self.assertTrue(account.neutralized)
        self.assertFalse(account.api_key)
        self.assertFalse(account.webhook_secret)
        self.assertFalse(account.data_center)
        # The mappings are kept.
        self.assertEqual(self.audience.mailing_list_id, self.newsletter)
        self.assertEqual(len(self.audience.interest_ids.mapped("mailing_list_id")), 2)
        # Nothing reaches Mailchimp, and each button says why.
        before = requests_seen(self.emulator)
        result = self.account.action_test_connection()
        self.assertEqual(result["params"]["type"], "danger")
        self.assertIn("neutralized copy", result["params"]["message"])
        self.assertIn("neutralized copy", self.account.last_connection_message)
        with self.assertRaises(UserError) as caught:
            self.account.action_fetch_audiences()
        self.assertIn("neutralized copy", str(caught.exception))
        with self.assertRaises(UserError):
            self.account.action_register_webhooks()
        with mute_logger("odoo.addons.mailchimp_sync.models.mailchimp_sync"):
            result = self.step()
        self.assertEqual(result, "failed")
        self.assertIn("neutralized copy", self.audience.current_run_id.message or "")
        self.assertEqual(requests_seen(self.emulator), before, "a neutralized copy sent requests")
        # Webhooks pointed at this copy open nothing: it has no secret.
        self.assertFalse(self.env["mailchimp.webhook"]._account_for_secret(""))
        self.assertFalse(self.env["mailchimp.webhook"]._account_for_secret(None))
        # The form says so.
        arch = self.env["mailchimp.account"].get_views([(False, "form")])["views"]["form"]["arch"]
        self.assertIn("neutralized copy", arch)
        # An administrator connects it on purpose with a (test) key.
        self.account.api_key = self.emulator.api_key
        self.assertFalse(self.account.neutralized)
        self.assertEqual(self.account.action_test_connection()["params"]["type"], "success")
        self.assertGreater(requests_seen(self.emulator), before)


@tagged("post_install", "-at_install")
class TestNotesAndAudit(SyncCase):
    def test_notes_are_signed_by_odoobot_in_bulk(self):
        self.seed()
        contacts = self.Contact.create(
            [{"name": f"C{i}", "email": f"c{i}@example.org"} for i in range(3)]
        )
        odoobot = self.env.ref("base.partner_root")
        # Whoever runs the sync, the notes are the system's.
        manager = new_test_user(
            self.env, login="sec_notes_manager", groups="base.group_user,mailchimp_sync.group_mailchimp_manager"
        )
        written = self.Contact.with_user(manager)._mailchimp_log_notes(
            self.audience,
            {
                contacts[0].id: ["Subscribed at Mailchimp.", "Name set to <b>Anna</b> & co."],
                contacts[1].id: ["Unsubscribed at Mailchimp."],
                contacts[2].id: [],
            },
        )
        self.assertEqual(written, 2)
        first = contacts[0].message_ids[:1]
        self.assertEqual(first.author_id, odoobot)
        self.assertEqual(first.message_type, "notification")
        self.assertEqual(first.subtype_id, self.env.ref("mail.mt_note"))
        self.assertTrue(first.is_internal)
        self.assertIn("Mailchimp audience Newsletter:", first.body)
        self.assertIn("&lt;b&gt;Anna&lt;/b&gt; &amp; co.", first.body, "plain text is escaped")
        self.assertNotIn("<b>", first.body)
        self.assertEqual(contacts[1].message_ids[:1].author_id, odoobot)
        # Each contact gets its own note's text (the distinct notes are sent once).
        self.assertIn("Unsubscribed at Mailchimp.", contacts[1].message_ids[:1].body)
        self.assertNotIn("Anna", contacts[1].message_ids[:1].body)
        self.assertNotEqual(first.message_id, contacts[1].message_ids[:1].message_id)
        self.assertFalse(contacts[2].message_ids.filtered(lambda m: "Mailchimp audience" in (m.body or "")))
        # Thousands at once.
        many = self.Contact.create([{"name": f"M{i}", "email": f"m{i}@example.org"} for i in range(2500)])
        written = self.Contact.with_user(manager)._mailchimp_log_notes(
            self.audience, {c.id: ["Subscribed."] for c in many}
        )
        self.assertEqual(written, 2500)
        notes = self.env["mail.message"].search(
            [("model", "=", "mailing.contact"), ("res_id", "in", many.ids), ("body", "ilike", "Mailchimp audience")]
        )
        self.assertEqual(len(notes), 2500)
        self.assertEqual(notes.author_id, odoobot)

    def flush_tracking(self):
        """What a commit does: tracking values are written before it."""
        self.env.flush_all()
        self.env.cr.precommit.run()
        self.env.invalidate_all()

    def test_configuration_changes_are_tracked(self):
        self.seed()
        self.flush_tracking()  # records made in this transaction start being tracked at its commit
        other = self.env["mailing.list"].create({"name": "Other list"})
        self.audience.write({"mailing_list_id": other.id, "trust_override": "odoo", "double_optin": True})
        self.flush_tracking()
        values = self.audience.message_ids.tracking_value_ids
        changes = {(v.field_id.name, v.old_value_char, v.new_value_char) for v in values}
        mapping = [(old, new) for name, old, new in changes if name == "mailing_list_id"]
        self.assertEqual(len(mapping), 1, changes)
        self.assertIn("Newsletter", mapping[0][0])
        self.assertIn("Other list", mapping[0][1])
        self.assertIn(("trust_override", "", "Trust Odoo"), changes)
        self.assertEqual(values.mail_message_id.author_id, self.env.user.partner_id)

        interest = self.audience.interest_ids[:1]
        # A list of its own: the subscription list cannot be an interest's too (issue 11 item 11).
        interest_list = self.env["mailing.list"].create({"name": "Interest list"})
        interest.write({"mailing_list_id": interest_list.id, "trust_override": "mailchimp"})
        self.flush_tracking()
        changes = {v.field_id.name for v in interest.message_ids.tracking_value_ids}
        self.assertEqual(changes, {"mailing_list_id", "trust_override"})

        old_url = self.account.api_base_url
        self.account.write({"name": "Renamed account", "timeout": 9, "api_base_url": old_url + "/"})
        self.flush_tracking()
        changes = {(v.field_id.name, v.old_value_char or v.old_value_integer, v.new_value_char or v.new_value_integer)
                   for v in self.account.message_ids.tracking_value_ids}
        self.assertIn(("name", "Emulated account", "Renamed account"), changes)
        self.assertIn(("timeout", 5, 9), changes)
        self.assertIn(("api_base_url", old_url, old_url + "/"), changes)
        for model in ("mailchimp.account", "mailchimp.audience"):
            arch = self.env[model].get_views([(False, "form")])["views"]["form"]["arch"]
            self.assertIn("chatter", arch, model)


class _LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@tagged("post_install", "-at_install")
class TestWebhookSecurity(WebhookCase):
    def setUp(self):
        super().setUp()
        self.emulator.control.settings(webhook_delivery="sync", webhook_retries=0)
        self.admin = new_test_user(
            self.env, login="sec_rotation_admin", groups="base.group_user,base.group_system"
        )
        self.manager = new_test_user(
            self.env, login="sec_rotation_manager",
            groups="base.group_user,mailchimp_sync.group_mailchimp_manager",
        )

    def secret_now(self):
        self.env.invalidate_all()
        return self.account.sudo().webhook_secret

    def hook_urls(self):
        client = self.client()
        return (
            [h["url"] for h in client.list_webhooks(self.list_id)],
            [h["url"] for h in client.list_batch_webhooks()],
        )

    def test_webhook_notes_are_signed_by_odoobot(self):
        carl = self.synced(
            [{"email_address": "carl@example.org", "status": "subscribed"}],
            {"carl@example.org": [self.newsletter]},
        )["carl@example.org"]
        self.register()
        seen = carl.message_ids
        self.mailchimp_later()
        self.control("admin_update", self.list_id, "carl@example.org", email_address="carl@new.example.org")
        self.control("user_unsubscribe", self.list_id, "carl@new.example.org")
        self.control("clock", real=True)
        self.env.invalidate_all()
        self.assertEqual(carl.email, "carl@new.example.org")
        self.assertFalse(self.subscribed(carl))
        new = carl.message_ids - seen
        self.assertTrue(new, "the webhooks left notes")
        public = self.env.ref("base.public_partner")
        odoobot = self.env.ref("base.partner_root")
        self.assertEqual(set(new.mapped("author_id")), {odoobot}, new.mapped(lambda m: (m.author_id.name, m.body)))
        self.assertNotIn(public, new.mapped("author_id"))
        moved = new.filtered(lambda m: "carl@example.org" in (m.body or ""))
        self.assertIn("Mailchimp audience Newsletter", moved.body)

    def test_rotation_moves_the_webhooks_in_one_step(self):
        self.seed()
        self.register()
        old = self.secret
        with self.assertRaises(AccessError):
            self.account.with_user(self.manager).action_rotate_webhook_secret()
        result = self.account.with_user(self.admin).action_rotate_webhook_secret()
        self.assertEqual(result["params"]["type"], "success", result["params"]["message"])
        new = self.secret_now()
        self.assertNotEqual(new, old)
        self.assertFalse(self.account.sudo().webhook_secret_pending)
        member_urls, batch_urls = self.hook_urls()
        self.assertEqual(member_urls, [self.member_url(new)], "the old member webhook is removed")
        self.assertEqual(batch_urls, [self.batch_url(new)], "the old batch webhook is removed")
        self.assertEqual((self.audience.webhook_state, self.account.batch_webhook_state), ("ok", "ok"))
        self.assertIn("rotated", self.account.message_ids[:1].body)
        for secret in (old, new):
            self.assertNotIn(secret, "".join(self.account.message_ids.mapped("body")))
        # Delivery works with the new secret; the old one opens nothing,
        # and its refusal is logged without either secret.
        self.assertEqual(self.opener.get(self.member_url(new), timeout=10).status_code, 200)
        capture = _LogCapture()
        route_logger = logging.getLogger("odoo.addons.mailchimp_sync.controllers.main")
        route_logger.addHandler(capture)
        try:
            self.assertEqual(self.post(self.member_url(old), {"type": "subscribe"}).status_code, 403)
        finally:
            route_logger.removeHandler(capture)
        self.assertEqual(len(capture.lines), 1, capture.lines)
        self.assertIn("refused", capture.lines[0])
        self.assertNotIn(old, capture.lines[0])
        self.assertNotIn(new, capture.lines[0])

    def test_failed_rotation_keeps_the_old_secret_working(self):
        anna = self.synced(
            [{"email_address": "anna@example.org", "status": "subscribed"}],
            {"anna@example.org": [self.newsletter]},
        )["anna@example.org"]
        self.register()
        before = self.hook_urls()
        # Mailchimp takes the new member webhook, then refuses the batch one.
        self.emulator.control.faults(rules=[{"method": "POST", "path": "batch-webhooks$", "kind": "500", "count": 1}])
        result = self.account.action_rotate_webhook_secret()
        self.assertEqual(result["params"]["type"], "danger")
        message = result["params"]["message"]
        self.assertIn("was not changed", message)
        self.assertIn("batch webhook", message)
        self.assertIn("keep working", message)
        self.assertEqual(self.secret_now(), self.secret)
        self.assertFalse(self.account.sudo().webhook_secret_pending, "the abandoned secret opens nothing")
        self.assertEqual(self.hook_urls(), before, "the new member webhook was taken back")
        # The old webhook still delivers.
        self.mailchimp_later()
        self.control("user_unsubscribe", self.list_id, "anna@example.org")
        self.control("clock", real=True)
        self.env.invalidate_all()
        self.assertFalse(self.subscribed(anna))
