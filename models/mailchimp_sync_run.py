from odoo import fields, models


class MailchimpSyncRun(models.Model):
    """The log of one sync cycle of an audience: stage timings and counts."""

    _name = "mailchimp.sync.run"
    _description = "Mailchimp Sync Run"
    _order = "id desc"

    audience_id = fields.Many2one(
        "mailchimp.audience", required=True, ondelete="cascade", index=True
    )
    started_at = fields.Datetime(default=fields.Datetime.now, required=True)
    ended_at = fields.Datetime()
    state = fields.Selection(
        [("running", "Running"), ("done", "Done"), ("failed", "Failed")],
        default="running",
        required=True,
    )
    full = fields.Boolean(string="Full Sync")
    stage_timings = fields.Json(help="Seconds spent in each stage.")
    fetched = fields.Integer(help="Members Mailchimp reported as changed.")
    reconciled = fields.Integer(help="Cache rows reconciled.")
    created = fields.Integer(string="Contacts Created")
    to_add = fields.Integer(string="To Add at Mailchimp")
    to_remove = fields.Integer(string="To Remove at Mailchimp")
    odoo_changes = fields.Integer(string="Odoo Changes Applied")
    failed = fields.Integer()
    updates_queued = fields.Integer()
    batches_sent = fields.Integer()
    message = fields.Text()
