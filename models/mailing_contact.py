from odoo import fields, models


class MailingContact(models.Model):
    _inherit = "mailing.contact"

    partner_id = fields.Many2one(
        "res.partner",
        string="Contact",
        ondelete="set null",
        index="btree_not_null",
        help="The person behind this mailing contact, matched by email.",
    )
    mailchimp_member_ids = fields.One2many(
        "mailchimp.member", "contact_id", string="Mailchimp Memberships"
    )
    mailchimp_member_count = fields.Integer(compute="_compute_mailchimp_member_count")

    def _compute_mailchimp_member_count(self):
        counts = dict(
            self.env["mailchimp.member"]._read_group(
                [("contact_id", "in", self.ids)], ["contact_id"], ["__count"]
            )
        )
        for contact in self:
            contact.mailchimp_member_count = counts.get(contact, 0)

    def action_view_mailchimp_members(self):
        """Open this contact's rows in the Mailchimp sync cache."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("mailchimp_sync.mailchimp_member_action")
        action["domain"] = [("contact_id", "=", self.id)]
        action["context"] = {}
        return action

    def init(self):
        res = super().init()
        # A deleted contact must not be re-created from Mailchimp nor left
        # subscribed there: remember on its cache rows when it went.
        self.env.cr.execute(
            """
            CREATE OR REPLACE FUNCTION mailchimp_sync_contact_deleted() RETURNS trigger AS $$
            BEGIN
                UPDATE mailchimp_member
                   SET odoo_deleted_at = clock_timestamp() AT TIME ZONE 'UTC', sync_status = 'todo'
                 WHERE contact_id = OLD.id;
                RETURN OLD;
            END $$ LANGUAGE plpgsql;
            DROP TRIGGER IF EXISTS mailchimp_sync_contact_deleted ON mailing_contact;
            CREATE TRIGGER mailchimp_sync_contact_deleted
                BEFORE DELETE ON mailing_contact
                FOR EACH ROW EXECUTE FUNCTION mailchimp_sync_contact_deleted();
            """
        )
        return res
