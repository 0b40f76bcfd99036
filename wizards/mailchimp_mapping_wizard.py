from odoo import api, fields, models
from odoo.exceptions import UserError

from ..models.mailchimp_audience import TRUST_OVERRIDE


class MailchimpMappingWizard(models.TransientModel):
    """Asks which side to trust for the lists newly mapped on an audience
    that synced before.  Until a person answers, the next full sync uses
    'Only add, never remove' (set when the mapping changed), so nobody is
    opted out because a list was newly mapped."""

    _name = "mailchimp.mapping.wizard"
    _description = "Mailchimp Mapping Change"

    audience_id = fields.Many2one("mailchimp.audience", required=True, ondelete="cascade", readonly=True)
    choice = fields.Selection(
        TRUST_OVERRIDE,
        string="For the Newly Mapped Lists",
        required=True,
        default="add",
        help="Used by the next sync (a full one) where the two sides disagree about the newly "
        "mapped lists; cleared when that sync completes.",
    )
    summary = fields.Text(string="Newly Mapped", compute="_compute_summary")

    @api.depends("audience_id")
    def _compute_summary(self):
        for wizard in self:
            audience = wizard.audience_id
            lines = []
            if audience.mapping_review_pending:
                lines.append(self.env._("Subscription list: %s", audience.mailing_list_id.display_name))
            for interest in audience.interest_ids.filtered("mapping_review_pending"):
                lines.append(self.env._("Interest %(interest)s: %(list)s", interest=interest.display_name,
                                        list=interest.mailing_list_id.display_name))
            wizard.summary = "\n".join(lines) or self.env._("No mapping change waits for a choice.")

    def action_apply(self):
        """Store the choice as the trust override of each newly mapped list
        (for the next full sync only) and end the review."""
        self.ensure_one()
        audience = self.audience_id
        if audience.current_run_id:
            raise UserError(self.env._(
                "The sync of %s has already started with the choice in place: it can no longer change "
                "for this sync. Once it finishes, set a trust override on the audience or the interest "
                "and run a Full Resync if needed.", audience.name,
            ))
        vals = {"trust_override": self.choice, "mapping_review_pending": False}
        if audience.mapping_review_pending:
            audience.write(vals)
        audience.interest_ids.filtered("mapping_review_pending").write(vals)
        return {"type": "ir.actions.act_window_close"}
