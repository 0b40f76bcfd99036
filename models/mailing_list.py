from odoo import api, fields, models


class MailingList(models.Model):
    _inherit = "mailing.list"

    mailchimp_audience_ids = fields.One2many(
        "mailchimp.audience", "mailing_list_id", string="Mailchimp Audiences"
    )
    mailchimp_interest_ids = fields.One2many(
        "mailchimp.interest", "mailing_list_id", string="Mailchimp Interests"
    )
    mailchimp_audience_id = fields.Many2one(
        "mailchimp.audience",
        compute="_compute_mailchimp_audience_id",
        help="The audience this list is the subscription list or an interest list of.",
    )
    mailchimp_sync_role = fields.Selection(
        [("subscription", "Subscription list"), ("interest", "Interest")],
        string="Synced As",
        compute="_compute_mailchimp_audience_id",
        help="Whether this list holds the audience's subscribed members, or the members "
        "with one of its interests.",
    )
    mailchimp_sync_summary = fields.Char(
        string="Mailchimp Sync",
        compute="_compute_mailchimp_audience_id",
        help="Which Mailchimp audience this list is synced with, and how.",
    )

    @api.depends(
        "mailchimp_audience_ids.name",
        "mailchimp_interest_ids.name",
        "mailchimp_interest_ids.category_name",
        "mailchimp_interest_ids.audience_id.name",
    )
    def _compute_mailchimp_audience_id(self):
        for mailing_list in self:
            audience = mailing_list.mailchimp_audience_ids[:1]
            interest = mailing_list.mailchimp_interest_ids[:1]
            if audience:
                mailing_list.mailchimp_audience_id = audience
                mailing_list.mailchimp_sync_role = "subscription"
                mailing_list.mailchimp_sync_summary = self.env._(
                    "Synced with the Mailchimp audience “%(audience)s” as its subscription list: "
                    "the contacts subscribed here are the audience's subscribed members.",
                    audience=audience.name,
                )
            elif interest:
                mailing_list.mailchimp_audience_id = interest.audience_id
                mailing_list.mailchimp_sync_role = "interest"
                mailing_list.mailchimp_sync_summary = self.env._(
                    "Synced with the Mailchimp audience “%(audience)s” as the interest “%(interest)s”: "
                    "the contacts subscribed here are the members who have that interest.",
                    audience=interest.audience_id.name,
                    interest=" › ".join(n for n in (interest.category_name, interest.name) if n),
                )
            else:
                mailing_list.mailchimp_audience_id = False
                mailing_list.mailchimp_sync_role = False
                mailing_list.mailchimp_sync_summary = False

    def action_view_mailchimp_audience(self):
        """Open the audience this list is mapped to."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": "mailchimp.audience",
            "res_id": self.mailchimp_audience_id.id,
            "view_mode": "form",
        }
