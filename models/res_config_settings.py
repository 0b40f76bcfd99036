from urllib.parse import urlsplit

from odoo import api, fields, models
from odoo.exceptions import ValidationError


class ResConfigSettings(models.TransientModel):
    """The addon's settings, in Settings › Email Marketing › Mailchimp.

    The webhook base URL stays the system parameter the webhook code reads
    (``mailchimp_sync.webhook_base_url``); the two audience defaults are
    Odoo defaults (``ir.default``) of ``mailchimp.audience``, so every
    audience created afterwards, by hand or by *Fetch Audiences*, starts
    with them, and existing audiences keep their own values.
    """

    _inherit = "res.config.settings"

    mailchimp_webhook_base_url = fields.Char(
        string="Webhook Base URL",
        config_parameter="mailchimp_sync.webhook_base_url",
        help="The public address at which Mailchimp reaches this Odoo, e.g. "
        "https://odoo.example.com, when it differs from the web base URL "
        "(Odoo behind a proxy). Empty: the web base URL.",
    )
    default_max_time = fields.Integer(
        string="Default Time Budget (s)",
        default_model="mailchimp.audience",
        default=300,
        help="Seconds one scheduled run may spend on a new audience before it stops "
        "and resumes on the next run.",
    )
    default_double_optin = fields.Boolean(
        string="Double Opt-in by Default",
        default_model="mailchimp.audience",
        help="New audiences subscribe people added in Odoo as 'pending': Mailchimp then "
        "asks them to confirm by email.",
    )

    mailchimp_update_retention_days = fields.Integer(
        string="Keep Settled Updates (days)",
        config_parameter="mailchimp_sync.update_retention_days",
        default=30,
        help="Days the updates Mailchimp settled (done, cancelled, failed) stay in Odoo before a daily "
        "scheduled action deletes them. A failed update of a member still failing is kept. 0 keeps them all.",
    )

    mailchimp_run_retention_days = fields.Integer(
        string="Keep Sync History (days)",
        config_parameter="mailchimp_sync.run_retention_days",
        default=365,
        help="Days each audience's finished sync runs stay in Odoo before the daily scheduled action "
        "deletes them. The current run and the last finished one are always kept. 0 keeps them all.",
    )

    @api.constrains("default_max_time", "mailchimp_webhook_base_url", "mailchimp_update_retention_days",
                    "mailchimp_run_retention_days")
    def _check_mailchimp_settings(self):
        for settings in self:
            if settings.mailchimp_update_retention_days < 0:
                raise ValidationError(self.env._(
                    "The number of days settled updates are kept cannot be negative (0 keeps them all)."))
            if settings.mailchimp_run_retention_days < 0:
                raise ValidationError(self.env._(
                    "The number of days the sync history is kept cannot be negative (0 keeps it all)."))
            if settings.default_max_time < 10:
                raise ValidationError(self.env._("The default time budget must be at least 10 seconds."))
            url = (settings.mailchimp_webhook_base_url or "").strip()
            if url:
                parts = urlsplit(url)
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    raise ValidationError(self.env._(
                        "The webhook base URL must be a web address such as https://odoo.example.com."
                    ))

    def set_values(self):
        # Store the URL without the trailing slash the webhook code strips
        # anyway, so what the settings show is what is used.
        for settings in self:
            if settings.mailchimp_webhook_base_url:
                settings.mailchimp_webhook_base_url = settings.mailchimp_webhook_base_url.strip().rstrip("/")
        return super().set_values()
