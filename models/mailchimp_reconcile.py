import json
import logging
import math
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime

from psycopg2 import errors

from odoo import api, models

from ..mailchimp_sync.gc_pause import cycle_collector_paused
from ..mailchimp_sync.reconcile import AudienceRules, reconcile_row, row_state_from_cache
from ..tools.sql import int_array
from ..tools.threads import own_cursor_env, run_threads
from ..tools.user_messages import describe_reason
from .mailchimp_audience_dashboard import MC_SUBSCRIBED_SQL
from .mailchimp_member import hash_key_sql

# Rows a lane loads, decides and commits at once.  Three lanes of 3,500
# hold about as many rows in memory as two of 5,000 did.
CHUNK = 3500
# A step with fewer rows to do than a chunk for each lane gives each lane
# its share instead (an incremental cycle's 1,700 rows took one lane 0.5 s
# while the other had nothing), in chunks no smaller than this.
MIN_LANE_CHUNK = 500
# Connections a reconcile step decides chunks on at once, each committing
# its own chunks (``mailchimp_sync.reconcile_lanes``; 1: the step's own
# transaction, as a webhook decides).  While one lane waits for
# PostgreSQL, another decides in Python: on two cores a large cache is
# reconciled in about two thirds of the time.  A third lane keeps both
# cores busy while two lanes wait, one for the other's Python (the GIL)
# or both for PostgreSQL: two lanes left about a fifth of the cores idle,
# and with three the reconcile of a 100,000-member first sync took 8.2 to
# 8.8 s against 8.7 to 9.7, that of a million 90.7 s against 110.5.
LANES = 3
# A lane's chunk that met a concurrent writer (a webhook, Retry) is tried
# again on a fresh snapshot this many times; then the lane stops and the
# next step takes the chunk again.
LANE_RETRIES = 2
CONFLICTS = (errors.SerializationFailure, errors.LockNotAvailable, errors.DeadlockDetected)
# The run's counters a reconcile adds to.
# (A submit step's senders count the batches they claimed the same way.)
COUNTERS = ("reconciled", "to_add", "to_remove", "failed", "odoo_changes", "odoo_opt_ins", "odoo_opt_outs",
            "updates_queued", "created", "batches_sent")
# The safety valve never stops a plan that changes this many people or fewer.
MIN_SAFETY_LIMIT = 10
# The loaded row's timestamps (JSON has them as text).
TIMESTAMP_KEYS = ("mc_status_changed", "mc_name_changed", "odoo_changed")
_logger = logging.getLogger(__name__)


class Counts:
    """The counters of chunks decided on a lane (a run's counters as plain
    numbers: the run itself belongs to the step's transaction)."""

    def __init__(self):
        for name in COUNTERS:
            setattr(self, name, 0)

    def add_to(self, other):
        for name in COUNTERS:
            setattr(other, name, getattr(other, name) + getattr(self, name))

    def add_to_run(self, run):
        """Add these counts to ``run``'s counters and to its progress (rows
        reconciled, or batches sent: a stage's units)."""
        run.write(dict({name: run[name] + getattr(self, name) for name in COUNTERS},
                       progress_done=run.progress_done + self.reconciled + self.batches_sent))


class StepBoard:
    """What the threads of one step (a submit step's senders) share, under
    ``lock``: the run they count for and the step's token (each commit's
    tally bears it), where the next claim starts, the counts of what they
    committed, and why they stopped: nothing was left to claim, they were
    told to (a conflict, Mailchimp saying to wait), or the first error.
    The step records it on the run (``mailchimp.sync._record_lanes``)."""

    def __init__(self, run_id, after_id, deadline):
        self.lock = threading.Lock()
        self.run_id = run_id
        self.token = uuid.uuid4().hex
        self.after = after_id
        self.deadline = deadline
        self.counts = Counts()
        self.exhausted = False  # a claim found nothing left to do
        self.stopped = False
        self.error = None

    def done_up_to(self, start):
        """Where the next step's claims start: after the last one claimed
        (one claimed but not committed is found again from the start, as
        an update queued again is).  ``start``, where the step began,
        matters to the lanes' board only."""
        return self.after


class LaneBoard(StepBoard):
    """The :class:`StepBoard` of a reconcile step's lanes, with the chunks
    claimed in id order (first id, last id, committed): a chunk a lane
    gave up stays to do, so the next step goes on from before it."""

    def __init__(self, run_id, after_id, deadline):
        super().__init__(run_id, after_id, deadline)
        self.chunks = []

    def done_up_to(self, start):
        """The last id of the chunks committed without a gap from ``start``:
        where the next step goes on (a chunk a lane gave up stays to do)."""
        done = start
        for _first, last, committed in self.chunks:
            if not committed:
                break
            done = last
        return done

    @property
    def finished(self):
        return self.exhausted and not self.error and all(chunk[2] for chunk in self.chunks)


@contextmanager
def lane_failures(board):
    """How a lane (a thread with a cursor of its own) ends on an error: a
    concurrent writer stops the lanes, and the next step goes on; any
    other error stops them too, kept on ``board`` for the step, which
    records it on the run."""
    try:
        yield
    except CONFLICTS:
        with board.lock:
            board.stopped = True
    except Exception as exc:  # noqa: BLE001 - handed to the step, which records it on the run
        with board.lock:
            board.error = board.error or exc
            board.stopped = True


class LaneFailed(Exception):  # noqa: N818 - carries what the lanes committed before the failure
    """A lane failed on a chunk: the chunks committed before are kept, and
    the step records them on the run before it records the failure."""

    def __init__(self, board):
        super().__init__(str(board.error))
        self.board = board


class MailchimpReconcile(models.AbstractModel):
    """Reconcile cache rows: load a chunk (under the rows' locks), decide
    each row with the pure core (``mailchimp_sync.reconcile``), and apply
    the decisions in bulk through the models that own each table: Odoo
    memberships at once, Mailchimp changes as queued updates."""

    _name = "mailchimp.reconcile"
    _description = "Mailchimp Reconcile"

    @api.model
    def _lanes(self):
        """How many lanes a reconcile step runs (the system parameter
        ``mailchimp_sync.reconcile_lanes``, default LANES)."""
        return self.env["mailchimp.sync"]._lanes_setting("mailchimp_sync.reconcile_lanes", LANES)

    @api.model
    def _todo_ids(self, audience, after_id=0, limit=CHUNK, up_to=None):
        """The next rows to do after ``after_id`` (up to ``up_to``), in id order."""
        self.env.cr.execute(
            """SELECT id FROM mailchimp_member
                WHERE audience_id = %s AND sync_status = 'todo' AND id > %s AND (%s::int IS NULL OR id <= %s)
             ORDER BY id LIMIT %s""",
            (audience.id, after_id, up_to, up_to, limit),
        )
        return [r[0] for r in self.env.cr.fetchall()]

    @api.model
    def _reconcile_in_lanes(self, audience, run_id, after_id, deadline, lanes=LANES, rows_left=None):
        """Reconcile the rows to do after ``after_id`` on ``lanes``
        connections of their own, each claiming the next chunk in id order,
        deciding it and committing it, until none is left or ``deadline``
        (time.monotonic) is passed.  The step's own transaction is only
        waited on: it keeps the run ``run_id``, which it updates from the
        returned :class:`LaneBoard` (counts, and where the next step goes
        on).  Each chunk also leaves its counts with its commit, for a step
        killed before its own (``mailchimp.reconcile.tally``).

        The step's transaction must not hold rows a lane writes (it holds
        the audience's lock, which lanes only reference), and what the
        lanes are to see must be committed: the cron runner commits
        between steps, and each stage runs in steps of its own.
        ``rows_left`` (how many rows are still to do, if known) shares them
        out between the lanes when they are fewer than a chunk each."""
        self.env.flush_all()
        board = LaneBoard(run_id, after_id, deadline)
        chunk = CHUNK if rows_left is None else min(CHUNK, max(MIN_LANE_CHUNK, math.ceil(rows_left / lanes)))
        run_threads(f"mailchimp-reconcile-{audience.id}", lanes, self._run_lane, audience.id, board, chunk)
        self.env.invalidate_all()  # the lanes wrote through environments of their own
        return board

    def _run_lane(self, audience_id, board, chunk):
        """One lane, in a thread of its own with a cursor of its own: claim
        the next chunk, lock and decide it as a serial step would, commit;
        again until no row is left, the budget is spent, or a lane failed."""
        with lane_failures(board), own_cursor_env(self.env) as env:
            Reconcile = env["mailchimp.reconcile"]
            audience = env["mailchimp.audience"].browse(audience_id)
            while True:
                env["mailchimp.sync"]._tune_bulk_transaction()
                with board.lock:
                    # A step does at least one chunk, as a serial one
                    # does, whatever its budget.
                    if board.stopped or board.exhausted or (board.chunks and time.monotonic() >= board.deadline):
                        return
                    # Claimed under the board's lock: two lanes never
                    # take the same rows, and chunks go in id order.
                    ids = Reconcile._todo_ids(audience, board.after, chunk)
                    if not ids:
                        board.exhausted = True
                        return
                    board.after = ids[-1]
                    entry = [ids[0], ids[-1], False]
                    board.chunks.append(entry)
                counts = Reconcile._reconcile_chunk(audience, board, ids, entry)
                with board.lock:
                    if counts is None:
                        board.stopped = True  # the next step takes the chunk again
                        return
                    entry[2] = True
                    counts.add_to(board.counts)

    def _reconcile_chunk(self, audience, board, ids, entry):
        """Decide and commit one claimed chunk on this lane's cursor, its
        tally with it; a concurrent writer makes it start again on a fresh
        snapshot, with the rows of the chunk still to do.  Returns its
        counts, or None if it gave up."""
        cr = self.env.cr
        for attempt in range(LANE_RETRIES + 1):
            counts = Counts()
            try:
                if attempt:
                    self.env["mailchimp.sync"]._tune_bulk_transaction()
                    ids = self._todo_ids(audience, entry[0] - 1, len(ids), up_to=entry[1])
                with cycle_collector_paused():
                    rows = self._load_rows(audience, member_ids=ids)
                    self._reconcile_rows(audience, counts, rows)
                self.env["mailchimp.reconcile.tally"]._record(board.run_id, board.token, counts)
                # A lane's chunk is its own transaction.
                cr.commit()  # pylint: disable=invalid-commit
                return counts
            except CONFLICTS:
                cr.rollback()
                _logger.info("Audience %s: a reconcile lane met a concurrent writer; chunk tried again", audience.id)
            except Exception:
                cr.rollback()
                raise
        return None

    @api.model
    def _load_rows(self, audience, after_id=0, member_ids=None, limit=CHUNK):
        """Lock and load a chunk: the rows still to do after ``after_id``, or
        the given rows.  The lock comes first, so a webhook or Retry holding
        one of them is waited for, and nobody decides the row meanwhile."""
        cr = self.env.cr
        if member_ids is None:
            member_ids = self._todo_ids(audience, after_id, limit)
        if not member_ids:
            return []
        self.env["mailchimp.member"]._lock_rows(member_ids)
        # The chunk as one JSON document: one parse for the chunk instead of
        # a dict and eight JSON values per row (half of loading it).
        cr.execute(
            """
            SELECT json_agg(x ORDER BY x.id) FROM (
            SELECT m.id, m.email, m.mc_status, m.mc_status_changed, m.mc_first_name, m.mc_last_name,
                   m.mc_name_changed, m.mc_interests, m.mc_interests_changed, m.contact_id,
                   m.odoo_subscribed, m.odoo_changed, m.odoo_interests, m.odoo_interests_changed,
                   m.sent_data, c.email_normalized AS contact_email, COALESCE(c.message_bounce, 0) AS bounce,
                   COALESCE(b.active, FALSE) AS blacklisted,
                   m.mc_merge_fields, m.mc_merge_fields_changed, m.mc_tags, m.mc_tags_partial,
                   c.partner_id AS contact_partner_id
              FROM mailchimp_member m
              -- a lookup by id per row: a hash join read every contact
              -- for each chunk
         LEFT JOIN LATERAL (SELECT * FROM mailing_contact c WHERE c.id = m.contact_id LIMIT 1) c ON TRUE
         LEFT JOIN mail_blacklist b ON b.email = c.email_normalized
             WHERE m.id = ANY(%s::int[])
            ) x
            """,
            (int_array(member_ids),),
        )
        rows = cr.fetchone()[0] or []
        for row in rows:
            for key in TIMESTAMP_KEYS:
                if row[key]:
                    row[key] = datetime.fromisoformat(row[key])
        # Per contact, the rows subscribed at Mailchimp (the "same contact,
        # other email" rule) and the tags: one grouped query each for the
        # chunk rather than a subquery per row.
        contact_ids = list({r["contact_id"] for r in rows if r["contact_id"]})
        cr.execute(
            """SELECT contact_id, count(*), min(id) FROM mailchimp_member
                WHERE audience_id = %s AND contact_id = ANY(%s::int[]) AND mc_status IN ('subscribed', 'pending')
             GROUP BY contact_id""",
            (audience.id, int_array(contact_ids)),
        )
        # contact -> (how many of its rows are subscribed, the first of them)
        subscribed_rows = {contact_id: (count, first) for contact_id, count, first in cr.fetchall()}
        cr.execute(
            """SELECT rel.mailing_contact_id, array_agg(t.name->>'en_US' ORDER BY t.name->>'en_US')
                 FROM mailing_contact_res_partner_category_rel rel
                 JOIN res_partner_category t ON t.id = rel.res_partner_category_id
                WHERE rel.mailing_contact_id = ANY(%s::int[])
             GROUP BY rel.mailing_contact_id""",
            (int_array(contact_ids),),
        )
        tags = dict(cr.fetchall())
        # Addresses changed in Odoo that another member of the audience
        # already has at Mailchimp: the rename would be refused.
        renamed = {r["id"]: r["contact_email"] for r in rows
                   if r["mc_status"] and r["contact_email"] and r["contact_email"] != (r["email"] or "").lower()}
        taken = set()
        if renamed:
            cr.execute(
                f"""SELECT e.key::int FROM jsonb_each_text(%s::jsonb) AS e(key, email)
                     WHERE EXISTS (SELECT 1 FROM mailchimp_member o
                                    WHERE {hash_key_sql("o.audience_id", "o.subscriber_hash")}
                                          = {hash_key_sql("%s", "md5(e.email)")}
                                      AND o.mc_status IS NOT NULL AND o.id <> e.key::int)""",
                (json.dumps(renamed), audience.id),
            )
            taken = {r[0] for r in cr.fetchall()}
        self.env["mailchimp.merge.field"]._load_odoo_values(audience, rows)
        in_flight = self.env["mailchimp.update"]._in_flight_members(member_ids)
        for row in rows:
            row["in_flight"] = row["id"] in in_flight
            contact_id = row["contact_id"]
            count, first = subscribed_rows.get(contact_id, (0, None))
            row["other_sub"] = count > 1 or (count == 1 and first != row["id"])
            row["tags"] = tags.get(contact_id, []) if contact_id else None
            row["email_taken"] = row["id"] in taken
        return rows

    @api.model
    def _reconcile_rows(self, audience, run, rows, in_flight_too=False):
        """Decide every row of a chunk, then apply the decisions in bulk.
        Rows with an update in flight wait for its result (settle first,
        then decide), except where Mailchimp just told us the member's
        state (a webhook: ``in_flight_too``).  ``run`` takes the counters
        (a run, or a tally)."""
        rows = [r for r in rows if in_flight_too or not r["in_flight"]]
        if not rows:
            return
        mapped = audience.interest_ids.filtered(lambda i: i.mailing_list_id and not i.stale)  # stale: gone at Mailchimp
        interest_lists = {i.mailchimp_interest_id: i.mailing_list_id.id for i in mapped}
        # Plain tuples: read once per chunk, not through the ORM per row.
        interests = [(i.mailchimp_interest_id, i.trust_override or None) for i in mapped]
        rules = AudienceRules(trust_override=audience.trust_override or None, double_optin=audience.double_optin)
        extra = self.env["mailchimp.sync"]._mailchimp_extra_merge_fields(
            audience, [r["contact_id"] for r in rows if r["contact_id"]]
        )
        Update = self.env["mailchimp.update"]
        unsent = Update._unsent_for([r["id"] for r in rows])
        Mapping = self.env["mailchimp.merge.field"]
        mappings = Mapping._specs(audience)
        data = Mapping._data_writer(audience, rows)
        subscribe, unsubscribe, updates, row_vals, data_rows = [], [], [], [], []
        # Counted here and written once: an ORM write per row would cost
        # more than the decision itself.
        to_add = to_remove = failed = 0
        list_id = audience.mailing_list_id.id
        tag_prefix = audience.tag_prefix  # read once: a field read per row costs as much as a decision's part
        for row in rows:
            state = row_state_from_cache(row, interests, extra, mappings, tag_prefix)
            state.pending_cancelled = any(
                u["payload"].get("status") == "pending" for u in unsent.get(row["id"], []) if u["kind"] == "member"
            )
            decision = reconcile_row(state, rules)
            if decision.final_subscribed:
                data.collect(row, decision)
            contact_id = row["contact_id"]
            if decision.odoo_subscribe is not None:
                (subscribe if decision.odoo_subscribe else unsubscribe).append((contact_id, list_id))
            for interest_id, value in decision.odoo_interests.items():
                (subscribe if value else unsubscribe).append((contact_id, interest_lists[interest_id]))
            body, tags = decision.mc_body, decision.tags
            if body and row["mc_status"] is None and tags:
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
            failed += decision.status == "fail"
            sent = dict(row["sent_data"] or {})
            if decision.final_subscribed and decision.synced_merge_fields is not None:
                # What both sides now agree on (a failed value keeps what
                # was agreed before); tags held back by a rename stay.
                sent.pop("names", None)
                sent.pop("odoo_name", None)
                sent["merge_fields"] = decision.synced_merge_fields
                if decision.synced_tags is not None:
                    sent["tags"] = sorted(decision.synced_tags)
                data_rows.append(row["id"])
            # The reason in the words of the user running the sync: what
            # failed and what to do next.
            reason = decision.reason and describe_reason(self.env, decision.reason.code, decision.reason.params)
            row_vals.append((row["id"], decision.status, reason, sent))
        self.env["mailing.subscription"]._mailchimp_apply(audience, subscribe, unsubscribe)
        # A cleaned address learnt by the fetch is marked as the webhook does.
        self.env["mailing.contact"]._mailchimp_mark_cleaned(
            audience, [r["id"] for r in rows if r["mc_status"] == "cleaned" and r["contact_id"]])
        data.apply()
        queued = Update._queue(audience, updates, unsent)
        run.reconciled += len(rows)
        run.to_add += to_add
        run.to_remove += to_remove
        run.failed += failed
        run.odoo_changes += len(subscribe) + len(unsubscribe)
        run.odoo_opt_ins += len(subscribe)
        run.odoo_opt_outs += len(unsubscribe)
        run.updates_queued += queued
        # Before the rows' new snapshot replaces the contact's last name and
        # address, which tell what changed since.
        self.env["mailing.contact"]._mailchimp_partners_follow(audience, data_rows)
        # Our own membership writes are not Odoo-side changes to reconcile
        # again: the rows of the contacts written take their new Odoo side
        # in the same write as their decision (a second write of a row in
        # one transaction also checks each of its foreign keys again).
        written = {contact_id for contact_id, _list in subscribe + unsubscribe}
        # Rows that failed on their data say which values, in the same write.
        failures = dict(data.describe_failures())
        if failures:
            row_vals = [(row_id, status, failures.get(row_id, reason), sent)
                        for row_id, status, reason, sent in row_vals]
        self._write_rows(row_vals, audience, data_rows,
                         odoo_rows=[r["id"] for r in rows if written and r["contact_id"] in written])

    @api.model
    def _sync_members(self, audience, member_ids, tally=None, from_mailchimp=False):
        """Run a few cache rows through match, create, Odoo state and
        reconcile at once, under their row locks, as a webhook or Retry
        does; updates for Mailchimp are queued for the next submit.
        Only these rows are touched (and partners created for them only).
        ``from_mailchimp``: their Mailchimp side was just re-fetched, so
        they are decided even with an update in flight, and an in-flight
        subscribe of a member who left is followed by an unsubscribe."""
        tally = tally or self.env["mailchimp.sync.run"].new({})
        Member = self.env["mailchimp.member"]
        Member._lock_rows(member_ids)
        Member._match_contacts(audience, member_ids)
        tally.created += self.env["mailing.contact"]._mailchimp_create_for_members(audience, member_ids)
        self.env["mailchimp.odoo.changes"]._refresh_odoo_state(audience, member_ids)
        rows = self._load_rows(audience, member_ids=member_ids)
        self._reconcile_rows(audience, tally, rows, in_flight_too=from_mailchimp)
        if from_mailchimp:
            tally.updates_queued += self.env["mailchimp.update"]._compensate_in_flight(audience, member_ids)
        return tally

    @api.model
    def _reconcile_rows_one_by_one(self, audience, run, rows):
        """Reconcile each row in a savepoint of its own: one poisoned row
        (bad data, a bug) is failed with the reason instead of stalling the
        whole audience in this stage for good."""
        for row in rows:
            try:
                with self.env.cr.savepoint():
                    self._reconcile_rows(audience, run, [row])
            except Exception as exc:  # noqa: BLE001 - recorded on the row, the cycle goes on
                _logger.warning("Audience %s: cache row %s could not be reconciled: %s",
                                audience.id, row["id"], exc, exc_info=True)
                self.env.invalidate_all()
                self.env.cr.execute(
                    "UPDATE mailchimp_member SET sync_status = 'fail', sync_error = %s WHERE id = %s",
                    (self.env._("This row could not be reconciled (%(error)s: %(detail)s). Correct the "
                                "contact or the member, then use Retry; the details are in the server log.",
                                error=type(exc).__name__, detail=str(exc)[:200]), row["id"]),
                )
                run.failed += 1

    @api.model
    def _plan(self, audience):
        """The safety valve: count, in SQL, the rows the reconcile would opt
        out in Odoo or unsubscribe at Mailchimp (Mailchimp, or Odoo, changed
        last; overrides included).  More than the audience's share (default
        5 %) of its subscribed members, or than its cap (default 1,000),
        whichever is smaller (but never fewer than 10 people), and the run
        waits for a manager's confirmation with the counts and examples:
        then the plan has a ``message``.  The plan also counts the rows to
        do (``progress_total``)."""
        override = audience.trust_override or ""
        self.env.cr.execute(
            """
            SELECT count(*), count(*) FILTER (WHERE o), count(*) FILTER (WHERE u),
                   (array_agg(email ORDER BY id) FILTER (WHERE o))[1:5],
                   (array_agg(email ORDER BY id) FILTER (WHERE u))[1:5]
              FROM (
                SELECT id, email,
                       odoo_subscribed AND mc_status IS NOT NULL AND mc_status NOT IN ('subscribed', 'pending')
                       AND odoo_changed IS NOT NULL
                       AND (%(ov)s = 'mailchimp'
                            OR (%(ov)s != 'odoo' AND odoo_changed < COALESCE(mc_status_changed, odoo_changed)))
                         AS o,
                       NOT COALESCE(odoo_subscribed, FALSE) AND mc_status IN ('subscribed', 'pending')
                       AND odoo_changed IS NOT NULL
                       AND (%(ov)s = 'odoo'
                            OR (%(ov)s != 'mailchimp' AND odoo_changed >= COALESCE(mc_status_changed, odoo_changed)))
                         AS u
                  FROM mailchimp_member
                 WHERE audience_id = %(aud)s AND sync_status = 'todo'
              ) plan
            """,
            {"aud": audience.id, "ov": override},
        )
        todo, opt_outs, unsubscribes, out_examples, unsub_examples = self.env.cr.fetchone()
        plan = {"plan_opt_outs": opt_outs, "plan_unsubscribes": unsubscribes, "progress_total": todo}
        if opt_outs + unsubscribes <= MIN_SAFETY_LIMIT:
            return plan  # within any limit: the audience need not be counted
        share, cap = audience.safety_share or 0, audience.safety_max or 0
        subscribed = 0
        if share > 0 and cap > 0:
            # Counted only as far as the share can matter: from cap * 100 /
            # share subscribed members on, the cap is the limit (a scan of
            # 20,000 rows by default, not of a million-member audience).
            self.env.cr.execute(
                f"""SELECT count(*) FROM (
                        SELECT 1 FROM mailchimp_member
                         WHERE audience_id = %s AND (odoo_subscribed OR {MC_SUBSCRIBED_SQL})
                         LIMIT %s) counted""",
                (audience.id, math.ceil(cap * 100.0 / share)),
            )
            subscribed = self.env.cr.fetchone()[0]
        limit = max(min(subscribed * share / 100.0, cap), MIN_SAFETY_LIMIT)
        if opt_outs + unsubscribes <= limit:
            return plan
        plan["message"] = self.env._(
            "This sync would opt out %(opt_outs)s contact(s) in Odoo (for example %(out_examples)s) and "
            "unsubscribe %(unsubscribes)s member(s) at Mailchimp (for example %(unsub_examples)s): more "
            "than the safety valve allows (%(limit)s). Nothing was changed. Check the mapping and the "
            "trust settings; if the plan is right, a manager confirms it with 'Confirm and Continue'.",
            opt_outs=opt_outs, unsubscribes=unsubscribes, limit=int(limit),
            out_examples=", ".join(out_examples or []) or "-",
            unsub_examples=", ".join(unsub_examples or []) or "-",
        )
        return plan

    def _write_rows(self, row_vals, audience=None, data_rows=(), odoo_rows=()):
        """Write the rows' status, reason and data as agreed, in one
        statement; ``data_rows`` (their data was reconciled) also remember
        a snapshot of their Odoo data, and ``odoo_rows`` (the sync just
        wrote their contact's memberships) take their Odoo side as it now
        is (``mailchimp.odoo.changes._odoo_state_sql``)."""
        if not row_vals:
            return
        data_rows = set(data_rows)
        snapshot = self.env["mailchimp.odoo.changes"]._data_snapshot_expression(audience) if data_rows else "NULL"
        ids = [row_id for row_id, _status, _reason, _sent in row_vals]
        # The rows' values as one JSON document, read by position: adapted
        # one by one, the reasons and the agreed data (a JSON text each)
        # cost more than the statement's own work in this process.  The
        # ids stay an array, whose length the planner knows (it guesses 100
        # rows for a JSON document's, and a 5,000-row chunk then joined its
        # Odoo side row by row: 4 s instead of 0.2).
        values = json.dumps([[status, reason, sent, row_id in data_rows]
                             for row_id, status, reason, sent in row_vals])
        params = {"ids": int_array(ids), "values": values, "odoo_ids": int_array(odoo_rows)}
        odoo_columns, state_join, state_cte = "", "", ""
        if odoo_rows:
            state_sql, state_params = self.env["mailchimp.odoo.changes"]._odoo_state_sql(
                audience, ids_param="odoo_ids")
            params.update(state_params)
            # Computed once (MATERIALIZED): as a subquery, where the cache's
            # statistics said it was nearly empty, the planner could run it
            # again for each row of the chunk, as it did for the settle's
            # answers (a test's sync of 1,000 contacts once took minutes).
            state_cte = f"WITH st AS MATERIALIZED ({state_sql})"
            state_join = "LEFT JOIN st ON st.id = v.id"
            odoo_columns = "".join(
                f", {column} = CASE WHEN st.id IS NULL THEN m.{column} ELSE st.{value} END"
                for column, value in (("odoo_subscribed", "sub"), ("odoo_changed", "changed"),
                                      ("odoo_interests", "ivals"), ("odoo_interests_changed", "itimes")))
        # The ids again as a condition on the cache itself: joined to the
        # chunk's values alone, a 5,000-row chunk hashed the whole cache
        # (a sequential scan of 100,000 rows for every chunk).
        self.env.cr.execute(
            f"""{state_cte}
               UPDATE mailchimp_member m
                  SET sync_status = v.status, sync_error = v.reason,
                      sent_data = CASE WHEN v.data THEN v.sent || {snapshot} ELSE v.sent END,
                      last_synced = now() AT TIME ZONE 'UTC' {odoo_columns}
                 FROM (SELECT k.id, x->>0 AS status, x->>1 AS reason, x->2 AS sent, (x->>3)::bool AS data
                         FROM unnest(%(ids)s::int[]) WITH ORDINALITY AS k(id, n),
                              LATERAL (SELECT %(values)s::jsonb -> (k.n::int - 1) AS x) j) v
                 {state_join}
                WHERE m.id = v.id AND m.id = ANY(%(ids)s::int[])""",
            params,
        )
        self.env["mailchimp.member"].invalidate_model()
