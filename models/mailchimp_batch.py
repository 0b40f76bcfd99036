import logging
import threading
import time
from concurrent.futures import Future
from contextlib import closing
from datetime import datetime, timedelta

from psycopg2 import errors
from psycopg2.extras import execute_values

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..mailchimp_sync.batches import MAX_OPERATIONS, build_operation, read_batch, read_results
from ..mailchimp_sync.client import subscriber_hash
from ..mailchimp_sync.exceptions import RATE_LIMITED, MailchimpError, MailchimpNotFoundError
from ..mailchimp_sync.gc_pause import cycle_collector_paused
from ..mailchimp_sync.members import check_statuses, parse_mailchimp_datetime
from ..mailchimp_sync.read_ahead import read_ahead
from ..mailchimp_sync.reasons import NO_RESULT
from ..tools.sql import int_array
from ..tools.threads import own_cursor_env, run_threads, take_turns
from ..tools.user_messages import describe_error, describe_reason
from .mailchimp_reconcile import Counts, LaneFailed, StepBoard, lane_failures
from .mailchimp_update import SEND_COLUMNS

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
SUBMIT_STATES = [
    ("claimed", "Claimed, not sent"),
    ("sending", "Sending"),
    ("submitted", "Submitted"),
    ("lost", "Never reached Mailchimp"),
]
class WaitUntil(Exception):  # noqa: N818 - a signal, not an error
    """Nothing can be done before ``when``: the step ends, and the
    audience's scheduled action is woken then."""

    def __init__(self, when):
        super().__init__(when)
        self.when = when


# Mailchimp's and our clocks differ: a batch sent at T may say it was
# submitted a little before T.
CLOCK_SKEW = timedelta(minutes=10)
# Batches one submit step claims; they are POSTed once the step's
# transaction has committed.
BATCHES_PER_STEP = 5
# Batches POSTed at once: while one waits for Mailchimp to take its 1,000
# operations, the next is read and encoded.  One after another, POSTing
# took 4 s of a 100,000-member first sync.  Mailchimp takes ten
# connections at once per API key (a 429 beyond), shared by every
# audience of the account and each sync's fetch: two stay well within.
SENDERS = 2
# Mailchimp refused a batch because the account holds too many pending
# ones (500): its queue drains in seconds to minutes, so sending pauses.
THROTTLE_WAIT = timedelta(seconds=15)
# Batches a poller call settles at once, each on a connection of its own
# and in a transaction of its own, as batch webhooks arriving together are:
# settling a batch is mostly PostgreSQL's work (merging a thousand answers
# into the cache), which one connection does on one core.  A third settler
# keeps both cores of a small server busy while the others wait (for the
# GIL, the next download, a row lock): in runs taken in turn, 93 batches
# settled in 9.8 and 9.8 s against 11.1 and 10.6 s on two.
SETTLERS = 3
# Batches at Mailchimp whose results are still to be settled.
UNSETTLED_DOMAIN = [
    ("result_state", "!=", "done"),
    ("mailchimp_batch_id", "!=", False),
    ("status", "not in", ("aborted", "expired")),
]


class MailchimpBatch(models.Model):
    """A batch of operations submitted to Mailchimp's Batch API.

    Exactly once: a sender claims updates into a batch row created
    ``sending`` and commits (or a step claims them into a ``claimed`` row
    and commits, and the sender then marks it ``sending`` and commits);
    only then is it POSTed and Mailchimp's id recorded.  A row found
    ``sending`` without an id had its answer lost (timeout, killed worker):
    before anything is sent again, Mailchimp's own list of batches says
    whether it arrived.
    """

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
    submit_state = fields.Selection(SUBMIT_STATES, default="submitted", required=True, index=True)
    sending_at = fields.Datetime(readonly=True, help="When the POST to Mailchimp started.")
    total_operations = fields.Integer(readonly=True)
    finished_operations = fields.Integer(readonly=True)
    errored_operations = fields.Integer(readonly=True)
    submitted_at = fields.Datetime(readonly=True)
    throttled_at = fields.Datetime(
        readonly=True,
        help="When Mailchimp refused this batch because the account already had too many batches "
             "waiting; its updates were queued again and sending paused for a moment.",
    )
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
    # Submit
    # ------------------------------------------------------------------

    @api.model
    def _stage_submit(self, audience, run, deadline):
        """Submit step: resolve batches whose answer was lost, then send on
        the senders (:meth:`_submit_on_senders`), or, in a transaction that
        already wrote, claim up to BATCHES_PER_STEP batches of queued
        updates, sent after this step's transaction commits.  Either way no
        POST ever leaves for updates a rollback would un-claim."""
        throttled = self.search([("account_id", "=", audience.account_id.id),
                                 ("throttled_at", ">", fields.Datetime.now() - THROTTLE_WAIT)],
                                order="throttled_at desc", limit=1)
        if throttled:
            raise WaitUntil(throttled.throttled_at + THROTTLE_WAIT)
        if not self._resolve_unsent(audience):
            return False  # a lost answer is not resolved yet: wait for Mailchimp
        if self.env.context.get("mailchimp_lanes"):
            return self._submit_on_senders(audience, run, deadline)
        claimed = self.browse()
        Update = self.env["mailchimp.update"]
        for _i in range(BATCHES_PER_STEP):
            batch = self.create({
                "account_id": audience.account_id.id, "audience_id": audience.id,
                "status": "pending", "submit_state": "claimed",
            })
            # From where the last batch ended; once nothing is left there,
            # once more from the start for updates queued again below it.
            taken = Update._claim(audience, batch, MAX_OPERATIONS, after_id=run.cursor)
            if not taken and run.cursor:
                run.cursor = 0
                taken = Update._claim(audience, batch, MAX_OPERATIONS)
            if not taken:
                batch.unlink()
                break
            run.cursor = max(update_id for update_id, _member_id in taken)
            claimed |= batch
        if not claimed:
            return True
        run.batches_sent += len(claimed)
        run.progress_done += len(claimed)
        ids = claimed.ids
        self.env.cr.postcommit.add(lambda: self._send_claimed(self.env.cr.dbname, ids))
        return False

    @api.model
    def _submit_on_senders(self, audience, run, deadline):
        """The submit step when its transaction is fresh (the cron runner's):
        SENDERS senders, each on a connection of its own, claim the next
        batch, commit the claim, POST it and record the answer, until no
        update is left, the step's budget is spent, or Mailchimp says to
        wait.  While one sender claims and reads its batch, the other's
        POST is under way.  (A transaction that already wrote claims its
        batches in the step and POSTs them after its commit: there claiming
        and sending never overlap, a fifth of a first sync.)  Once nothing
        is left after the cursor, one sender looks once more from the
        start, for updates queued again below it.  The step's own
        transaction keeps the run, and adds what the senders claimed.
        Returns whether nothing is left to send."""
        self.env.flush_all()
        board = StepBoard(run.id, run.cursor, deadline)
        name = f"mailchimp-send-{self.env.cr.dbname}"
        run_threads(name, SENDERS, self._sender, audience.id, board)
        if board.exhausted and not board.stopped and board.after:
            # Every sender is done with its claims: none is met uncommitted.
            board.exhausted, board.after = False, 0
            run_threads(name, 1, self._sender, audience.id, board)
        self.env.invalidate_all()  # the senders wrote through environments of their own
        if board.error:
            raise LaneFailed(board) from board.error
        self.env["mailchimp.sync"]._record_lanes(run, board)
        return board.exhausted and not board.stopped

    def _sender(self, audience_id, board):
        """One sender of :meth:`_submit_on_senders`, in a thread of its own
        with a cursor of its own."""
        with lane_failures(board), own_cursor_env(self.env) as env:
            Batch = env["mailchimp.batch"]
            audience = env["mailchimp.audience"].browse(audience_id)
            # Read once per sender: each batch commits, which empties the
            # ORM's cache, and asking for each batch took two statements.
            answer_fields = env["mailchimp.merge.field"]._fetch_fields(audience)
            while True:
                with board.lock:
                    # A step sends at least one batch, whatever its budget.
                    if board.stopped or board.exhausted or (
                            board.counts.batches_sent and time.monotonic() >= board.deadline):
                        return
                    # The next span of queued updates is this sender's:
                    # spans follow one another in id order, and two
                    # senders' claims never meet, so they run at once.
                    span = env["mailchimp.update"]._next_span(audience, MAX_OPERATIONS, board.after)
                    if span is None:
                        board.exhausted = True
                        return
                    board.after = span[1]
                batch, rows = Batch._claim_to_send(audience, span)
                if not rows:
                    env.cr.rollback()  # taken or cancelled meanwhile
                    continue
                claimed = Counts()
                claimed.batches_sent = 1
                env["mailchimp.reconcile.tally"]._record(board.run_id, board.token, claimed)
                # The claim and the batch's ``sending`` state are
                # committed before anything leaves for Mailchimp.
                env.cr.commit()  # pylint: disable=invalid-commit
                with board.lock:
                    board.counts.batches_sent += 1
                if batch._post(rows, answer_fields) == "throttled":
                    with board.lock:
                        board.stopped = True  # sent once Mailchimp's queue has room

    @api.model
    def _claim_to_send(self, audience, span):
        """In this transaction: a new batch of the audience's queued updates
        in ``span`` (first id, last id), created ``sending``.  Committed
        so, its updates are in flight at once: no writer cancels them
        between the claim and the POST, as one may while a batch waits
        ``claimed`` for the step's commit.  Returns (the batch, the rows to
        send (``SEND_COLUMNS``)); no rows: none of the span is queued now."""
        batch = self.create({
            "account_id": audience.account_id.id, "audience_id": audience.id, "status": "pending",
            "submit_state": "sending", "sending_at": fields.Datetime.now(),
        })
        first, last = span
        rows = self.env["mailchimp.update"]._claim(audience, batch, MAX_OPERATIONS, after_id=first - 1,
                                                   to_send=True, up_to=last)
        return batch, rows

    @api.model
    def _send_claimed(self, dbname, batch_ids):
        """After commit: POST the claimed batches, SENDERS at a time, each
        on a cursor of its own, in the order claimed.  A batch Mailchimp
        throttles, or one that fails here, stops the ones not started yet:
        they stay claimed, and a later step sends them."""
        take = take_turns(batch_ids)
        stop = threading.Event()

        def sender():
            while not stop.is_set():
                batch_id = take()
                if batch_id is None:
                    return
                try:
                    with own_cursor_env(self.env) as env:
                        if self.with_env(env).browse(batch_id)._send() == "throttled":
                            stop.set()  # sent once Mailchimp's queue has room
                except Exception:  # a post-commit hook must not break the committing caller
                    _logger.exception("Sending Mailchimp batch %s failed; the next sync step resolves it", batch_id)
                    stop.set()

        run_threads(f"mailchimp-send-{dbname}", min(SENDERS, len(batch_ids)), sender)

    def _send(self):
        """Mark the claimed batch ``sending`` and commit, then POST, then
        record the answer (:meth:`_post`).  A lost answer leaves it
        ``sending``: see _resolve_unsent."""
        self.ensure_one()
        cr = self.env.cr
        cr.execute(
            """UPDATE mailchimp_batch SET submit_state = 'sending', sending_at = now() AT TIME ZONE 'UTC'
                WHERE id = %s AND submit_state = 'claimed' RETURNING id""",
            (self.id,),
        )
        if not cr.fetchone():
            return None  # aborted or sent meanwhile
        # Touch the claimed updates: a writer cancelling one now conflicts
        # with this transaction instead of missing it.
        cr.execute(
            f"""UPDATE mailchimp_update u SET sent_at = now() AT TIME ZONE 'UTC'
                  FROM mailchimp_member m
                 WHERE u.batch_id = %s AND u.state = 'sent' AND m.id = u.member_id
             RETURNING {SEND_COLUMNS}""",
            (self.id,),
        )
        rows = cr.fetchall()
        if not rows:
            self.write({"submit_state": "lost", "result_state": "done",
                        "result_message": self.env._("Every update of this batch was cancelled before it was sent.")})
            cr.commit()  # pylint: disable=invalid-commit
            return None
        cr.commit()  # pylint: disable=invalid-commit
        return self._post(rows)

    def _post(self, rows, answer_fields=None):
        """POST this ``sending`` batch (committed so) with its updates'
        ``rows`` (``SEND_COLUMNS``), then record Mailchimp's answer and
        commit.  ``answer_fields``: the fields Mailchimp is to answer with
        (the fetch's, read here if not given).  Returns "throttled" if
        Mailchimp said to wait."""
        cr = self.env.cr
        audience = self.audience_id
        # Answers trimmed to what settling reads (the fetch's fields).
        if answer_fields is None:
            answer_fields = self.env["mailchimp.merge.field"]._fetch_fields(audience)
        list_id = audience.mailchimp_list_id
        operations = [
            build_operation(update_id, list_id, kind, body or payload or {}, email, bool(status),
                            fields=answer_fields)
            for update_id, kind, email, status, body, payload in rows
        ]
        try:
            answer = self.account_id._get_client().start_batch(operations)
        except MailchimpError as exc:
            if exc.kind == RATE_LIMITED and exc.status:
                # An answer, so nothing was created: back in line now.  For
                # too many pending batches sending pauses; for too many
                # connections (the account's other requests held them:
                # a fetch, another audience's senders) the next step sends.
                pause = not exc.too_many_connections
                _logger.info("Mailchimp refused batch %s for now (%s); %s", self.id, exc,
                             "sending pauses" if pause else "queued again")
                if pause:
                    message = self.env._(
                        "Mailchimp refused this batch for now: the account already has too many batches "
                        "waiting. Its updates were queued again and are sent once Mailchimp has worked "
                        "through its queue.")
                else:
                    message = self.env._(
                        "Mailchimp refused this batch for now: the account had too many requests open at "
                        "once (Mailchimp takes ten). Its updates were queued again for the next batch.")
                self._mark_lost(message, throttled=pause)
                cr.commit()  # pylint: disable=invalid-commit
                return "throttled"
            if exc.retryable:
                # Perhaps it arrived: the next step asks Mailchimp first.
                _logger.warning("Mailchimp batch %s: answer lost (%s); resolved by the next step", self.id, exc)
                return None
            # Refused outright: nothing was created, the updates go back in line.
            _logger.warning("Mailchimp refused batch %s: %s", self.id, exc)
            self._mark_lost(self.env._(
                "Mailchimp refused this batch (%(reason)s); its updates were queued again for the next batch.",
                reason=exc.as_text()))
            cr.commit()  # pylint: disable=invalid-commit
            return None
        self._record_submitted(answer, len(operations))
        cr.commit()  # pylint: disable=invalid-commit
        return None

    def _record_submitted(self, answer, total):
        self.write({
            "mailchimp_batch_id": answer.get("id"),
            "submit_state": "submitted",
            "status": answer.get("status") or "pending",
            "submitted_at": fields.Datetime.now(),
            "total_operations": total,
        })

    def _mark_lost(self, message, throttled=False):
        """The batch certainly never reached Mailchimp (or, ``throttled``,
        Mailchimp refused it for now): its updates go back in line."""
        update_ids = self.update_ids.filtered(lambda u: u.state == "sent").ids
        self.env["mailchimp.update"]._requeue(update_ids)
        self.write({"submit_state": "lost", "result_state": "done", "result_message": message,
                    "throttled_at": throttled and fields.Datetime.now()})

    @api.model
    def _resolve_unsent(self, audience):
        """Settle the fate of the audience's batches that are not known to
        be at Mailchimp.  ``claimed`` rows of an earlier step were never
        sent: they are sent after this step.  ``sending`` rows without an
        id lost their answer (or their sender is still waiting for it):
        once any answer would have come, Mailchimp's list of batches says
        whether they arrived.  Returns False while something is left."""
        pending = self.search([("audience_id", "=", audience.id), ("submit_state", "in", ("claimed", "sending"))])
        claimed = pending.filtered(lambda b: b.submit_state == "claimed")
        if claimed:
            ids = claimed.ids
            self.env.cr.postcommit.add(lambda: self._send_claimed(self.env.cr.dbname, ids))
        resolved = not claimed
        for batch in pending - claimed:
            # A request may still be on its way or in work at Mailchimp
            # until well after the client gave up on it.
            settled_by = batch.sending_at + timedelta(seconds=2 * (batch.account_id.timeout or 30) + 10)
            if settled_by > fields.Datetime.now():
                raise WaitUntil(settled_by)
            resolved = batch._find_at_mailchimp() and resolved
        return resolved

    def _find_at_mailchimp(self):
        """A ``sending`` batch whose answer was lost: adopt the Mailchimp batch
        that holds its operations, or put its updates back in line when
        Mailchimp has none.  While a candidate batch is still running at
        Mailchimp this cannot be told: WaitUntil a minute later."""
        client = self.account_id._get_client()
        known = set(self.search([("account_id", "=", self.account_id.id),
                                 ("mailchimp_batch_id", "!=", False)]).mapped("mailchimp_batch_id"))
        since = (self.sending_at or self.create_date) - CLOCK_SKEW
        candidates = [
            b for b in client.list_batches()
            if b.get("id") not in known
            and (parse_mailchimp_datetime(b.get("submitted_at")) or datetime.max) >= since
        ]
        ours = set(self.update_ids.filtered(lambda u: u.state == "sent").ids)
        for candidate in candidates:
            if candidate.get("status") == "finished" and self._results_mention(client, candidate, ours):
                self._record_submitted(candidate, len(ours))
                self.status = "finished"
                return True
        if any(c.get("status") != "finished" for c in candidates):
            raise WaitUntil(fields.Datetime.now() + timedelta(minutes=1))
        self._mark_lost(self.env._("Mailchimp never received this batch; its updates were queued again."))
        return True

    def _results_mention(self, client, candidate, update_ids):
        return not update_ids.isdisjoint(read_results(client, candidate.get("response_body_url")))

    # ------------------------------------------------------------------
    # Results
    # ------------------------------------------------------------------

    def _refresh_and_settle(self, read=None):
        """Ask Mailchimp how each batch stands (``GET /batches/{id}``: the
        URL is never taken from a webhook) and settle finished ones.
        ``read`` (one batch): what ``read_batch`` gave, read ahead by the
        poller while the batch before it settled; called, it returns the
        answer or raises the error the reading met."""
        settled = 0
        for batch in self:
            if not batch.mailchimp_batch_id or batch.result_state == "done":
                continue
            # Lock before asking Mailchimp: when two deliveries of the
            # webhook (or the webhook and the poller) meet, the second skips
            # the batch at once instead of downloading the results again.
            # (The poller has read ahead: a batch it finds taken was read
            # for nothing, and is left to the one settling it.)
            if not batch._lock_for_settling():
                continue
            try:
                if read:
                    info, results = read()
                else:
                    info, results = read_batch(batch.account_id._get_client(), batch.mailchimp_batch_id)
            except MailchimpNotFoundError:
                batch._fail_unsettled(self.env._(
                    "Mailchimp no longer knows this batch (its results expired): the next sync decides its "
                    "members again."), status="expired")
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
            if results is not None:
                settled += batch._settle(results)
        if settled:
            self._after_settling()
        return settled

    @api.model
    def _after_settling(self):
        """Once the last batch is settled, the statistics follow too (in a
        thread, after the commit): the next cycle's stages plan on them."""
        unsettled = self.search_count(UNSETTLED_DOMAIN, limit=1)
        self.env["mailchimp.sync"]._vacuum_if_bloated(analyze_stale=not unsettled, wait=False)

    def _lock_for_settling(self):
        """Take the batch's row lock; False if another worker holds it or it
        is already settled (each result is settled exactly once)."""
        try:
            with self.env.cr.savepoint(flush=False):
                self.env.cr.execute(
                    "SELECT result_state FROM mailchimp_batch WHERE id = %s FOR UPDATE SKIP LOCKED", (self.id,),
                    log_exceptions=False,
                )
                row = self.env.cr.fetchone()
        except errors.SerializationFailure:
            # Another worker settled it after our transaction began.
            return False
        return bool(row) and row[0] != "done"

    def _settle(self, results):
        """Settle every update of the batch from its ``results`` ({update id:
        OperationResult}, ``read_batch``).

        Success copies status and ``last_changed`` back into the cache (a
        field's change time moves only if its value changed); "Member In
        Compliance State" on a subscribe is queued again as ``pending``
        while the row still wants it; any other error fails the row with
        Mailchimp's title and detail.  Updates the archive does not mention
        fail too: nothing is left pending forever.
        """
        self.ensure_one()
        if not self._lock_for_settling():
            return 0
        self.env["mailchimp.sync"]._ensure_statistics(stale=False)
        self.env["mailchimp.sync"]._tune_bulk_transaction()
        cr = self.env.cr
        # Only the status each update asked for: decoding a thousand payloads
        # cost more than the rest of reading them, and only a subscribe
        # refused for the compliance state needs its payload (in SQL, below).
        cr.execute(
            """SELECT u.id, u.member_id, u.kind, u.payload->>'status', m.subscriber_hash, u.queued_at
                 FROM mailchimp_update u JOIN mailchimp_member m ON m.id = u.member_id
                WHERE u.batch_id = %s AND u.state = 'sent'
             ORDER BY u.member_id
                  FOR UPDATE OF m""",
            # A webhook or step holding a member: the poller's retry, not a bad query.
            (self.id,), log_exceptions=False,
        )
        done, failed, requeue, answers, fail_rows = [], [], [], [], []
        moved = []  # rows whose member's address (so its hash) changed
        rows = set()
        for update_id, member_id, kind, asked_status, old_hash, queued_at in cr.fetchall():
            rows.add(member_id)
            result = results.get(update_id)
            if result is None:
                failed.append((update_id, None, "No result", "Mailchimp returned no result for this operation."))
                fail_rows.append((member_id, describe_reason(self.env, NO_RESULT)))
                continue
            if result.ok:
                done.append((update_id, result.status_code))
                member = result.body
                if kind == "member" and result.raw and member.get("status"):
                    # Merged with the cached row in SQL, as a fetched page is.
                    check_statuses([member])
                    answers.append((member_id, result.raw, queued_at))
                    new_hash = member.get("id") or subscriber_hash(member.get("email_address"))
                    if new_hash != old_hash:
                        moved.append((member_id, new_hash))
                continue
            failed.append((update_id, result.status_code, result.title, result.detail))
            if result.is_compliance_state and kind == "member" and asked_status == "subscribed":
                requeue.append((member_id, update_id))
            else:
                reason = result.error_reason()
                fail_rows.append((member_id, describe_reason(self.env, reason.code, reason.params)))
        self._write_results(done, failed, requeue, answers, fail_rows, moved,
                            rows - {member_id for member_id, _text, _at in answers})
        self.env["mailchimp.update"]._settle_data(self, results)
        self.write({"result_state": "done", "result_message": self.env._(
            "%(done)s done, %(failed)s failed, %(requeued)s queued again as pending",
            done=len(done), failed=len(failed), requeued=len(requeue))})
        return len(done) + len(failed)

    def _write_results(self, done, failed, requeue, answers, fail_rows, moved, others):
        """Write a settled batch's results; ``answers``: [(row id, the member
        as Mailchimp answered, as JSON text, when its update was queued)];
        ``others``: its rows without such an answer."""
        cr = self.env.cr
        now = fields.Datetime.now()
        # One statement per status code (all but a few are 200): a list of
        # ids is cheaper to match than a table of values.
        by_code = {}
        for update_id, code in done:
            by_code.setdefault(code, []).append(update_id)
        for code, update_ids in by_code.items():
            cr.execute(
                "UPDATE mailchimp_update SET state = 'done', status_code = %s, done_at = %s WHERE id = ANY(%s::int[])",
                (code, now, int_array(update_ids)),
            )
        if failed:
            execute_values(
                cr._obj,
                """UPDATE mailchimp_update u SET state = 'failed', status_code = v.code,
                          error_title = v.title, error_detail = v.detail
                     FROM (VALUES %s) AS v(id, code, title, detail) WHERE u.id = v.id""",
                failed,
                page_size=1000,
            )
        if requeue:
            # Only while the row still wants the subscription and nothing
            # newer (a later unsubscribe, say) is queued or in flight for it.
            execute_values(
                cr._obj,
                """INSERT INTO mailchimp_update (member_id, audience_id, kind, payload, state, queued_at)
                   SELECT v.member_id, m.audience_id, 'member', jsonb_set(r.payload, '{status}', '"pending"'),
                          'queued', now() AT TIME ZONE 'UTC'
                     FROM (VALUES %s) AS v(member_id, update_id)
                     JOIN mailchimp_update r ON r.id = v.update_id
                     JOIN mailchimp_member m ON m.id = v.member_id
                    WHERE m.odoo_subscribed
                      AND NOT EXISTS (SELECT 1 FROM mailchimp_update o
                                       WHERE o.member_id = v.member_id AND o.id > v.update_id
                                         AND o.kind = 'member' AND o.state IN ('queued', 'sent'))""",
                requeue,
            )
        if fail_rows:
            execute_values(
                cr._obj,
                """UPDATE mailchimp_member m SET sync_status = 'fail', sync_error = v.reason
                     FROM (VALUES %s) AS v(id, reason) WHERE m.id = v.id""",
                fail_rows,
            )
        # After the requeues and failures: these writes also tell which rows
        # are in sync now.
        if answers:
            self.env["mailchimp.member"]._write_fetched_values(answers, moved)
        if others:
            self.env["mailchimp.member"]._mark_in_sync(others)
        self.env["mailchimp.member"].invalidate_model()
        self.env["mailchimp.update"].invalidate_model()

    def _abandon(self, reason, status="aborted"):
        """Stop following these batches (aborted, expired): what they still
        had unsent is cancelled, and their rows go back in line for the next
        cycle, which re-reads the members from Mailchimp."""
        cr = self.env.cr
        for batch in self:
            cr.execute(
                """UPDATE mailchimp_update SET state = 'cancelled', error_detail = %s
                    WHERE batch_id = %s AND state IN ('sent', 'queued') RETURNING member_id""",
                (reason, batch.id),
            )
            self.env["mailchimp.member"]._back_in_line([r[0] for r in cr.fetchall()])
            batch.write({"status": status, "result_state": "done", "result_message": reason})
        self.env["mailchimp.member"].invalidate_model()
        self.env["mailchimp.update"].invalidate_model()

    def _fail_unsettled(self, reason, status="aborted"):
        """Mailchimp lost the batch (expired): its rows are decided again."""
        self._abandon(reason, status=status)

    @api.model
    def _purge_settled(self, cutoff):
        """Delete batches settled before ``cutoff`` whose updates are all gone
        (``mailchimp.update._purge_settled``): nothing is left to show."""
        self.env.cr.execute(
            """DELETE FROM mailchimp_batch b
                WHERE b.result_state = 'done' AND COALESCE(b.completed_at, b.submitted_at, b.create_date) < %s
                  AND NOT EXISTS (SELECT 1 FROM mailchimp_update u WHERE u.batch_id = b.id)""",
            (cutoff,),
        )
        deleted = self.env.cr.rowcount
        self.invalidate_model()
        return deleted

    @api.model
    def _cron_poll_batches(self, min_age_minutes=3, limit=5, recheck_seconds=30):
        """Scheduled action: settle batches whose webhook did not come, a few
        per call, so a site Mailchimp cannot reach still completes its
        syncs.  Reports progress so Odoo's runner calls again while more
        are waiting; one batch's error never blocks another."""
        threshold = fields.Datetime.now() - timedelta(minutes=min_age_minutes)
        domain = [*UNSETTLED_DOMAIN, ("submitted_at", "<=", threshold)]
        # A batch asked about moments ago waits: the runner calls again at
        # once while work is reported left, and must not poll in a loop.
        polled_before = fields.Datetime.now() - timedelta(seconds=recheck_seconds)
        due = domain + ["|", ("last_checked", "=", False), ("last_checked", "<=", polled_before)]
        batches = self.search(due, order="last_checked asc nulls first, id", limit=limit)
        # The next batch is read from Mailchimp (status, results archive,
        # parsing) in a background thread while this one is settled, as the
        # fetch reads its next page: reading took about 15 ms of a batch's
        # 130, waiting on nothing but Mailchimp and the parser.  The thread
        # has plain values only, never the cursor.  A batch a webhook
        # settles meanwhile was read for nothing, and is skipped.
        clients = {}  # account -> its client, or why it has none (a neutralized copy, no key)
        for account in batches.account_id:
            try:
                clients[account] = account._get_client()
            except UserError as exc:
                clients[account] = exc
        readers = [(batch, clients[batch.account_id], batch.mailchimp_batch_id) for batch in batches]

        def read_all():
            # Each reading as a done Future: its result() gives the answer or
            # raises the error, when the batch's turn comes.
            for batch, client, mailchimp_batch_id in readers:
                outcome = Future()
                try:
                    if isinstance(client, Exception):
                        raise client
                    outcome.set_result(read_batch(client, mailchimp_batch_id))
                except Exception as exc:  # noqa: BLE001 - raised again when this batch is settled
                    outcome.set_exception(exc)
                yield batch, outcome

        # Lanes only from a transaction that wrote nothing (the cron
        # runner's): theirs must see what this one sees.
        fresh = len(batches) > 1 and self.env["mailchimp.sync"]._fresh_transaction()
        lanes = min(SETTLERS, len(batches)) if fresh else 1
        # Parsed results are acyclic and dropped batch by batch: see gc_pause.
        with closing(read_ahead(read_all())) as readings, cycle_collector_paused():
            if lanes > 1:
                self._settle_on_lanes(readings, lanes)
            else:
                self._settle_all(readings)
        remaining = self.search_count(due) if batches and recheck_seconds else 0
        if lanes > 1:
            # This transaction's snapshot predates the lanes' commits: each
            # batch they took was settled or checked just now.
            remaining = max(remaining - len(batches), 0)
        self.env["ir.cron"]._notify_progress(done=len(batches), remaining=remaining)
        return True

    @api.model
    def _settle_on_lanes(self, readings, lanes):
        """Settle the polled ``readings`` [(batch, its reading)] on ``lanes``
        connections of their own, each taking the next batch and settling
        and committing it alone, as a webhook settles one.  Two batches that
        share a member meet on its row lock: the second waits, or, on a
        deadlock, is settled by a later call."""
        take = take_turns(readings)  # one reader of the read-ahead at a time

        def lane():
            took = False
            try:
                with own_cursor_env(self.env) as env:
                    Batch = env["mailchimp.batch"]
                    while reading := take():
                        batch, outcome = reading
                        took = True
                        Batch._settle_all([(Batch.browse(batch.id), outcome)])
                        # Each batch settled is its own transaction, as a
                        # webhook's is.
                        env.cr.commit()  # pylint: disable=invalid-commit
                    if took:
                        # Asked again after this lane's last commit: each
                        # batch's own asking saw the other lane's last batch
                        # unsettled when both ended together, and the later
                        # of the two lanes sees both now.
                        Batch._after_settling()
            except Exception:  # noqa: BLE001 - a thread has nobody to raise to; the batch is polled again
                _logger.warning("A lane settling Mailchimp batches stopped; the rest are settled by the next call",
                                exc_info=True)

        run_threads("mailchimp-settle", lanes, lane)
        self.env.invalidate_all()  # the lanes wrote through environments of their own

    def _settle_all(self, readings):
        """Settle each (batch, reading) in a savepoint of its own; one batch's
        error never blocks another."""
        for batch, outcome in readings:
            try:
                with self.env.cr.savepoint():
                    batch._refresh_and_settle(read=outcome.result)
            except (errors.SerializationFailure, errors.LockNotAvailable, errors.DeadlockDetected):
                # A webhook settled it meanwhile (concurrent update of the
                # row), or a step or webhook holds some of its members: the
                # next call, on a fresh snapshot, settles it.
                _logger.info("Mailchimp batch %s is being settled elsewhere or its members are busy; "
                             "it is settled later", batch.mailchimp_batch_id)
                self.env.invalidate_all()
            except Exception as exc:  # noqa: BLE001 - one batch's failure never blocks the others
                # Mailchimp's errors and unexpected ones alike: the batch's
                # settling is rolled back (the savepoint), the reason noted,
                # and the batch goes to the end of the line.  Left first in
                # line, a batch that fails every time would fail every call,
                # and Odoo's runner deactivates an action that keeps failing.
                _logger.warning("Could not settle Mailchimp batch %s: %s", batch.mailchimp_batch_id, exc,
                                exc_info=not isinstance(exc, (MailchimpError, UserError)))
                self.env.invalidate_all()
                batch.write({"last_checked": fields.Datetime.now(), "result_message": describe_error(self.env, exc)})
