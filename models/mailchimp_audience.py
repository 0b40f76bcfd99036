import logging
import time

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..mailchimp_sync.exceptions import MailchimpError

_logger = logging.getLogger(__name__)

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
    _inherit = ["mail.thread"]
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
        string="Time Budget (s)",
        default=300,
        tracking=True,
        help="Seconds one scheduled run may spend on this audience before it stops "
        "and resumes on the next run.",
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

    # Sync state: where the resumable state machine stands.
    sync_stage = fields.Selection(SYNC_STAGES, default="idle", required=True, copy=False)
    sync_progress = fields.Char(copy=False, readonly=True)
    stage_cursor = fields.Integer(
        copy=False, readonly=True, help="Where the current stage resumes (last row id done)."
    )
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

    merge_fields_text = fields.Text(
        string="Merge Fields at Mailchimp", compute="_compute_merge_fields_text"
    )

    # Live status for the screens (see _compute_sync_stats: one query per
    # table for the whole recordset, never one per member).
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
        help="Synced at least once, no cycle running, and nothing to add, remove, "
        "reconcile, send or settle. Failed rows are counted apart: they need a look.",
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

    @api.depends("merge_fields")
    def _compute_merge_fields_text(self):
        for audience in self:
            audience.merge_fields_text = "\n".join(
                f"*|{field.get('tag')}|*  {field.get('name') or ''} ({field.get('type') or '?'})"
                + (" *" if field.get("required") else "")
                for field in audience.merge_fields or []
                if isinstance(field, dict)
            )

    def _compute_sync_stats(self):
        stats = dict.fromkeys(self.ids, (0,) * 6)
        updates, batches = {}, {}
        if self.ids:
            self.env.cr.execute(
                """
                SELECT audience_id,
                       count(*) FILTER (WHERE mc_status IN ('subscribed', 'pending')),
                       count(*) FILTER (WHERE odoo_subscribed),
                       count(*) FILTER (WHERE odoo_subscribed AND sync_status != 'fail'
                                          AND coalesce(mc_status, '') NOT IN ('subscribed', 'pending')),
                       count(*) FILTER (WHERE NOT coalesce(odoo_subscribed, false) AND sync_status != 'fail'
                                          AND mc_status IN ('subscribed', 'pending')),
                       count(*) FILTER (WHERE sync_status IN ('todo', 'redo')),
                       count(*) FILTER (WHERE sync_status = 'live')
                  FROM mailchimp_member
                 WHERE audience_id = ANY(%s)
              GROUP BY audience_id
                """,
                (self.ids,),
            )
            stats.update({row[0]: row[1:] for row in self.env.cr.fetchall()})
            updates = dict(
                self.env["mailchimp.update"].sudo()._read_group(
                    [("audience_id", "in", self.ids), ("state", "=", "queued")], ["audience_id"], ["__count"]
                )
            )
            batches = dict(
                self.env["mailchimp.batch"].sudo()._read_group(
                    [("audience_id", "in", self.ids), ("result_state", "!=", "done")],
                    ["audience_id"],
                    ["__count"],
                )
            )
        for audience in self:
            mc_sub, odoo_sub, to_add, to_remove, todo, live = stats.get(audience.id, (0,) * 6)
            unsent = updates.get(audience._origin, 0)
            open_batches = batches.get(audience._origin, 0)
            audience.update(
                {
                    "mc_subscribed_count": mc_sub,
                    "odoo_subscribed_count": odoo_sub,
                    "to_add_count": to_add,
                    "to_remove_count": to_remove,
                    "todo_count": todo,
                    "live_count": live,
                    "unsent_count": unsent,
                    "open_batch_count": open_batches,
                    "in_sync": bool(
                        audience.last_sync_end
                        and audience.sync_stage == "idle"
                        and not (to_add or to_remove or todo or live or unsent or open_batches)
                    ),
                }
            )

    def _update_interests(self, remote_interests):
        """Create or rename this audience's interests from Mailchimp's list
        (dicts with id, name, category_id, category_title); remove those
        Mailchimp no longer has. Mappings are kept."""
        self.ensure_one()
        Interest = self.env["mailchimp.interest"]
        known = {i.mailchimp_interest_id: i for i in self.interest_ids}
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
                Interest.create(dict(vals, audience_id=self.id, mailchimp_interest_id=remote["id"]))
        if known:
            Interest.browse([i.id for i in known.values()]).unlink()

    # ------------------------------------------------------------------
    # Screens: what needs attention
    # ------------------------------------------------------------------

    def _action_members(self, name, domain, context=None):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("mailchimp_sync.mailchimp_member_action")
        action.update(
            name=name,
            domain=[("audience_id", "=", self.id), *domain],
            context=dict(context or {}, default_audience_id=self.id),
        )
        return action

    def action_view_members(self):
        return self._action_members(self.env._("Members of %s", self.name), [])

    def action_view_failed(self):
        return self._action_members(
            self.env._("Failed rows of %s", self.name), [("sync_status", "=", "fail")]
        )

    def action_view_todo(self):
        return self._action_members(
            self.env._("Rows to reconcile in %s", self.name), [("sync_status", "in", ("todo", "redo"))]
        )

    def action_view_live(self):
        return self._action_members(
            self.env._("Rows in flight in %s", self.name), [("sync_status", "=", "live")]
        )

    def action_view_to_add(self):
        return self._action_members(
            self.env._("To add at Mailchimp in %s", self.name),
            [("odoo_subscribed", "=", True), ("sync_status", "!=", "fail"),
             "|", ("mc_status", "=", False), ("mc_status", "not in", ("subscribed", "pending"))],
        )

    def action_view_to_remove(self):
        return self._action_members(
            self.env._("To remove at Mailchimp in %s", self.name),
            [("odoo_subscribed", "=", False), ("sync_status", "!=", "fail"),
             ("mc_status", "in", ("subscribed", "pending"))],
        )

    def action_view_unsent(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("mailchimp_sync.mailchimp_update_action")
        action.update(
            name=self.env._("Unsent updates of %s", self.name),
            domain=[("audience_id", "=", self.id), ("state", "=", "queued")],
            context={},
        )
        return action

    def action_view_batches(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("mailchimp_sync.mailchimp_batch_action")
        action.update(
            name=self.env._("Batches of %s", self.name),
            domain=[("audience_id", "=", self.id)],
            context={"search_default_open": 1},
        )
        return action

    def action_view_attention(self):
        """The dashboard card's click: open what needs attention first
        (failed rows, then unsent updates, then rows to do), else the form."""
        self.ensure_one()
        if self.failed_count:
            return self.action_view_failed()
        if self.unsent_count:
            return self.action_view_unsent()
        if self.todo_count:
            return self.action_view_todo()
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "views": [(False, "form")],
        }

    def _as_sync_operator(self):
        """Mailchimp users (marketing staff) may map lists and run syncs: the
        sync then writes its cache, batches and run log with elevated rights,
        once the user's own right to change the audience is checked."""
        self.check_access("write")
        return self.sudo()

    # ------------------------------------------------------------------
    # Actions and scheduled actions
    # ------------------------------------------------------------------

    def _sync(self, max_time=None, stop_after=None):
        """Run or resume one sync cycle; see ``mailchimp.sync._run``."""
        self.ensure_one()
        if not self.mailing_list_id:
            raise UserError(self.env._("Choose the subscription list of %s first.", self.name))
        return self.env["mailchimp.sync"]._run(self, max_time=max_time, stop_after=stop_after)

    def action_sync_now(self):
        """Sync this audience now, for at most a minute in this request; the
        scheduled action carries on if more is left."""
        for audience in self._as_sync_operator():
            try:
                result = audience._sync(max_time=min(audience.max_time or 60, 60))
            except MailchimpError as exc:
                raise UserError(self.env._("Mailchimp refused the sync: %s", exc.as_text())) from exc
            if result != "done":
                self.env.ref("mailchimp_sync.ir_cron_mailchimp_sync")._trigger()
        return True

    def action_full_resync(self):
        """Fetch every member again on the next cycle (not only recent changes)."""
        self._as_sync_operator().write({"full_sync_requested": True})
        return self.action_sync_now()

    def action_abort(self):
        """Stop the cycle in progress: delete unfinished batches at Mailchimp,
        cancel their updates and the unsent ones, fail their rows with the
        reason, and put the audience back to idle."""
        reason = self.env._("Sync aborted by %s.", self.env.user.name)
        for audience in self._as_sync_operator():
            unfinished = audience.batch_ids.filtered(
                lambda b: b.result_state != "done" and b.status not in ("finished", "aborted", "expired")
            )
            client = audience.account_id._get_client()
            for batch in unfinished.filtered("mailchimp_batch_id"):
                try:
                    client.delete_batch(batch.mailchimp_batch_id)
                except MailchimpError as exc:
                    _logger.info("Batch %s could not be deleted: %s", batch.mailchimp_batch_id, exc)
            unfinished._fail_unsettled(reason)
            queued = audience.env["mailchimp.update"].search(
                [("audience_id", "=", audience.id), ("state", "=", "queued")]
            )
            queued.member_id.write({"sync_status": "fail", "sync_error": reason})
            queued.write({"state": "cancelled", "error_detail": reason})
            if audience.current_run_id:
                audience.current_run_id.write(
                    {"state": "failed", "ended_at": fields.Datetime.now(), "message": reason}
                )
            audience.write(
                {"sync_stage": "idle", "stage_cursor": 0, "fetch_offset": 0, "current_run_id": False,
                 "sync_progress": reason}
            )
        return True

    def action_register_webhook(self):
        """Register (or repair) this audience's member webhook at Mailchimp."""
        for audience in self:
            self.env["mailchimp.webhook"]._register_all(audience.account_id, audience)
        return True

    @api.model
    def _cron_sync(self, max_time=300):
        """Scheduled action: sync every active audience within ``max_time``
        seconds in all, resuming unfinished cycles first; re-triggers itself
        when work is left."""
        deadline = time.monotonic() + max_time
        audiences = self.search(
            [("mailing_list_id", "!=", False)], order="sync_stage desc, last_sync_end asc, id"
        )
        cron = self.env.ref("mailchimp_sync.ir_cron_mailchimp_sync", raise_if_not_found=False)
        left = False
        for done, audience in enumerate(audiences):
            remaining = deadline - time.monotonic()
            if remaining <= 1:
                left = True
                break
            try:
                result = audience.with_context(mailchimp_cron=True)._sync(
                    max_time=min(remaining, audience.max_time or remaining)
                )
            except MailchimpError as exc:
                _logger.warning("Mailchimp sync of %s stopped: %s", audience.name, exc)
                result = "failed"
            left = left or result == "partial"
            self.env["ir.cron"]._notify_progress(done=done + 1, remaining=len(audiences) - done - 1)
        if left and cron:
            cron._trigger()
        return True
