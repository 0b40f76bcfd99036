"""The fetch and the create stage on lanes: pages read (or chunks of rows
listed) in the step's thread, merged (or given contacts) on connections of
their own, each committed by its lane, while the step's transaction keeps
the run and records them in the order read."""
# The committed tests race real transactions on real connections, which commit.
# pylint: disable=invalid-commit

import threading
import time
from contextlib import contextmanager
from unittest.mock import patch

from psycopg2 import errors

from odoo.sql_db import PoolError
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..models import mailchimp_sync
from ..models.mailchimp_sync import PAGE_OVERLAP
from ..tools import threads
from ..tools.threads import CommitLanes
from .common import SyncCase
from .test_engine import CommittedFixture
from .test_sync import listing_pages

SYNC = "odoo.addons.mailchimp_sync.models.mailchimp_sync"


def members(count):
    return [{"email_address": f"racer{i}@example.net", "status": "subscribed"} for i in range(count)]


class StepsOnLanes(CommittedFixture):
    def step(self, budget=None, lost=False):
        """One step of the audience's cycle on a real cursor, committed (or,
        ``lost``, rolled back: a worker killed before its commit)."""
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            result = env["mailchimp.sync"]._step(env["mailchimp.audience"].browse(self.ids["audience"]),
                                                 budget=budget)
            if lost:
                cr.rollback()
            else:
                cr.commit()
        return result

    @contextmanager
    def lanes_must_meet(self, model, method):
        """Each lane's first call of ``model.method`` waits at a barrier for
        the others' (lanes taking turns never meet, and the call fails).
        Yields the names of the threads seen, one per call."""
        Model = type(self.env[model])
        barrier = threading.Barrier(mailchimp_sync.STAGE_LANES, timeout=20)
        real, seen = getattr(Model, method), []
        lock = threading.Lock()

        def meeting(recordset, *args, **kwargs):
            name = threading.current_thread().name
            with lock:
                seen.append(name)
                first = seen.count(name) == 1
            if first:
                barrier.wait()
            return real(recordset, *args, **kwargs)

        with patch.object(Model, method, meeting):
            yield seen


@tagged("post_install", "-at_install")
class TestFetchOnLanes(StepsOnLanes, SyncCase):
    def cache(self):
        with self.db.cursor() as cr:
            cr.execute("""SELECT count(*), count(DISTINCT subscriber_hash) FROM mailchimp_member
                           WHERE audience_id = %s""", (self.ids["audience"],))
            rows = cr.fetchone()
            run = self.env_on(cr)["mailchimp.sync.run"].search([("audience_id", "=", self.ids["audience"])],
                                                               order="id desc", limit=1)
            return rows, (run.stage, run.fetched, run.fetch_pages, run.fetched_changed)

    def merges_seen(self, fail_at=None):
        """Patch the page merge to note which thread merged each page (the
        first page of each lane waits at a barrier for the other lane's:
        taking turns, they would never meet), and raise at the ``fail_at``-th."""
        Member = type(self.env["mailchimp.member"])
        real, seen, barrier = Member._merge_page, [], threading.Barrier(2, timeout=20)
        lock = threading.Lock()

        def merge_page(model, audience, page_members, echoes=True):
            name = threading.current_thread().name
            with lock:
                seen.append(name)
                first, number = seen.count(name) == 1, len(seen)
            if fail_at and number == fail_at:
                raise ValueError("a page that cannot be merged")
            if first and name.startswith("mailchimp-fetch") and not fail_at:
                barrier.wait()
            return real(model, audience, page_members, echoes=echoes)

        return patch.object(Member, "_merge_page", merge_page), seen

    def test_two_lanes_merge_pages_at_the_same_time_and_each_member_once(self):
        """3,500 members in four pages: two lanes hold a page at once, each
        page is merged once (the members a page repeats of the one before,
        for the listing's overlap, are left out: merged by two lanes at once
        they failed), and the run counts every member and page once."""
        self.setup_committed(members=members(3500))
        patcher, seen = self.merges_seen()
        with patcher:
            self.run_steps(until="renames")
        lanes = {name for name in seen if name.startswith("mailchimp-fetch")}
        self.assertEqual(len(lanes), 2, seen)
        # the default listing's pages, then the archived members' (none: one empty page)
        pages = listing_pages(3500, PAGE_OVERLAP) + 1
        self.assertEqual(len(seen), pages, "no page merged twice (no conflict between lanes)")
        rows, (stage, fetched, fetch_pages, changed) = self.cache()
        self.assertEqual(rows, (3500, 3500))
        self.assertEqual((stage, fetched, fetch_pages, changed), ("renames", 3500, pages, 3500))

    def test_every_page_read_is_merged_whatever_the_budget(self):
        """Steps of a fifth of a second, merges of over a tenth: each step
        ends mid-listing, and every page it read from Mailchimp is merged
        and counted, none read ahead for nothing (a page is handed to a
        lane at once, so that a step used to run past its deadline with
        the next page already read: one request more per step)."""
        self.setup_committed(members=members(12000))
        Member = type(self.env["mailchimp.member"])
        real = Member._merge_page

        def slow_merge(model, audience, page_members, echoes=True):
            time.sleep(0.15)
            return real(model, audience, page_members, echoes=echoes)

        before = self.emulator.control.stats()["requests"]
        steps = 0
        with patch.object(Member, "_merge_page", slow_merge):
            while self.cache()[1][0] in (False, "fetch") and steps < 50:
                self.step(budget=0.2)
                steps += 1
        rows, (stage, fetched, fetch_pages, _changed) = self.cache()
        self.assertEqual((rows, stage, fetched), ((12000, 12000), "renames", 12000))
        self.assertGreater(steps, 2, "the budget ended steps mid-listing")
        # the pages, and the audience's interest categories (it has none, so
        # none's interests are asked for)
        self.assertEqual(self.emulator.control.stats()["requests"] - before, fetch_pages + 1)

    def test_one_lane_merges_in_the_steps_own_transaction(self):
        """``mailchimp_sync.stage_lanes`` at 1: every page is merged by the
        step itself, as before the lanes, with the same outcome."""
        self.setup_committed(members=members(2500))
        with self.db.cursor() as cr:
            self.env_on(cr)["ir.config_parameter"].set_param("mailchimp_sync.stage_lanes", "1")
            cr.commit()
        self.addCleanup(self.reset_stage_lanes)
        patcher, seen = self.merges_seen()
        with patcher:
            self.run_steps(until="renames")
        self.assertFalse([name for name in seen if name.startswith("mailchimp-fetch")], seen)
        rows, (stage, fetched, fetch_pages, changed) = self.cache()
        self.assertEqual(rows, (2500, 2500))
        self.assertEqual((stage, fetched, fetch_pages, changed), ("renames", 2500, len(seen), 2500))

    def reset_stage_lanes(self):
        with self.db.cursor() as cr:
            # through the ORM: its cache of the parameters is cleared too
            self.env_on(cr)["ir.config_parameter"].set_param("mailchimp_sync.stage_lanes", False)
            cr.commit()

    def test_a_step_lost_after_its_lanes_committed_fetches_those_pages_again_unchanged(self):
        """The first step merges a page or two on its lanes and is lost
        before its own commit (a worker killed): the pages stay merged,
        the run is gone, and the next cycle reads them again, finds them
        unchanged, and ends with each member once."""
        self.setup_committed(members=members(2500))
        self.assertEqual(self.step(budget=0.001, lost=True), "partial")
        rows, (stage, *_counts) = self.cache()
        self.assertTrue(1000 <= rows[0] < 2500, rows)
        self.assertFalse(stage, "the lost step's run is not there")
        self.run_steps(until="renames")
        rows, (stage, fetched, _pages, changed) = self.cache()
        self.assertEqual(rows, (2500, 2500))
        self.assertEqual(fetched, 2500)
        self.assertLessEqual(changed, 2500 - 990, "the pages merged before were found unchanged")

    def test_a_page_that_fails_fails_the_step_and_the_next_step_goes_on(self):
        """The second page fails on its lane: the pages read after it are not
        merged, the step is recorded as failed with the reason, and once the
        cause is gone the next step fetches the rest."""
        self.setup_committed(members=members(3500))
        patcher, seen = self.merges_seen(fail_at=2)
        with patcher, self.db.cursor() as cr, mute_logger(SYNC):
            env = self.env_on(cr)
            audience = env["mailchimp.audience"].browse(self.ids["audience"])
            self.assertEqual(env["mailchimp.sync"]._step(audience), "failed")
            self.assertIn("Fetching from Mailchimp failed", audience.current_run_id.message)
            cr.commit()
        self.assertLessEqual(len(seen), 2 + 2, "pages given after the failure are not merged (a lane each may "
                                               "have held one)")
        rows, _run = self.cache()
        self.assertLess(rows[0], 3500)
        with self.db.cursor() as cr:
            cr.execute("UPDATE mailchimp_sync_run SET next_retry_at = NULL WHERE audience_id = %s",
                       (self.ids["audience"],))
            cr.commit()
        self.run_steps(until="renames")
        rows, (stage, fetched, *_rest) = self.cache()
        self.assertEqual(rows, (3500, 3500))
        self.assertEqual(stage, "renames")


@tagged("post_install", "-at_install")
class TestCreateOnLanes(StepsOnLanes, SyncCase):
    def contacts(self):
        with self.db.cursor() as cr:
            cr.execute("""SELECT count(*), count(DISTINCT c.email_normalized), count(m.id)
                            FROM mailing_contact c
                       LEFT JOIN mailchimp_member m ON m.contact_id = c.id AND m.audience_id = %s
                           WHERE c.email_normalized LIKE 'racer%%@example.net'""", (self.ids["audience"],))
            contacts = cr.fetchone()
            cr.execute("""SELECT count(*) FILTER (WHERE contact_id IS NULL), count(*) FROM mailchimp_member
                           WHERE audience_id = %s""", (self.ids["audience"],))
            rows = cr.fetchone()
            run = self.env_on(cr)["mailchimp.sync.run"].search([("audience_id", "=", self.ids["audience"])],
                                                               order="id desc", limit=1)
            return contacts, rows, (run.stage, run.created)

    def cleanup_contacts(self):
        with self.db.cursor() as cr:
            self.env_on(cr)["mailing.contact"].search([("email", "like", "racer%@example.net")]).unlink()
            cr.commit()

    def test_two_lanes_create_the_contacts_of_two_chunks_at_the_same_time(self):
        """Chunks of ten rows: both lanes hold a chunk at once (each lane's
        first chunk waits at a barrier for the other's), and each member
        gets one contact, counted once."""
        self.setup_committed(members=members(75))
        self.addCleanup(self.cleanup_contacts)
        self.run_steps(until="create")
        with patch.object(mailchimp_sync, "CREATE_CHUNK", 10), \
                self.lanes_must_meet("mailing.contact", "_mailchimp_create_chunk") as seen:
            self.run_steps(until="odoo_only")
        self.assertEqual(len(set(seen)), mailchimp_sync.STAGE_LANES, seen)
        self.assertTrue(all(name.startswith("mailchimp-create") for name in seen), seen)
        self.assertEqual(len(seen), 8, "eight chunks, each created once")
        self.assertEqual(self.contacts(), ((75, 75, 75), (0, 75), ("odoo_only", 75)))

    def test_a_step_lost_after_its_lanes_committed_creates_no_contact_twice(self):
        """A step of a chunk or two is lost before its own commit (a worker
        killed): its lanes' contacts stay, the next steps list those rows
        as done, no member gets a second contact, and the lost chunks are
        counted on the run once, from their tallies."""
        self.setup_committed(members=members(60))
        self.addCleanup(self.cleanup_contacts)
        self.run_steps(until="create")
        with patch.object(mailchimp_sync, "CREATE_CHUNK", 10):
            self.assertEqual(self.step(budget=0.001, lost=True), "partial")
            (contacts, _distinct, _linked), (without, _rows), (stage, created) = self.contacts()
            self.assertTrue(10 <= contacts < 60, contacts)
            self.assertEqual((stage, created), ("create", 0), "the lost step's counts are not on the run")
            self.run_steps(until="odoo_only")
        contacts, rows, (stage, created) = self.contacts()
        self.assertEqual((contacts, rows, stage), ((60, 60, 60), (0, 60), "odoo_only"))
        self.assertEqual(created, 60, "every contact counted once, those of the lost step's lanes too")
        # The reconcile steps fold what tallies are left: the create's are not counted again.
        self.run_steps()
        self.assertEqual(self.contacts()[2], ("done", 60))


@tagged("post_install", "-at_install")
class TestSplitStagesOnLanes(StepsOnLanes, SyncCase):
    """A full cycle's match and Odoo-only stages: one statement each, split
    between the lanes (rows by id, addresses by hash), each part committed
    by its lane."""

    def rows(self):
        with self.db.cursor() as cr:
            cr.execute("""SELECT m.email, c.email_normalized FROM mailchimp_member m
                       LEFT JOIN mailing_contact c ON c.id = m.contact_id
                           WHERE m.audience_id = %s ORDER BY m.email""", (self.ids["audience"],))
            return cr.fetchall()

    def test_a_full_match_is_split_between_the_lanes(self):
        """Forty members, thirty of them known as contacts: the lanes match
        a half of the rows each, at the same time, and every row has the
        contact of its address, the others none yet."""
        self.setup_committed(odoo_only=30, members=[
            {"email_address": f"racer{i}@example.org", "status": "subscribed"} for i in range(40)])
        self.run_steps(until="match")
        with self.lanes_must_meet("mailchimp.member", "_match_contacts") as seen:
            self.run_steps(until="create")
        self.assertEqual(len(seen), mailchimp_sync.STAGE_LANES, seen)
        self.assertTrue(all(name.startswith("mailchimp-match") for name in seen), seen)
        rows = self.rows()
        self.assertEqual(len(rows), 40)
        self.assertEqual(sorted(email for email, contact in rows if contact),
                         sorted(f"racer{i}@example.org" for i in range(30)))
        self.assertTrue(all(contact in (email, None) for email, contact in rows))

    def test_statistics_made_by_the_match_step_are_committed_before_the_lanes_plan(self):
        """The step that had to analyze tables only commits the statistics
        (the lanes see committed ones only); the next step matches."""
        self.setup_committed(odoo_only=4, members=[
            {"email_address": f"racer{i}@example.org", "status": "subscribed"} for i in range(4)])
        self.run_steps(until="match")
        Sync = type(self.env["mailchimp.sync"])
        real = Sync._ensure_statistics
        with patch.object(Sync, "_ensure_statistics", lambda sync, *a, **k: real(sync, *a, **k) or ["mail_blacklist"]):
            self.assertEqual(self.step(), "partial")
            self.assertEqual([contact for _email, contact in self.rows()], [None] * 4, "nothing matched yet")
            self.assertEqual(self.step(), "partial")
        self.assertEqual([email == contact for email, contact in self.rows()], [True] * 4)
        self.assertEqual(self.run_steps(until="create"), "create")

    def test_odoo_only_rows_are_split_between_the_lanes_by_address(self):
        """Forty contacts Mailchimp does not know, two of them sharing an
        address with another: the lanes add a row for each address at the
        same time, for the lowest contact of an address, as one statement
        does."""
        self.setup_committed(odoo_only=40)
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            twins = env["mailing.contact"].create([
                {"name": f"Twin {i}", "email": f"racer{i}@example.org", "list_ids": [(4, self.ids["list"])]}
                for i in (3, 17)])
            cr.commit()
        self.run_steps(until="odoo_only")
        with self.lanes_must_meet("mailchimp.member", "_add_odoo_only") as seen:
            self.run_steps(until="duplicates")
        self.assertEqual(len(seen), mailchimp_sync.STAGE_LANES, seen)
        self.assertTrue(all(name.startswith("mailchimp-odoo-only") for name in seen), seen)
        with self.db.cursor() as cr:
            cr.execute("""SELECT count(*), count(DISTINCT email), count(*) FILTER (WHERE contact_id = ANY(%s))
                            FROM mailchimp_member WHERE audience_id = %s""", (twins.ids, self.ids["audience"]))
            self.assertEqual(cr.fetchone(), (40, 40, 0), "one row per address, for its first contact")


@tagged("post_install", "-at_install")
class TestCommitLanes(CommittedFixture, SyncCase):
    def test_results_come_in_the_order_given_and_a_conflict_is_tried_again(self):
        """Item 0 takes longest, item 2 meets a concurrent writer once: the
        results still come in the order given, item 2 worked twice, and each
        lane's session settings are made once and undone."""
        self.setup_committed()
        tries, lock, settings = {}, threading.Lock(), []

        def work(env, item):
            with lock:
                tries[item] = tries.get(item, 0) + 1
                first = tries[item] == 1
            if item == 0:
                time.sleep(0.3)
            if item == 2 and first:
                raise errors.SerializationFailure("concurrent update")
            env.cr.execute("SELECT current_setting('application_name') IS NOT NULL, %s", (item,))
            return env.cr.fetchone()[1] * 10

        def setup(env):
            env.cr.execute("SET jit = off")
            settings.append("setup")

        def teardown(env):
            env.cr.execute("RESET jit")
            settings.append("teardown")

        got = []
        with CommitLanes(self.env, "test-lanes", 2, work, conflicts=(errors.SerializationFailure,),
                         setup=setup, teardown=teardown) as lanes:
            for item in range(5):
                lanes.give(item)
                got.extend(lanes.results())
            got.extend(lanes.results(wait=True))
        self.assertEqual(got, [0, 10, 20, 30, 40])
        self.assertEqual(tries, {0: 1, 1: 1, 2: 2, 3: 1, 4: 1})
        self.assertEqual(sorted(settings), ["setup", "setup", "teardown", "teardown"])

    def test_a_failed_item_raises_in_order_and_stops_the_items_after_it(self):
        self.setup_committed()
        worked = []

        def work(env, item):
            worked.append(item)
            if item == 1:
                raise ValueError("item 1 is broken")
            if item == 0:
                time.sleep(0.2)
            return item

        got = []
        with self.assertRaisesRegex(ValueError, "item 1 is broken"), \
                CommitLanes(self.env, "test-lanes", 2, work) as lanes:
            for item in range(4):
                lanes.give(item)
                time.sleep(0.15)
                got.extend(lanes.results())
            got.extend(lanes.results(wait=True))
        self.assertEqual(got, [0], "item 0 came back before item 1's error")
        self.assertNotIn(3, worked, "an item given after the failure is not worked on")

    def test_a_lane_without_a_connection_fails_its_items_and_nobody_waits_for_ever(self):
        """One lane cannot open its connection (Odoo's pool is full, say):
        the items it is given fail with that error, in order, and the
        caller neither waits for ever nor loses the other lane's results."""
        self.setup_committed()
        real, opened = threads.own_cursor_env, []

        @contextmanager
        def one_pool_short(env):
            with threads_lock:
                opened.append(1)
                refused = len(opened) == 1
            if refused:
                raise PoolError("The Connection Pool Is Full")
            with real(env) as lane_env:
                yield lane_env

        threads_lock = threading.Lock()
        outcome = {}

        def use_lanes():
            got = []
            try:
                with patch.object(threads, "own_cursor_env", one_pool_short), mute_logger(threads.__name__), \
                        CommitLanes(self.env, "test-lanes", 2, lambda env, item: item) as lanes:
                    for item in range(6):
                        lanes.give(item)
                    got.extend(lanes.results(wait=True))
            except PoolError as exc:
                outcome["error"] = exc
            outcome["got"] = got

        caller = threading.Thread(target=use_lanes, daemon=True)
        caller.start()
        caller.join(timeout=30)
        self.assertFalse(caller.is_alive(), "the caller waited for ever")
        self.assertIn("Pool Is Full", str(outcome.get("error")))
        self.assertLess(len(outcome["got"]), 6, "an item the lane without a connection took failed")
        self.assertEqual(outcome["got"], list(range(len(outcome["got"]))), "the results before it, in order")

