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

    @api.depends("mailchimp_audience_ids", "mailchimp_interest_ids")
    def _compute_mailchimp_audience_id(self):
        for mailing_list in self:
            mailing_list.mailchimp_audience_id = (
                mailing_list.mailchimp_audience_ids[:1]
                or mailing_list.mailchimp_interest_ids[:1].audience_id
            )

    def action_view_mailchimp_audience(self):
        """Open the audience this list is mapped to."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": "mailchimp.audience",
            "res_id": self.mailchimp_audience_id.id,
            "view_mode": "form",
        }
