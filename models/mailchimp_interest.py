from odoo import api, fields, models

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
    stale = fields.Boolean(
        string="Gone at Mailchimp",
        default=False,
        copy=False,
        readonly=True,
        tracking=True,
        help="Mailchimp no longer has this interest: it is not synced (nobody gains or loses "
        "it on either side) until it is back at Mailchimp. Map the list to another interest, "
        "or clear the mapping.",
    )
    mapping_review_pending = fields.Boolean(
        string="Trust Choice Pending",
        copy=False,
        readonly=True,
        help="This interest's list was newly mapped on an audience that had synced before: the "
        "next sync is a full one, and a person should confirm which side it trusts for this list.",
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

    @api.constrains("mailing_list_id", "audience_id")
    def _check_list_mapped_once(self):
        self.mailing_list_id._check_mailchimp_mapped_once()

    def write(self, vals):
        if "trust_override" in vals and not vals["trust_override"]:
            # The choice is made (or the full sync it was for is done).
            vals = dict(vals, mapping_review_pending=False)
        if "mailing_list_id" not in vals:
            return super().write(vals)
        new_list = vals["mailing_list_id"] or False
        changed = self.filtered(lambda i: i.mailing_list_id.id != new_list)
        changed.audience_id._check_mapping_change_allowed()
        res = super().write(vals)
        if new_list:
            changed.audience_id._mapping_changed(changed)
        return res

    # ------------------------------------------------------------------
    # Following Mailchimp's interests
    # ------------------------------------------------------------------

    @api.model
    def _update_from_mailchimp(self, audience, remote_interests):
        """Create or rename ``audience``'s interests from Mailchimp's list
        (dicts with id, name, category_id, category_title).  Of those
        Mailchimp no longer has, unmapped ones are removed and mapped ones
        kept, marked stale (not synced, shown on the form); one that comes
        back is synced again."""
        audience.ensure_one()
        known = {i.mailchimp_interest_id: i for i in audience.interest_ids}
        for remote in remote_interests:
            vals = {
                "name": remote.get("name") or remote["id"],
                "mailchimp_category_id": remote.get("category_id"),
                "category_name": remote.get("category_title"),
            }
            interest = known.pop(remote["id"], None)
            if interest:
                if any(interest[k] != v for k, v in vals.items()):
                    interest.write(vals)
            else:
                self.create(dict(vals, audience_id=audience.id, mailchimp_interest_id=remote["id"]))
        gone = self.browse([i.id for i in known.values()])
        gone.filtered(lambda i: not i.mailing_list_id).unlink()
        audience.interest_ids._mark_stale({remote["id"] for remote in remote_interests})

    @api.model
    def _refresh_stale(self, audience):
        """Ask Mailchimp which interests ``audience`` has now and mark the
        mapped ones it no longer has as stale (and those back as not stale),
        so this cycle's reconcile skips them: an interest deleted at
        Mailchimp is never sent with Odoo's value.  Called by the fetch
        stage at the start of each cycle; one call per interest category.
        Returns nothing; raises MailchimpError when Mailchimp does not answer."""
        audience.ensure_one()
        remote = audience.account_id._get_client().get_all_interests(audience.mailchimp_list_id)
        audience.interest_ids._mark_stale({interest["id"] for interest in remote})

    def _mark_stale(self, remote_ids):
        """Mark these interests missing from ``remote_ids`` (the ids
        Mailchimp has) stale, and the others not stale."""
        for interest in self:
            stale = interest.mailchimp_interest_id not in remote_ids
            if interest.stale != stale:
                interest.stale = stale
