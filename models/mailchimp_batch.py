from odoo import api, fields, models

BATCH_STATUSES = [
    ("pending", "Pending"),
    ("preprocessing", "Preprocessing"),
    ("started", "Started"),
    ("finalizing", "Finalizing"),
    ("finished", "Finished"),
    ("aborted", "Aborted"),
    ("expired", "Expired"),
]


class MailchimpBatch(models.Model):
    """A batch of operations submitted to Mailchimp's Batch API."""

    _name = "mailchimp.batch"
    _description = "Mailchimp Batch"
    _order = "id desc"
    _rec_name = "mailchimp_batch_id"

    account_id = fields.Many2one(
        "mailchimp.account", required=True, ondelete="cascade", index=True
    )
    audience_id = fields.Many2one("mailchimp.audience", ondelete="cascade", index=True)
    mailchimp_batch_id = fields.Char(string="Mailchimp Batch ID", index=True, readonly=True)
    status = fields.Selection(BATCH_STATUSES, default="pending", required=True, index=True)
    total_operations = fields.Integer(readonly=True)
    finished_operations = fields.Integer(readonly=True)
    errored_operations = fields.Integer(readonly=True)
    submitted_at = fields.Datetime(readonly=True)
    completed_at = fields.Datetime(readonly=True)
    last_checked = fields.Datetime(readonly=True)
    result_state = fields.Selection(
        [("waiting", "Waiting"), ("processing", "Processing"), ("done", "Settled")],
        default="waiting",
        required=True,
        index=True,
        help="Whether the results of this batch were read and settled in the cache.",
    )
    result_message = fields.Text(readonly=True)
    update_ids = fields.One2many("mailchimp.update", "batch_id", string="Updates")
    update_count = fields.Integer(compute="_compute_update_count")

    @api.depends("update_ids")
    def _compute_update_count(self):
        counts = dict(
            self.env["mailchimp.update"]._read_group(
                [("batch_id", "in", self.ids)], ["batch_id"], ["__count"]
            )
        )
        for batch in self:
            batch.update_count = counts.get(batch, 0)
