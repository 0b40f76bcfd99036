from markupsafe import Markup
from psycopg2.extras import execute_values

from odoo import fields, models
from odoo.tools.mail import generate_tracking_message_id


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

    def _mailchimp_log_notes(self, audience, notes):
        """Write one internal note per contact about ``audience``, signed by
        the system (OdooBot, ``base.partner_root``), in one set-based INSERT.

        Used by the sync and the webhooks, for up to thousands of contacts
        at a time; it neither checks access rights nor notifies anyone (as
        ``mail.thread._message_log_batch``), so call it where the change
        itself was allowed.

        :param audience: the ``mailchimp.audience`` the notes are about; each
            note starts by naming it.
        :param dict notes: ``{contact id: [line, ...]}``: plain-text lines,
            already translated (``env._``), one paragraph each; they are
            HTML-escaped here.  Contacts without lines get no note.
        :return: the number of notes written.
        """
        rows = {contact_id: [line for line in lines if line] for contact_id, lines in notes.items()}
        rows = {contact_id: lines for contact_id, lines in rows.items() if lines}
        if not rows:
            return 0
        author = self.env.ref("base.partner_root")
        subtype_id = self.env["ir.model.data"]._xmlid_to_res_id("mail.mt_note")
        header = Markup("<p>%s</p>") % self.env._("Mailchimp audience %s:", audience.name)
        paragraph = Markup("<p>%s</p>")
        values = [
            (
                contact_id,
                str(header + Markup().join(paragraph % line for line in lines)),
                generate_tracking_message_id("mailchimp-note"),
                subtype_id,
                author.id,
                author.email_formatted or None,
                self.env.uid,
            )
            for contact_id, lines in rows.items()
        ]
        execute_values(
            self.env.cr._obj,
            """INSERT INTO mail_message (model, res_id, body, message_id, subtype_id, author_id, email_from,
                                         message_type, is_internal, date,
                                         create_uid, write_uid, create_date, write_date)
               SELECT 'mailing.contact', v.res_id, v.body, v.message_id, v.subtype, v.author, v.email_from,
                      'notification', TRUE, now() AT TIME ZONE 'UTC',
                      v.uid, v.uid, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
                 FROM (VALUES %s) AS v(res_id, body, message_id, subtype, author, email_from, uid)""",
            values,
            page_size=1000,
        )
        self.env["mail.message"].invalidate_model()
        self.env["mailing.contact"].invalidate_model(["message_ids"])
        return len(values)

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
