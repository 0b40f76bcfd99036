import logging
from datetime import timedelta

from odoo import api, fields, models

from ..mailchimp_sync.exceptions import MailchimpError
from ..tools.settings import days_parameter

_logger = logging.getLogger(__name__)

# The stages of one cycle, in order (DESIGN.md §3); the orchestrator
# (models/mailchimp_sync.py) maps each to the model that owns its work.
SYNC_STAGES = [
    ("fetch", "Fetching from Mailchimp"),
    ("renames", "Following address changes"),
    ("remove_invalid", "Removing stale links"),
    ("match", "Matching contacts"),
    ("create", "Creating contacts"),
    ("odoo_only", "Adding Odoo-only contacts"),
    ("duplicates", "Removing duplicates"),
    ("odoo_changes", "Finding Odoo changes"),
    ("data", "Comparing data"),
    ("reconcile", "Reconciling"),
    ("submit", "Submitting batches"),
    ("done", "Finished"),
]
# After a failed step the cycle is tried again after these many minutes
# (the last one repeats): a Mailchimp outage is not hammered, and a fixed
# problem is picked up soon.
RETRY_MINUTES = (1, 5, 15, 60)
# Days a finished cycle is kept (system parameter; 0 keeps them all).
RUN_RETENTION_PARAM = "mailchimp_sync.run_retention_days"
DEFAULT_RUN_RETENTION_DAYS = 365


class MailchimpSyncRun(models.Model):
    """One sync cycle of an audience: the job record.

    The cycle's whole state lives here, as a queue job keeps its state on
    the job: the stage, where the stage resumes (cursor, fetch offset), the
    counters, and the last failure with the time of the next try.  The
    audience only points at its open run.
    """

    _name = "mailchimp.sync.run"
    _description = "Mailchimp Sync Run"
    _order = "id desc"

    audience_id = fields.Many2one(
        "mailchimp.audience", required=True, ondelete="cascade", index=True
    )
    started_at = fields.Datetime(default=fields.Datetime.now, required=True)
    ended_at = fields.Datetime()
    state = fields.Selection(
        [("running", "Running"), ("failing", "Failing, will retry"),
         ("confirm", "Waiting for confirmation"), ("done", "Done"), ("failed", "Failed"), ("aborted", "Aborted")],
        default="running",
        required=True,
        index=True,
    )
    full = fields.Boolean(string="Full Sync")
    stage = fields.Selection(SYNC_STAGES, default="fetch", required=True)
    cursor = fields.Integer(help="Where the current stage resumes (last row id done).")
    lanes_token = fields.Char(
        copy=False,
        help="The last reconcile or create step whose lanes' counts are on the run (their tallies are counted).",
    )
    fetch_offset = fields.Integer()
    fetch_since = fields.Datetime(help="Lower bound of the fetch (empty: every member).")
    odoo_since = fields.Datetime(
        help="Odoo-side changes stamped since then are looked at (empty: every row, on a full sync)."
    )
    odoo_horizon = fields.Datetime(
        help="When this cycle began to look at Odoo: the start of the oldest transaction then open. "
             "Every Odoo-side change it did not see is stamped at or after it, so the next cycle "
             "looks from here."
    )
    data_horizon = fields.Datetime(
        help="When this cycle began to look at Odoo data (names, addresses, tags, mapped fields), as "
             "the Odoo horizon: the next cycle looks at data written from here, so the contacts this "
             "cycle created before looking are not looked at again."
    )
    cache_was_empty = fields.Boolean(
        help="The audience had no cache row when this cycle began: each row's Odoo side was written by "
             "this cycle's stages, and only changes stamped since the cycle began can be newer."
    )
    data_config = fields.Char(string="Data Settings", help="The audience's data settings this cycle synced with.")
    fetch_status = fields.Char(
        help="Which listing the fetch pages: empty for Mailchimp's default listing, "
        "'archived' for the archived members it leaves out."
    )
    progress_done = fields.Integer(help="Units of the current stage done.")
    progress_total = fields.Integer(help="Units of the current stage in all (0: unknown).")
    progress_percent = fields.Float(compute="_compute_progress_percent")
    steps = fields.Integer(help="Scheduled-action steps this cycle took.")
    stage_timings = fields.Json(help="Seconds spent in each stage.")
    fetched = fields.Integer(help="Members read from Mailchimp.")
    fetch_pages = fields.Integer(
        string="Pages", help="Pages of members read from Mailchimp. Each page after the first of a listing "
        "reads the last members of the page before again, so that nobody is skipped if the listing "
        "shifts meanwhile.")
    fetched_changed = fields.Integer(string="Changed", help="Members whose data differed from the cache.")
    reconciled = fields.Integer(help="Cache rows reconciled.")
    created = fields.Integer(string="Contacts Created")
    renamed = fields.Integer(
        string="Addresses Changed",
        help="Members the fetch found under a new address (changed at Mailchimp): their contact moved to it.",
    )
    to_add = fields.Integer(string="To Add at Mailchimp")
    to_remove = fields.Integer(string="To Remove at Mailchimp")
    odoo_changes = fields.Integer(string="Odoo Changes Applied")
    failed = fields.Integer()
    updates_queued = fields.Integer()
    updates_carried = fields.Integer(
        string="Carried Over",
        help="Updates queued before this run began, which its batches send besides those it queued: "
             "subscribes asked again as pending after Mailchimp refused them, retries, webhooks' updates.",
    )
    batches_sent = fields.Integer()
    message = fields.Text()
    failure_count = fields.Integer(help="Consecutive failed steps of this cycle.")
    plan_opt_outs = fields.Integer(help="Opt-outs in Odoo the reconcile planned when it was checked.")
    plan_unsubscribes = fields.Integer(help="Unsubscribes at Mailchimp the reconcile planned.")
    plan_confirmed = fields.Boolean(help="A manager confirmed a plan larger than the safety valve allows.")
    next_retry_at = fields.Datetime(help="When a failing cycle is tried again.")
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

    @api.depends("progress_done", "progress_total")
    def _compute_progress_percent(self):
        for run in self:
            total = run.progress_total
            run.progress_percent = min(100.0, 100.0 * run.progress_done / total) if total else 0.0

    def _progress_text(self):
        """Where the cycle stands, in one sentence for the audience's form."""
        self.ensure_one()
        stages = dict(SYNC_STAGES)
        if self.state == "confirm":
            return self.message
        if self.state == "failing":
            return self.env._(
                "%(message)s Next try: %(when)s.", message=self.message or "",
                when=fields.Datetime.to_string(self.next_retry_at) if self.next_retry_at else "-",
            )
        if self.progress_total:
            # (No f-string inside _(): Babel's extractor, which Odoo's
            # export uses, fails on the whole file.)
            done, total = f"{self.progress_done:,}", f"{self.progress_total:,}"
            return self.env._(
                "%(stage)s: %(done)s of %(total)s", stage=stages.get(self.stage, self.stage),
                done=done, total=total,
            )
        return stages.get(self.stage, self.stage)

    # ------------------------------------------------------------------
    # The job's life
    # ------------------------------------------------------------------

    @api.model
    def _db_horizon(self):
        """The start of the oldest transaction open now (or now).  A change
        a later transaction cannot see yet belongs to a transaction open
        now; its stamp (and write date) is no earlier than that
        transaction's start.  Read it in a transaction before the one that
        looks: that one's snapshot is then taken after it.  Odoo's workers
        share one database role, so their transactions are visible here."""
        self.env.cr.execute(
            """SELECT LEAST(min(xact_start), now()) AT TIME ZONE 'UTC' FROM pg_stat_activity
                WHERE datname = current_database() AND xact_start IS NOT NULL"""
        )
        return self.env.cr.fetchone()[0]

    @api.model
    def _purge_finished(self, days=None):
        """Delete the cycles that ended more than ``days`` ago (Settings ›
        Email Marketing › Mailchimp, a year by default; 0 keeps them all):
        done, failed or aborted ones, but never an audience's current cycle
        nor its last one done, which the next cycle starts from.  Returns
        how many were deleted."""
        days = days_parameter(self.env, RUN_RETENTION_PARAM, DEFAULT_RUN_RETENTION_DAYS) if days is None else days
        if not days:
            return 0
        self.env.flush_all()
        self.env.cr.execute(
            """DELETE FROM mailchimp_sync_run r
                WHERE r.state IN ('done', 'failed', 'aborted')
                  AND COALESCE(r.ended_at, r.started_at) < %s
                  AND NOT EXISTS (SELECT 1 FROM mailchimp_audience a WHERE a.current_run_id = r.id)
                  AND r.id <> COALESCE((SELECT max(d.id) FROM mailchimp_sync_run d
                                         WHERE d.audience_id = r.audience_id AND d.state = 'done'), 0)""",
            (fields.Datetime.now() - timedelta(days=days),),
        )
        deleted = self.env.cr.rowcount
        self.invalidate_model()
        self.env["mailchimp.audience"].invalidate_model(["run_ids"])
        if deleted:
            _logger.info("Deleted %s Mailchimp sync runs older than %s days", deleted, days)
        return deleted

    @api.model
    def _last_done(self, audience):
        """The audience's last cycle that finished (empty: none yet)."""
        return self.search([("audience_id", "=", audience.id), ("state", "=", "done")], order="id desc", limit=1)

    @api.model
    def _open(self, audience):
        """Open a cycle of ``audience``: full on the first run, on request,
        or when a trust override asks for one; else from the last fetch
        minus an overlap."""
        audience.ensure_one()
        full = bool(audience.full_sync_requested or not audience.last_fetch_at or audience.trust_override
                    or audience.interest_ids.filtered("trust_override"))
        previous = self._last_done(audience)
        horizon = self._db_horizon()
        since = previous.odoo_horizon or (previous.started_at and previous.started_at - timedelta(minutes=15))
        self.env.cr.execute("SELECT EXISTS (SELECT 1 FROM mailchimp_member WHERE audience_id = %s)", (audience.id,))
        cache_was_empty = not self.env.cr.fetchone()[0]
        carried = self.env["mailchimp.update"].sudo().search_count(
            [("audience_id", "=", audience.id), ("state", "=", "queued")])
        self.env["mailchimp.reconcile.tally"]._drop_closed(audience)
        run = self.create({
            "audience_id": audience.id, "full": full, "stage_timings": {},
            "fetch_since": False if full else audience.last_fetch_at - timedelta(minutes=15),
            "odoo_horizon": horizon,
            "odoo_since": False if (full or not previous) else since,
            "cache_was_empty": cache_was_empty,
            "updates_carried": carried,
        })
        audience.write({"current_run_id": run.id, "last_sync_start": run.started_at})
        return run

    def _finish(self):
        """The cycle's last stage is done: the audience is idle again, and
        the run keeps a snapshot of it."""
        self.ensure_one()
        audience = self.audience_id
        vals = {"last_sync_end": fields.Datetime.now(), "current_run_id": False}
        if self.full:
            # Trust overrides apply to the one full sync they were set for.
            vals.update({"trust_override": False, "full_sync_requested": False})
            audience.interest_ids.filtered("trust_override").write({"trust_override": False})
        audience.write(vals)
        # The history's snapshot: the audience as this run left it.
        mc_subscribed, odoo_subscribed, failing = audience._snapshot_counts()
        self.write({"mc_subscribed_count": mc_subscribed, "odoo_subscribed_count": odoo_subscribed,
                    "failing_count": failing})
        self._close("done")

    @api.model
    def _abort(self, audience, reason):
        """Stop what ``audience``'s cycle has under way, for ``reason``:
        unsent updates are cancelled and unfinished batches stopped at
        Mailchimp; every row they concerned goes back in line for the next
        cycle, and the open run (if any) is closed as aborted.  The caller
        holds the audience's lock.  Returns (updates cancelled, batches
        stopped)."""
        audience.ensure_one()
        cancelled = stopped = 0
        batches = audience.batch_ids.filtered(lambda b: b.result_state != "done")
        claimed = batches.filtered(lambda b: b.submit_state == "claimed")
        Update = self.env["mailchimp.update"]
        # In SQL: a large audience may have a hundred thousand updates queued.
        self.env.cr.execute(
            """SELECT id, member_id, batch_id IS NOT NULL FROM mailchimp_update
                WHERE audience_id = %s AND (state = 'queued' OR batch_id = ANY(%s))""",
            (audience.id, claimed.ids),
        )
        rows = self.env.cr.fetchall()
        queued_ids = [update_id for update_id, _member, in_batch in rows if not in_batch]
        cancelled += len(Update._cancel([update_id for update_id, _member, in_batch in rows if in_batch], reason))
        claimed.write({"submit_state": "lost", "result_state": "done", "result_message": reason})
        running = batches.filtered(lambda b: b.mailchimp_batch_id and b.status not in ("finished", "expired"))
        client = audience.account_id._get_client() if running else None
        for batch in running:
            try:
                client.delete_batch(batch.mailchimp_batch_id)
            except MailchimpError as exc:
                _logger.info("Batch %s could not be deleted: %s", batch.mailchimp_batch_id, exc)
            stopped += 1
        running._abandon(reason)
        cancelled += len(Update._cancel(queued_ids, reason))
        self.env["mailchimp.member"]._back_in_line([member_id for _update, member_id, _in_batch in rows])
        if audience.current_run_id:
            audience.current_run_id._close("aborted", reason)
            audience.current_run_id = False
        return cancelled, stopped

    def _next_stage(self):
        names = [name for name, _label in SYNC_STAGES]
        return names[names.index(self.stage) + 1]

    def _advance(self):
        """The current stage finished: the next one starts from its beginning."""
        self.write({"stage": self._next_stage(), "cursor": 0, "progress_done": 0, "progress_total": 0})

    def _add_time(self, stage, seconds):
        timings = dict(self.stage_timings or {})
        timings[stage] = round(timings.get(stage, 0.0) + seconds, 3)
        self.stage_timings = timings

    def _record_failure(self, message):
        """A step failed: keep the cycle where it stands, say why in plain
        words and when it is tried again."""
        count = self.failure_count + 1
        minutes = RETRY_MINUTES[min(count, len(RETRY_MINUTES)) - 1]
        self.write({
            "state": "failing",
            "failure_count": count,
            "message": message,
            "next_retry_at": fields.Datetime.now() + timedelta(minutes=minutes),
        })
        return self.next_retry_at

    def _record_success(self):
        if self.state == "failing":
            self.write({"state": "running", "failure_count": 0, "next_retry_at": False, "message": False})
        elif self.next_retry_at:
            self.next_retry_at = False

    def _close(self, state, message=None):
        vals = {"state": state, "ended_at": fields.Datetime.now(), "next_retry_at": False}
        if message is not None:
            vals["message"] = message
        self.write(vals)
