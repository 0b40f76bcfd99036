"""The operator's view (issue 14): actions that say what they did, the live
status and failing look of the screens, counts that add up, failure
reasons that say what to do, plain-word errors, a run log whose headers
fit, a mailing list form that says it is synced, settings in Settings ›
Email Marketing, the translation template, and each audience's history.
(The browser tour, tests/test_tour.py, shows the same screens working.)"""

import importlib.util
import pathlib
import re
import socket

from lxml import etree

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tests.common import _find_executable

from odoo.addons.mailchimp_sync.mailchimp_sync import exceptions as mc
from odoo.addons.mailchimp_sync.mailchimp_sync import reasons
from odoo.addons.mailchimp_sync.mailchimp_sync.client import MailchimpClient, error_from_response
from odoo.addons.mailchimp_sync.tools.user_messages import describe_error, describe_reason

from .common import SyncCase

POT = pathlib.Path(__file__).resolve().parent.parent / "i18n" / "mailchimp_sync.pot"
# Odoo 18's list view: integer columns are 71 px unless the arch gives a
# width (web/static/src/views/list/column_width_hook.js); a header needs
# about 8 px a character plus 16 px of padding.
INTEGER_COLUMN_WIDTH = 71


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@tagged("post_install", "-at_install")
class TestOperatorView(SyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.marketer = new_test_user(
            cls.env, login="mc_operator_marketer",
            groups="base.group_user,mass_mailing.group_mass_mailing_user",
        )
        cls.admin = new_test_user(
            cls.env, login="mc_operator_admin",
            groups="base.group_user,mass_mailing.group_mass_mailing_user,base.group_system",
        )

    def arch(self, model, view_type, user=None, view_id=False):
        env = self.env(user=user) if user else self.env
        result = env[model].get_views([(view_id, view_type)])
        return etree.fromstring(result["views"][view_type]["arch"])

    def notification(self, action, kind=None):
        """The (title, message) of an action that answers with a notification."""
        self.assertIsInstance(action, dict, "the action says what it did")
        self.assertEqual((action["type"], action["tag"]), ("ir.actions.client", "display_notification"))
        params = action["params"]
        if kind:
            self.assertEqual(params["type"], kind, params["message"])
        self.assertTrue(params["title"] and params["message"])
        self.assertNotRegex(params["message"], r"\b[0-9a-f]{32}\b")
        return params["title"], params["message"]

    # ------------------------------------------------------------------
    # Item 1: every action says what it did; the form follows the sync
    # ------------------------------------------------------------------

    def test_sync_buttons_say_what_they_did(self):
        self.seed(members=[{"email_address": "carl@example.org", "status": "cleaned",
                            "last_changed": "2025-01-01T00:00:00+00:00"}])
        self.contact("carl@example.org", [self.newsletter])
        audience = self.audience.with_user(self.marketer)

        action = audience.action_sync_now()
        self.assertEqual(self.notification(action, "success")[0], "Sync started")
        self.assertFalse(self.audience.run_ids, "Sync Now only triggers the scheduled action")
        # Closing the notification lets the form watch for the cycle to start,
        # looking past the runs it already knows.
        watch = action["params"]["next"]
        self.assertEqual((watch["type"], watch["tag"]), ("ir.actions.client", "mailchimp_sync_watch"))
        self.assertEqual(watch["params"], {"audience_ids": [self.audience.id],
                                           "last_run_ids": {str(self.audience.id): 0}})
        run = self.sync()
        self.assertEqual(audience.action_sync_now()["params"]["next"]["params"]["last_run_ids"],
                         {str(self.audience.id): run.id})

        title, message = self.notification(audience.action_full_resync(), "success")
        self.assertEqual(title, "Full resync started")
        self.assertIn("Every member is fetched", message)
        self.assertTrue(self.audience.full_sync_requested)

        row = self.row("carl@example.org")
        self.assertEqual(row.sync_status, "fail")
        title, message = self.notification(row.with_user(self.marketer).action_include_in_next_sync(), "success")
        self.assertIn("1 row(s) will be reconciled by the next sync", message)
        title, message = self.notification(row.with_user(self.marketer).action_retry(), "warning")
        self.assertIn("cannot be helped by a retry (carl@example.org)", message)
        self.assertIn(describe_reason(self.env, reasons.CLEANED_AT_MAILCHIMP), message)

        self.step()  # a cycle is open
        self.assertNotEqual(self.audience.sync_stage, "idle")
        title, message = self.notification(audience.action_abort(), "warning")
        self.assertEqual(title, "Sync aborted")
        self.assertIn("reconciled again by the next sync", message)
        self.assertEqual((self.audience.sync_stage, self.audience.run_ids[:1].state), ("idle", "aborted"))

    def test_webhook_buttons_say_what_they_did(self):
        self.seed()
        self.env["ir.config_parameter"].sudo().set_param("mailchimp_sync.webhook_base_url",
                                                         "https://odoo.example.com")
        # Mailchimp checks a new URL with a GET first: this one answers nowhere.
        title, message = self.notification(self.audience.action_register_webhook(), "warning")
        self.assertEqual(title, "Webhook not registered")
        self.assertIn("Newsletter: ", message)
        self.assertIn("next scheduled sync", message)
        title, _message = self.notification(self.account.action_register_webhooks(), "warning")
        self.assertEqual(title, "Some webhooks are not registered")

        self.emulator.control.settings(webhook_validate_get=False)
        title, message = self.notification(self.audience.action_register_webhook(), "success")
        self.assertEqual(title, "Webhook registered")
        self.assertIn("Newsletter", message)
        title, message = self.notification(self.account.action_register_webhooks(), "success")
        self.assertEqual(title, "Webhooks registered")
        self.assertIn("2 webhook(s) in place", message)
        title, _message = self.notification(self.account.action_check_webhooks(), "success")
        self.assertEqual(title, "Webhooks are healthy")

    def test_form_follows_the_sync(self):
        """The audience form's live status: a widget that reloads the record
        while a cycle runs (static/src/views/sync_status), shown to every
        Mailchimp user; Sync Now has a tooltip that says it runs in the
        background.  The tour watches it work."""
        for user in (self.admin, self.marketer):
            arch = self.arch("mailchimp.audience", "form", user)
            (widget,) = arch.xpath("//sheet//widget[@name='mailchimp_sync_status']")
            self.assertEqual(widget.get("invisible"), "not id")
            self.assertIn("background", arch.xpath("//button[@name='action_sync_now']")[0].get("help"))
            # The old server-side progress and failure alerts gave way to the widget.
            self.assertFalse(arch.xpath("//sheet//field[@name='progress_percent']"))
            self.assertNotIn("The last sync step failed", etree.tostring(arch, encoding="unicode"))
        assets = self.env["ir.qweb"]._get_asset_bundle("web.assets_backend", js=True, css=True)
        paths = [f["url"] for f in assets.files]
        for name in ("sync_status.js", "sync_status.xml", "sync_status.scss"):
            self.assertTrue(any(p.endswith(f"/static/src/views/sync_status/{name}") for p in paths), name)

    # ------------------------------------------------------------------
    # Item 3: a failing sync has its own look
    # ------------------------------------------------------------------

    def test_failing_sync_look(self):
        self.seed(members=[{"email_address": "anna@example.org", "status": "subscribed"}])
        self.emulator.control.faults(rules=[
            {"method": "GET", "path": "^/lists/[^/]+/members$", "kind": "503", "count": 10}])
        with self.assertLogs("odoo.addons.mailchimp_sync.models.mailchimp_sync", "WARNING"):
            self.assertEqual(self.step(), "failed")
        run = self.audience.current_run_id
        self.assertEqual((run.state, self.audience.sync_stage), ("failing", "failing"))
        self.assertTrue(self.audience.next_retry_at)
        self.assertEqual(self.audience.next_retry_at, run.next_retry_at)
        self.assertIn("Mailchimp had a problem on its side", run.message)
        label = dict(self.audience._fields["sync_stage"]._description_selection(self.env))["failing"]
        self.assertEqual(label, "Failing, will retry")

        for user in (self.admin, self.marketer):
            form = self.arch("mailchimp.audience", "form", user)
            # Statusbar (red through static/src/views/sync_status.scss) and,
            # beside it, the time of the next try, only while failing.
            header = form.xpath("//header")[0]
            self.assertTrue(header.xpath("./field[@name='sync_stage'][@widget='statusbar']"))
            (retry,) = header.xpath("./field[@name='next_retry_at']")
            self.assertEqual(retry.get("invisible"), "sync_stage != 'failing'")
            self.assertIn("text-danger", retry.get("class"))
            # Abort only while a cycle is open.
            (abort,) = header.xpath("./button[@name='action_abort']")
            self.assertEqual(abort.get("invisible"), "sync_stage == 'idle'")
            # The run log: the failing state has its own red badge and the next try.
            (state,) = form.xpath("//field[@name='run_ids']//list/field[@name='state']")
            self.assertEqual(state.get("widget"), "badge")
            self.assertEqual(state.get("decoration-danger"), "state in ('failing', 'failed')")
            self.assertTrue(form.xpath("//field[@name='run_ids']//list/field[@name='next_retry_at']"))

            listing = self.arch("mailchimp.audience", "list", user)
            (badge,) = listing.xpath("//field[@name='sync_stage']")
            self.assertEqual((badge.get("widget"), badge.get("decoration-danger")),
                             ("badge", "sync_stage == 'failing'"))
            self.assertEqual(listing.xpath("//field[@name='next_retry_at']")[0].get("invisible"),
                             "sync_stage != 'failing'")

            card = self.arch("mailchimp.audience", "kanban", user)
            (failing,) = card.xpath("//span[contains(@class, 'o_mailchimp_failing')]")
            self.assertIn("text-bg-danger", failing.get("class"))
            self.assertIn("Failing, will retry", "".join(failing.itertext()))
            self.assertTrue(failing.xpath(".//field[@name='next_retry_at']"))

            runs = self.arch("mailchimp.sync.run", "list", user)
            (state,) = runs.xpath("//field[@name='state']")
            self.assertEqual(state.get("decoration-danger"), "state in ('failing', 'failed')")
            self.assertTrue(runs.xpath("//field[@name='next_retry_at']"))

        # The failure passes: the cycle carries on, and the look goes with it.
        self.emulator.control.faults()
        self.sync()
        self.assertEqual((self.audience.sync_stage, self.audience.next_retry_at), ("idle", False))
        self.assertEqual(run.state, "done")

    # ------------------------------------------------------------------
    # Item 4: Retry's counts add up
    # ------------------------------------------------------------------

    def test_retry_counts_add_up(self):
        self.seed(members=[
            {"email_address": "bea@example.org", "status": "unsubscribed", "last_changed": "2025-01-01T00:00:00+00:00"},
            {"email_address": "carl@example.org", "status": "cleaned", "last_changed": "2025-01-01T00:00:00+00:00"},
        ])
        bea = self.contact("bea@example.org", [self.newsletter], message_bounce=3)
        self.contact("carl@example.org", [self.newsletter])
        self.sync()
        audience = self.audience

        def counts():
            audience.invalidate_recordset()
            live = self.Member.search([("audience_id", "=", audience.id), ("sync_status", "=", "live")])
            queued = self.env["mailchimp.update"].search([("audience_id", "=", audience.id), ("state", "=", "queued")])
            # Each live row is either in flight or waiting to be sent, never both.
            self.assertEqual(audience.live_count + len(queued.member_id), len(live))
            return audience.live_count, audience.unsent_count, audience.failed_count

        self.assertEqual(counts(), (0, 0, 2))
        self.assertIn("bounces in Odoo", self.row("bea@example.org").sync_error)
        # The address works again: Retry queues the resubscription.  The row
        # waits to be sent: counted once, as unsent, not also in flight.
        bea.message_bounce = 0
        rows = self.row("bea@example.org") | self.row("carl@example.org")
        title, message = self.notification(rows.with_user(self.marketer).action_retry(), "warning")
        self.assertIn("1 update(s) queued for the next sync", message)
        self.assertIn("1 row(s) cannot be helped by a retry (carl@example.org)", message)
        self.assertEqual(self.row("bea@example.org").sync_status, "live")
        self.assertEqual(self.row("carl@example.org").sync_status, "fail")
        self.assertEqual(counts(), (0, 1, 1))
        # The next sync sends it: in flight, no longer unsent.
        self.sync(settle=False)
        self.assertEqual(counts(), (1, 0, 1))
        self.settle()
        self.assertEqual(counts(), (0, 0, 1))
        self.assertEqual(self.mc("bea@example.org")["status"], "subscribed")

    # ------------------------------------------------------------------
    # Items 5 and 10: reasons say what to do next, in the user's language
    # ------------------------------------------------------------------

    def test_every_reason_says_what_to_do(self):
        samples = {
            reasons.OTHER_EMAIL_SUBSCRIBED: {"email": "old@example.org", "mc_status": "unsubscribed"},
            reasons.BLACKLISTED_IN_ODOO: {"mc_status": "archived"},
            reasons.BOUNCING_IN_ODOO: {"mc_status": "unsubscribed"},
            reasons.INVALID_MERGE_FIELDS: {"fields": "SHOE: Please enter a number"},
            reasons.TEMPORARY: {"status": 503},
            reasons.REFUSED: {"status": 405, "title": "Method Not Allowed",
                              "detail": "Member 0123456789abcdef0123456789abcdef cannot be removed."},
        }
        next_steps = ("press retry", "press include in next sync", "remove the contact", "correct",
                      "ask the person")
        seen = set()
        for code in sorted(reasons.CODES):
            text = describe_reason(self.env, code, samples.get(code))
            with self.subTest(code=code):
                self.assertTrue(text.endswith("."), text)
                self.assertTrue(any(step in text.lower() for step in next_steps), text)
                self.assertNotRegex(text, r"\b[a-z]+_[a-z_]+\b")  # no code
                self.assertNotRegex(text, r"\b[0-9a-f]{32}\b|%\(|\bNone\b")
                seen.add(text)
        self.assertEqual(len(seen), len(reasons.CODES), "one sentence per code")
        self.assertIn("old@example.org is unsubscribed there",
                      describe_reason(self.env, reasons.OTHER_EMAIL_SUBSCRIBED,
                                      samples[reasons.OTHER_EMAIL_SUBSCRIBED]))
        self.assertIn("SHOE: Please enter a number",
                      describe_reason(self.env, reasons.INVALID_MERGE_FIELDS, samples[reasons.INVALID_MERGE_FIELDS]))
        self.assertIn("details are in the server log", describe_reason(self.env, "something_new", {}))
        # Translated: through env._(), in the environment's language.
        self.env["res.lang"]._activate_lang("fr_FR")
        english = describe_reason(self.env, reasons.CLEANED_AT_MAILCHIMP)
        self.assertEqual(describe_reason(self.env(context={"lang": "fr_FR"}), reasons.CLEANED_AT_MAILCHIMP), english)
        if POT.exists():
            msgids = self._pot_msgids()
            for code in (reasons.CLEANED_AT_MAILCHIMP, reasons.NO_RESULT, reasons.INVALID_EMAIL):
                self.assertIn(describe_reason(self.env, code), msgids, code)

    def test_rows_store_the_sentence(self):
        """What the reconcile decides and what Mailchimp answers both reach
        the row as the sentence, not as a code or Mailchimp's English."""
        self.seed(members=[{"email_address": "carl@example.org", "status": "cleaned",
                            "last_changed": "2025-01-01T00:00:00+00:00"}])
        self.contact("carl@example.org", [self.newsletter])
        self.contact("test@example.com", [self.newsletter])  # Mailchimp finds it fake
        self.sync()
        self.assertEqual(self.row("carl@example.org").sync_error,
                         describe_reason(self.env, reasons.CLEANED_AT_MAILCHIMP))
        fake = self.row("test@example.com")
        self.assertEqual((fake.sync_status, fake.sync_error),
                         ("fail", describe_reason(self.env, reasons.INVALID_EMAIL)))
        # The technical answer stays on the update, for managers.
        self.assertIn("looks fake or invalid", fake.update_ids.error_detail)

    def test_marketing_users_see_no_subscriber_hash(self):
        self.seed(members=[{"email_address": "anna@example.org", "status": "subscribed"}])
        self.sync()
        row = self.row("anna@example.org")
        self.assertTrue(row.subscriber_hash)
        for model in ("mailchimp.member", "mailchimp.update", "mailchimp.batch", "mailchimp.sync.run"):
            for view_type in ("list", "form", "search"):
                with self.subTest(model=model, view_type=view_type):
                    arch = self.env[model].with_user(self.marketer).get_views([(False, view_type)])
                    self.assertNotIn("subscriber_hash", arch["views"][view_type]["arch"])
        self.assertIn("subscriber_hash", self.Member.get_views([(False, "form")])["views"]["form"]["arch"])
        with self.assertRaises(AccessError):
            row.with_user(self.marketer).read(["subscriber_hash"])
        self.assertNotIn("subscriber_hash", row.with_user(self.marketer).read()[0])

    # ------------------------------------------------------------------
    # Item 2: errors in one sentence
    # ------------------------------------------------------------------

    def test_describe_error_for_each_kind(self):
        env = self.env
        unreachable = None
        try:
            MailchimpClient("0" * 32 + "-us1", base_url=f"http://127.0.0.1:{closed_port()}/3.0",
                            timeout=2).ping()
        except mc.MailchimpError as exc:
            unreachable = exc
        self.assertEqual(unreachable.kind, mc.UNREACHABLE)
        texts = {
            "unreachable": describe_error(env, unreachable),
            "timeout": describe_error(env, mc.MailchimpRetryableError("slow", kind=mc.TIMEOUT)),
            "auth": describe_error(env, error_from_response(
                401, '{"title": "API Key Invalid", "detail": "Your API key may be invalid."}')),
            "not_found": describe_error(env, error_from_response(404, "")),
            "rate_limited": describe_error(env, error_from_response(429, "")),
            "server_error": describe_error(env, error_from_response(503, "")),
            "invalid": describe_error(env, error_from_response(
                400, '{"title": "Invalid Resource", "detail": "Please provide a valid email address."}')),
            "other": describe_error(env, ZeroDivisionError("division by zero")),
        }
        for kind, text in texts.items():
            with self.subTest(kind=kind):
                self.assertTrue(text.endswith("."), text)
                self.assertNotRegex(text, r"0x[0-9a-f]+|HTTPConnectionPool|Traceback|\?|%[0-9A-F]{2}|division")
                # "did not accept" is for a real refusal only.
                self.assertEqual("did not accept" in text, kind in ("auth", "invalid"), text)
                # Failures that pass by themselves say the sync retries.
                retries = kind in ("unreachable", "timeout", "rate_limited", "server_error", "other")
                self.assertEqual("will try again" in text, retries, text)
        self.assertIn("could not reach Mailchimp", texts["unreachable"])
        self.assertIn("API key", texts["auth"])
        self.assertIn("Invalid Resource: Please provide a valid email address.", texts["invalid"])
        self.assertIn("server log", texts["other"])
        self.assertEqual(describe_error(env, UserError("Choose a list first.")), "Choose a list first.")

    def test_describe_error_is_translated(self):
        self.env["res.lang"]._activate_lang("fr_FR")
        exc = error_from_response(500, "")
        english = describe_error(self.env, exc)
        # The sentence goes through env._(), in the environment's language:
        # the export finds it, and without a French catalogue French falls
        # back to the English source.
        self.assertEqual(describe_error(self.env(context={"lang": "fr_FR"}), exc), english)
        if POT.exists():
            self.assertIn(english, self._pot_msgids())

    @staticmethod
    def _pot_msgids():
        text = POT.read_text(encoding="utf-8")
        ids = set()
        for block in re.findall(r'^msgid ((?:".*"\n)+)', text, flags=re.M):
            ids.add("".join(re.findall(r'"(.*)"', block)).replace('\\"', '"'))
        return ids

    # ------------------------------------------------------------------
    # Item 6: run log headers fit their columns
    # ------------------------------------------------------------------

    def test_run_log_headers_fit(self):
        Run = self.env["mailchimp.sync.run"]
        for user in (self.admin, self.marketer):
            arch = self.arch("mailchimp.sync.run", "list", user)
            columns = arch.xpath("//list/field[not(@column_invisible='1' or @column_invisible='True')]")
            self.assertGreaterEqual(len(columns), 10)
            for column in columns:
                name = column.get("name")
                field = Run._fields[name]
                label = column.get("string") or field.string
                needed = 8 * len(label) + 16
                width = int(column.get("width", "0").rstrip("px") or 0)
                with self.subTest(user=user.login, column=name, label=label):
                    if width:
                        self.assertGreaterEqual(width, needed)
                    elif field.type in ("integer", "boolean"):
                        self.assertGreaterEqual(INTEGER_COLUMN_WIDTH, needed)

    # ------------------------------------------------------------------
    # Item 8: small things
    # ------------------------------------------------------------------

    def test_mailing_list_form_says_it_is_synced(self):
        self.seed()
        plain = self.env["mailing.list"].create({"name": "Not synced"})
        self.assertEqual(self.newsletter.mailchimp_sync_role, "subscription")
        self.assertIn("“Newsletter” as its subscription list", self.newsletter.mailchimp_sync_summary)
        self.assertEqual(self.events_list.mailchimp_sync_role, "interest")
        self.assertIn("as the interest “Topics › Events”", self.events_list.mailchimp_sync_summary)
        self.assertEqual(self.events_list.mailchimp_audience_id, self.audience)
        self.assertFalse(plain.mailchimp_sync_role)
        self.assertFalse(plain.mailchimp_sync_summary)
        for user in (self.admin, self.marketer):
            arch = self.arch("mailing.list", "form", user)
            banner = arch.xpath("//div[@name='mailchimp_sync']")
            self.assertEqual(len(banner), 1, user.login)
            self.assertTrue(banner[0].xpath(".//field[@name='mailchimp_sync_summary']"))
            self.assertTrue(banner[0].xpath(".//button[@name='action_view_mailchimp_audience']"))
            # Not a stat button: those beyond the first few end up under "More".
            self.assertFalse(arch.xpath("//div[@name='button_box']//button[@name='action_view_mailchimp_audience']"))
        self.assertEqual(self.newsletter.with_user(self.marketer).mailchimp_audience_id, self.audience)

    def test_contact_form_labels_the_partner(self):
        for user in (self.admin, self.marketer):
            arch = self.arch("mailing.contact", "form", user)
            (field,) = arch.xpath("//field[@name='partner_id']")
            self.assertIn(field.get("string"), ("Partner", "Related Partner"))

    def test_last_sync_is_a_plain_datetime(self):
        for view_type in ("kanban", "form", "list"):
            arch = self.arch("mailchimp.audience", view_type, self.marketer)
            for field in arch.xpath("//field[@name='last_sync_end']"):
                self.assertNotEqual(field.get("widget"), "remaining_days", view_type)
        arch = self.arch("mailchimp.audience", "kanban", self.marketer)
        self.assertEqual(arch.xpath("//field[@name='last_sync_end']")[0].get("widget"), "datetime")

    # ------------------------------------------------------------------
    # Item 9: settings
    # ------------------------------------------------------------------

    def test_settings_round_trip(self):
        Settings = self.env["res.config.settings"].with_user(self.admin)
        arch = self.arch("res.config.settings", "form", self.admin)
        block = arch.xpath("//app[@name='mass_mailing']//block[@name='mailchimp_sync_setting_container']")
        self.assertEqual(len(block), 1)
        for name in ("mailchimp_webhook_base_url", "default_max_time", "default_double_optin"):
            self.assertTrue(block[0].xpath(f".//field[@name='{name}']"), name)

        defaults = Settings.default_get(["mailchimp_webhook_base_url", "default_max_time", "default_double_optin"])
        self.assertEqual(defaults.get("default_max_time"), 300)
        self.assertFalse(defaults.get("default_double_optin"))

        Settings.create({
            "mailchimp_webhook_base_url": " https://odoo.example.com/ ",
            "default_max_time": 120,
            "default_double_optin": True,
        }).execute()
        params = self.env["ir.config_parameter"].sudo()
        self.assertEqual(params.get_param("mailchimp_sync.webhook_base_url"), "https://odoo.example.com")
        self.assertEqual(self.env["mailchimp.webhook"]._base_url(), "https://odoo.example.com")
        again = Settings.create({})
        self.assertEqual(again.mailchimp_webhook_base_url, "https://odoo.example.com")
        self.assertEqual(again.default_max_time, 120)
        self.assertTrue(again.default_double_optin)
        # New audiences start with the defaults; existing ones keep theirs.
        audience = self.env["mailchimp.audience"].create(
            {"name": "Later", "account_id": self.account.id, "mailchimp_list_id": "f00dfeed01"}
        )
        self.assertEqual(audience.max_time, 120)
        self.assertTrue(audience.double_optin)

        Settings.create({"mailchimp_webhook_base_url": False, "default_max_time": 300,
                         "default_double_optin": False}).execute()
        self.assertFalse(params.get_param("mailchimp_sync.webhook_base_url"))
        self.assertFalse(self.env["mailchimp.audience"].default_get(["double_optin"]).get("double_optin"))

    def test_settings_refuse_nonsense(self):
        Settings = self.env["res.config.settings"].with_user(self.admin)
        with self.assertRaises(ValidationError):
            Settings.create({"default_max_time": 5})
        with self.assertRaises(ValidationError):
            Settings.create({"mailchimp_webhook_base_url": "odoo.example.com"})

    # ------------------------------------------------------------------
    # Item 10: the translation template
    # ------------------------------------------------------------------

    def test_pot_exists_and_covers_the_screens(self):
        self.assertTrue(POT.exists(), "run scripts/export_pot.sh")
        msgids = self._pot_msgids()
        self.assertGreater(len(msgids), 300)
        for text in ("Audience History", "Webhook Base URL", "Subscribed at Mailchimp", "Opt-ins in Odoo",
                     # Python of every model file (one f-string inside _() loses a whole file),
                     "Sync started", "Webhooks registered", "Retried",
                     # the live status widget's template and script,
                     "This form updates itself while the sync runs.", "Sync finished, with failed rows",
                     "%(done)s of %(total)s done, %(remaining)s remaining"):
            self.assertIn(text, msgids)
        # Odoo's export walked the addon through the shim, not in a loop.
        references = re.findall(r"^#: code:(\S+)", POT.read_text(encoding="utf-8"), flags=re.M)
        self.assertTrue(references)
        for ref in references:
            self.assertRegex(ref, r"^addons/mailchimp_sync/[\w/]+\.(py|js|xml):\d+$")

    # ------------------------------------------------------------------
    # Item 11: history
    # ------------------------------------------------------------------

    def test_history_fields_and_views(self):
        Run = self.env["mailchimp.sync.run"]
        for name, aggregator in (("mc_subscribed_count", "max"), ("odoo_subscribed_count", "max"),
                                 ("failing_count", "max"), ("odoo_opt_ins", "sum"), ("odoo_opt_outs", "sum")):
            field = Run._fields[name]
            self.assertEqual((field.type, field.store, field.aggregator), ("integer", True, aggregator), name)
        self.seed()
        other = self.env["mailchimp.audience"].create(
            {"name": "Other", "account_id": self.account.id, "mailchimp_list_id": "f00dfeed02"}
        )
        day = "2026-03-02 10:00:00"
        Run.create([
            {"audience_id": self.audience.id, "state": "done", "started_at": day, "ended_at": day,
             "mc_subscribed_count": 100, "odoo_subscribed_count": 98, "odoo_opt_ins": 3, "odoo_opt_outs": 1,
             "updates_queued": 5, "failed": 1, "failing_count": 2},
            {"audience_id": self.audience.id, "state": "done", "started_at": "2026-03-02 16:00:00",
             "ended_at": "2026-03-02 16:00:00", "mc_subscribed_count": 104, "odoo_subscribed_count": 103,
             "odoo_opt_ins": 4, "odoo_opt_outs": 0, "updates_queued": 2, "failed": 0, "failing_count": 1},
            {"audience_id": other.id, "state": "done", "started_at": day, "ended_at": day,
             "mc_subscribed_count": 7},
        ])
        groups = Run.with_user(self.marketer).read_group(
            [("audience_id", "=", self.audience.id), ("state", "=", "done")],
            ["mc_subscribed_count", "odoo_subscribed_count", "odoo_opt_ins", "odoo_opt_outs", "failing_count"],
            ["started_at:day"],
        )
        self.assertEqual(len(groups), 1)
        self.assertEqual(
            [groups[0][f] for f in ("mc_subscribed_count", "odoo_subscribed_count", "odoo_opt_ins",
                                    "odoo_opt_outs", "failing_count")],
            [104, 103, 7, 1, 2],
        )

        action = self.env["ir.actions.act_window"]._for_xml_id("mailchimp_sync.mailchimp_sync_run_history_action")
        self.assertEqual(action["views"][0][1], "graph")
        for user in (self.admin, self.marketer):
            views = Run.with_user(user).get_views(
                [(False, "graph"), (False, "pivot"), (False, "list"), (False, "search")]
            )["views"]
            graph = etree.fromstring(views["graph"]["arch"])
            self.assertTrue(graph.xpath("//field[@name='mc_subscribed_count'][@type='measure']"))
            pivot = etree.fromstring(views["pivot"]["arch"])
            for name in ("mc_subscribed_count", "odoo_subscribed_count", "odoo_opt_ins", "odoo_opt_outs",
                         "updates_queued", "failed"):
                self.assertTrue(pivot.xpath(f"//field[@name='{name}'][@type='measure']"), name)
            search = etree.fromstring(views["search"]["arch"])
            self.assertTrue(search.xpath("//field[@name='audience_id']"))
            # Reachable from the audience form and the dashboard card.
            action_ref = str(self.env.ref("mailchimp_sync.mailchimp_sync_run_history_action").id)
            for view_type in ("form", "kanban"):
                arch = self.arch("mailchimp.audience", view_type, user)
                entries = arch.xpath(f"//*[@name='{action_ref}'][@type='action']")
                self.assertEqual(len(entries), 1, (user.login, view_type))
                self.assertIn("search_default_audience_id", entries[0].get("context"))


HEADERS_FIT_JS = """
(function () {
    const started = Date.now();
    function check() {
        const labels = document.querySelectorAll(".o_list_table thead th[data-name] span.text-truncate");
        const rows = document.querySelectorAll(".o_list_table tbody tr.o_data_row");
        if (!labels.length || !rows.length) {
            if (Date.now() - started > 20000) {
                console.error("the run log did not render");
            } else {
                setTimeout(check, 200);
            }
            return;
        }
        const isCut = (el) => el.scrollWidth > el.clientWidth + 1;
        const cut = [...labels].filter(isCut).map((el) => el.textContent);
        // The measurement itself must see a cut header: lengthen one.
        const probe = document.querySelector(".o_list_table thead th[data-name='failed'] span.text-truncate");
        const label = probe && probe.textContent;
        if (probe) {
            probe.textContent = "A header far too long for this column";
        }
        const seesCut = probe && isCut(probe);
        if (probe) {
            probe.textContent = label;
        }
        if (!seesCut) {
            console.error("the header measurement does not see a cut header");
        } else if (cut.length) {
            console.error("run log headers cut: " + cut.join(", "));
        } else {
            console.log("test successful");
        }
    }
    check();
})();
"""


@tagged("post_install", "-at_install")
class TestRunLogInBrowser(HttpCase):
    """The run log's headers, measured in a real browser: none is cut."""

    def setUp(self):
        super().setUp()
        if importlib.util.find_spec("websocket") is None:
            self.skipTest("websocket-client is not installed (run scripts/install_browser.sh)")
        try:
            _find_executable()
        except Exception:  # noqa: BLE001 - any failure means no usable browser
            self.skipTest("no Chromium/Chrome executable on PATH (run scripts/install_browser.sh)")
        self.env.ref("base.user_admin").tour_enabled = False

    def test_run_log_headers_are_not_cut(self):
        account = self.env["mailchimp.account"].create({"name": "Browser", "api_key": "0" * 32 + "-us1"})
        audience = self.env["mailchimp.audience"].create(
            {"name": "A rather long audience name", "account_id": account.id, "mailchimp_list_id": "b00dfeed01"}
        )
        self.env["mailchimp.sync.run"].create([
            {"audience_id": audience.id, "state": state, "full": True, "fetched": 20000, "created": 1234,
             "odoo_opt_ins": 120, "odoo_opt_outs": 45, "to_add": 10000, "to_remove": 2000,
             "updates_queued": 12000, "failed": 300, "message": "Done."}
            for state in ("done", "failed", "running")
        ])
        action = self.env.ref("mailchimp_sync.mailchimp_sync_run_action")
        self.browser_js(f"/odoo/action-{action.id}", HEADERS_FIT_JS, login="admin", timeout=60)
