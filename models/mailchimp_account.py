import logging
import secrets

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..mailchimp_sync.client import MailchimpClient, data_center_from_key
from ..mailchimp_sync.exceptions import MailchimpError

_logger = logging.getLogger(__name__)


class MailchimpAccount(models.Model):
    _name = "mailchimp.account"
    _description = "Mailchimp Account"
    _order = "name, id"

    name = fields.Char(required=True)
    active = fields.Boolean(default=True)
    # Secrets: only system administrators may read or write them; the
    # field-level ``groups`` make the ORM refuse everyone else.
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
    api_base_url = fields.Char(
        string="API Base URL",
        help="Leave empty for Mailchimp itself. Set it to run against a Mailchimp "
        "emulator (a sandbox), e.g. http://127.0.0.1:8055/3.0.",
    )
    is_sandbox = fields.Boolean(compute="_compute_is_sandbox")
    webhook_secret = fields.Char(
        groups="base.group_system",
        copy=False,
        default=lambda self: secrets.token_urlsafe(24),
        help="Secret carried in the webhook URLs registered at Mailchimp.",
    )
    timeout = fields.Integer(
        default=30, help="Seconds to wait for Mailchimp before giving up on a request."
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
    last_connection_message = fields.Char(readonly=True, copy=False)

    @api.depends("api_key")
    def _compute_data_center(self):
        for account in self.sudo():
            account.data_center = data_center_from_key(account.api_key or "")

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

    def _get_client(self):
        """Return the core Mailchimp client for this account.

        The key is read with sudo: the cron and webhook paths run without
        administrator rights, and the key never leaves the server.
        """
        self.ensure_one()
        account = self.sudo()
        if not account.api_key:
            raise UserError(self.env._("The Mailchimp account %s has no API key.", account.name))
        return MailchimpClient(
            account.api_key,
            base_url=account.api_base_url or None,
            timeout=account.timeout or 30,
        )

    def action_test_connection(self):
        """Ping Mailchimp with this account's key and report the answer."""
        self.ensure_one()
        try:
            message = self._get_client().ping()
        except MailchimpError as exc:
            self.last_connection_check = fields.Datetime.now()
            self.last_connection_message = str(exc)
            raise UserError(self.env._("Mailchimp did not accept the connection: %s", exc)) from exc
        self.last_connection_check = fields.Datetime.now()
        self.last_connection_message = message
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Connection works"),
                "message": message,
                "type": "success",
                "sticky": False,
            },
        }

    def action_fetch_audiences(self):
        """Read the account's audiences, their merge fields, interest
        categories and interests from Mailchimp, and create or update the
        matching ``mailchimp.audience`` and ``mailchimp.interest`` rows.

        Idempotent: a second fetch only refreshes names and merge fields;
        mappings, options and archived audiences are left as they are.
        Interests Mailchimp no longer has are removed (they could not be
        synced any more); audiences it no longer has are reported.
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
            raise UserError(self.env._("Mailchimp did not return the audiences: %s", exc)) from exc
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
                    {k: field.get(k) for k in ("tag", "name", "type", "required", "merge_id")}
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
            audience._update_interests(interests)
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
        for account in self:
            self.env["mailchimp.webhook"]._register_all(account)
        return True

    def action_check_webhooks(self):
        """Check, without changing anything, that the webhooks are in place."""
        for account in self:
            self.env["mailchimp.webhook"]._check_all(account)
        return True
