import logging
import secrets
from urllib.parse import urlsplit

from markupsafe import Markup
from psycopg2 import errors

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError

from ..mailchimp_sync.client import (
    DEFAULT_MAX_DOWNLOAD_SIZE,
    MailchimpClient,
    data_center_from_key,
    is_valid_api_key,
)
from ..mailchimp_sync.exceptions import MailchimpError
from ..tools.user_messages import describe_error

_logger = logging.getLogger(__name__)

# The fields that decide which key is sent where: whoever may change them
# may send the key anywhere, so only system administrators may.
KEY_FIELDS = ("api_key", "api_base_url")


def _api_host(base_url):
    """(host, port) the API key is sent to; ``None`` for Mailchimp itself."""
    if not base_url:
        return None
    try:
        parts = urlsplit(base_url.strip())
        return ((parts.hostname or "").lower(), parts.port or {"https": 443}.get(parts.scheme, 80))
    except ValueError:
        return (base_url.strip().lower(), None)


# Advisory-lock namespace of the per-account cap on audiences syncing at once.
ACCOUNT_SLOT_LOCK = 0x6D630001


class MailchimpAccount(models.Model):
    _name = "mailchimp.account"
    _inherit = ["mail.thread"]
    _description = "Mailchimp Account"
    _order = "name, id"

    name = fields.Char(required=True, tracking=True)
    active = fields.Boolean(default=True, tracking=True)
    # Secrets: only system administrators may read or write them; the
    # field-level ``groups`` make the ORM refuse everyone else.  Never
    # tracked: a tracking value would copy the key into the chatter.
    api_key = fields.Char(
        string="API Key",
        groups="base.group_system",
        copy=False,
        help="Mailchimp API key, of the form <32 hex digits>-us<N>.",
    )
    data_center = fields.Char(
        compute="_compute_data_center",
        store=True,
        help="Mailchimp data centre, taken from the API key (the part after the dash).",
    )
    # Readable by every Mailchimp user (the sandbox banner shows it), but
    # only system administrators may change it: see ``write``.
    api_base_url = fields.Char(
        string="API Base URL",
        tracking=True,
        help="Leave empty for Mailchimp itself. Set it to run against a Mailchimp "
        "emulator (a sandbox), e.g. http://127.0.0.1:8055/3.0. Only system administrators "
        "may change it; moving it to another host removes the API key.",
    )
    is_sandbox = fields.Boolean(compute="_compute_is_sandbox")
    webhook_secret = fields.Char(
        groups="base.group_system",
        copy=False,
        default=lambda self: secrets.token_urlsafe(24),
        help="Secret carried in the webhook URLs registered at Mailchimp. "
        "Change it with Rotate Webhook Secret.",
    )
    # The secret a rotation is moving to: accepted beside the current one
    # while the new webhooks are registered (Mailchimp checks each new URL
    # with a request of its own), so delivery never breaks halfway.
    webhook_secret_pending = fields.Char(groups="base.group_system", copy=False, readonly=True)
    neutralized = fields.Boolean(
        readonly=True,
        copy=False,
        help="Set by the database neutralization (a staging copy): the API key and the "
        "webhook secret were removed so that this copy cannot reach the live account.",
    )
    timeout = fields.Integer(
        default=30,
        tracking=True,
        help="Seconds to wait for Mailchimp before giving up on a request.",
    )
    max_parallel_syncs = fields.Integer(
        string="Audiences Syncing at Once",
        default=3,
        tracking=True,
        help="How many of this account's audiences may run a sync step at the same time. "
        "Mailchimp allows about 10 simultaneous connections per account; webhooks and "
        "batch results need some too.",
    )
    batch_webhook_mailchimp_id = fields.Char(copy=False, readonly=True)
    audience_ids = fields.One2many("mailchimp.audience", "account_id", string="Audiences")
    audience_count = fields.Integer(compute="_compute_audience_count")
    batch_webhook_state = fields.Selection(
        [("unknown", "Not checked"), ("ok", "Healthy"), ("missing", "Missing"), ("wrong", "Needs repair")],
        default="unknown",
        copy=False,
        readonly=True,
    )
    webhook_message = fields.Char(readonly=True, copy=False)
    last_connection_check = fields.Datetime(readonly=True, copy=False)
    last_connection_state = fields.Selection(
        [("ok", "Works"), ("failed", "Failed")], readonly=True, copy=False,
        string="Last Connection Test",
    )
    last_connection_message = fields.Char(readonly=True, copy=False)

    @api.depends("api_key")
    def _compute_data_center(self):
        for account in self.sudo():
            # Only a well-formed key names a data centre ("my-key" does not).
            key = (account.api_key or "").strip()
            account.data_center = data_center_from_key(key) if is_valid_api_key(key) else False

    @api.depends("api_base_url")
    def _compute_is_sandbox(self):
        for account in self:
            account.is_sandbox = bool(account.api_base_url)

    def _compute_audience_count(self):
        counts = dict(
            self.env["mailchimp.audience"]._read_group(
                [("account_id", "in", self.ids)], ["account_id"], ["__count"]
            )
        )
        for account in self:
            account.audience_count = counts.get(account, 0)

    @api.constrains("api_key")
    def _check_api_key(self):
        for account in self.sudo():
            if account.api_key and not is_valid_api_key(account.api_key):
                raise ValidationError(
                    self.env._(
                        "This is not a Mailchimp API key: a key is 32 characters (digits and the "
                        "letters a to f), a dash and the data centre, e.g. "
                        "0123456789abcdef0123456789abcdef-us21. Copy it from Mailchimp "
                        "(Profile › Extras › API keys)."
                    )
                )

    # ------------------------------------------------------------------
    # Who may point the key where
    # ------------------------------------------------------------------

    @api.model
    def _clean_key_vals(self, vals):
        """Strip pasted whitespace from the key and the URL."""
        for name in KEY_FIELDS:
            if name in vals:
                vals[name] = (vals[name] or "").strip() or False
        return vals

    def _check_key_fields_access(self, vals, creating=False):
        """Refuse a change of the API key or the API base URL by anyone but a
        system administrator, whatever the client (the form hides the
        fields; RPC must not get around that).  Writing the value a field
        already has is not a change."""
        if self.env.is_system():
            return
        if creating:
            changed = [name for name in KEY_FIELDS if vals.get(name)]
        else:
            changed = [
                name for name in KEY_FIELDS if name in vals
                and any((account.sudo()[name] or False) != vals[name] for account in self)
            ]
        if changed:
            raise AccessError(
                self.env._(
                    "Only system administrators may change the API key or the API base URL of a "
                    "Mailchimp account: the key is sent to that address."
                )
            )

    @api.model_create_multi
    def create(self, vals_list):
        vals_list = [self._clean_key_vals(dict(vals)) for vals in vals_list]
        for vals in vals_list:
            self._check_key_fields_access(vals, creating=True)
        return super().create(vals_list)

    def write(self, vals):
        """Only system administrators change the key or the base URL.  Moving
        the base URL to another host removes the key (unless a new one comes
        in the same write): the key was given for the old address, and must
        not follow the URL anywhere else.  A new key also ends the
        neutralized state of a staging copy."""
        vals = self._clean_key_vals(dict(vals))
        self._check_key_fields_access(vals)
        moved = self.browse()
        if "api_base_url" in vals and "api_key" not in vals:
            new_host = _api_host(vals["api_base_url"])
            moved = self.filtered(
                lambda a: a.sudo().api_key and _api_host(a.api_base_url) != new_host
            )
        if vals.get("api_key"):
            vals["neutralized"] = False
        key_changed = self.browse()
        if "api_key" in vals:
            key_changed = self.filtered(lambda a: (a.sudo().api_key or False) != vals["api_key"])
        result = True
        if moved:
            result = super(MailchimpAccount, moved).write(dict(vals, api_key=False))
        if self - moved:
            result = super(MailchimpAccount, self - moved).write(vals) and result
        for account in moved:
            account._message_log(
                body=Markup("<p>%s</p>") % self.env._(
                    "The API base URL now points to another host: the API key was removed so that "
                    "it is not sent there. Enter the key again to connect."
                )
            )
        for account in key_changed:
            account._message_log(
                body=Markup("<p>%s</p>") % (
                    self.env._("The API key was changed.") if vals["api_key"]
                    else self.env._("The API key was removed.")
                )
            )
        return result

    # ------------------------------------------------------------------
    # The client
    # ------------------------------------------------------------------

    def _neutralized_message(self):
        return self.env._(
            "This database is a neutralized copy: the Mailchimp account %s was disconnected "
            "(its API key and webhook secret were removed) so that nothing here reaches the live "
            "audiences. A system administrator can enter the API key of a test account to connect it.",
            self.name,
        )

    def _take_sync_slot(self):
        """One of the account's ``max_parallel_syncs`` slots, for the current
        transaction (an advisory lock, released at its end): Mailchimp
        allows about 10 simultaneous connections per account."""
        self.ensure_one()
        for slot in range(max(self.max_parallel_syncs or 1, 1)):
            self.env.cr.execute(
                "SELECT pg_try_advisory_xact_lock(%s, %s)", (ACCOUNT_SLOT_LOCK, self.id * 64 + slot)
            )
            if self.env.cr.fetchone()[0]:
                return True
        return False

    def _get_client(self):
        """Return the core Mailchimp client for this account.

        The key is read with sudo: the cron and webhook paths run without
        administrator rights, and the key never leaves the server.  A
        neutralized account (a staging copy) has no client at all.
        """
        self.ensure_one()
        account = self.sudo()
        if account.neutralized:
            raise UserError(account._neutralized_message())
        if not account.api_key:
            raise UserError(self.env._("The Mailchimp account %s has no API key.", account.name))
        params = self.env["ir.config_parameter"].sudo()
        try:
            max_mb = int(params.get_param("mailchimp_sync.max_download_mb") or 0)
        except ValueError:
            max_mb = 0
        return MailchimpClient(
            account.api_key,
            base_url=account.api_base_url or None,
            timeout=account.timeout or 30,
            max_download_size=max_mb * 1024 * 1024 if max_mb > 0 else DEFAULT_MAX_DOWNLOAD_SIZE,
        )

    def action_test_connection(self):
        """Ping Mailchimp with this account's key and report the answer.

        The outcome, good or bad, is recorded on the account (time, state
        and a sentence), so the health block shows failures too: a failure
        is reported as a notification rather than an error, which would
        roll the record back.
        """
        self.ensure_one()
        self.check_access("write")
        try:
            self._get_client().ping()
        except (MailchimpError, UserError) as exc:
            message = describe_error(self.env, exc)
            _logger.info("Connection test of Mailchimp account %s failed: %s", self.id, exc)
            self.write(
                {
                    "last_connection_check": fields.Datetime.now(),
                    "last_connection_state": "failed",
                    "last_connection_message": message,
                }
            )
            return self._notification(self.env._("Connection failed"), message, "danger", sticky=True)
        if self.api_base_url:
            message = self.env._("Connected to the sandbox at %s.", urlsplit(self.api_base_url).netloc)
        else:
            message = self.env._("Connected to Mailchimp (data centre %s).", self.data_center)
        self.write(
            {
                "last_connection_check": fields.Datetime.now(),
                "last_connection_state": "ok",
                "last_connection_message": message,
            }
        )
        return self._notification(self.env._("Connection works"), message, "success")

    def _notification(self, title, message, kind, sticky=False):
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": title,
                "message": message,
                "type": kind,
                "sticky": sticky,
                # Closing makes the form reload: it shows what was recorded.
                "next": {"type": "ir.actions.act_window_close"},
            },
        }

    def action_fetch_audiences(self):
        """Read the account's audiences, their merge fields, interest
        categories and interests from Mailchimp, and create or update the
        matching ``mailchimp.audience`` and ``mailchimp.interest`` rows.

        Idempotent: a second fetch only refreshes names and merge fields;
        mappings, options and archived audiences are left as they are.
        Interests Mailchimp no longer has are removed, or kept and marked
        stale when mapped (not synced, shown on the audience); audiences it
        no longer has are reported.
        """
        self.ensure_one()
        self.check_access("write")  # configuring audiences is a manager's job
        client = self._get_client()
        try:
            remote_lists = client.get_lists()
            details = {
                lst["id"]: (client.get_merge_fields(lst["id"]), client.get_all_interests(lst["id"]))
                for lst in remote_lists
            }
        except MailchimpError as exc:
            raise UserError(
                self.env._("Mailchimp did not return the audiences: %s", describe_error(self.env, exc))
            ) from exc
        # Reading from Mailchimp is done: only now touch the database, so a
        # failed call leaves nothing half written.
        Audience = self.env["mailchimp.audience"].with_context(active_test=False)
        existing = {a.mailchimp_list_id: a for a in Audience.search([("account_id", "=", self.id)])}
        created = updated = 0
        for lst in remote_lists:
            merge_fields, interests = details[lst["id"]]
            vals = {
                "name": lst.get("name") or lst["id"],
                "merge_fields": [
                    {k: field.get(k) for k in ("tag", "name", "type", "required", "merge_id", "options")}
                    for field in merge_fields
                ],
            }
            audience = existing.get(lst["id"])
            if audience:
                audience.write(vals)
                updated += 1
            else:
                audience = Audience.create(dict(vals, account_id=self.id, mailchimp_list_id=lst["id"]))
                created += 1
            self.env["mailchimp.interest"]._update_from_mailchimp(audience, interests)
            self.env["mailchimp.merge.field"]._update_from_mailchimp(audience, merge_fields)
        gone = [a.name for list_id, a in existing.items() if list_id not in details]
        message = self.env._(
            "%(created)s audience(s) added, %(updated)s updated.", created=created, updated=updated
        )
        if gone:
            message += " " + self.env._("No longer at Mailchimp: %s.", ", ".join(gone))
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Audiences fetched"),
                "message": message,
                "type": "warning" if gone else "success",
                "sticky": False,
                # Closing (no dialog here) makes the form reload: it shows the new audiences.
                "next": {"type": "ir.actions.act_window_close"},
            },
        }

    def action_view_audiences(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("mailchimp_sync.mailchimp_audience_action")
        action["domain"] = [("account_id", "=", self.id)]
        action["context"] = {"default_account_id": self.id}
        return action

    def action_register_webhooks(self):
        """Register (or repair) the batch webhook of the account and the
        member webhook of each of its audiences at Mailchimp."""
        states = {}
        for account in self:
            states.update(self.env["mailchimp.webhook"]._register_all(account))
        return self._webhook_notification(states, self.env._("Webhooks registered"),
                                          self.env._("Some webhooks are not registered"))

    def action_check_webhooks(self):
        """Check, without changing anything, that the webhooks are in place."""
        states = {}
        for account in self:
            states.update(self.env["mailchimp.webhook"]._check_all(account))
        return self._webhook_notification(states, self.env._("Webhooks are healthy"),
                                          self.env._("Some webhooks need attention"))

    def _webhook_notification(self, states, ok_title, problem_title):
        """Say what Register/Check Webhooks found: {audience or account: state}."""
        broken = [record for record, state in states.items() if state != "ok"]
        if not broken:
            return self._notification(ok_title, self.env._(
                "%s webhook(s) in place: Mailchimp tells Odoo about member changes and finished batches "
                "as they happen.", len(states)), "success")
        lines = []
        for record in broken:
            name = record.name if record._name == "mailchimp.audience" else self.env._("Batch webhook")
            lines.append(self.env._("%(name)s: %(problem)s", name=name,
                                    problem=record.webhook_message or self.env._("not registered.")))
        lines.append(self.env._("The sync still works without them, only later: Mailchimp's changes "
                                "reach Odoo with the next scheduled sync. Register Webhooks repairs them."))
        return self._notification(problem_title, " ".join(lines), "warning", sticky=True)

    def action_rotate_webhook_secret(self):
        """Give the account a new webhook secret in one step: register the
        webhooks at the new URLs, remove the old ones, and only then make
        the new secret the current one; finally check their health.

        If anything fails on the way, the old secret keeps working and the
        notification says what failed.  System administrators only.
        """
        self.ensure_one()
        if not self.env.is_system():
            raise AccessError(self.env._("Only system administrators may rotate a webhook secret."))
        ok, message = self.env["mailchimp.webhook"]._rotate_secret(self)
        self.env.invalidate_all()
        if ok:
            return self._notification(self.env._("Webhook secret rotated"), message, "success")
        return self._notification(self.env._("Webhook secret not rotated"), message, "danger", sticky=True)

    def _ensure_webhook_secret(self):
        """Give an account without a webhook secret (a neutralized copy that
        was connected again) a new one before its URLs are registered."""
        for account in self.sudo():
            if not account.webhook_secret:
                account.webhook_secret = secrets.token_urlsafe(24)

    def _set_webhook_secret_pending(self, secret):
        """Store (or with ``None`` drop) the pending secret and commit it at
        once, on a cursor of its own; False if the account row is locked
        (being saved elsewhere), rather than waiting on it.  The secret
        rotation (mailchimp.webhook._rotate_secret) calls this."""
        self.ensure_one()
        try:
            with self.env.registry.cursor() as cr:
                cr.execute("SELECT id FROM mailchimp_account WHERE id = %s FOR UPDATE NOWAIT", (self.id,),
                           log_exceptions=False)
                cr.execute(
                    "UPDATE mailchimp_account SET webhook_secret_pending = %s WHERE id = %s",
                    (secret, self.id),
                )
        except errors.LockNotAvailable:
            return False
        return True
