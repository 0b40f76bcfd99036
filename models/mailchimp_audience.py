from odoo import api, fields, models

TRUST_OVERRIDE = [
    ("mailchimp", "Trust Mailchimp"),
    ("odoo", "Trust Odoo"),
]

SYNC_STAGES = [
    ("idle", "Idle"),
    ("fetch", "Fetching from Mailchimp"),
    ("remove_invalid", "Removing stale links"),
    ("match", "Matching contacts"),
    ("create", "Creating contacts"),
    ("odoo_only", "Adding Odoo-only contacts"),
    ("duplicates", "Removing duplicates"),
    ("odoo_changes", "Finding Odoo changes"),
    ("data", "Comparing data"),
    ("reconcile", "Reconciling"),
    ("submit", "Submitting batches"),
]


class MailchimpAudience(models.Model):
    _name = "mailchimp.audience"
    _description = "Mailchimp Audience"
    _order = "name, id"

    name = fields.Char(required=True)
    active = fields.Boolean(default=True)
    account_id = fields.Many2one(
        "mailchimp.account", required=True, ondelete="cascade", index=True
    )
    mailchimp_list_id = fields.Char(
        string="Mailchimp Audience ID", required=True, copy=False
    )
    mailing_list_id = fields.Many2one(
        "mailing.list",
        string="Subscription List",
        ondelete="restrict",
        copy=False,
        help="Contacts subscribed to this list are the audience's subscribed members.",
    )
    interest_ids = fields.One2many("mailchimp.interest", "audience_id", string="Interests")
    merge_fields = fields.Json(
        readonly=True, copy=False, help="Merge fields as last fetched from Mailchimp."
    )
    trust_override = fields.Selection(
        TRUST_OVERRIDE,
        copy=False,
        help="For the next full sync only, let this side win every subscription "
        "conflict, whoever changed last. Cleared when that sync completes.",
    )
    double_optin = fields.Boolean(
        string="Double Opt-in",
        help="Subscribe people added in Odoo as 'pending': Mailchimp then asks them "
        "to confirm by email.",
    )
    blacklist_unsubscribes = fields.Boolean(
        string="Blacklisted Means Unsubscribed",
        default=True,
        help="Treat a blacklisted email in Odoo as not subscribed.",
    )
    cleaned_action = fields.Selection(
        [("bounce", "Mark as bouncing"), ("blacklist", "Blacklist the email")],
        default="bounce",
        required=True,
        help="What to do in Odoo when Mailchimp cleans an address (hard bounce or abuse).",
    )
    create_partners = fields.Boolean(
        help="Also create a contact (partner) for Mailchimp members that match nobody."
    )
    max_time = fields.Integer(
        string="Time Budget (s)",
        default=300,
        help="Seconds one scheduled run may spend on this audience before it stops "
        "and resumes on the next run.",
    )
    member_ids = fields.One2many("mailchimp.member", "audience_id", string="Members")
    batch_ids = fields.One2many("mailchimp.batch", "audience_id", string="Batches")
    run_ids = fields.One2many("mailchimp.sync.run", "audience_id", string="Sync Runs")
    webhook_mailchimp_id = fields.Char(copy=False, readonly=True)

    # Sync state: where the resumable state machine stands.
    sync_stage = fields.Selection(SYNC_STAGES, default="idle", required=True, copy=False)
    sync_progress = fields.Char(copy=False, readonly=True)
    fetch_offset = fields.Integer(copy=False, readonly=True)
    fetch_since = fields.Datetime(
        copy=False, readonly=True, help="Lower bound of the fetch in progress (empty: full)."
    )
    fetch_started_at = fields.Datetime(copy=False, readonly=True)
    last_fetch_at = fields.Datetime(
        copy=False,
        readonly=True,
        help="When the last completed fetch started: the next one asks Mailchimp "
        "for members changed since then (minus an overlap).",
    )
    full_sync_requested = fields.Boolean(copy=False)
    last_sync_start = fields.Datetime(copy=False, readonly=True)
    last_sync_end = fields.Datetime(copy=False, readonly=True)
    current_run_id = fields.Many2one("mailchimp.sync.run", copy=False, readonly=True)

    member_count = fields.Integer(compute="_compute_member_counts")
    failed_count = fields.Integer(compute="_compute_member_counts")

    _sql_constraints = [
        (
            "mailchimp_list_uniq",
            "unique(account_id, mailchimp_list_id)",
            "This Mailchimp audience is already configured for this account.",
        ),
        (
            "mailing_list_uniq",
            "unique(mailing_list_id)",
            "A mailing list can be the subscription list of one audience only.",
        ),
    ]

    @api.depends("member_ids.sync_status")
    def _compute_member_counts(self):
        Member = self.env["mailchimp.member"]
        totals = dict(Member._read_group([("audience_id", "in", self.ids)], ["audience_id"], ["__count"]))
        fails = dict(
            Member._read_group(
                [("audience_id", "in", self.ids), ("sync_status", "=", "fail")],
                ["audience_id"],
                ["__count"],
            )
        )
        for audience in self:
            audience.member_count = totals.get(audience, 0)
            audience.failed_count = fails.get(audience, 0)
