import json
import logging
import time
from datetime import timedelta

from psycopg2.extras import execute_values

from odoo import api, fields, models

from ..mailchimp_sync.merge_fields import EMAIL_TAKEN, DataProblem
from ..mailchimp_sync.reconcile import merge_superseded
from ..tools.settings import days_parameter
from ..tools.sql import int_array

# Why an unsent update was cancelled for a newer one of its row.
SUPERSEDED = "Superseded by a newer update"
# Days a settled update is kept (system parameter; 0 keeps them all).
RETENTION_PARAM = "mailchimp_sync.update_retention_days"
DEFAULT_RETENTION_DAYS = 30
# Updates one statement of the purge deletes; the cron call stops after
# PURGE_SECONDS and reports what is left, so Odoo's runner calls again.
PURGE_CHUNK = 20000
PURGE_SECONDS = 60
# What a sender reads of each update it sends (``u``), with its member
# (``m``): id, kind, the member's email and Mailchimp status, and a member
# update's body as the JSON text to send (see build_operation) or another
# kind's payload.
SEND_COLUMNS = """u.id, u.kind, m.email, m.mc_status,
    CASE WHEN u.kind = 'member'
         THEN (jsonb_build_object('email_address', m.email) || COALESCE(u.payload, '{}'))::text
    END,
    CASE WHEN u.kind <> 'member' THEN u.payload END"""
_logger = logging.getLogger(__name__)
UPDATE_STATES = [
    ("queued", "Queued"),
    ("sent", "Sent"),
    ("done", "Done"),
    ("failed", "Failed"),
    ("cancelled", "Cancelled"),
]


class MailchimpUpdate(models.Model):
    """A write queued for Mailchimp, sent as one operation of a batch.

    Every path that queues or cancels updates holds the row lock of their
    cache rows (``mailchimp.member._lock_rows``), so two writers never both
    see "nothing queued" for one member; a batch claims only updates still
    queued, with ``FOR UPDATE SKIP LOCKED``.
    """

    _name = "mailchimp.update"
    _description = "Queued Mailchimp Update"
    _order = "id desc"
    # Its times are its own (queued, sent, done): without who-and-when
    # columns each of the updates a first sync queues checks two foreign
    # keys fewer.
    _log_access = False

    member_id = fields.Many2one(
        "mailchimp.member", required=True, ondelete="cascade", index=True
    )
    audience_id = fields.Many2one(
        "mailchimp.audience", required=True, ondelete="cascade", index=True
    )
    email = fields.Char(related="member_id.email")
    kind = fields.Selection(
        [("member", "Member"), ("tags", "Tags")], default="member", required=True
    )
    payload = fields.Json(required=True)
    state = fields.Selection(UPDATE_STATES, default="queued", required=True)
    batch_id = fields.Many2one("mailchimp.batch", ondelete="set null", index="btree_not_null")
    status_code = fields.Integer(readonly=True)
    error_title = fields.Char(readonly=True)
    error_detail = fields.Text(readonly=True)
    queued_at = fields.Datetime(string="Queued On", readonly=True, default=fields.Datetime.now)
    sent_at = fields.Datetime(string="Sent On", readonly=True)
    done_at = fields.Datetime(readonly=True)

    def init(self):
        res = super().init()
        self.env.cr.execute(
            """
            -- Each state change of an update (queued, sent, done) writes its
            -- row: the partial indexes below serve the states looked up, and a
            -- plain index on the state would only cost one more write each.
            DROP INDEX IF EXISTS mailchimp_update__state_index;
            -- a batch claims queued updates in id order
            CREATE INDEX IF NOT EXISTS mailchimp_update_queued_idx
                ON mailchimp_update (audience_id, id) WHERE state = 'queued';
            -- a row's unsettled updates (superseding, settling)
            CREATE INDEX IF NOT EXISTS mailchimp_update_active_member_idx
                ON mailchimp_update (member_id) WHERE state IN ('queued', 'sent');
            -- Room on each page for the next version of its updates: the
            -- touch of an update a step claimed, when its batch is sent after
            -- the step's commit (mailchimp.batch._send), then stays on its
            -- page and writes no index entry (93,000 updates of a first sync
            -- sent so: claim and touch 4.2 s -> 3.0 s).
            ALTER TABLE mailchimp_update SET (fillfactor = 70);
            """
        )
        # Updates queued before the model kept its own times.
        self.env.cr.execute(
            """SELECT 1 FROM information_schema.columns
                WHERE table_name = 'mailchimp_update' AND column_name = 'create_date'"""
        )
        if self.env.cr.fetchone():
            self.env.cr.execute(
                """UPDATE mailchimp_update SET queued_at = create_date
                    WHERE queued_at IS NULL AND create_date IS NOT NULL"""
            )
        return res

    # ------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------

    def _unsent_for(self, member_ids):
        """{member id: [{id, kind, payload}]} of updates still queued, or
        claimed by a batch that has not started sending (both can still be
        replaced).  Callers hold the rows' locks."""
        self.env.cr.execute(
            """SELECT u.id, u.member_id, u.kind, u.payload
                 FROM mailchimp_update u
            LEFT JOIN mailchimp_batch b ON b.id = u.batch_id
                WHERE u.member_id = ANY(%s::int[])
                  AND (u.state = 'queued' OR (u.state = 'sent' AND b.submit_state = 'claimed'))""",
            (int_array(member_ids),),
        )
        result = {}
        for update_id, member_id, kind, payload in self.env.cr.fetchall():
            result.setdefault(member_id, []).append({"id": update_id, "kind": kind, "payload": payload or {}})
        return result

    def _in_flight_members(self, member_ids):
        """Rows with an update that Mailchimp may be applying (sent in a
        batch that left Odoo or may have): decided again once settled."""
        self.env.cr.execute(
            """SELECT DISTINCT u.member_id FROM mailchimp_update u
                 JOIN mailchimp_batch b ON b.id = u.batch_id
                WHERE u.state = 'sent' AND b.submit_state != 'claimed' AND u.member_id = ANY(%s::int[])""",
            (int_array(member_ids),),
        )
        return {r[0] for r in self.env.cr.fetchall()}

    # ------------------------------------------------------------------
    # Writing (under the rows' locks)
    # ------------------------------------------------------------------

    def _queue(self, audience, updates, unsent):
        """Insert ``updates`` [(member id, kind, payload)]; an unsent update
        of the same kind for the same row is superseded: cancelled, its
        data folded into the new one.  ``unsent`` is :meth:`_unsent_for` of
        the rows.  Returns how many updates were queued."""
        if not updates:
            return 0
        cancel, values = [], []
        for member_id, kind, new_payload in updates:
            payload = new_payload
            olds = [u for u in unsent.get(member_id, []) if u["kind"] == kind]
            if olds:
                cancel.extend(u["id"] for u in olds)
                payload = self._fold(kind, new_payload, [u["payload"] for u in olds])
            values.append({"member_id": member_id, "kind": kind, "payload": payload})
        if cancel:
            self._cancel(cancel, SUPERSEDED)
        # The chunk as one JSON document: one statement, and nothing for
        # psycopg2 to adapt value by value (a payload's JSON text each).
        self.env.cr.execute(
            """INSERT INTO mailchimp_update (member_id, audience_id, kind, payload, state, queued_at)
               SELECT v.member_id, %(aud)s, v.kind, v.payload, 'queued', now() AT TIME ZONE 'UTC'
                 FROM jsonb_to_recordset(%(values)s::jsonb) AS v(member_id int, kind varchar, payload jsonb)""",
            {"aud": audience.id, "values": json.dumps(values)},
        )
        self.invalidate_model()
        return len(values)

    def _cancel(self, update_ids, reason):
        """Cancel updates that have not left Odoo: queued ones, and those of a
        claimed batch not yet sending (its sender re-reads what is left)."""
        self.env.cr.execute(
            """UPDATE mailchimp_update u SET state = 'cancelled', error_detail = %s, batch_id = NULL
                WHERE u.id = ANY(%s)
                  AND (u.state = 'queued'
                       OR (u.state = 'sent' AND EXISTS (
                              SELECT 1 FROM mailchimp_batch b
                               WHERE b.id = u.batch_id AND b.submit_state = 'claimed')))
            RETURNING u.id""",
            (reason, list(update_ids)),
        )
        cancelled = [r[0] for r in self.env.cr.fetchall()]
        self.invalidate_model()
        return cancelled

    def _cancel_unsent_of(self, member_ids, reason):
        """Cancel every unsent update of these rows (their locks held)."""
        self.env.flush_all()  # what the caller wrote is read in SQL
        unsent = self._unsent_for(member_ids)
        return self._cancel([u["id"] for ups in unsent.values() for u in ups], reason)

    def _compensate_in_flight(self, audience, member_ids):
        """A member left at Mailchimp (unsubscribed) while a subscribe of
        ours was already on its way: the subscribe will still run there, so
        queue the unsubscribe that follows it.  Under the rows' locks."""
        self.env.cr.execute(
            """SELECT DISTINCT m.id FROM mailchimp_member m
                 JOIN mailchimp_update u ON u.member_id = m.id AND u.kind = 'member' AND u.state = 'sent'
                 JOIN mailchimp_batch b ON b.id = u.batch_id AND b.submit_state != 'claimed'
                WHERE m.id = ANY(%s) AND m.mc_status = 'unsubscribed' AND NOT m.odoo_subscribed
                  AND u.payload->>'status' IN ('subscribed', 'pending')
                  AND NOT EXISTS (SELECT 1 FROM mailchimp_update q
                                   WHERE q.member_id = m.id AND q.kind = 'member' AND q.state = 'queued')""",
            (list(member_ids),),
        )
        rows = [r[0] for r in self.env.cr.fetchall()]
        return self._queue(audience, [(row, "member", {"status": "unsubscribed"}) for row in rows], {})

    def _next_span(self, audience, limit, after_id):
        """(first id, last id) of the audience's next ``limit`` queued
        updates after ``after_id``, or None: the span a sender claims."""
        self.env.cr.execute(
            """SELECT min(id), max(id) FROM (
                   SELECT id FROM mailchimp_update
                    WHERE audience_id = %s AND state = 'queued' AND id > %s
                 ORDER BY id LIMIT %s) span""",
            (audience.id, after_id, limit),
        )
        first, last = self.env.cr.fetchone()
        return None if first is None else (first, last)

    def _claim(self, audience, batch, limit, after_id=0, to_send=False, up_to=None):
        """Give up to ``limit`` queued updates of the audience to ``batch``,
        in id order from ``after_id`` on.  Only updates still queued are
        taken, and one locked by a writer right now is left for the next
        batch.  The submit stage passes the last id it claimed: the index of
        queued updates keeps the entries of claimed ones until vacuum, and
        a scan from the start walks all of them for every batch; a sender
        claims up to ``up_to`` (see _next_span).  Returns [(update id,
        member id)], or with ``to_send`` the rows a sender builds the
        batch's operations from (:data:`SEND_COLUMNS`)."""
        # The rows are picked once (MATERIALIZED).  As a subquery, the
        # planner may run it again for each row of a nested loop (where its
        # statistics say the table is nearly empty); each run skips the rows
        # this statement already took and locks the next ones, and one batch
        # took every queued update (tests/test_housekeeping.py forces that plan).
        # A sender reads its members' addresses in the same statement.
        # A sender's claim is committed ``sending`` right before its POST:
        # the updates leave now (a step's claim is stamped when its batch
        # is sent, after the step's commit: see mailchimp.batch._send).
        members, returning, sent_at = (
            ("JOIN mailchimp_member m ON m.id = picked.member_id", SEND_COLUMNS,
             ", sent_at = now() AT TIME ZONE 'UTC'") if to_send
            else ("", "u.id, u.member_id", ""))
        self.env.cr.execute(
            f"""WITH picked AS MATERIALIZED (
                    SELECT id, member_id FROM mailchimp_update
                     WHERE audience_id = %(aud)s AND state = 'queued' AND id > %(after)s
                       AND (%(up_to)s::int IS NULL OR id <= %(up_to)s)
                  ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
                UPDATE mailchimp_update u SET state = 'sent', batch_id = %(batch)s{sent_at}
                  FROM picked {members}
                 WHERE u.id = picked.id
             RETURNING {returning}""",
            {"batch": batch.id, "aud": audience.id, "limit": limit, "after": after_id, "up_to": up_to},
        )
        claimed = self.env.cr.fetchall()
        self.invalidate_model()
        return claimed

    def _requeue(self, update_ids):
        """Put updates that certainly never reached Mailchimp back in line.
        One that a newer unsent update of the same row and kind replaced
        meanwhile (a webhook decided the row while it was on its way) is
        folded into that one instead: sent after it, it would undo it."""
        cr = self.env.cr
        cr.execute(
            """SELECT u.id, u.kind, u.payload, n.id, n.payload
                 FROM mailchimp_update u
                 JOIN LATERAL (
                        SELECT o.id, o.payload FROM mailchimp_update o
                     LEFT JOIN mailchimp_batch b ON b.id = o.batch_id
                         WHERE o.member_id = u.member_id AND o.kind = u.kind AND o.id > u.id
                           AND (o.state = 'queued' OR (o.state = 'sent' AND b.submit_state = 'claimed'))
                      ORDER BY o.id DESC LIMIT 1) n ON TRUE
                WHERE u.id = ANY(%s) AND u.state = 'sent'""",
            (list(update_ids),),
        )
        folded = cr.fetchall()
        if folded:
            execute_values(
                cr._obj,
                """UPDATE mailchimp_update u SET payload = v.payload::jsonb
                     FROM (VALUES %s) AS v(id, payload) WHERE u.id = v.id""",
                [(newer_id, json.dumps(self._fold(kind, newer_payload or {}, [old_payload or {}])))
                 for _old_id, kind, old_payload, newer_id, newer_payload in folded],
            )
            cr.execute(
                """UPDATE mailchimp_update SET state = 'cancelled', batch_id = NULL, error_detail = %s
                    WHERE id = ANY(%s)""",
                (SUPERSEDED, [row[0] for row in folded]),
            )
        cr.execute(
            "UPDATE mailchimp_update SET state = 'queued', batch_id = NULL WHERE id = ANY(%s) AND state = 'sent'",
            (list(update_ids),),
        )
        self.invalidate_model()

    @staticmethod
    def _fold(kind, new_payload, old_payloads):
        """The payload of an update that replaces older unsent ones."""
        if kind == "member":
            return merge_superseded(new_payload, old_payloads)
        merged = {t["name"]: t for old in old_payloads for t in old.get("tags", [])}
        merged.update({t["name"]: t for t in new_payload.get("tags", [])})
        return {"tags": list(merged.values())}

    def _settle_data(self, batch, results):
        """What ``batch``'s results mean for the rows' data, once settled:
        tags applied at Mailchimp join the cached member's tags; data
        Mailchimp refused (merge fields, tags) is no longer taken as agreed
        on, so the next decision does not read it as a change made at
        Mailchimp; and a rename refused because the new address is another
        member's says so."""
        cr = self.env.cr
        # Only tags and refused operations mean anything here: a batch is
        # mostly member updates that succeeded, and reading their payloads
        # and data cost more than the rest of settling them.
        cr.execute(
            """SELECT u.id, u.member_id, u.kind, u.payload, m.email, m.mc_tags, m.sent_data
                 FROM mailchimp_update u JOIN mailchimp_member m ON m.id = u.member_id
                WHERE u.batch_id = %s AND u.id = ANY(%s::int[]) AND (u.kind = 'tags' OR u.id = ANY(%s::int[]))
             ORDER BY u.id""",
            (batch.id, int_array(results), int_array(update_id for update_id, result in results.items()
                                                     if not result.ok)),
        )
        mc_tags, sent, reasons = {}, {}, []
        for update_id, member_id, kind, stored_payload, email, tags, sent_data in cr.fetchall():
            result, payload = results[update_id], stored_payload or {}
            if kind == "tags":
                changes = {t.get("name"): t.get("status") == "active" for t in payload.get("tags") or ()}
                if result.ok:
                    current = set(mc_tags.get(member_id, tags) or ())
                    mc_tags[member_id] = sorted((current | {n for n, on in changes.items() if on})
                                                - {n for n, on in changes.items() if not on})
                    continue
                data = sent.setdefault(member_id, dict(sent_data or {}))
                agreed = set(data.get("tags") or ())
                data["tags"] = sorted((agreed - {n for n, on in changes.items() if on})
                                      | {n for n, on in changes.items() if not on})
                continue
            if result.ok:
                continue
            if payload.get("merge_fields"):
                data = sent.setdefault(member_id, dict(sent_data or {}))
                data["merge_fields"] = {k: v for k, v in (data.get("merge_fields") or {}).items()
                                        if k not in payload["merge_fields"]}
            new_email = payload.get("email_address")
            renaming = new_email and email and new_email.lower() != email.lower()
            if renaming and result.status_code == 400 and result.title == "Member Exists":
                problem = DataProblem(EMAIL_TAKEN, "", new_email, {"email": new_email, "old": email})
                reasons.append((member_id, self.env["mailchimp.merge.field"]._describe_problems(
                    batch.audience_id, [problem])))
        if mc_tags:
            execute_values(
                cr._obj,
                """UPDATE mailchimp_member m SET mc_tags = v.tags::jsonb
                     FROM (VALUES %s) AS v(id, tags) WHERE m.id = v.id""",
                [(member_id, json.dumps(tags)) for member_id, tags in mc_tags.items()],
            )
        if sent:
            execute_values(
                cr._obj,
                """UPDATE mailchimp_member m SET sent_data = v.sent::jsonb
                     FROM (VALUES %s) AS v(id, sent) WHERE m.id = v.id""",
                [(member_id, json.dumps(data)) for member_id, data in sent.items()],
            )
        if reasons:
            execute_values(
                cr._obj,
                """UPDATE mailchimp_member m SET sync_error = v.reason
                     FROM (VALUES %s) AS v(id, reason) WHERE m.id = v.id""",
                reasons,
            )
        self.env["mailchimp.member"].invalidate_model()

    # ------------------------------------------------------------------
    # Housekeeping
    # ------------------------------------------------------------------

    @api.model
    def _retention_days(self):
        return days_parameter(self.env, RETENTION_PARAM, DEFAULT_RETENTION_DAYS)

    @api.model
    def _purge_settled(self, cutoff, limit=PURGE_CHUNK):
        """Delete up to ``limit`` settled updates (done, cancelled, failed)
        last touched before ``cutoff``.  A failed update of a row still
        failing stays: it tells why.  Updates still queued or sent are never
        touched, and one another worker holds is left for the next call.
        Returns how many were deleted."""
        # Picked once (MATERIALIZED), as a claim is: see _claim.
        self.env.cr.execute(
            """WITH doomed AS MATERIALIZED (
                   SELECT u.id FROM mailchimp_update u
                     JOIN mailchimp_member m ON m.id = u.member_id
                    WHERE u.state IN ('done', 'cancelled', 'failed')
                      AND COALESCE(u.done_at, u.sent_at, u.queued_at) < %(cutoff)s
                      AND NOT (u.state = 'failed' AND m.sync_status = 'fail')
                    LIMIT %(limit)s
                      FOR UPDATE OF u SKIP LOCKED)
               DELETE FROM mailchimp_update WHERE id IN (SELECT id FROM doomed)
                  AND state IN ('done', 'cancelled', 'failed')""",
            {"cutoff": cutoff, "limit": limit},
        )
        deleted = self.env.cr.rowcount
        self.invalidate_model()
        return deleted

    @api.model
    def _cron_purge_settled(self, days=None):
        """Scheduled action: delete settled updates older than the retention
        (Settings › Email Marketing › Mailchimp, 30 days by default; 0 keeps
        them all), and sync runs older than theirs.  A full sync of a large
        audience settles one update per member, so without it the table
        grows by an audience each time.  Bounded work per call: it reports
        what is left, and Odoo's runner calls again."""
        days = self._retention_days() if days is None else days
        Cron = self.env["ir.cron"]
        # The audiences' sync history has its own retention (a year by
        # default): a handful of rows a cycle, kept far longer.
        self.env["mailchimp.sync.run"]._purge_finished()
        if not days:
            Cron._notify_progress(done=0, remaining=0)
            return
        cutoff = fields.Datetime.now() - timedelta(days=days)
        deadline = time.monotonic() + PURGE_SECONDS
        done = 0
        while True:
            deleted = self._purge_settled(cutoff)
            done += deleted
            if deleted < PURGE_CHUNK:
                self.env["mailchimp.batch"]._purge_settled(cutoff)
                Cron._notify_progress(done=done, remaining=0)
                break
            if time.monotonic() >= deadline:
                Cron._notify_progress(done=done, remaining=1)
                break
        if done:
            _logger.info("Deleted %s settled Mailchimp updates older than %s days", done, days)
            self.env["mailchimp.sync"]._vacuum_if_bloated()
