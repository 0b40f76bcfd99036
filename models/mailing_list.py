from odoo import api, fields, models
from odoo.exceptions import ValidationError


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

    def _check_mailchimp_mapped_once(self):
        """A mailing list is mapped once across all audiences: as one
        audience's subscription list or as one interest's list.  Two
        mappings of one list would make the sync copy one onto the other
        (and opt people out of whichever side loses).  Checked by the
        constraints of both mappings (audience and interest)."""
        Audience = self.env["mailchimp.audience"].sudo().with_context(active_test=False)
        Interest = self.env["mailchimp.interest"].sudo()
        for mailing_list in self:
            audiences = Audience.search([("mailing_list_id", "=", mailing_list.id)])
            interests = Interest.search([("mailing_list_id", "=", mailing_list.id)])
            if len(audiences) + len(interests) < 2:
                continue
            own = interests.filtered(lambda i, audiences=audiences: i.audience_id in audiences)[:1]
            if own:
                raise ValidationError(self.env._(
                    "The interest “%(interest)s” cannot use the list “%(list)s”: it is the subscription "
                    "list of the audience %(audience)s. An interest needs a list of its own, or every "
                    "subscribed member would get the interest and everyone else would lose it.",
                    interest=own.display_name, list=mailing_list.display_name, audience=own.audience_id.name,
                ))
            uses = [self.env._("the subscription list of the audience %s", a.name) for a in audiences]
            uses += [self.env._("the interest “%(interest)s” of the audience %(audience)s",
                                interest=i.display_name, audience=i.audience_id.name) for i in interests]
            raise ValidationError(self.env._(
                "The list “%(list)s” is mapped twice: as %(uses)s. A list can be mapped once, as one "
                "audience's subscription list or as one interest, across all audiences: choose another "
                "list, or create a new one.",
                list=mailing_list.display_name, uses=self.env._(" and as ").join(uses),
            ))
