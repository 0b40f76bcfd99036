"""The sync engine: one resumable cycle per audience (DESIGN.md §3).

Every bulk stage is set-based SQL over the cache table; the per-row
decisions come from the Odoo-free core (``mailchimp_sync.reconcile``).  A
cycle runs stage after stage until its time budget is spent, committing
after each unit of work (a page, a chunk, a batch), and the next call
resumes where it stopped.  A second worker cannot run the same audience: it
would need the row lock the first one holds on a cursor of its own.
"""

import json
import logging
import threading
import time
from datetime import datetime, timedelta

from psycopg2.extras import execute_values

from odoo import api, fields, models
from odoo.modules.registry import Registry
from odoo.tools import SQL

from ..mailchimp_sync.batches import MAX_OPERATIONS, build_operation
from ..mailchimp_sync.exceptions import MailchimpError
from ..mailchimp_sync.members import FETCH_FIELDS, format_mailchimp_datetime, merge_member
from ..mailchimp_sync.reconcile import (
    AudienceRules,
    InterestState,
    RowState,
    merge_superseded,
    reconcile_row,
    split_name,
)

_logger = logging.getLogger(__name__)

STAGES = [
    "fetch",
    "remove_invalid",
    "match",
    "create",
    "odoo_only",
    "duplicates",
    "odoo_changes",
    "data",
    "reconcile",
    "submit",
]
# Mailchimp's clock and ours differ and `since_last_changed` bounds are not
# documented as inclusive: every incremental fetch re-reads a window.
FETCH_OVERLAP = timedelta(minutes=15)
PAGE_OVERLAP = 10
CHUNK = 5000
CREATE_CHUNK = 5000


def _testing(env=None):
    """True inside Odoo's tests, where one transaction must stay open (also
    in the test server's request threads, where the registry is in test mode)."""
    if env is not None and env.registry.in_test_mode():
        return True
    return getattr(threading.current_thread(), "testing", False)


def _dt(value):
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


class _Tally:
    """Counters of a run, for work done outside a sync cycle (webhooks)."""

    created = fetched = reconciled = to_add = to_remove = odoo_changes = failed = updates_queued = 0
    batches_sent = 0


class BudgetSpent(Exception):
    """The stage stopped because its time budget is spent; it resumes later."""


class MailchimpSync(models.AbstractModel):
    _name = "mailchimp.sync"
    _description = "Mailchimp Sync Engine"

    def init(self):
        res = super().init()
        # The access paths of the bulk stages on the cache table: rows of an
        # audience by contact, by status in id order, and by email.
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS mailchimp_member_audience_contact_idx
                ON mailchimp_member (audience_id, contact_id);
            CREATE INDEX IF NOT EXISTS mailchimp_member_audience_status_idx
                ON mailchimp_member (audience_id, sync_status, id);
            CREATE INDEX IF NOT EXISTS mailchimp_member_audience_email_idx
                ON mailchimp_member (audience_id, lower(email));
            -- submit claims queued updates in id order, a batch at a time
            CREATE INDEX IF NOT EXISTS mailchimp_update_queued_idx
                ON mailchimp_update (audience_id, id) WHERE state = 'queued';
            -- a row's unsettled updates (superseding, settling)
            CREATE INDEX IF NOT EXISTS mailchimp_update_active_member_idx
                ON mailchimp_update (member_id) WHERE state IN ('queued', 'sent');
            """
        )
        return res

    # ------------------------------------------------------------------
    # Running
    # ------------------------------------------------------------------

    def _commit(self):
        """Commit between units of work.  Tests must keep their transaction
        open: there the work is only flushed and goes on in the same one."""
        if _testing(self.env):
            self.env.flush_all()
        else:
            self.env.cr.commit()  # pylint: disable=invalid-commit

    @api.model
    def _run(self, audience, max_time=None, stop_after=None):
        """Run (or resume) one sync cycle of ``audience``.

        :param max_time: seconds this call may spend (default: the audience's).
        :param stop_after: stop once this stage is done (tests, debugging).
        :returns: 'busy' if another worker holds the audience, 'done' when
            the cycle completed, 'partial' when the budget ran out first.
        """
        budget = max_time if max_time is not None else (audience.max_time or 300)
        deadline = time.monotonic() + max(budget, 0.001)
        lock_cr = self._lock_cursor()
        try:
            if not self.env["mailchimp.sync.lock"]._try_lock(
                lock_cr, audience.id, commit_insert=lock_cr is not self.env.cr
            ):
                _logger.info("Audience %s is being synced by another worker", audience.id)
                return "busy"
            return self._run_locked(audience, deadline, stop_after)
        finally:
            if lock_cr is not self.env.cr:
                lock_cr.rollback()
                lock_cr.close()

    def _lock_cursor(self):
        if _testing(self.env):
            # Tests run in one transaction: the lock is taken in it.
            return self.env.cr
        return Registry(self.env.cr.dbname).cursor()

    def _run_locked(self, audience, deadline, stop_after):
        if audience.sync_stage == "idle":
            self._start_cycle(audience)
            self._commit()
        run = audience.current_run_id
        while audience.sync_stage != "idle":
            stage = audience.sync_stage
            started = time.monotonic()
            try:
                finished = self._run_stage(stage, audience, run, deadline)
            except Exception as exc:
                self._record_failure(audience, run, stage, exc)
                raise
            timings = dict(run.stage_timings or {})
            timings[stage] = round(timings.get(stage, 0.0) + time.monotonic() - started, 3)
            run.stage_timings = timings
            if not finished:
                audience.sync_progress = f"{dict(audience._fields['sync_stage'].selection)[stage]}…"
                self._commit()
                return "partial"
            next_stage = STAGES[STAGES.index(stage) + 1] if stage != STAGES[-1] else "idle"
            audience.write({"sync_stage": next_stage, "stage_cursor": 0})
            if next_stage == "idle":
                self._finish_cycle(audience, run)
            self._commit()
            if stop_after == stage:
                return "partial"
            if time.monotonic() >= deadline and next_stage != "idle":
                return "partial"
        return "done"

    def _run_stage(self, stage, audience, run, deadline):
        """Run one stage.  Units of work commit as they finish; a failure
        rolls back only the unit in progress, and the stage resumes from
        the last committed unit on the next run.  (Tests never commit, so
        there a savepoint plays the part of that rollback.)"""
        method = getattr(self, f"_stage_{stage}")
        if _testing(self.env):
            with self.env.cr.savepoint():
                return self._call_stage(method, audience, run, deadline)
        try:
            return self._call_stage(method, audience, run, deadline)
        except Exception:
            self.env.cr.rollback()
            self.env.invalidate_all()
            raise

    @staticmethod
    def _call_stage(method, audience, run, deadline):
        """A spent budget ends the stage normally: what it did is kept."""
        try:
            return method(audience, run, deadline)
        except BudgetSpent:
            return False

    def _start_cycle(self, audience):
        now = fields.Datetime.now()
        full = bool(
            audience.full_sync_requested
            or not audience.last_fetch_at
            or audience.trust_override
            or audience.interest_ids.filtered("trust_override")
        )
        run = self.env["mailchimp.sync.run"].create(
            {"audience_id": audience.id, "full": full, "stage_timings": {}}
        )
        audience.write(
            {
                "sync_stage": "fetch",
                "stage_cursor": 0,
                "current_run_id": run.id,
                "last_sync_start": now,
                "fetch_offset": 0,
                "fetch_started_at": now,
                "fetch_since": False if full else audience.last_fetch_at - FETCH_OVERLAP,
            }
        )

    def _finish_cycle(self, audience, run):
        now = fields.Datetime.now()
        vals = {"last_sync_end": now, "sync_progress": False, "current_run_id": False}
        if run.full:
            # Trust overrides apply to the one full sync they were set for.
            vals.update({"trust_override": False, "full_sync_requested": False})
            audience.interest_ids.filtered("trust_override").write({"trust_override": False})
        audience.write(vals)
        # run.failed counts the rows this run failed; the audience's
        # failed_count shows all rows failing now.
        run.write({"state": "done", "ended_at": now})

    def _record_failure(self, audience, run, stage, exc):
        message = exc.as_text() if isinstance(exc, MailchimpError) else f"{type(exc).__name__}: {exc}"
        _logger.warning("Mailchimp sync of audience %s failed in stage %s: %s", audience.id, stage, message)
        try:
            run.write({"message": f"Stage {stage} failed: {message}"})
            audience.sync_progress = f"Stage {stage} failed; it is retried on the next run."
            self._commit()
        except Exception:  # pragma: no cover - the transaction itself may be broken
            _logger.exception("Could not record the failure of audience %s", audience.id)

    # Tables whose statistics drive the plans of the bulk stages.
    _STAT_TABLES = (
        "mailchimp_member", "mailing_contact", "mailing_subscription", "mail_blacklist",
        "mailchimp_list_removal", "res_partner", "mailchimp_update",
    )

    def _ensure_statistics(self, force=()):
        """ANALYZE the tables the bulk stages join when their statistics are
        missing or stale.  Bulk inserts (ours, or an import) leave the
        planner believing a table has a few rows, and a nested loop over
        100,000 rows then takes minutes instead of a second."""
        cr = self.env.cr
        cr.execute(
            """SELECT relname FROM pg_stat_user_tables
                WHERE relname = ANY(%s)
                  AND (relname = ANY(%s)
                       OR (last_analyze IS NULL AND last_autoanalyze IS NULL AND n_live_tup + n_mod_since_analyze > 500)
                       OR n_mod_since_analyze > 1000 + n_live_tup / 10)""",
            (list(self._STAT_TABLES), list(force)),
        )
        for (table,) in cr.fetchall():
            cr.execute(SQL("ANALYZE %s", SQL.identifier(table)))

    def _check_budget(self, deadline):
        if time.monotonic() >= deadline:
            raise BudgetSpent()

    # ------------------------------------------------------------------
    # 1. Fetch
    # ------------------------------------------------------------------

    def _stage_fetch(self, audience, run, deadline):
        client = audience.account_id._get_client()
        since = format_mailchimp_datetime(audience.fetch_since) if audience.fetch_since else None
        pages = client.iter_member_pages(
            audience.mailchimp_list_id,
            fields=FETCH_FIELDS,
            since_last_changed=since,
            offset=audience.fetch_offset,
            overlap=PAGE_OVERLAP,
        )
        for page in pages:
            fetched = self._merge_fetched(audience, page.members)
            audience.fetch_offset = page.next_offset
            run.fetched += fetched
            self._commit()
            if not page.is_last and time.monotonic() >= deadline:
                return False
        audience.write({"last_fetch_at": audience.fetch_started_at, "fetch_offset": 0})
        return True

    def _merge_fetched(self, audience, members):
        """Upsert one page of members into the cache (two statements)."""
        by_hash = {}
        for member in members:
            by_hash[member.get("id")] = member  # pages overlap: keep one
        if not by_hash:
            return 0
        cr = self.env.cr
        cr.execute(
            """SELECT subscriber_hash, mc_status, mc_status_changed, mc_first_name, mc_last_name,
                      mc_name_changed, mc_interests, mc_interests_changed, mc_last_changed, email
                 FROM mailchimp_member WHERE audience_id = %s AND subscriber_hash = ANY(%s)""",
            (audience.id, list(by_hash)),
        )
        cached = {row[0]: dict(zip(
            ("subscriber_hash", "mc_status", "mc_status_changed", "mc_first_name", "mc_last_name",
             "mc_name_changed", "mc_interests", "mc_interests_changed", "mc_last_changed", "email"),
            row, strict=True))
            for row in cr.fetchall()}
        records = []
        for member_hash, member in by_hash.items():
            old = cached.get(member_hash)
            values = merge_member(old, member)
            if old and all(old[k] == values[k] for k in
                           ("mc_last_changed", "mc_status", "email", "mc_first_name", "mc_last_name",
                            "mc_interests")):
                # Unchanged (typically the echo of our own update): no write.
                continue
            for key in ("mc_last_changed", "mc_status_changed", "mc_name_changed"):
                values[key] = values[key].isoformat() if values[key] else None
            records.append(values)
        cr.execute(
            """
            INSERT INTO mailchimp_member AS m (
                audience_id, subscriber_hash, email, mc_status, mc_last_changed, mc_status_changed,
                mc_first_name, mc_last_name, mc_name_changed, mc_interests, mc_interests_changed,
                mc_unique_email_id, sync_status, create_uid, write_uid, create_date, write_date)
            SELECT %(aud)s, x.subscriber_hash, x.email, x.mc_status, x.mc_last_changed,
                   x.mc_status_changed, x.mc_first_name, x.mc_last_name, x.mc_name_changed,
                   x.mc_interests, x.mc_interests_changed, x.mc_unique_email_id, 'todo',
                   %(uid)s, %(uid)s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
              FROM jsonb_to_recordset(%(rows)s::jsonb) AS x(
                subscriber_hash varchar, email varchar, mc_status varchar, mc_last_changed timestamp,
                mc_status_changed timestamp, mc_first_name varchar, mc_last_name varchar,
                mc_name_changed timestamp, mc_interests jsonb, mc_interests_changed jsonb,
                mc_unique_email_id varchar)
            ON CONFLICT (audience_id, subscriber_hash) DO UPDATE SET
                email = EXCLUDED.email,
                mc_status = EXCLUDED.mc_status,
                mc_last_changed = EXCLUDED.mc_last_changed,
                mc_status_changed = EXCLUDED.mc_status_changed,
                mc_first_name = EXCLUDED.mc_first_name,
                mc_last_name = EXCLUDED.mc_last_name,
                mc_name_changed = EXCLUDED.mc_name_changed,
                mc_interests = EXCLUDED.mc_interests,
                mc_interests_changed = EXCLUDED.mc_interests_changed,
                mc_unique_email_id = EXCLUDED.mc_unique_email_id,
                -- only a real change at Mailchimp makes the row work to do
                sync_status = CASE
                    WHEN m.mc_last_changed IS DISTINCT FROM EXCLUDED.mc_last_changed
                      OR m.mc_status IS DISTINCT FROM EXCLUDED.mc_status
                    THEN 'todo' ELSE m.sync_status END,
                write_date = EXCLUDED.write_date
            """,
            {"aud": audience.id, "uid": self.env.uid, "rows": json.dumps(records)},
        )
        return len(records)

    # ------------------------------------------------------------------
    # 2. Remove invalid links, 3. Match, 4. Create, 5. Odoo-only, 6. Duplicates
    # ------------------------------------------------------------------

    def _stage_remove_invalid(self, audience, run, deadline):
        # Links to deleted records are already NULL (ondelete set null);
        # rows left with neither side are dropped.
        self.env.cr.execute(
            """DELETE FROM mailchimp_member
                WHERE audience_id = %s AND mc_status IS NULL AND contact_id IS NULL""",
            (audience.id,),
        )
        return True

    def _stage_match(self, audience, run, deadline):
        self._ensure_statistics(force=("mailchimp_member",) if run.fetched > 1000 else ())
        self._match_contacts(audience)
        return True

    def _match_contacts(self, audience, member_ids=None):
        """Give rows without a contact their best contact (and partner)."""
        cr = self.env.cr
        # Ranked in one statement: the one owner of the email; else the
        # lowest id already on the list; else the lowest with any history
        # on it; else the lowest.  A contact deleted in Odoo is not matched
        # again unless Mailchimp changed the member after the deletion.
        cr.execute(
            """
            WITH cand AS (
                SELECT m.id AS member_id, c.id AS contact_id,
                       (s.id IS NOT NULL AND NOT COALESCE(s.opt_out, FALSE)) AS on_list,
                       (s.id IS NOT NULL OR r.id IS NOT NULL) AS has_history
                  FROM mailchimp_member m
                  JOIN mailing_contact c ON c.email_normalized = lower(m.email)
             LEFT JOIN mailing_subscription s ON s.contact_id = c.id AND s.list_id = %(list)s
             LEFT JOIN mailchimp_list_removal r ON r.contact_id = c.id AND r.list_id = %(list)s
                 WHERE m.audience_id = %(aud)s AND m.contact_id IS NULL
                   AND (m.odoo_deleted_at IS NULL OR m.mc_status_changed > m.odoo_deleted_at)
                   AND (%(ids)s::int[] IS NULL OR m.id = ANY(%(ids)s::int[]))
            ), best AS (
                SELECT DISTINCT ON (member_id) member_id, contact_id
                  FROM cand ORDER BY member_id, on_list DESC, has_history DESC, contact_id
            )
            UPDATE mailchimp_member m SET contact_id = best.contact_id, odoo_deleted_at = NULL
              FROM best WHERE m.id = best.member_id
            """,
            {"aud": audience.id, "list": audience.mailing_list_id.id, "ids": member_ids},
        )
        self._match_partners(audience)

    def _match_partners(self, audience):
        cr = self.env.cr
        cr.execute(
            """
            UPDATE mailchimp_member m SET partner_id = c.partner_id
              FROM mailing_contact c
             WHERE m.audience_id = %(aud)s AND m.contact_id = c.id AND c.partner_id IS NOT NULL
               AND m.partner_id IS DISTINCT FROM c.partner_id;
            WITH best AS (
                SELECT DISTINCT ON (m.id) m.id AS member_id, p.id AS partner_id
                  FROM mailchimp_member m
                  JOIN mailing_contact c ON c.id = m.contact_id
                  JOIN res_partner p ON p.email_normalized = c.email_normalized AND p.active
                 WHERE m.audience_id = %(aud)s AND m.partner_id IS NULL
              ORDER BY m.id, p.id
            )
            UPDATE mailchimp_member m SET partner_id = best.partner_id
              FROM best WHERE m.id = best.member_id;
            UPDATE mailing_contact c SET partner_id = m.partner_id
              FROM mailchimp_member m
             WHERE m.audience_id = %(aud)s AND m.contact_id = c.id AND c.partner_id IS NULL
               AND m.partner_id IS NOT NULL;
            """,
            {"aud": audience.id},
        )

    def _stage_create(self, audience, run, deadline):
        while True:
            created = self._create_contacts(audience)
            run.created += created
            self._commit()
            if created < CREATE_CHUNK:
                return True
            self._check_budget(deadline)

    def _create_contacts(self, audience, member_ids=None):
        """Create mailing contacts for members subscribed or pending at
        Mailchimp that match nobody (a chunk); return how many."""
        cr = self.env.cr
        cr.execute(
            """
            WITH src AS (
                SELECT id, email, lower(email) AS email_normalized,
                       NULLIF(mc_first_name, '') AS first_name, NULLIF(mc_last_name, '') AS last_name
                  FROM mailchimp_member
                 WHERE audience_id = %(aud)s AND contact_id IS NULL
                   AND mc_status IN ('subscribed', 'pending') AND email IS NOT NULL
                   AND (odoo_deleted_at IS NULL OR mc_status_changed > odoo_deleted_at)
                   AND (%(ids)s::int[] IS NULL OR id = ANY(%(ids)s::int[]))
              ORDER BY id LIMIT %(limit)s
            ), ins AS (
                INSERT INTO mailing_contact (name, first_name, last_name, email, email_normalized,
                                             message_bounce, create_uid, write_uid, create_date, write_date)
                SELECT COALESCE(NULLIF(concat_ws(' ', first_name, last_name), ''), email),
                       first_name, last_name, email, email_normalized, 0,
                       %(uid)s, %(uid)s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
                  FROM src
                RETURNING id, email_normalized
            )
            UPDATE mailchimp_member m SET contact_id = ins.id, odoo_deleted_at = NULL
              FROM ins
             WHERE m.audience_id = %(aud)s AND lower(m.email) = ins.email_normalized
               AND m.contact_id IS NULL
            RETURNING m.id
            """,
            {"aud": audience.id, "uid": self.env.uid, "limit": CREATE_CHUNK, "ids": member_ids},
        )
        created = cr.rowcount
        if audience.create_partners and created:
            self._create_partners(audience)
        self.env["mailing.contact"].invalidate_model()
        return created

    def _create_partners(self, audience):
        cr = self.env.cr
        self._match_partners(audience)
        cr.execute(
            """SELECT c.id, c.name, c.email FROM mailchimp_member m
                 JOIN mailing_contact c ON c.id = m.contact_id
                WHERE m.audience_id = %s AND m.partner_id IS NULL AND c.partner_id IS NULL""",
            (audience.id,),
        )
        rows = cr.fetchall()
        if not rows:
            return
        partners = self.env["res.partner"].create([{"name": name, "email": email} for _id, name, email in rows])
        self.env.flush_all()
        self._match_partners(audience)
        _logger.info("Created %s partners for audience %s", len(partners), audience.id)

    def _blacklist_clause(self, audience, alias="b"):
        return f"COALESCE({alias}.active, FALSE)" if audience.blacklist_unsubscribes else "FALSE"

    def _stage_odoo_only(self, audience, run, deadline):
        self._ensure_statistics(force=("mailchimp_member", "mailing_contact") if run.created > 1000 else ())
        self.env.cr.execute(
            f"""
            INSERT INTO mailchimp_member AS m (audience_id, contact_id, partner_id, email, subscriber_hash,
                                          sync_status, create_uid, write_uid, create_date, write_date)
            SELECT DISTINCT ON (c.email_normalized)
                   %(aud)s, c.id, c.partner_id, c.email_normalized, md5(c.email_normalized), 'todo',
                   %(uid)s, %(uid)s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
              FROM mailing_subscription s
              JOIN mailing_contact c ON c.id = s.contact_id
         LEFT JOIN mail_blacklist b ON b.email = c.email_normalized
             WHERE s.list_id = %(list)s AND NOT COALESCE(s.opt_out, FALSE)
               AND c.email_normalized IS NOT NULL AND NOT {self._blacklist_clause(audience)}
               AND NOT EXISTS (SELECT 1 FROM mailchimp_member o
                                WHERE o.audience_id = %(aud)s AND o.contact_id = c.id)
          ORDER BY c.email_normalized, c.id
            ON CONFLICT (audience_id, subscriber_hash) DO NOTHING
            """,
            {"aud": audience.id, "list": audience.mailing_list_id.id, "uid": self.env.uid},
        )
        return True

    def _stage_duplicates(self, audience, run, deadline):
        # A contact added in Odoo whose email then appeared at Mailchimp
        # independently: keep the row Mailchimp knows.  (Joined rather than
        # correlated: the candidates are few, the audience is large.)
        self.env.cr.execute(
            """
            DELETE FROM mailchimp_member d
             USING mailchimp_member o
             WHERE d.audience_id = %(aud)s AND d.mc_status IS NULL AND d.contact_id IS NOT NULL
               AND o.audience_id = %(aud)s AND o.contact_id = d.contact_id
               AND o.id <> d.id AND o.mc_status IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM mailchimp_update u WHERE u.member_id = d.id AND u.state = 'sent')
            """,
            {"aud": audience.id},
        )
        return True

    # ------------------------------------------------------------------
    # 7. Odoo changes
    # ------------------------------------------------------------------

    def _stage_odoo_changes(self, audience, run, deadline):
        self._ensure_statistics()
        self._refresh_odoo_state(audience)
        return True

    def _refresh_odoo_state(self, audience, member_ids=None, mark_todo=True):
        """Recompute the cached Odoo side (subscription and interest lists,
        with their change times) and mark rows whose Odoo side changed.

        A blacklisted email counts as not subscribed when the audience says
        so; entering or leaving the blacklist is then a change too.  A
        deleted contact is not subscribed since its deletion.
        """
        bl = self._blacklist_clause(audience)
        bl_time = "b.mailchimp_changed_at" if audience.blacklist_unsubscribes else "NULL::timestamp"
        where_ids = "AND m.id = ANY(%(ids)s)" if member_ids is not None else ""
        status = (
            "CASE WHEN m.sync_status IN ('ok', 'fail', 'live') THEN 'todo' ELSE m.sync_status END"
            if mark_todo else "m.sync_status"
        )
        self.env.cr.execute(
            f"""
            WITH st AS (
                SELECT m.id,
                       CASE WHEN m.contact_id IS NULL THEN FALSE
                            ELSE (s.id IS NOT NULL AND NOT COALESCE(s.opt_out, FALSE) AND NOT {bl})
                       END AS sub,
                       CASE WHEN m.contact_id IS NULL THEN m.odoo_deleted_at
                            ELSE GREATEST(s.mailchimp_changed_at, r.removed_at, {bl_time})
                       END AS changed,
                       COALESCE(iv.vals, '{{}}'::jsonb) AS ivals,
                       COALESCE(iv.times, '{{}}'::jsonb) AS itimes
                  FROM mailchimp_member m
             LEFT JOIN mailing_contact c ON c.id = m.contact_id
             LEFT JOIN mailing_subscription s ON s.contact_id = m.contact_id AND s.list_id = %(list)s
             LEFT JOIN mailchimp_list_removal r ON r.contact_id = m.contact_id AND r.list_id = %(list)s
             LEFT JOIN mail_blacklist b ON b.email = c.email_normalized
             LEFT JOIN LATERAL (
                    SELECT jsonb_object_agg(i.mailchimp_interest_id,
                                            s2.id IS NOT NULL AND NOT COALESCE(s2.opt_out, FALSE)) AS vals,
                           jsonb_object_agg(i.mailchimp_interest_id,
                                            GREATEST(s2.mailchimp_changed_at, r2.removed_at)) AS times
                      FROM mailchimp_interest i
                 LEFT JOIN mailing_subscription s2
                        ON s2.contact_id = m.contact_id AND s2.list_id = i.mailing_list_id
                 LEFT JOIN mailchimp_list_removal r2
                        ON r2.contact_id = m.contact_id AND r2.list_id = i.mailing_list_id
                     WHERE i.audience_id = %(aud)s AND i.mailing_list_id IS NOT NULL
                       AND m.contact_id IS NOT NULL
                ) iv ON TRUE
                 WHERE m.audience_id = %(aud)s {where_ids}
            )
            UPDATE mailchimp_member m
               SET odoo_subscribed = st.sub, odoo_changed = st.changed,
                   odoo_interests = st.ivals, odoo_interests_changed = st.itimes,
                   sync_status = {status}
              FROM st
             WHERE m.id = st.id
               AND (m.odoo_subscribed IS DISTINCT FROM st.sub
                    OR m.odoo_changed IS DISTINCT FROM st.changed
                    OR COALESCE(m.odoo_interests, '{{}}'::jsonb) IS DISTINCT FROM st.ivals
                    OR COALESCE(m.odoo_interests_changed, '{{}}'::jsonb) IS DISTINCT FROM st.itimes)
            """,
            {"aud": audience.id, "list": audience.mailing_list_id.id, "ids": member_ids},
        )
        return self.env.cr.rowcount

    # ------------------------------------------------------------------
    # 8. Data
    # ------------------------------------------------------------------

    def _stage_data(self, audience, run, deadline):
        """Mark rows whose names or tags changed on either side since the
        last sync.  Other addons extend :meth:`_mailchimp_extra_merge_fields`
        and may override this stage to mark rows of their own."""
        self.env.cr.execute(
            f"""
            UPDATE mailchimp_member m SET sync_status = 'todo'
              FROM mailing_contact c
             WHERE m.audience_id = %(aud)s AND m.contact_id = c.id AND m.sync_status = 'ok'
               AND m.mc_status IN ('subscribed', 'pending')
               AND (m.sent_data IS NULL
                    OR c.name IS DISTINCT FROM m.sent_data->>'odoo_name'
                    OR COALESCE(m.mc_first_name, '') IS DISTINCT FROM COALESCE(m.sent_data->'names'->>0, '')
                    OR COALESCE(m.mc_last_name, '') IS DISTINCT FROM COALESCE(m.sent_data->'names'->>1, '')
                    OR ({self._tags_sql('c.id')}) IS DISTINCT FROM COALESCE(m.sent_data->'tags', '[]'::jsonb))
            """,
            {"aud": audience.id},
        )
        return True

    def _tags_sql(self, contact_expr):
        return f"""SELECT COALESCE(jsonb_agg(t.name->>'en_US' ORDER BY t.name->>'en_US'), '[]'::jsonb)
                     FROM mailing_contact_res_partner_category_rel rel
                     JOIN res_partner_category t ON t.id = rel.res_partner_category_id
                    WHERE rel.mailing_contact_id = {contact_expr}"""

    @api.model
    def _mailchimp_extra_merge_fields(self, audience, contact_ids):
        """Extension point: return {contact_id: {MERGE_TAG: value}} of merge
        fields to keep in sync Odoo → Mailchimp, besides FNAME and LNAME.
        Only values that changed since the last sync are sent."""
        return {}

    # ------------------------------------------------------------------
    # 9. Reconcile
    # ------------------------------------------------------------------

    def _stage_reconcile(self, audience, run, deadline):
        if not audience.stage_cursor:
            started = time.monotonic()
            self._ensure_statistics()
            run.stage_timings = dict(run.stage_timings or {}, statistics=round(time.monotonic() - started, 3))
        while True:
            rows = self._load_todo_rows(audience, audience.stage_cursor)
            if not rows:
                return True
            self._reconcile_rows(audience, run, rows)
            audience.stage_cursor = rows[-1]["id"]
            self._commit()
            self._check_budget(deadline)

    def _load_todo_rows(self, audience, after_id=0, member_ids=None, limit=CHUNK):
        cr = self.env.cr
        where = "m.id = ANY(%(ids)s)" if member_ids is not None else "m.sync_status = 'todo' AND m.id > %(after)s"
        cr.execute(
            f"""
            SELECT m.id, m.email, m.mc_status, m.mc_status_changed, m.mc_first_name, m.mc_last_name,
                   m.mc_name_changed, m.mc_interests, m.mc_interests_changed, m.contact_id,
                   m.odoo_subscribed, m.odoo_changed, m.odoo_interests, m.odoo_interests_changed,
                   m.sent_data, c.name AS contact_name, c.first_name, c.last_name,
                   c.email_normalized AS contact_email, COALESCE(c.message_bounce, 0) AS bounce,
                   c.write_date AS contact_write_date, COALESCE(b.active, FALSE) AS blacklisted
              FROM mailchimp_member m
         LEFT JOIN mailing_contact c ON c.id = m.contact_id
         LEFT JOIN mail_blacklist b ON b.email = c.email_normalized
             WHERE m.audience_id = %(aud)s AND {where}
          ORDER BY m.id LIMIT %(limit)s
            """,
            {"aud": audience.id, "after": after_id, "ids": member_ids, "limit": limit},
        )
        rows = cr.dictfetchall()
        # Rows with an update in flight, in one query for the chunk: asked
        # row by row, PostgreSQL walks the state index, which the queued ->
        # sent -> done churn fills with dead entries (15 s per 2,000 rows
        # at 100k before autovacuum passes).
        cr.execute(
            "SELECT DISTINCT member_id FROM mailchimp_update WHERE state = 'sent' AND member_id = ANY(%s)",
            ([r["id"] for r in rows],),
        )
        in_flight = {r[0] for r in cr.fetchall()}
        # Per contact, the rows subscribed at Mailchimp (for the "same
        # contact, other email" rule) and the tags: one grouped query each
        # for the chunk rather than a subquery per row.
        contact_ids = list({r["contact_id"] for r in rows if r["contact_id"]})
        cr.execute(
            """SELECT contact_id, array_agg(id) FROM mailchimp_member
                WHERE audience_id = %s AND contact_id = ANY(%s) AND mc_status IN ('subscribed', 'pending')
             GROUP BY contact_id""",
            (audience.id, contact_ids),
        )
        subscribed_rows = dict(cr.fetchall())
        cr.execute(
            """SELECT rel.mailing_contact_id, array_agg(t.name->>'en_US' ORDER BY t.name->>'en_US')
                 FROM mailing_contact_res_partner_category_rel rel
                 JOIN res_partner_category t ON t.id = rel.res_partner_category_id
                WHERE rel.mailing_contact_id = ANY(%s)
             GROUP BY rel.mailing_contact_id""",
            (contact_ids,),
        )
        tags = dict(cr.fetchall())
        for row in rows:
            row["in_flight"] = row["id"] in in_flight
            contact_id = row["contact_id"]
            row["other_sub"] = any(i != row["id"] for i in subscribed_rows.get(contact_id, ()))
            row["tags"] = tags.get(contact_id, []) if contact_id else None
        return rows

    def _row_state(self, audience, row, interests, extra_fields):
        sent = row["sent_data"] or {}
        mc_interests = row["mc_interests"] or {}
        mc_times = row["mc_interests_changed"] or {}
        odoo_interests = row["odoo_interests"] or {}
        odoo_times = row["odoo_interests_changed"] or {}
        interest_states = {}
        for key, override in interests:
            interest_states[key] = InterestState(
                mc=mc_interests.get(key) if row["mc_status"] else None,
                mc_changed=_dt(mc_times.get(key)),
                odoo=bool(odoo_interests.get(key)),
                odoo_changed=_dt(odoo_times.get(key)),
                override=override,
            )
        if row["first_name"] or row["last_name"]:
            odoo_names = (row["first_name"] or "", row["last_name"] or "")
        else:
            odoo_names = split_name(row["contact_name"] if row["contact_name"] != row["contact_email"] else "")
        synced_names = tuple(sent["names"]) if sent.get("names") is not None else None
        return RowState(
            email=row["email"] or row["contact_email"],
            mc_status=row["mc_status"],
            mc_status_changed=row["mc_status_changed"],
            odoo_subscribed=row["odoo_subscribed"],
            odoo_changed=row["odoo_changed"],
            has_contact=bool(row["contact_id"]),
            blacklisted=row["blacklisted"],
            bouncing=row["bounce"] > 0,
            other_row_subscribed=row["other_sub"],
            interests=interest_states,
            odoo_names=odoo_names if row["contact_id"] else ("", ""),
            odoo_names_changed=row["contact_write_date"],
            mc_names=(row["mc_first_name"] or "", row["mc_last_name"] or ""),
            mc_names_changed=row["mc_name_changed"],
            synced_names=synced_names,
            odoo_tags=frozenset(row["tags"] or ()),
            synced_tags=frozenset(sent.get("tags") or ()),
            merge_fields=extra_fields.get(row["contact_id"], {}),
            synced_merge_fields=sent.get("merge_fields") or {},
        )

    @api.model
    def _sync_members(self, audience, member_ids):
        """Run one or a few cache rows through match, create, Odoo state and
        reconcile at once, as a webhook does; updates for Mailchimp are
        queued for the next submit.  Returns the counters."""
        tally = _Tally()
        self._match_contacts(audience, member_ids)
        tally.created = self._create_contacts(audience, member_ids)
        self._refresh_odoo_state(audience, member_ids)
        rows = self._load_todo_rows(audience, member_ids=member_ids)
        self._reconcile_rows(audience, tally, [r for r in rows if r["id"] in set(member_ids)])
        return tally

    def _reconcile_rows(self, audience, run, rows):
        """Decide every row of a chunk, then apply the decisions in bulk."""
        rows = [r for r in rows if not r["in_flight"]]  # settle first, then decide
        if not rows:
            return
        mapped = audience.interest_ids.filtered("mailing_list_id")
        interest_lists = {i.mailchimp_interest_id: i.mailing_list_id.id for i in mapped}
        # Plain tuples: read once per chunk, not through the ORM per row.
        interests = [(i.mailchimp_interest_id, i.trust_override or None) for i in mapped]
        rules = AudienceRules(trust_override=audience.trust_override or None, double_optin=audience.double_optin)
        extra = self._mailchimp_extra_merge_fields(audience, [r["contact_id"] for r in rows if r["contact_id"]])
        queued = self._queued_updates([r["id"] for r in rows])
        subscribe, unsubscribe, names, updates, row_vals = [], [], [], [], []
        # Counted here and written once: an ORM write per row would cost
        # more than the decision itself.
        to_add = to_remove = failed = 0
        for row in rows:
            state = self._row_state(audience, row, interests, extra)
            state.pending_cancelled = any(
                u["payload"].get("status") == "pending" for u in queued.get(row["id"], []) if u["kind"] == "member"
            )
            decision = reconcile_row(state, rules)
            contact_id = row["contact_id"]
            if decision.odoo_subscribe is True:
                subscribe.append((contact_id, audience.mailing_list_id.id))
            elif decision.odoo_subscribe is False:
                unsubscribe.append((contact_id, audience.mailing_list_id.id))
            for interest_id, value in decision.odoo_interests.items():
                (subscribe if value else unsubscribe).append((contact_id, interest_lists[interest_id]))
            if decision.odoo_names and contact_id:
                names.append((contact_id, *decision.odoo_names))
            body, tags = decision.mc_body, decision.tags
            if body and "email_address" in body and tags:
                # A member we create gets its tags in the same request: a
                # separate tags operation could run before the create.
                body["tags"] = [t["name"] for t in tags if t["status"] == "active"]
                tags = []
            if body:
                updates.append((row["id"], "member", body))
                subscribing = body.get("status") in ("subscribed", "pending")
                if subscribing and row["mc_status"] not in ("subscribed", "pending"):
                    to_add += 1
                elif body.get("status") == "unsubscribed":
                    to_remove += 1
            if tags:
                updates.append((row["id"], "tags", {"tags": tags}))
            if decision.status == "fail":
                failed += 1
            sent = dict(row["sent_data"] or {})
            if decision.status != "fail" and decision.final_subscribed:
                sent.update(
                    names=list(decision.synced_names or ("", "")),
                    tags=sorted(decision.synced_tags or ()),
                    merge_fields=decision.synced_merge_fields or {},
                    odoo_name=self._final_contact_name(row, decision),
                )
            row_vals.append((row["id"], decision.status, decision.reason, json.dumps(sent)))
        self._apply_odoo_subscriptions(audience, subscribe, unsubscribe)
        self._apply_odoo_names(names)
        queued_count = self._queue_updates(audience, updates, queued)
        run.reconciled += len(rows)
        run.to_add += to_add
        run.to_remove += to_remove
        run.failed += failed
        run.odoo_changes += len(subscribe) + len(unsubscribe)
        run.updates_queued += queued_count
        self._write_rows(row_vals)
        if subscribe or unsubscribe:
            # Our own writes are not Odoo-side changes to reconcile again.
            self._refresh_odoo_state(audience, [r["id"] for r in rows], mark_todo=False)
        # The rows and their updates were written in SQL.
        self.env["mailchimp.member"].invalidate_model()
        self.env["mailchimp.update"].invalidate_model()

    def _final_contact_name(self, row, decision):
        if decision.odoo_names:
            first, last = decision.odoo_names
            return " ".join(p for p in (first, last) if p) or row["contact_name"]
        return row["contact_name"]

    def _queued_updates(self, member_ids):
        self.env.cr.execute(
            "SELECT id, member_id, kind, payload FROM mailchimp_update WHERE member_id = ANY(%s) AND state = 'queued'",
            (member_ids,),
        )
        result = {}
        for update_id, member_id, kind, payload in self.env.cr.fetchall():
            result.setdefault(member_id, []).append({"id": update_id, "kind": kind, "payload": payload or {}})
        return result

    def _queue_updates(self, audience, updates, queued):
        """Insert new updates; an unsent update of the same kind for the same
        row is superseded (cancelled, its data folded into the new one)."""
        if not updates:
            return 0
        cancel, values = [], []
        for member_id, kind, new_payload in updates:
            payload = new_payload
            olds = [u for u in queued.get(member_id, []) if u["kind"] == kind]
            if olds:
                cancel.extend(u["id"] for u in olds)
                if kind == "member":
                    payload = merge_superseded(new_payload, [u["payload"] for u in olds])
                else:
                    merged = {t["name"]: t for u in olds for t in u["payload"].get("tags", [])}
                    merged.update({t["name"]: t for t in new_payload["tags"]})
                    payload = {"tags": list(merged.values())}
            values.append((member_id, audience.id, kind, json.dumps(payload), self.env.uid))
        cr = self.env.cr
        if cancel:
            cr.execute(
                "UPDATE mailchimp_update SET state = 'cancelled', error_detail = 'Superseded by a newer update' "
                "WHERE id = ANY(%s)",
                (cancel,),
            )
        execute_values(
            cr._obj,
            """INSERT INTO mailchimp_update (member_id, audience_id, kind, payload, state,
                                             create_uid, write_uid, create_date, write_date)
               SELECT v.member_id, v.audience_id, v.kind, v.payload::jsonb, 'queued', v.uid, v.uid,
                      now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
                 FROM (VALUES %s) AS v(member_id, audience_id, kind, payload, uid)""",
            values,
            page_size=1000,
        )
        return len(values)

    def _write_rows(self, row_vals):
        execute_values(
            self.env.cr._obj,
            """UPDATE mailchimp_member m
                  SET sync_status = v.status, sync_error = v.reason, sent_data = v.sent::jsonb,
                      last_synced = now() AT TIME ZONE 'UTC'
                 FROM (VALUES %s) AS v(id, status, reason, sent)
                WHERE m.id = v.id""",
            row_vals,
            page_size=1000,
        )

    def _apply_odoo_subscriptions(self, audience, subscribe, unsubscribe):
        """Apply Mailchimp's changes to Odoo memberships at once, with an
        opt-out reason that names Mailchimp and a note on each contact."""
        cr = self.env.cr
        if subscribe:
            contacts, lists = zip(*subscribe, strict=True)
            cr.execute(
                """
                INSERT INTO mailing_subscription (contact_id, list_id, opt_out, create_uid, write_uid,
                                                  create_date, write_date)
                SELECT c, l, FALSE, %(uid)s, %(uid)s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
                  FROM unnest(%(c)s::int[], %(l)s::int[]) AS x(c, l)
                ON CONFLICT (contact_id, list_id) DO UPDATE
                   SET opt_out = FALSE, opt_out_reason_id = NULL, opt_out_datetime = NULL,
                       write_date = EXCLUDED.write_date
                 WHERE mailing_subscription.opt_out
                """,
                {"uid": self.env.uid, "c": list(contacts), "l": list(lists)},
            )
        if unsubscribe:
            contacts, lists = zip(*unsubscribe, strict=True)
            reason = self.env.ref("mailchimp_sync.optout_reason_mailchimp", raise_if_not_found=False)
            cr.execute(
                """
                UPDATE mailing_subscription s
                   SET opt_out = TRUE, opt_out_reason_id = %(reason)s,
                       opt_out_datetime = now() AT TIME ZONE 'UTC', write_date = now() AT TIME ZONE 'UTC'
                  FROM unnest(%(c)s::int[], %(l)s::int[]) AS x(c, l)
                 WHERE s.contact_id = x.c AND s.list_id = x.l AND NOT COALESCE(s.opt_out, FALSE)
                """,
                {"reason": reason.id if reason else None, "c": list(contacts), "l": list(lists)},
            )
        if subscribe or unsubscribe:
            self._post_notes(subscribe, unsubscribe)
            self.env["mailing.subscription"].invalidate_model()
            self.env["mailing.contact"].invalidate_model()

    def _post_notes(self, subscribe, unsubscribe):
        """One chatter note per changed contact, inserted in bulk, so Odoo
        users see why the membership changed (as Odoo's own unsubscribe
        page leaves a note)."""
        list_names = {
            ml.id: ml.name
            for ml in self.env["mailing.list"].browse({list_id for _c, list_id in subscribe + unsubscribe})
        }
        per_contact = {}
        for contact_id, list_id in subscribe:
            per_contact.setdefault(contact_id, ([], []))[0].append(list_names[list_id])
        for contact_id, list_id in unsubscribe:
            per_contact.setdefault(contact_id, ([], []))[1].append(list_names[list_id])
        subtype = self.env["ir.model.data"]._xmlid_to_res_id("mail.mt_note")
        author = self.env.user.partner_id.id
        values = []
        for contact_id, (added, removed) in per_contact.items():
            parts = []
            if added:
                parts.append("Subscribed at Mailchimp: " + ", ".join(sorted(added)))
            if removed:
                parts.append("Unsubscribed at Mailchimp: " + ", ".join(sorted(removed)))
            body = "".join(f"<p>{self._escape(p)}</p>" for p in parts)
            values.append((contact_id, body, subtype, author, self.env.uid))
        execute_values(
            self.env.cr._obj,
            """INSERT INTO mail_message (model, res_id, body, message_type, subtype_id, author_id,
                                         date, create_uid, write_uid, create_date, write_date)
               SELECT 'mailing.contact', v.res_id, v.body, 'notification', v.subtype, v.author,
                      now() AT TIME ZONE 'UTC', v.uid, v.uid, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
                 FROM (VALUES %s) AS v(res_id, body, subtype, author, uid)""",
            values,
            page_size=1000,
        )

    @staticmethod
    def _escape(text):
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def _apply_odoo_names(self, names):
        if not names:
            return
        execute_values(
            self.env.cr._obj,
            """UPDATE mailing_contact c
                  SET first_name = NULLIF(v.first, ''), last_name = NULLIF(v.last, ''),
                      name = COALESCE(NULLIF(concat_ws(' ', NULLIF(v.first, ''), NULLIF(v.last, '')), ''), c.name),
                      write_date = now() AT TIME ZONE 'UTC'
                 FROM (VALUES %s) AS v(id, first, last)
                WHERE c.id = v.id""",
            names,
        )
        self.env["mailing.contact"].invalidate_model(["name", "first_name", "last_name"])

    # ------------------------------------------------------------------
    # 10. Submit
    # ------------------------------------------------------------------

    def _stage_submit(self, audience, run, deadline):
        self._requeue_orphans(audience)
        while True:
            sent = self._submit_one_batch(audience, run)
            if not sent:
                return True
            self._check_budget(deadline)

    def _requeue_orphans(self, audience):
        """Batches claimed but never acknowledged by Mailchimp (a crash
        between the claim and the answer): put their updates back in line."""
        cr = self.env.cr
        cr.execute(
            """SELECT id FROM mailchimp_batch
                WHERE audience_id = %s AND mailchimp_batch_id IS NULL
                  AND create_date < (now() AT TIME ZONE 'UTC') - interval '10 minutes'""",
            (audience.id,),
        )
        orphan_ids = [r[0] for r in cr.fetchall()]
        if orphan_ids:
            cr.execute(
                "UPDATE mailchimp_update SET state = 'queued', batch_id = NULL WHERE batch_id = ANY(%s)",
                (orphan_ids,),
            )
            cr.execute("DELETE FROM mailchimp_batch WHERE id = ANY(%s)", (orphan_ids,))

    def _submit_one_batch(self, audience, run):
        """Claim up to 1,000 queued updates, commit, send them as one batch,
        then record Mailchimp's batch id: the remote call sits between two
        commits, never inside a transaction that could roll back after it."""
        cr = self.env.cr
        cr.execute(
            """SELECT u.id, u.kind, u.payload, m.email, m.mc_status
                 FROM mailchimp_update u JOIN mailchimp_member m ON m.id = u.member_id
                WHERE u.audience_id = %s AND u.state = 'queued'
             ORDER BY u.id LIMIT %s""",
            (audience.id, MAX_OPERATIONS),
        )
        rows = cr.fetchall()
        if not rows:
            return False
        batch = self.env["mailchimp.batch"].create(
            {"account_id": audience.account_id.id, "audience_id": audience.id, "status": "pending"}
        )
        ids = [r[0] for r in rows]
        cr.execute(
            "UPDATE mailchimp_update SET state = 'sent', batch_id = %s WHERE id = ANY(%s)", (batch.id, ids)
        )
        operations = [
            build_operation(uid_, audience.mailchimp_list_id, kind, payload or {}, email, bool(status))
            for uid_, kind, payload, email, status in rows
        ]
        self._commit()
        try:
            answer = audience.account_id._get_client().start_batch(operations)
        except MailchimpError as exc:
            cr.execute("UPDATE mailchimp_update SET state = 'queued', batch_id = NULL WHERE id = ANY(%s)", (ids,))
            batch.unlink()
            self._commit()
            raise exc
        batch.write(
            {
                "mailchimp_batch_id": answer.get("id"),
                "status": answer.get("status") or "pending",
                "submitted_at": fields.Datetime.now(),
                "total_operations": len(operations),
            }
        )
        run.batches_sent += 1
        self._commit()
        return True
