"""A member as Mailchimp tells it (a fetched page, a settled answer) merged
into its cache row in SQL: each field keeps a change time of its own,
which moves to Mailchimp's ``last_changed`` only when its value does."""

import json
from datetime import datetime
from unittest.mock import patch

from psycopg2 import IntegrityError

from odoo.tests import tagged
from odoo.tools import mute_logger, sql

from ..mailchimp_sync.client import subscriber_hash
from ..mailchimp_sync.exceptions import MailchimpUnexpectedAnswer
from ..models.mailchimp_member import CACHE_STATISTICS_TARGET, HASH_CONSTRAINT
from .common import SyncCase

FIRST = datetime(2026, 1, 1, 10)
SECOND = datetime(2026, 1, 2, 9)


@tagged("post_install", "-at_install")
class TestMemberMerge(SyncCase):
    def setUp(self):
        super().setUp()
        self.seed([])

    def member(self, **values):
        member = {
            "id": subscriber_hash("ann@example.org"), "email_address": "ann@example.org", "status": "subscribed",
            "last_changed": "2026-01-01T10:00:00+00:00", "unique_email_id": "u1",
            "merge_fields": {"FNAME": " Ann ", "LNAME": "Lee"}, "interests": {"i1": True, "i2": False},
            "tags": [{"id": 1, "name": "b"}, {"id": 2, "name": "A"}, {"id": 3, "name": "b"}], "tags_count": 2,
        }
        member.update(values)
        return member

    def merge(self, *members):
        changed = self.Member._merge_page(self.audience, list(members))
        return changed, self.row("ann@example.org")

    def test_a_new_member_is_timed_at_its_last_change(self):
        changed, row = self.merge(self.member())
        self.assertEqual(changed, 1)
        self.assertEqual((row.mc_status, row.mc_status_changed, row.mc_last_changed), ("subscribed", FIRST, FIRST))
        self.assertEqual((row.mc_first_name, row.mc_last_name, row.mc_name_changed), ("Ann", "Lee", FIRST))
        self.assertEqual(row.mc_interests, {"i1": True, "i2": False})
        self.assertEqual(row.mc_interests_changed, {"i1": "2026-01-01T10:00:00", "i2": "2026-01-01T10:00:00"})
        self.assertEqual(row.mc_merge_fields, {"FNAME": " Ann ", "LNAME": "Lee"})
        self.assertEqual(row.mc_tags, ["A", "b"], "each name once, in code point order")
        self.assertFalse(row.mc_tags_partial)
        self.assertEqual((row.mc_unique_email_id, row.sync_status), ("u1", "todo"))

    def test_each_field_moves_only_when_its_value_does(self):
        self.merge(self.member(merge_fields={"FNAME": "Ann", "LNAME": "Lee", "COMPANY": "Acme"}))
        changed, row = self.merge(self.member(
            last_changed="2026-01-02T09:00:00Z", interests={"i1": True, "i2": True},
            merge_fields={"FNAME": "Ann", "LNAME": "Lee", "COMPANY": "Acme Ltd"}))
        self.assertEqual(changed, 1)
        self.assertEqual((row.mc_last_changed, row.mc_status_changed, row.mc_name_changed), (SECOND, FIRST, FIRST))
        self.assertEqual(row.mc_interests_changed, {"i1": "2026-01-01T10:00:00", "i2": "2026-01-02T09:00:00"})
        self.assertEqual(row.mc_merge_fields_changed, {
            "FNAME": "2026-01-01T10:00:00", "LNAME": "2026-01-01T10:00:00", "COMPANY": "2026-01-02T09:00:00"})
        # A merge field the answer does not carry keeps its value and time.
        changed, row = self.merge(self.member(
            last_changed="2026-01-03T09:00:00Z", status="unsubscribed", merge_fields={"FNAME": "Ann", "LNAME": "Lee"}))
        self.assertEqual(row.mc_merge_fields["COMPANY"], "Acme Ltd")
        self.assertEqual(row.mc_merge_fields_changed["COMPANY"], "2026-01-02T09:00:00")
        self.assertEqual(row.mc_status_changed, datetime(2026, 1, 3, 9))

    def test_an_echo_is_not_written(self):
        """The same member again (our own update, read back): no write, and
        the row is not work to do again."""
        _changed, row = self.merge(self.member())
        row.sync_status = "ok"
        self.env.flush_all()
        changed, row = self.merge(self.member(), self.member())
        self.assertEqual(changed, 0)
        self.assertEqual(row.sync_status, "ok")

    def test_tags_not_carried_stay_as_cached(self):
        self.merge(self.member(tags_count=5))
        member = self.member(last_changed="2026-01-02T09:00:00Z")
        del member["tags"], member["tags_count"]
        _changed, row = self.merge(member)
        self.assertEqual((row.mc_tags, row.mc_tags_partial), (["A", "b"], True))

    def test_interests_that_are_not_booleans_are_read_as_set_or_not(self):
        _changed, row = self.merge(self.member(interests={"i1": "yes", "i2": 0, "i3": None, "i4": "", "i5": 1}))
        self.assertEqual(row.mc_interests, {"i1": True, "i2": False, "i3": False, "i4": False, "i5": True})
        _changed, row = self.merge(self.member(interests=["i1"], last_changed="2026-01-02T09:00:00Z"))
        self.assertEqual(row.mc_interests, {}, "interests that are not an object are none")
        _changed, row = self.merge(self.member(interests={}, tags=[], last_changed="2026-01-03T09:00:00Z"))
        self.assertEqual((row.mc_interests, row.mc_tags), ({}, []))

    def test_a_settled_answer_is_merged_as_a_fetched_one(self):
        _changed, row = self.merge(self.member())
        row.sync_status = "live"
        self.env.flush_all()
        answer = self.member(last_changed="2026-01-02T09:00:00Z", interests={"i1": False, "i2": False},
                             email_address="ann@example.org ")
        # Queued after Mailchimp ran it (no cap): the answer's own time.
        self.Member._write_fetched_values([(row.id, json.dumps(answer), datetime(2026, 1, 3))], [])
        row.invalidate_recordset()
        self.assertEqual((row.sync_status, row.email, row.mc_status_changed), ("ok", "ann@example.org", FIRST))
        self.assertEqual(row.mc_interests_changed, {"i1": "2026-01-02T09:00:00", "i2": "2026-01-01T10:00:00"})

    def test_a_settled_answer_counts_as_changed_when_its_update_was_queued(self):
        """The answer to our own update echoes what Odoo decided when it
        queued it: what it changed is timed then, not when Mailchimp ran
        the batch, so an Odoo change made meanwhile still wins."""
        _changed, row = self.merge(self.member())
        row.sync_status = "live"
        self.env.flush_all()
        answer = self.member(status="unsubscribed", last_changed="2026-01-02T09:00:00Z",
                             interests={"i1": False, "i2": False})
        self.Member._write_fetched_values([(row.id, json.dumps(answer), datetime(2026, 1, 2, 8, 30))], [])
        row.invalidate_recordset()
        self.assertEqual(row.mc_status, "unsubscribed")
        self.assertEqual(row.mc_status_changed, datetime(2026, 1, 2, 8, 30))
        self.assertEqual(row.mc_last_changed, datetime(2026, 1, 2, 9, 0), "Mailchimp's own time is kept")
        self.assertEqual(row.mc_interests_changed, {"i1": "2026-01-02T08:30:00", "i2": "2026-01-01T10:00:00"})

    def test_an_unknown_status_is_refused_with_the_member_named(self):
        with self.assertRaisesRegex(MailchimpUnexpectedAnswer, "Unknown Mailchimp status 'zombie' for ann@example.org"):
            self.merge(self.member(status="zombie"))

    def test_settled_answers_are_read_once_whatever_the_plan(self):
        """Where the cache's statistics say it is nearly empty, the planner
        joins the answers to their rows in a loop with the rows outside:
        each answer must still be read (parsed and merged) once, not once
        per row (a batch of 1,000 answers took 13 s instead of 0.1 s)."""
        # Statistics taken while the cache was (nearly) empty, then rows
        # written: the cache grew since it was last analyzed.
        self.env.flush_all()
        self.env.cr.execute("ANALYZE mailchimp_member")
        rows = self.Member.create([
            {"audience_id": self.audience.id, "email": f"plan{i}@example.org",
             "subscriber_hash": subscriber_hash(f"plan{i}@example.org"), "sync_status": "live"}
            for i in range(30)])
        self.env.flush_all()
        answers = [(row.id, json.dumps(self.member(id=row.subscriber_hash, email_address=row.email)), None)
                   for row in rows]
        sql, params = self.Member._fetched_values_query(answers)
        cr = self.env.cr
        # The loop a planner misled by its statistics chose.
        for setting in ("enable_hashjoin", "enable_mergejoin", "enable_material"):
            cr.execute(f"SET LOCAL {setting} = off")
        cr.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cr.fetchone()[0][0]["Plan"]
        for setting in ("enable_hashjoin", "enable_mergejoin", "enable_material"):
            cr.execute(f"RESET {setting}")

        def scans(node):
            found = [node] if node.get("Node Type") == "Function Scan" and node.get("Alias") == "a" else []
            for child in node.get("Plans", ()):
                found += scans(child)
            return found

        answer_scans = scans(plan)
        self.assertTrue(answer_scans, "the plan reads the answers")
        self.assertEqual([scan["Actual Loops"] for scan in answer_scans], [1])
        self.assertEqual(sum(scan["Actual Rows"] for scan in answer_scans), 30)


@tagged("post_install", "-at_install")
class TestMemberKey(SyncCase):
    """One cache row per audience and member, kept by a hash index on the
    row's key (``HASH_CONSTRAINT``): the lookups by hash must compare the
    key's very expression, or they read the whole cache."""

    def setUp(self):
        super().setUp()
        self.seed([])

    def statements_of(self, call):
        """The statements ``call()`` runs, with their parameters."""
        cr, seen = self.env.cr, []
        real = type(cr).execute

        def execute(this, query, params=None, log_exceptions=True):
            seen.append((query, params))
            return real(this, query, params, log_exceptions)

        with patch.object(type(cr), "execute", execute):
            call()
        return seen

    def assert_uses_key(self, query, params):
        cr = self.env.cr
        cr.execute("SET LOCAL enable_seqscan = off")
        try:
            cr.execute("EXPLAIN " + str(query), params)
            plan = "\n".join(line for (line,) in cr.fetchall())
        finally:
            cr.execute("RESET enable_seqscan")
        self.assertIn("mailchimp_member_hash_excl", plan, f"a lookup by hash the key's index cannot serve:\n{plan}")

    def test_the_key_is_sampled_as_the_cache_is(self):
        # A column sampled at PostgreSQL's default target makes each ANALYZE
        # of the cache read 30,000 rows (see mailchimp.member's init).
        self.assertEqual(
            sql.constraint_definition(self.env.cr, "mailchimp_member", "mailchimp_member_hash_excl"), HASH_CONSTRAINT)
        self.env.cr.execute("""SELECT a.attstattarget FROM pg_attribute a
                                WHERE a.attrelid = 'mailchimp_member_hash_excl'::regclass""")
        self.assertEqual([target for (target,) in self.env.cr.fetchall()], [CACHE_STATISTICS_TARGET])

    def test_a_second_row_of_a_member_is_refused(self):
        values = {"audience_id": self.audience.id, "email": "ann@example.org",
                  "subscriber_hash": subscriber_hash("ann@example.org")}
        self.Member.create(values)
        other = self.env["mailchimp.audience"].create({
            "name": "Other", "account_id": self.account.id, "mailchimp_list_id": "f0e1d2c3b4",
            "mailing_list_id": self.env["mailing.list"].create({"name": "Other"}).id})
        # the same member in another audience is another row
        self.Member.create(dict(values, audience_id=other.id))
        with mute_logger("odoo.sql_db"), self.assertRaises(IntegrityError), self.cr.savepoint():
            self.Member.create(values)

    def test_lookups_by_hash_use_the_key(self):
        page = [{"id": subscriber_hash("ann@example.org"), "email_address": "ann@example.org",
                 "status": "subscribed", "last_changed": "2026-01-01T10:00:00+00:00"}]
        for query, params in self.statements_of(lambda: self.Member._merge_page(self.audience, page)):
            if "jsonb_array_elements" in str(query):
                self.assert_uses_key(query, params)
                break
        else:
            self.fail("the page's statement was not seen")
        row, found = self.row("ann@example.org"), []
        statements = self.statements_of(lambda: found.append(self.Member._row_of(self.audience, "Ann@Example.org")))
        self.assertEqual(found, [row])
        self.assert_uses_key(*next(s for s in statements if "subscriber_hash" in str(s[0])))
        statements = self.statements_of(
            lambda: self.Member._release_hashes([(row.id + 1000, subscriber_hash("ann@example.org"))]))
        self.assert_uses_key(*next(s for s in statements if "jsonb_to_recordset" in str(s[0])))
