from datetime import timedelta

from psycopg2 import errors

from odoo import api, fields, models
from odoo.exceptions import UserError

from .mailchimp_sync_run import SYNC_STAGES as RUN_STAGES

TRUST_OVERRIDE = [
    ("mailchimp", "Trust Mailchimp"),
    ("odoo", "Trust Odoo"),
    # A newly mapped list: whoever is on it on either side ends up on both.
    ("add", "Only add, never remove"),
]

SYNC_STAGES = (
    [("idle", "Idle")]
    + [stage for stage in RUN_STAGES if stage[0] != "done"]
    + [("failing", "Failing, will retry"), ("confirm", "Waiting for confirmation")]
)
# Steps of one cron call end well inside Odoo's default limit_time_real
# (120 s): the runner kills a worker that overruns it.
DEFAULT_STEP_SECONDS = 30


class MailchimpAudience(models.Model):
    _name = "mailchimp.audience"
    # The computes of the fields shown on screen, and the screens they
    # open, are in models/mailchimp_audience_dashboard.py.
    _inherit = ["mail.thread", "mailchimp.audience.dashboard"]
    _description = "Mailchimp Audience"
    _order = "name, id"

    name = fields.Char(required=True, tracking=True)
    active = fields.Boolean(default=True, tracking=True)
    account_id = fields.Many2one(
        "mailchimp.account", required=True, ondelete="cascade", index=True, tracking=True
    )
    mailchimp_list_id = fields.Char(
        string="Mailchimp Audience ID", required=True, copy=False, tracking=True
    )
    mailing_list_id = fields.Many2one(
        "mailing.list",
        string="Subscription List",
        ondelete="restrict",
        copy=False,
        tracking=True,
        help="Contacts subscribed to this list are the audience's subscribed members.",
    )
    interest_ids = fields.One2many("mailchimp.interest", "audience_id", string="Interests")
    merge_fields = fields.Json(
        readonly=True, copy=False, help="Merge fields as last fetched from Mailchimp."
    )
    merge_field_ids = fields.One2many(
        "mailchimp.merge.field", "audience_id", string="Merge Field Mappings",
        default=lambda self: self.env["mailchimp.merge.field"]._default_mapping_commands(),
        help="Which Odoo field each Mailchimp merge field is kept in sync with, and which way.",
    )
    tag_prefix = fields.Char(
        tracking=True,
        help="Only tags whose name starts with this text sync, both ways (e.g. 'MC: '). "
        "Empty: every tag of the contact and of the member syncs.",
    )
    update_partners = fields.Boolean(
        string="Partners Follow Contacts",
        tracking=True,
        help="When a synced mailing contact's name or email changes (at Mailchimp or in Odoo), its "
        "partner takes the new name and email too. Off: partners are never changed by the sync.",
    )
    trust_override = fields.Selection(
        TRUST_OVERRIDE,
        copy=False,
        tracking=True,
        help="For the next full sync only, let this side win every subscription "
        "conflict, whoever changed last. Cleared when that sync completes.",
    )
    double_optin = fields.Boolean(
        string="Double Opt-in",
        tracking=True,
        help="Subscribe people added in Odoo as 'pending': Mailchimp then asks them "
        "to confirm by email.",
    )
    blacklist_unsubscribes = fields.Boolean(
        string="Blacklisted Means Unsubscribed",
        default=True,
        tracking=True,
        help="Treat a blacklisted email in Odoo as not subscribed.",
    )
    cleaned_action = fields.Selection(
        [("bounce", "Mark as bouncing"), ("blacklist", "Blacklist the email")],
        default="bounce",
        required=True,
        tracking=True,
        help="What to do in Odoo when Mailchimp cleans an address (hard bounce or abuse).",
    )
    create_partners = fields.Boolean(
        tracking=True,
        help="Also create a contact (partner) for Mailchimp members that match nobody."
    )
    max_time = fields.Integer(
        string="Step Budget (s)",
        default=DEFAULT_STEP_SECONDS,
        tracking=True,
        help="Seconds one step of the scheduled action may work on this audience. Odoo "
        "commits after each step and calls again at once while work is left; keep it well "
        "under the server's limit_time_real (120 s by default).",
    )
    safety_share = fields.Float(
        string="Safety Valve (%)", default=5.0, tracking=True,
        help="A sync whose plan would opt out or unsubscribe more than this share of the audience's "
        "subscribed members (or more than the cap below, whichever is smaller) stops before changing "
        "anything and waits for a manager's confirmation.",
    )
    safety_max = fields.Integer(
        string="Safety Valve Cap", default=1000, tracking=True,
        help="The most people one sync may opt out or unsubscribe without a manager's confirmation.",
    )
    sync_interval_hours = fields.Integer(
        string="Sync Every (hours)", default=1, tracking=True,
        help="How often the scheduled action starts a new cycle of this audience.",
    )
    cron_id = fields.Many2one(
        "ir.cron", string="Scheduled Action", copy=False, readonly=True, ondelete="set null",
        help="This audience's own scheduled action: audiences sync in parallel, each on its own.",
    )
    member_ids = fields.One2many("mailchimp.member", "audience_id", string="Members")
    batch_ids = fields.One2many("mailchimp.batch", "audience_id", string="Batches")
    run_ids = fields.One2many("mailchimp.sync.run", "audience_id", string="Sync Runs")
    webhook_mailchimp_id = fields.Char(copy=False, readonly=True)
    webhook_state = fields.Selection(
        [("unknown", "Not checked"), ("ok", "Healthy"), ("missing", "Missing"), ("wrong", "Needs repair")],
        default="unknown",
        copy=False,
        readonly=True,
    )
    webhook_message = fields.Char(readonly=True, copy=False)

    # Where the cycle stands: the open run holds the job's state.
    current_run_id = fields.Many2one("mailchimp.sync.run", copy=False, readonly=True)
    sync_stage = fields.Selection(
        SYNC_STAGES, compute="_compute_sync_stage", store=True, string="Sync Status",
    )
    sync_progress = fields.Char(compute="_compute_sync_progress")
    progress_percent = fields.Float(related="current_run_id.progress_percent")
    next_retry_at = fields.Datetime(related="current_run_id.next_retry_at")
    last_fetch_at = fields.Datetime(
        copy=False,
        readonly=True,
        help="When the last completed fetch started: the next one asks Mailchimp "
        "for members changed since then (minus an overlap).",
    )
    full_sync_requested = fields.Boolean(copy=False)
    last_sync_start = fields.Datetime(copy=False, readonly=True)
    last_sync_end = fields.Datetime(copy=False, readonly=True)

    member_count = fields.Integer(compute="_compute_member_counts")
    failed_count = fields.Integer(compute="_compute_member_counts")

    merge_fields_text = fields.Text(
        string="Merge Fields at Mailchimp", compute="_compute_merge_fields_text"
    )

    # Live status for the screens (see _compute_sync_stats in
    # mailchimp_audience_dashboard.py: one query per table for the whole
    # recordset, never one per member).
    mc_subscribed_count = fields.Integer(
        string="Subscribed at Mailchimp", compute="_compute_sync_stats",
        help="Cached members whose Mailchimp status is subscribed or pending.",
    )
    odoo_subscribed_count = fields.Integer(
        string="Subscribed in Odoo", compute="_compute_sync_stats",
        help="Cached rows whose contact is subscribed to the subscription list.",
    )
    to_add_count = fields.Integer(
        string="To Add", compute="_compute_sync_stats",
        help="Subscribed in Odoo but not at Mailchimp (failed rows excluded).",
    )
    to_remove_count = fields.Integer(
        string="To Remove", compute="_compute_sync_stats",
        help="Subscribed at Mailchimp but not in Odoo (failed rows excluded).",
    )
    todo_count = fields.Integer(
        string="To Do", compute="_compute_sync_stats", help="Rows the next sync reconciles."
    )
    live_count = fields.Integer(
        string="In Flight", compute="_compute_sync_stats",
        help="Rows with updates sent to Mailchimp whose results are not settled yet.",
    )
    unsent_count = fields.Integer(
        string="Unsent Updates", compute="_compute_sync_stats",
        help="Updates queued for Mailchimp and not yet submitted in a batch.",
    )
    open_batch_count = fields.Integer(
        string="Open Batches", compute="_compute_sync_stats",
        help="Batches whose results are not settled yet.",
    )
    in_sync = fields.Boolean(
        compute="_compute_sync_stats",
        help="Synced at least once, no cycle running, no failed rows, as many subscribed on "
        "both sides, and nothing to add, remove, reconcile, send or settle.",
    )
    needs_attention = fields.Boolean(
        compute="_compute_sync_stats",
        help="Rows failed, or the two sides do not count the same subscribed members: "
        "someone should look before trusting the figures.",
    )
    mapping_review_pending = fields.Boolean(
        string="Trust Choice Pending",
        copy=False,
        readonly=True,
        help="The subscription list was newly mapped on an audience that had synced before: "
        "the next sync is a full one, and a person should confirm which side it trusts.",
    )
    mapping_review_needed = fields.Boolean(
        compute="_compute_mapping_review_needed",
        help="A newly mapped list (the subscription list or an interest's) waits for a person "
        "to confirm which side the next full sync trusts.",
    )
    stale_interest_names = fields.Char(
        compute="_compute_stale_interest_names",
        help="Mapped interests Mailchimp no longer has: they are not synced.",
    )

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

    # ------------------------------------------------------------------
    # Mapping: each list mapped once, and a change is a data change
    # ------------------------------------------------------------------

    @api.constrains("mailing_list_id")
    def _check_list_mapped_once(self):
        self.mailing_list_id._check_mailchimp_mapped_once()

    def _check_mapping_change_allowed(self):
        """A cycle reads the mapping from its first stage to its last: a
        change in between would reconcile half of the rows against one
        list and half against another."""
        running = self.filtered("current_run_id")
        if running:
            raise UserError(self.env._(
                "A sync of %s is running: its mapping cannot change now. Wait for the sync to finish "
                "(or abort it), then change the list.", running[0].name,
            ))

    def _mapping_changed(self, interests=None):
        """A list was newly mapped (as the subscription list, or as the list
        of ``interests``) on these audiences.  On an audience that synced
        before, the next sync is a full one and, until a person chooses in
        the mapping wizard, trusts neither side to remove anyone for the
        newly mapped list ('Only add, never remove'): nobody is opted out
        because a list was newly mapped."""
        synced = self.filtered(lambda a: a.last_fetch_at or a.last_sync_end)
        if not synced:
            return
        synced.write({"full_sync_requested": True})
        if interests is None:
            synced.write({"trust_override": "add", "mapping_review_pending": True})
        else:
            interests.filtered(lambda i: i.audience_id in synced).write(
                {"trust_override": "add", "mapping_review_pending": True}
            )

    def _as_sync_operator(self):
        """Mailchimp users (marketing staff) may map lists and run syncs: the
        sync then writes its cache, batches and run log with elevated rights,
        once the user's own right to change the audience is checked."""
        self.check_access("write")
        return self.sudo()

    # ------------------------------------------------------------------
    # Where the cycle stands (the open run holds the job's state)
    # ------------------------------------------------------------------

    @api.depends("current_run_id.stage", "current_run_id.state")
    def _compute_sync_stage(self):
        for audience in self:
            run = audience.current_run_id
            if not run:
                audience.sync_stage = "idle"
            elif run.state in ("failing", "confirm"):
                audience.sync_stage = run.state
            else:
                audience.sync_stage = run.stage if run.stage != "done" else "idle"

    # ------------------------------------------------------------------
    # The cycle: one scheduled action per audience
    # ------------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        audiences = super().create(vals_list)
        audiences._ensure_cron()
        return audiences

    def write(self, vals):
        if "trust_override" in vals and not vals["trust_override"]:
            # The choice is made (or the full sync it was for is done).
            vals = dict(vals, mapping_review_pending=False)
        remapped = self.browse()
        if "mailing_list_id" in vals:
            remapped = self.filtered(lambda a: a.mailing_list_id.id != (vals["mailing_list_id"] or False))
            remapped._check_mapping_change_allowed()
        res = super().write(vals)
        if remapped and vals["mailing_list_id"]:
            remapped._mapping_changed()
        if {"mailing_list_id", "active", "name", "sync_interval_hours"} & set(vals):
            self._ensure_cron()
        return res

    def unlink(self):
        crons = self.sudo().cron_id
        res = super().unlink()
        crons.unlink()
        return res

    def _ensure_cron(self):
        """Give each mapped, active audience its own scheduled action, as
        Odoo's own modules do for per-record jobs: audiences then sync in
        parallel on different cron workers, and Odoo's runner never runs one
        audience twice at once.  An unmapped audience's action is removed."""
        model = self.env["ir.model"]._get_id(self._name)
        root = self.env.ref("base.user_root")
        for audience in self.sudo():
            wanted = audience.active and audience.mailing_list_id
            if not wanted:
                if audience.cron_id:
                    cron = audience.cron_id
                    audience.cron_id = False
                    cron.unlink()
                continue
            vals = {
                "name": self.env._("Mailchimp: sync %s", audience.name),
                "interval_number": max(audience.sync_interval_hours, 1),
                "interval_type": "hours",
                "active": True,
            }
            if audience.cron_id:
                audience.cron_id.write(vals)
            else:
                audience.cron_id = self.env["ir.cron"].sudo().create({
                    **vals, "model_id": model, "state": "code", "user_id": root.id,
                    "code": f"model._cron_sync_audience({audience.id})",
                })

    def _lock_for_step(self):
        """The audience's row lock, taken without waiting: one worker per
        audience.  Abort takes the same lock, so it never resets a cycle a
        worker is still running.  False if another transaction holds it."""
        self.ensure_one()
        try:
            with self.env.cr.savepoint(flush=False):
                self.env.cr.execute(
                    "SELECT id FROM mailchimp_audience WHERE id = %s FOR NO KEY UPDATE NOWAIT", (self.id,),
                    log_exceptions=False,
                )
        except (errors.LockNotAvailable, errors.SerializationFailure):
            return False
        return True

    @api.model
    def _cron_sync_audience(self, audience_id):
        """Scheduled action of one audience: one bounded step per call.
        Reports progress to Odoo's runner, which commits and calls again at
        once while work is left.  A failure is recorded on this audience's
        run (not raised, so the runner never deactivates the action) and
        tried again later; other audiences have actions of their own."""
        audience = self.browse(audience_id).exists()
        Cron = self.env["ir.cron"]
        if not audience or not audience.active or not audience.mailing_list_id:
            Cron._notify_progress(done=0, remaining=0)
            return
        run = audience.current_run_id
        if run and run.next_retry_at and run.next_retry_at > fields.Datetime.now():
            audience.cron_id._trigger(at=run.next_retry_at)
            Cron._notify_progress(done=0, remaining=0)
            return
        result = self.env["mailchimp.sync"]._step(audience)
        if result == "partial":
            Cron._notify_progress(done=1, remaining=1)
            return
        if result in ("failed", "waiting") and audience.current_run_id.next_retry_at:
            audience.cron_id._trigger(at=audience.current_run_id.next_retry_at)
        elif result == "busy":
            audience.cron_id._trigger(at=fields.Datetime.now() + timedelta(seconds=30))
        Cron._notify_progress(done=1 if result == "done" else 0, remaining=0)

    def action_sync_now(self):
        """Start (or go on with) this audience's cycle in the background: its
        scheduled action is triggered, and the form shows the progress."""
        for audience in self._as_sync_operator():
            if not audience.mailing_list_id:
                raise UserError(self.env._("Choose the subscription list of %s first.", audience.name))
            audience._ensure_cron()
            audience.cron_id._trigger()
        return self._notify_started(
            self.env._("The sync runs in the background, and this form shows its progress as it goes."),
            self.env._("Sync started"),
        )

    def action_confirm_plan(self):
        """A manager confirms a plan the safety valve stopped: the cycle goes
        on from where it stopped, applying it."""
        self.check_access("write")
        if not self.env.user.has_group("mailchimp_sync.group_mailchimp_manager"):
            raise UserError(self.env._("Only a Mailchimp manager may confirm a plan the safety valve stopped."))
        for audience in self.sudo():
            run = audience.current_run_id
            if run.state != "confirm":
                continue
            run.write({"state": "running", "plan_confirmed": True})
            audience.cron_id._trigger()
        return self._notify(self.env._("Confirmed: the sync goes on and applies the plan."),
                            self.env._("Plan confirmed"), "warning")

    def action_full_resync(self):
        """Fetch every member again on the next cycle (not only recent changes)."""
        self._as_sync_operator().write({"full_sync_requested": True})
        self.action_sync_now()
        return self._notify_started(
            self.env._("Every member is fetched from Mailchimp again, not only recent changes. The sync "
                       "runs in the background, and this form shows its progress as it goes."),
            self.env._("Full resync started"),
        )

    def action_abort(self):
        """Stop the cycle in progress.  Refused while a worker runs a step
        (the audience is locked): nothing is reset under its feet.  Unsent
        updates are cancelled and unfinished batches stopped at Mailchimp;
        every row they concerned goes back in line for the next cycle."""
        cancelled = stopped = 0
        for audience in self._as_sync_operator():
            if not audience._lock_for_step():
                raise UserError(self.env._(
                    "A sync step of %s is running right now. Try Abort again in a minute: "
                    "steps end within the audience's step budget.", audience.name))
            reason = self.env._("Sync aborted by %s.", self.env.user.name)
            run_cancelled, run_stopped = self.env["mailchimp.sync.run"]._abort(audience, reason)
            cancelled += run_cancelled
            stopped += run_stopped
        return self._notify(
            self.env._("%(cancelled)s unsent update(s) cancelled and %(stopped)s batch(es) stopped at "
                       "Mailchimp. Their rows are reconciled again by the next sync.",
                       cancelled=cancelled, stopped=stopped),
            self.env._("Sync aborted"), "warning",
        )

    def action_register_webhook(self):
        """Register (or repair) this audience's member webhook at Mailchimp."""
        healthy, broken = [], []
        for audience in self:
            states = self.env["mailchimp.webhook"]._register_all(audience.account_id, audience)
            (healthy if states.get(audience) == "ok" else broken).append(audience)
        if not broken:
            return self._notify(
                self.env._("Mailchimp now sends the member changes of %s to Odoo as they happen.",
                           ", ".join(a.name for a in healthy)),
                self.env._("Webhook registered"),
            )
        return self._notify(
            " ".join(self.env._("%(audience)s: %(problem)s", audience=a.name,
                                problem=a.webhook_message or self.env._("not registered."))
                     for a in broken)
            + " " + self.env._("The sync still works without webhooks, only later: changes made at "
                               "Mailchimp reach Odoo with the next scheduled sync."),
            self.env._("Webhook not registered"), "warning",
        )
