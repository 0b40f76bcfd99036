from odoo import fields, models

from .mailchimp_audience import TRUST_OVERRIDE


class MailchimpInterest(models.Model):
    _name = "mailchimp.interest"
    _inherit = ["mail.thread"]
    _description = "Mailchimp Interest"
    _order = "audience_id, category_name, name, id"

    audience_id = fields.Many2one(
        "mailchimp.audience", required=True, ondelete="cascade", index=True
    )
    mailchimp_interest_id = fields.Char(string="Mailchimp Interest ID", required=True)
    mailchimp_category_id = fields.Char(string="Mailchimp Category ID")
    category_name = fields.Char(string="Category")
    name = fields.Char(required=True, tracking=True)
    mailing_list_id = fields.Many2one(
        "mailing.list",
        ondelete="set null",
        tracking=True,
        help="Contacts on this list have the interest at Mailchimp.",
    )
    trust_override = fields.Selection(
        TRUST_OVERRIDE,
        copy=False,
        tracking=True,
        help="For the next full sync only, let this side win every conflict on this "
        "interest. Cleared when that sync completes.",
    )

    _sql_constraints = [
        (
            "interest_uniq",
            "unique(audience_id, mailchimp_interest_id)",
            "This interest is already known for the audience.",
        ),
    ]

    def _compute_display_name(self):
        for interest in self:
            interest.display_name = (
                f"{interest.category_name} / {interest.name}"
                if interest.category_name
                else interest.name
            )
