from odoo import fields, models


class ResPartner(models.Model):
    _inherit = "res.partner"

    mailing_contact_ids = fields.One2many(
        "mailing.contact", "partner_id", string="Mailing Contacts"
    )
    mailchimp_member_ids = fields.One2many(
        "mailchimp.member", "partner_id", string="Mailchimp Memberships"
    )
    mailchimp_member_count = fields.Integer(compute="_compute_mailchimp_member_count")

    def _compute_mailchimp_member_count(self):
        counts = dict(
            self.env["mailchimp.member"]._read_group(
                [("partner_id", "in", self.ids)], ["partner_id"], ["__count"]
            )
        )
        for partner in self:
            partner.mailchimp_member_count = counts.get(partner, 0)

    def action_view_mailchimp_members(self):
        """Open this partner's rows in the Mailchimp sync cache."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("mailchimp_sync.mailchimp_member_action")
        action["domain"] = [("partner_id", "=", self.id)]
        action["context"] = {}
        return action
