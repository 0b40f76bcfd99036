from markupsafe import Markup

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

    def init(self):
        res = super().init()
        # Rows are linked to the partner of their address, and Odoo does
        # not index it: a webhook's or a Retry's match read every partner.
        # Dropped on uninstall (hooks.py).
        self.env.cr.execute(
            """CREATE INDEX IF NOT EXISTS mailchimp_sync_partner_email_idx
                   ON res_partner (email_normalized) WHERE email_normalized IS NOT NULL"""
        )
        return res

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

    def _mailchimp_email_moved(self, audience, old_email, new_email):
        """``upemail``: the member of ``audience`` this partner is linked to
        moved at Mailchimp from ``old_email`` (the partner's email) to
        ``new_email``.  Where the audience says partners follow their
        contacts, the partner's own (tracked) email changes too; otherwise
        the partner keeps its email (Odoo uses it beyond mailings) and gets
        a note."""
        self.ensure_one()
        if audience.update_partners:
            self.sudo().write({"email": new_email})
            return
        # Signed by the system (OdooBot), not by whoever the request runs as.
        self._message_log(
            body=Markup("<p>%s</p>") % self.env._(
                "Mailchimp audience %(audience)s now mails this person at %(new)s instead of "
                "%(old)s; this contact's email was left unchanged.",
                audience=audience.name,
                old=old_email,
                new=new_email,
            ),
            author_id=self.env.ref("base.partner_root").id,
        )
