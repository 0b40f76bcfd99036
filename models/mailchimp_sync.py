"""The sync orchestrator: one bounded step of an audience's cycle per call.

A cycle is a ``mailchimp.sync.run`` (the job record) walking the stages of
DESIGN.md §3.  Each step locks the audience (a second worker is refused at
once), runs the current stage until it finishes or the step's budget is
spent, and returns; it never commits: Odoo's cron runner (or a script
standing in for it) commits between steps, so a step killed half-way is
simply done again.  The reconcile's lanes are the exception: each commits
the chunks it decides on a connection of its own, and the run goes on
after them.  Each stage is load (owning model), decide (core),
apply (owning model); this file only says which, in what order.
"""

import logging
import threading
import time
import uuid
from contextlib import closing, contextmanager
from datetime import timedelta

from psycopg2 import errors

from odoo import api, models, sql_db
from odoo.tools import SQL

from ..mailchimp_sync.client import MemberPage
from ..mailchimp_sync.exceptions import MailchimpError
from ..mailchimp_sync.gc_pause import cycle_collector_paused
from ..mailchimp_sync.read_ahead import read_ahead
from ..tools.threads import CommitLanes
from ..tools.user_messages import describe_error
from ..mailchimp_sync.members import format_mailchimp_datetime
from .mailchimp_batch import WaitUntil
from .mailchimp_reconcile import CONFLICTS, Counts, LaneFailed
from .mailing_contact import CREATE_CHUNK

_logger = logging.getLogger(__name__)

# Mailchimp's clock and ours differ and `since_last_changed` bounds are not
# documented as inclusive: every incremental fetch re-reads a window.
FETCH_OVERLAP = timedelta(minutes=15)
PAGE_OVERLAP = 10
# Connections the fetch merges pages on, the create stage creates contacts
# on, and a full cycle's match and Odoo-only stages split their statement
# on (``mailchimp_sync.stage_lanes``; 1: the step's own transaction).
STAGE_LANES = 2
# Stages that run on connections of their own when the step's transaction
# is fresh (see _fresh_transaction).
LANE_STAGES = ("fetch", "match", "create", "odoo_only", "reconcile", "submit")
# Tables whose statistics drive the plans of the bulk stages.
STAT_TABLES = (
    "mailchimp_member", "mailchimp_update", "mailing_contact", "mailing_subscription", "mail_blacklist",
    "mailchimp_list_removal", "res_partner",
)
# Memory a step's sorts and hashes may use each (SET LOCAL: this
# transaction only).
BULK_WORK_MEM = "64MB"
# Tables the sync rewrites in bulk: vacuumed between steps once half of
# what they hold is dead (see _vacuum_if_bloated).
VACUUM_TABLES = STAT_TABLES[:2]
# A table's statistics are out of date (pg_stat_user_tables' columns).
STALE_STATS_SQL = "n_mod_since_analyze > 1000 + n_live_tup / 10"
# A table never analyzed larger than this (eight pages, some hundreds of
# rows) is analyzed before a stage plans on it.
UNANALYZED_BYTES = 65536
# (database, table) that a thread of this process is vacuuming -> whether
# it was asked for again meanwhile.  Settling the next batch finds the table
# still bloated, and a second VACUUM of it would only wait for the first
# one's lock and give up (a million-member cache takes seconds to vacuum, a
# batch a tenth of a second to settle): the first thread does it again.
_VACUUMING = {}
_VACUUMING_LOCK = threading.Lock()
VACUUM_THREAD_NAME = "mailchimp-vacuum"


class WaitForConfirmation(Exception):  # noqa: N818 - a signal, not an error
    """The plan would opt out an unusual share of the audience: a manager
    confirms first.  Carries what the run shows (written after the
    step's savepoint is rolled back)."""

    def __init__(self, values):
        super().__init__(values)
        self.values = values


# Members renamed at Mailchimp moved per round of the renames stage.
RENAMES_CHUNK = 200


class BudgetSpent(Exception):
    """The stage stopped because the step's budget is spent; it resumes later."""


class _SerialMerger:
    """Pages merged in the step's own transaction, one after the other."""

    def __init__(self, members, audience):
        self.members, self.audience = members, audience

    def merge(self, page):
        return [(page, self.members._merge_page(self.audience, page.members))]

    def finish(self):
        return []


class _LaneMerger:
    """Pages handed to lanes (:class:`CommitLanes`); each merged page comes
    back, in the order read, with how many of its rows changed."""

    def __init__(self, lanes):
        self.lanes = lanes
        self.previous = {}  # the last page's members, by id

    def merge(self, page):
        # Pages overlap (PAGE_OVERLAP): a member the previous page gave as
        # is would be merged by two lanes at once, and the second, which
        # cannot see the first's row until it commits, then fails on it
        # (as every page did).  Merging it again would change nothing.
        members = [m for m in page.members if self.previous.get(m.get("id")) != m]
        self.previous = {m.get("id"): m for m in page.members}
        self.lanes.give(MemberPage(members, page.offset, page.next_offset, page.total_items))
        return list(self.lanes.results())

    def finish(self):
        return list(self.lanes.results(wait=True))


class MailchimpSync(models.AbstractModel):
    _name = "mailchimp.sync"
    _description = "Mailchimp Sync Engine"

    def _stages(self):
        """The cycle: stage name -> callable(audience, run, deadline) that
        returns True once the stage is finished."""
        Member = self.env["mailchimp.member"]
        return {
            "fetch": self._stage_fetch,
            "renames": self._stage_renames,
            "remove_invalid": lambda a, r, d: Member._remove_invalid(a) or True,
            "match": self._stage_match,
            "create": self._stage_create,
            # Incremental as the match's cycles are: Odoo changes looked at
            # since a time (``odoo_since``).
            "odoo_only": self._stage_odoo_only,
            "duplicates": lambda a, r, d: Member._drop_duplicates(a) or True,
            "odoo_changes": self._stage_odoo_changes,
            "data": self._stage_data,
            "reconcile": self._stage_reconcile,
            "submit": self.env["mailchimp.batch"]._stage_submit,
        }

    @api.model
    def _step(self, audience, budget=None):
        """Run one bounded step of ``audience``'s cycle (starting one if none
        is open).  Returns 'busy' (another worker has the audience, or the
        account's cap is reached), 'partial' (more steps needed), 'waiting'
        (nothing to do before the run's ``next_retry_at``), 'confirm' (a
        manager must confirm the plan first), 'done' (the cycle finished)
        or 'failed' (recorded on the run; retried)."""
        if audience.current_run_id.state == "confirm":
            return "confirm"
        deadline = time.monotonic() + max(budget or audience.max_time or 30, 0.001)
        # Asked before the step's first write (its lock).
        lanes = (audience.current_run_id.stage or "fetch") in LANE_STAGES and self._fresh_transaction()
        if not audience._lock_for_step() or not audience.account_id._take_sync_slot():
            return "busy"
        run = audience.current_run_id or self.env["mailchimp.sync.run"]._open(audience)
        stage = run.stage
        self._tune_bulk_transaction()
        if stage in ("create", "reconcile", "submit"):
            # Chunks the lanes of a step lost before its commit decided (or
            # gave contacts to), or batches its senders claimed: counted
            # now, once.  Outside the stage's savepoint, so that a step that
            # fails still drops the tallies it found counted.
            self.env["mailchimp.reconcile.tally"]._fold_into(run)
        started = time.monotonic()
        try:
            with self.env.cr.savepoint():
                stages = self.with_context(mailchimp_lanes=lanes)._stages()
                finished = self._call_stage(stages[stage], audience, run, deadline)
        except WaitUntil as wait:
            run.next_retry_at = wait.when
            return "waiting"
        except WaitForConfirmation as wait:
            run.write(dict(wait.values, state="confirm"))
            return "confirm"
        except (errors.SerializationFailure, errors.LockNotAvailable, errors.DeadlockDetected):
            # A webhook or a user changed the same rows: the next step, with
            # a fresh snapshot, does this unit again.
            self.env.invalidate_all()
            _logger.info("Audience %s: stage %s met a concurrent writer; retried", audience.id, stage)
            return "partial"
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on its own audience
            self.env.invalidate_all()
            if isinstance(exc, LaneFailed):
                # The chunks its lanes committed before one failed are kept.
                self._record_lanes(run, exc.board)
                exc = exc.board.error
            retry = run._record_failure(self._describe(stage, exc))
            _logger.warning("Mailchimp sync of audience %s failed in stage %s (next try %s): %s",
                            audience.id, stage, retry, exc, exc_info=not isinstance(exc, MailchimpError))
            return "failed"
        run._add_time(stage, time.monotonic() - started)
        run.steps += 1
        run._record_success()
        # The cycle's last step does not wait for it: no stage of the cycle
        # reads the tables again, and the worker is free for other jobs.  It
        # also refreshes the statistics the cycle left out of date (the
        # updates it queued, the memberships it wrote), before the first
        # batch is settled: settling asked for them itself, on each of its
        # lanes at once, and then vacuumed the updates half-way through.
        last = finished and run._next_stage() == "done"
        self._vacuum_if_bloated(analyze_stale=last, wait=not last)
        if not finished:
            return "partial"
        run._advance()
        if run.stage == "done":
            run._finish()
            return "done"
        return "partial"

    @api.model
    def _lanes_setting(self, key, default):
        """How many lanes (connections of their own) a stage runs on: the
        system parameter ``key``, else ``default``; at least one."""
        value = self.env["ir.config_parameter"].sudo().get_param(key)
        try:
            return max(int(value), 1) if value else default
        except ValueError:
            return default

    def _stage_lanes(self):
        """How many lanes the fetch and the create stage of this step run
        on: one (the step's own transaction) unless the step may use lanes
        (``mailchimp_lanes`` in the context, see _step)."""
        if not self.env.context.get("mailchimp_lanes"):
            return 1
        return self._lanes_setting("mailchimp_sync.stage_lanes", STAGE_LANES)

    def _commit_lanes(self, name, count, work):
        """:class:`CommitLanes` for a stage of this step: ``work(env, item)``
        on ``count`` connections of their own, a concurrent writer's
        conflict tried again on a fresh transaction.  Each lane's session is
        tuned for bulk statements once (a statement per item would be a
        tenth of a fetch's statements) and reset before its connection goes
        back to Odoo's pool."""
        return CommitLanes(self.env, name, count, work, conflicts=CONFLICTS,
                           setup=lambda env: env["mailchimp.sync"]._tune_bulk_transaction(session=True),
                           teardown=lambda env: env["mailchimp.sync"]._untune_session())

    def _fresh_transaction(self):
        """Whether this transaction has written nothing yet: the cron runner
        commits between steps, so all the step reads is committed, and the
        reconcile's lanes, on connections of their own, see it too.  A
        caller that ran earlier stages in the same transaction (a script,
        a test's transaction) has them reconciled in that transaction
        instead."""
        self.env.cr.execute("SELECT pg_current_xact_id_if_assigned() IS NULL")
        return self.env.cr.fetchone()[0]

    @staticmethod
    def _call_stage(stage, audience, run, deadline):
        """A spent budget ends the stage's step normally: what it did is kept."""
        try:
            return stage(audience, run, deadline)
        except BudgetSpent:
            return False

    def _describe(self, stage, exc):
        label = dict(self.env["mailchimp.sync.run"]._fields["stage"]._description_selection(self.env))[stage]
        return self.env._("%(stage)s failed: %(detail)s", stage=label, detail=describe_error(self.env, exc))

    def _check_budget(self, deadline):
        if time.monotonic() >= deadline:
            raise BudgetSpent()

    def _ensure_statistics(self, force=(), stale=True, tables=STAT_TABLES):
        """ANALYZE ``tables`` (the tables the bulk stages join) when their
        statistics are missing (or, with ``stale``, out of date).  Bulk
        inserts (ours, or an import) leave the planner believing a table
        has a few rows, and a nested loop over 100,000 rows then takes
        minutes instead of a second.  Settling a batch asks only for
        missing statistics: each batch changes a few thousand rows, and
        analyzing the cache after every one cost more than settling it."""
        cr = self.env.cr
        # Looked for and found present, statistics stay so for the rest of
        # the transaction (the statistics views answer from a snapshot taken
        # once per transaction anyway): settling ten batches in one call
        # asked ten times, 3 ms each.  The mark lives as long as the
        # transaction (the post-commit data: savepoints do not clear it).
        present = cr.postcommit.data.setdefault("mailchimp_statistics_present", set())
        if not force and not stale and tuple(tables) in present:
            return
        # A table never analyzed is also known by its size on disk: the
        # counts of rows a connection wrote reach the statistics views up
        # to seconds after its commit (ten, once it is idle), and a first
        # sync started right after an import of 5,000 contacts planned on
        # none, a nested loop of 12.5 million row pairs (1.1 s; minutes for
        # 50,000).
        cr.execute(
            f"""SELECT relname FROM pg_stat_user_tables
                WHERE relname = ANY(%s)
                  AND (relname = ANY(%s)
                       OR (last_analyze IS NULL AND last_autoanalyze IS NULL
                           AND (n_live_tup + n_mod_since_analyze > 500 OR pg_relation_size(relid) > %s))
                       OR (%s AND {STALE_STATS_SQL}))""",
            (list(tables), list(force), UNANALYZED_BYTES, stale),
        )
        analyzed = [table for (table,) in cr.fetchall()]
        for table in analyzed:
            cr.execute(SQL("ANALYZE %s", SQL.identifier(table)))
        if analyzed:
            # The statistics views are read once per transaction and cached:
            # without this, the next call in the same transaction (settling
            # ten batches in one cron call) analyzes the same table again.
            cr.execute("SELECT pg_stat_clear_snapshot()")
        elif not force and not stale:
            present.add(tuple(tables))
        return analyzed

    def _tune_bulk_transaction(self, session=False):
        """For this transaction only (``session``: for the connection, until
        :meth:`_untune_session`): give the bulk statements' hash joins,
        sorts and groupings BULK_WORK_MEM (unless the server's setting is
        larger already), and no JIT compilation.  PostgreSQL's default
        work_mem (4 MB) is far below one hash of a 100,000-member cache, so
        the stages spilled to disk; and JIT compiled each chunk's statements
        again (about 90 ms for a 5,000-row write, more than a tenth of it)
        for plans that run once."""
        self.env.cr.execute(
            """SELECT set_config('jit', 'off', %s),
                      CASE WHEN pg_size_bytes(current_setting('work_mem')) < pg_size_bytes(%s)
                           THEN set_config('work_mem', %s, %s) END""",
            (not session, BULK_WORK_MEM, BULK_WORK_MEM, not session),
        )

    def _untune_session(self):
        """The connection's own settings again, before it goes back to the pool."""
        self.env.cr.execute("RESET jit; RESET work_mem")

    def _vacuum_if_bloated(self, analyze_stale=False, wait=True):
        """After the transaction commits, VACUUM (and ANALYZE) the cache and
        update tables if more of their rows are dead than alive, or, with
        ``analyze_stale`` (the last batch of a sync was just settled),
        their statistics are out of date; the other tables the stages join
        are then analyzed too where stale (the memberships a first sync
        created, say), so the next cycle does not wait for it.  Each stage
        rewrites most rows of a large cache; where autovacuum is off or lags
        behind (a busy server), a 100,000-member cache grew to seven dead
        versions of each row, and every later stage read and indexed all of
        them.  VACUUM cannot run inside a transaction, so it runs on a
        connection of its own once the caller's work is committed; it
        blocks no reader or writer.  Without ``wait`` (settling a batch,
        from the poller or Mailchimp's webhook), it runs in a thread of its
        own, so the caller goes on with the next batch, or answers, at once."""
        cr = self.env.cr
        cr.execute(
            f"""SELECT relname FROM pg_stat_user_tables
                WHERE (relname = ANY(%s) AND n_dead_tup > 20000 AND n_dead_tup > n_live_tup)
                   OR (%s AND relname = ANY(%s) AND {STALE_STATS_SQL})""",
            (list(VACUUM_TABLES), analyze_stale, list(STAT_TABLES)),
        )
        tables = {table for (table,) in cr.fetchall()}
        if not tables:
            return
        # One VACUUM per table and commit, however many callers asked.
        pending = cr.postcommit.data.get("mailchimp_vacuum")
        if pending is None:
            pending = cr.postcommit.data["mailchimp_vacuum"] = set()
            dbname = cr.dbname
            if wait:
                cr.postcommit.add(lambda: self._vacuum(dbname, sorted(pending)))
            else:
                cr.postcommit.add(lambda: self._vacuum_in_background(dbname, sorted(pending)))
        pending |= tables

    @classmethod
    def _vacuum_in_background(cls, dbname, tables):
        """Start ``_vacuum`` in a daemon thread for the tables no thread of
        this process is vacuuming yet; returns the thread, if any.  A table
        asked for while a thread vacuums it is done once more by that thread
        when it is through (the last batch of a sync asks for statistics of
        what it wrote).  A VACUUM cut short (the worker exits, or is killed)
        leaves nothing to undo."""
        with _VACUUMING_LOCK:
            # A table a thread is on is marked asked-for-again; the others are this thread's.
            busy = [table for table in tables if (dbname, table) in _VACUUMING]
            tables = [table for table in tables if table not in busy]
            _VACUUMING.update({(dbname, table): table in busy for table in busy + tables})
        if not tables:
            return None

        def vacuum(todo):
            try:
                while todo:
                    cls._vacuum(dbname, todo)
                    with _VACUUMING_LOCK:
                        # Done with each table, unless it was asked for again meanwhile.
                        todo = [table for table in todo if _VACUUMING.pop((dbname, table))]
                        _VACUUMING.update(((dbname, table), False) for table in todo)
            finally:
                with _VACUUMING_LOCK:
                    for table in todo:
                        _VACUUMING.pop((dbname, table), None)

        thread = threading.Thread(target=vacuum, args=(tables,), name=VACUUM_THREAD_NAME, daemon=True)
        thread.start()
        return thread

    @staticmethod
    def _vacuum(dbname, tables):
        try:
            with closing(sql_db.db_connect(dbname).cursor()) as vcr:
                vcr._cnx.autocommit = True
                try:
                    # Another worker vacuuming the same table already does the job.
                    vcr.execute("SET lock_timeout = '2s'")
                    for table in tables:
                        # The tables the sync rewrites are vacuumed; the others
                        # (Odoo's) only have their statistics refreshed.  No
                        # truncation of empty pages at the end: it needs an
                        # exclusive lock, which blocks every reader of the cache
                        # while it lasts, and while any transaction holds a lock
                        # on the table (a webhook, another step) VACUUM waited
                        # five seconds for it before giving up.  The pages are
                        # reused by the next writes anyway.
                        command = ("VACUUM (ANALYZE, TRUNCATE FALSE) %s" if table in VACUUM_TABLES
                                   else "ANALYZE %s")
                        try:
                            vcr.execute(SQL(command, SQL.identifier(table)), log_exceptions=False)
                        except errors.LockNotAvailable:
                            _logger.info("VACUUM of %s skipped: another session is vacuuming it", table)
                finally:
                    vcr.execute("RESET lock_timeout")
                    vcr._cnx.autocommit = False  # the connection goes back to the pool
        except Exception:  # noqa: BLE001 - a maintenance step must not break the committing caller
            _logger.warning("VACUUM of %s failed; the sync goes on without it", ", ".join(tables), exc_info=True)

    # ------------------------------------------------------------------
    # Stages with a loop of their own
    # ------------------------------------------------------------------

    def _stage_fetch(self, audience, run, deadline):
        """Page the members changed since the last fetch (all on a full
        sync), then the archived ones, which the default listing leaves out."""
        client = audience.account_id._get_client()
        if not run.fetch_offset and not run.fetch_status:
            # Interests deleted at Mailchimp are skipped by this cycle.
            self.env["mailchimp.interest"]._refresh_stale(audience)
        since = format_mailchimp_datetime(run.fetch_since) if run.fetch_since else None
        timing = {"page": 0.0, "more": True}

        def ahead():
            # No page read ahead that the budget will not leave time for;
            # and a page read ahead is merged by this step, not dropped
            # (merged on lanes, a page is handed over at once, and the
            # step then ran past its deadline with the next page read for
            # nothing: one request more per step).
            timing["more"] = time.monotonic() + timing["page"] < deadline
            return timing["more"]

        lanes = self._stage_lanes()
        while True:
            status = run.fetch_status or None
            # The next page is read from Mailchimp while this one is merged:
            # waiting for the answer and writing the cache overlap.
            pages = read_ahead(client.iter_member_pages(
                audience.mailchimp_list_id, fields=self.env["mailchimp.merge.field"]._fetch_fields(audience),
                since_last_changed=since,
                status=status, offset=run.fetch_offset, overlap=PAGE_OVERLAP,
            ), ahead)
            # Each page's members are parsed and merged with the collector
            # paused (see gc_pause): they are acyclic and soon dropped.
            with closing(pages), cycle_collector_paused(), self._page_merger(audience, lanes) as merger:
                for page in pages:
                    started = time.monotonic()
                    self._record_pages(run, merger.merge(page))
                    timing["page"] = time.monotonic() - started
                    if not page.is_last and not timing["more"]:
                        self._record_pages(run, merger.finish())
                        return False
                self._record_pages(run, merger.finish())
            if status == "archived":
                break
            run.write({"fetch_status": "archived", "fetch_offset": 0})
        run.fetch_offset = 0
        audience.last_fetch_at = run.started_at
        # The stages after a large fetch plan on what it wrote: the renames
        # stage, next, read statistics that said the cache was nearly empty
        # (a million-member first sync sorted every row on disk, 2.9 s).
        # Forced: the lanes' own counts may not be reported yet.
        if run.full and run.fetched_changed > 1000:
            self._ensure_statistics(force=("mailchimp_member",))
        return True

    def _record_pages(self, run, merged):
        """Pages merged (and, on lanes, committed), as (page, rows changed),
        in the order read: where the next step goes on."""
        for page, changed in merged:
            run.fetched_changed += changed
            run.fetched += max(page.next_offset - run.fetch_offset, 0)
            run.write({"fetch_offset": page.next_offset, "fetch_pages": run.fetch_pages + 1,
                       "progress_done": page.next_offset, "progress_total": page.total_items})

    @contextmanager
    def _page_merger(self, audience, lanes):
        """What merges the fetched pages: this step's transaction (one
        lane), or ``lanes`` connections of their own, each merging the next
        page and committing it while this one reads the next.  Merging is
        the fetch's work in PostgreSQL (about 45 ms a page of 1,000, against
        about 18 ms to read one), which a single connection does on one
        core.  Pages a lane committed before its step was lost are merged
        again by the next step, and found unchanged."""
        if lanes <= 1:
            yield _SerialMerger(self.env["mailchimp.member"], audience)
            return
        audience_id = audience.id

        def merge(env, page):
            audience = env["mailchimp.audience"].browse(audience_id)
            return page, env["mailchimp.member"]._merge_page(audience, page.members)

        with self._commit_lanes(f"mailchimp-fetch-{audience_id}", lanes, merge) as pool:
            yield _LaneMerger(pool)
        self.env["mailchimp.member"].invalidate_model()  # the lanes wrote through environments of their own

    def _stage_renames(self, audience, run, deadline):
        # A few renames a cycle, usually; a whole domain renamed at
        # Mailchimp is thousands, each moved through the ORM: a step moves
        # what its budget allows, the next one finds the rest still to move.
        while True:
            moved = self.env["mailchimp.member"]._follow_renames(audience, since=run.fetch_since, limit=RENAMES_CHUNK)
            run.renamed += moved
            if moved < RENAMES_CHUNK:
                return True
            self._check_budget(deadline)

    def _stage_match(self, audience, run, deadline):
        # (A large full fetch analyzed the cache in its last step.)
        analyzed = self._ensure_statistics()
        Member = self.env["mailchimp.member"]
        lanes = self._stage_lanes()
        if lanes <= 1 or run.odoo_since:
            Member._match_contacts(audience, since=run.odoo_since)
            return True
        if analyzed and not run.cursor:
            # Lanes plan on committed statistics only: this step commits
            # the ones it just made, and the next one matches.
            run.cursor = 1
            return False
        # A full cycle matches every row without a contact: one statement
        # on one core, so split between the lanes by row id, each
        # committing its part.  A part committed by a step that was then
        # lost is found matched when the stage runs again.
        self._split_in_lanes(audience, "match", lanes, "_match_contacts")
        return True

    def _stage_odoo_only(self, audience, run, deadline):
        Member = self.env["mailchimp.member"]
        lanes = self._stage_lanes()
        if lanes <= 1 or run.odoo_since:
            Member._add_odoo_only(audience, lateral=bool(run.odoo_since))
            return True
        # A full cycle's insert of every contact the cache lacks, split
        # between the lanes by a hash of the address: contacts sharing an
        # address meet on one lane, which picks their row as one statement
        # would (a split by contact would let two lanes race for it).
        self._split_in_lanes(audience, "odoo-only", lanes, "_add_odoo_only")
        return True

    def _split_in_lanes(self, audience, name, lanes, method):
        """Run ``mailchimp.member.<method>(audience, part=(lanes, part))``
        for each part on ``lanes`` connections of their own, each part
        committed apart (a conflict with a concurrent writer runs it again
        on a fresh transaction), and wait for them all; the first failure
        is raised."""
        audience_id = audience.id

        def work(env, part):
            getattr(env["mailchimp.member"], method)(env["mailchimp.audience"].browse(audience_id), part=part)

        with self._commit_lanes(f"mailchimp-{name}-{audience_id}", lanes, work) as pool:
            for part in range(lanes):
                pool.give((lanes, part))
            for _result in pool.results(wait=True):
                pass
        self.env.invalidate_all()  # the lanes wrote through environments of their own

    def _stage_create(self, audience, run, deadline):
        lanes = self._stage_lanes()
        if lanes > 1:
            finished = self._create_in_lanes(audience, run, deadline, lanes)
        else:
            finished = self._create_in_step(audience, run, deadline)
        if finished:
            self._ensure_statistics(force=("mailchimp_member", "mailing_contact") if run.created > 1000 else ())
        return finished

    def _create_in_step(self, audience, run, deadline):
        """The create stage in the step's own transaction, chunk after chunk."""
        while True:
            created = self.env["mailing.contact"]._mailchimp_create_chunk(audience, after_id=run.cursor)
            run.created += len(created)
            if created:
                run.cursor = max(created)
            if len(created) < CREATE_CHUNK:
                return True
            self._check_budget(deadline)

    def _create_in_lanes(self, audience, run, deadline, lanes):
        """The create stage on ``lanes`` connections of their own: this step
        lists the next chunk of rows to give contacts to and hands it to a
        lane, which creates them and commits, while the next chunk is
        listed; the chunks are recorded on the run in the order listed.
        Each chunk is one statement of PostgreSQL work (inserting the
        contacts, checking their keys, writing the rows), which one
        connection does on one core.  A row a webhook gave a contact
        meanwhile is left out by its lane; a chunk a lane committed before
        its step was lost finds its rows done when listed again."""
        Contact = self.env["mailing.contact"]
        audience_id, run_id, token = audience.id, run.id, uuid.uuid4().hex

        def create(env, ids):
            created = env["mailing.contact"]._mailchimp_create_chunk(
                env["mailchimp.audience"].browse(audience_id), member_ids=ids)
            # Counted with the chunk too, for a step lost before its commit
            # (see mailchimp.reconcile.tally).
            counts = Counts()
            counts.created = len(created)
            env["mailchimp.reconcile.tally"]._record(run_id, token, counts)
            return ids, created

        def record(ids, created):
            run.created += len(created)
            run.cursor = ids[-1]

        with self._commit_lanes(f"mailchimp-create-{audience_id}", lanes, create) as pool:
            after = run.cursor
            # A step lists at least one chunk, as a serial one creates one.
            while True:
                ids = Contact._mailchimp_rows_to_create(audience, after, CREATE_CHUNK)
                if ids:
                    pool.give(ids)
                    after = ids[-1]
                for chunk in pool.results():
                    record(*chunk)
                if len(ids) < CREATE_CHUNK or time.monotonic() >= deadline:
                    break
            for chunk in pool.results(wait=True):
                record(*chunk)
        run.lanes_token = token  # the chunks of this step are counted on the run
        self.env.invalidate_all()  # the lanes wrote through environments of their own
        return len(ids) < CREATE_CHUNK

    def _stage_odoo_changes(self, audience, run, deadline):
        self._ensure_statistics()
        Changes = self.env["mailchimp.odoo.changes"]
        if not run.odoo_since and run.cache_was_empty:
            # A first cycle wrote each row with its Odoo side (fetch, match,
            # create, Odoo-only): only what was stamped since it began can
            # be newer.  Recomputing every row found nothing to write and
            # took 14.8 s at a million members.
            Changes._refresh_odoo_state(audience, since=run.odoo_horizon, stamped_only=True)
        else:
            Changes._refresh_odoo_state(audience, since=run.odoo_since)
        # Read here, in the transaction before the data stage's: the data
        # written before it (the contacts this cycle created) is the data
        # stage's to see, and the next cycle's not to look at again.
        run.data_horizon = run._db_horizon()
        return True

    def _stage_data(self, audience, run, deadline):
        """Data written since the last cycle looked at data, if it synced
        with these settings."""
        run.data_config = config = self.env["mailchimp.merge.field"]._data_config(audience)
        previous = run._last_done(audience)
        incremental = run.odoo_since and previous.data_config == config
        self.env["mailchimp.odoo.changes"]._mark_data_changes(
            audience, since=(previous.data_horizon or run.odoo_since) if incremental else None)
        return True

    def _stage_reconcile(self, audience, run, deadline):
        Reconcile = self.env["mailchimp.reconcile"]
        if not run.cursor:
            self._ensure_statistics()
            # (the plan counts the rows to do besides: the stage's progress)
            plan = Reconcile._plan(audience)
            run.write({key: plan[key] for key in ("plan_opt_outs", "plan_unsubscribes", "progress_total")})
            if not run.plan_confirmed and plan.get("message"):
                raise WaitForConfirmation(plan)
        lanes = Reconcile._lanes() if self.env.context.get("mailchimp_lanes") else 1
        if lanes > 1 and run.failure_count < 2:
            board = Reconcile._reconcile_in_lanes(audience, run.id, run.cursor, deadline, lanes,
                                                  rows_left=run.progress_total - run.progress_done)
            if board.error:
                raise LaneFailed(board) from board.error
            self._record_lanes(run, board)
            return board.finished
        while True:
            with cycle_collector_paused():
                rows = Reconcile._load_rows(audience, run.cursor)
                if not rows:
                    return True
                if run.failure_count >= 2:
                    # This chunk failed twice the same way: decide its rows
                    # one by one, fail the ones that break with the reason.
                    Reconcile._reconcile_rows_one_by_one(audience, run, rows)
                else:
                    Reconcile._reconcile_rows(audience, run, rows)
                run.write({"cursor": rows[-1]["id"], "progress_done": run.progress_done + len(rows)})
            self._check_budget(deadline)

    def _record_lanes(self, run, board):
        """What the lanes committed, on the run: their counts, where the
        next step goes on, and the step's token (its tallies are counted)."""
        board.counts.add_to_run(run)
        run.write({"cursor": board.done_up_to(run.cursor), "lanes_token": board.token})

    # ------------------------------------------------------------------
    # Single rows (webhooks, Retry) and the extension point
    # ------------------------------------------------------------------

    @api.model
    def _mailchimp_extra_merge_fields(self, audience, contact_ids):
        """Extension point: return {contact_id: {MERGE_TAG: value}} of merge
        fields to keep in sync Odoo → Mailchimp, besides FNAME and LNAME.
        Only values that changed since the last sync are sent."""
        return {}
