import json
import logging
import tempfile
import threading
from datetime import datetime, timedelta

from psycopg2 import errors
from psycopg2.extras import execute_values

from odoo import api, fields, models
from odoo.tools import mute_logger

from ..mailchimp_sync.batches import iter_results_archive
from ..mailchimp_sync.exceptions import MailchimpError, MailchimpNotFoundError
from ..mailchimp_sync.members import merge_member, parse_mailchimp_datetime

_logger = logging.getLogger(__name__)

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

    # ------------------------------------------------------------------
    # Results
    # ------------------------------------------------------------------

    def _refresh_and_settle(self):
        """Ask Mailchimp how each batch stands (``GET /batches/{id}``: the
        URL is never taken from a webhook) and settle finished ones."""
        settled = 0
        for batch in self:
            if not batch.mailchimp_batch_id or batch.result_state == "done":
                continue
            # Lock before asking Mailchimp: when the webhook and the poller
            # (or two deliveries of the webhook) meet, the second skips the
            # batch at once instead of downloading the results again.
            if not batch._lock_for_settling():
                continue
            client = batch.account_id._get_client()
            try:
                info = client.get_batch(batch.mailchimp_batch_id)
            except MailchimpNotFoundError:
                batch._fail_unsettled("Mailchimp no longer knows this batch (expired).", status="expired")
                continue
            batch.write(
                {
                    "status": info.get("status") or batch.status,
                    "total_operations": info.get("total_operations") or batch.total_operations,
                    "finished_operations": info.get("finished_operations") or 0,
                    "errored_operations": info.get("errored_operations") or 0,
                    "completed_at": parse_mailchimp_datetime(info.get("completed_at")) or False,
                    "last_checked": fields.Datetime.now(),
                }
            )
            if info.get("status") == "finished":
                settled += batch._settle(client, info.get("response_body_url"))
        return settled

    def _lock_for_settling(self):
        """Take the batch's row lock; False if another worker holds it or it
        is already settled (each result is settled exactly once)."""
        try:
            with self.env.cr.savepoint(flush=False), mute_logger("odoo.sql_db"):
                self.env.cr.execute(
                    "SELECT result_state FROM mailchimp_batch WHERE id = %s FOR UPDATE SKIP LOCKED", (self.id,)
                )
                row = self.env.cr.fetchone()
        except errors.SerializationFailure:
            # Another worker settled it after our transaction began.
            return False
        return bool(row) and row[0] != "done"

    def _settle(self, client, url):
        """Download the results archive and settle every update of the batch.

        Success copies status and ``last_changed`` back into the cache (a
        field's change time moves only if its value changed); "Member In
        Compliance State" on a subscribe is queued again as ``pending``;
        any other error fails the row with Mailchimp's title and detail.
        Updates the archive does not mention fail too: nothing is left
        pending forever.
        """
        self.ensure_one()
        if not self._lock_for_settling():
            return 0
        self.env["mailchimp.sync"]._ensure_statistics()
        results = {}
        if url:
            with tempfile.SpooledTemporaryFile(max_size=16 << 20) as tmp:
                client.download(url, tmp)
                for result in iter_results_archive(tmp):
                    if result.update_id is not None:
                        results[result.update_id] = result
        cr = self.env.cr
        cr.execute(
            """SELECT u.id, u.member_id, u.kind, u.payload, m.subscriber_hash, m.mc_status,
                      m.mc_status_changed, m.mc_first_name, m.mc_last_name, m.mc_name_changed,
                      m.mc_interests, m.mc_interests_changed
                 FROM mailchimp_update u JOIN mailchimp_member m ON m.id = u.member_id
                WHERE u.batch_id = %s AND u.state = 'sent'""",
            (self.id,),
        )
        done, failed, requeue, member_vals, fail_rows = [], [], [], [], []
        for (update_id, member_id, kind, payload, _member_hash, *cached_values) in cr.fetchall():
            result = results.get(update_id)
            if result is None:
                failed.append((update_id, None, "No result", "Mailchimp returned no result for this operation."))
                fail_rows.append((member_id, "Mailchimp returned no result for the last update."))
                continue
            if result.ok:
                done.append((update_id, result.status_code))
                if kind == "member" and isinstance(result.body, dict) and result.body.get("status"):
                    cached = dict(zip(("mc_status", "mc_status_changed", "mc_first_name", "mc_last_name",
                                       "mc_name_changed", "mc_interests", "mc_interests_changed"),
                                      cached_values, strict=True))
                    member_vals.append((member_id, merge_member(cached, result.body)))
                continue
            failed.append((update_id, result.status_code, result.title, result.detail))
            if result.is_compliance_state and kind == "member" and (payload or {}).get("status") == "subscribed":
                requeue.append((member_id, dict(payload, status="pending")))
            else:
                fail_rows.append((member_id, result.error_text()))
        self._write_results(done, failed, requeue, member_vals, fail_rows)
        self.write({"result_state": "done", "result_message": f"{len(done)} done, {len(failed)} failed, "
                                                               f"{len(requeue)} queued again as pending"})
        return len(done) + len(failed)

    def _write_results(self, done, failed, requeue, member_vals, fail_rows):
        cr = self.env.cr
        now = fields.Datetime.now()
        if done:
            execute_values(
                cr._obj,
                """UPDATE mailchimp_update u SET state = 'done', status_code = v.code, done_at = v.at
                     FROM (VALUES %s) AS v(id, code, at) WHERE u.id = v.id""",
                [(update_id, code, now) for update_id, code in done],
            )
        if failed:
            execute_values(
                cr._obj,
                """UPDATE mailchimp_update u SET state = 'failed', status_code = v.code,
                          error_title = v.title, error_detail = v.detail
                     FROM (VALUES %s) AS v(id, code, title, detail) WHERE u.id = v.id""",
                failed,
            )
        if member_vals:
            rows = []
            for member_id, values in member_vals:
                rows.append({
                    "id": member_id,
                    **{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()},
                })
            cr.execute(
                """
                UPDATE mailchimp_member m SET
                    subscriber_hash = x.subscriber_hash, email = x.email, mc_status = x.mc_status,
                    mc_last_changed = x.mc_last_changed, mc_status_changed = x.mc_status_changed,
                    mc_first_name = x.mc_first_name, mc_last_name = x.mc_last_name,
                    mc_name_changed = x.mc_name_changed, mc_interests = x.mc_interests,
                    mc_interests_changed = x.mc_interests_changed,
                    mc_unique_email_id = COALESCE(x.mc_unique_email_id, m.mc_unique_email_id)
                  FROM jsonb_to_recordset(%s::jsonb) AS x(
                    id int, subscriber_hash varchar, email varchar, mc_status varchar,
                    mc_last_changed timestamp, mc_status_changed timestamp, mc_first_name varchar,
                    mc_last_name varchar, mc_name_changed timestamp, mc_interests jsonb,
                    mc_interests_changed jsonb, mc_unique_email_id varchar)
                 WHERE m.id = x.id
                """,
                (json.dumps(rows),),
            )
        if requeue:
            execute_values(
                cr._obj,
                """INSERT INTO mailchimp_update (member_id, audience_id, kind, payload, state,
                                                 create_uid, write_uid, create_date, write_date)
                   SELECT v.member_id, m.audience_id, 'member', v.payload::jsonb, 'queued', v.uid, v.uid,
                          now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
                     FROM (VALUES %s) AS v(member_id, payload, uid)
                     JOIN mailchimp_member m ON m.id = v.member_id""",
                [(member_id, json.dumps(payload), self.env.uid) for member_id, payload in requeue],
            )
        if fail_rows:
            execute_values(
                cr._obj,
                """UPDATE mailchimp_member m SET sync_status = 'fail', sync_error = v.reason
                     FROM (VALUES %s) AS v(id, reason) WHERE m.id = v.id""",
                fail_rows,
            )
        # Rows with nothing left in flight or queued are in sync.
        # Driven from this batch's own updates (at most 1,000), so the plan
        # stays small however many rows are live across the audience.
        cr.execute(
            """UPDATE mailchimp_member m SET sync_status = 'ok', sync_error = NULL
                 FROM (SELECT DISTINCT member_id FROM mailchimp_update WHERE batch_id = %s) b
                WHERE m.id = b.member_id AND m.sync_status = 'live'
                  AND NOT EXISTS (SELECT 1 FROM mailchimp_update u
                                   WHERE u.member_id = m.id AND u.state IN ('queued', 'sent'))""",
            (self.id,),
        )
        self.env["mailchimp.member"].invalidate_model()
        self.env["mailchimp.update"].invalidate_model()

    def _fail_unsettled(self, reason, status="aborted"):
        """Cancel what this batch still had in flight and fail its rows."""
        cr = self.env.cr
        for batch in self:
            cr.execute(
                """UPDATE mailchimp_update SET state = 'cancelled', error_detail = %s
                    WHERE batch_id = %s AND state IN ('sent', 'queued') RETURNING member_id""",
                (reason, batch.id),
            )
            member_ids = [r[0] for r in cr.fetchall()]
            if member_ids:
                cr.execute(
                    "UPDATE mailchimp_member SET sync_status = 'fail', sync_error = %s WHERE id = ANY(%s)",
                    (reason, member_ids),
                )
            batch.write({"status": status, "result_state": "done", "result_message": reason})
        self.env["mailchimp.member"].invalidate_model()
        self.env["mailchimp.update"].invalidate_model()

    @api.model
    def _cron_poll_batches(self, min_age_minutes=3):
        """Settle batches whose webhook did not come: a site Mailchimp cannot
        reach still completes its syncs."""
        threshold = fields.Datetime.now() - timedelta(minutes=min_age_minutes)
        batches = self.search(
            [
                ("result_state", "!=", "done"),
                ("mailchimp_batch_id", "!=", False),
                ("status", "not in", ("aborted", "expired")),
                ("submitted_at", "<=", threshold),
            ],
            order="id",
        )
        for batch in batches:
            try:
                with self.env.cr.savepoint():
                    batch._refresh_and_settle()
            except MailchimpError as exc:
                _logger.warning("Could not settle Mailchimp batch %s: %s", batch.mailchimp_batch_id, exc)
                continue
            except (errors.SerializationFailure, errors.LockNotAvailable):
                # A webhook settled it meanwhile (concurrent update of the row).
                _logger.info("Mailchimp batch %s is being settled elsewhere", batch.mailchimp_batch_id)
                self.env.invalidate_all()
                continue
            if not getattr(threading.current_thread(), "testing", False):
                # Each settled batch stands on its own: a later failure must
                # not undo it (the cron's own transaction would).
                self.env.cr.commit()  # pylint: disable=invalid-commit
        return True
