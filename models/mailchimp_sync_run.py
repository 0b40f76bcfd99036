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
    # History (the graph and pivot of the run log): the audience as the run
    # left it, and what the run changed on each side.  Filled when the
    # cycle ends; snapshots aggregate with max, so a day with several runs
    # does not add its subscribers up.
    mc_subscribed_count = fields.Integer(
        string="Subscribed at Mailchimp", aggregator="max",
        help="Members subscribed or pending at Mailchimp when the run ended.",
    )
    odoo_subscribed_count = fields.Integer(
        string="Subscribed in Odoo", aggregator="max",
        help="Contacts subscribed to the subscription list when the run ended.",
    )
    odoo_opt_ins = fields.Integer(
        string="Opt-ins in Odoo",
        help="Contacts this run subscribed in Odoo because Mailchimp changed last.",
    )
    odoo_opt_outs = fields.Integer(
        string="Opt-outs in Odoo",
        help="Contacts this run opted out in Odoo because Mailchimp changed last.",
    )
    failing_count = fields.Integer(
        string="Rows Failing", aggregator="max",
        help="Members in the failed state when the run ended, this run's and earlier ones.",
    )
