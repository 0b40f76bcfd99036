"""The table of rows to do (mailchimp.member's _init_todo_table): every row
to do, or whose Odoo side is unknown, has its entry whoever made it so; only
a writer holding the row takes the entry away; and a row's status write
stays on its page (a HOT update), which the cache's own partial indexes of
those rows prevented."""
# The race test commits on real connections.
# pylint: disable=invalid-commit

import threading

from odoo import SUPERUSER_ID, api
from odoo.sql_db import db_connect
from odoo.tests import TransactionCase, tagged

from ..mailchimp_sync.client import subscriber_hash
from ..models.mailchimp_member import FILLFACTOR
from .common import audience_of


def entries(cr, member_ids):
    cr.execute("SELECT member_id FROM mailchimp_member_todo WHERE member_id = ANY(%s)", (list(member_ids),))
    return {r[0] for r in cr.fetchall()}


@tagged("post_install", "-at_install")
class TestTodoTable(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.newsletter = cls.env["mailing.list"].create({"name": "Newsletter"})
        cls.audience = audience_of(cls.env, cls.newsletter)
        cls.Member = cls.env["mailchimp.member"]

    def member(self, email, **values):
        return self.Member.create(dict({"audience_id": self.audience.id, "email": email,
                                        "subscriber_hash": subscriber_hash(email)}, **values))

    def test_every_way_of_making_a_row_to_do_lists_it(self):
        todo = self.member("todo@example.org")
        unknown = self.member("unknown@example.org", sync_status="ok")
        done = self.member("done@example.org", sync_status="ok", odoo_subscribed=False)
        self.env.flush_all()
        self.assertEqual(entries(self.env.cr, (todo + unknown + done).ids), {todo.id, unknown.id},
                         "created to do, or with its Odoo side unknown: listed; in sync and known: not")
        # through the ORM
        done.write({"sync_status": "todo"})
        self.env.flush_all()
        self.assertIn(done.id, entries(self.env.cr, done.ids))
        # through SQL, as the stages and webhooks write
        self.env.cr.execute("DELETE FROM mailchimp_member_todo WHERE member_id = %s", (done.id,))
        self.env.cr.execute("UPDATE mailchimp_member SET sync_status = 'ok' WHERE id = %s", (done.id,))
        self.env.cr.execute("UPDATE mailchimp_member SET sync_status = 'todo' WHERE id = %s", (done.id,))
        self.assertIn(done.id, entries(self.env.cr, done.ids))
        # an Odoo side forgotten
        self.env.cr.execute("DELETE FROM mailchimp_member_todo WHERE member_id = %s", (done.id,))
        self.env.cr.execute("UPDATE mailchimp_member SET sync_status = 'ok', odoo_subscribed = FALSE WHERE id = %s",
                            (done.id,))
        self.env.cr.execute("UPDATE mailchimp_member SET odoo_subscribed = NULL WHERE id = %s", (done.id,))
        self.assertIn(done.id, entries(self.env.cr, done.ids))

    def test_the_reconcile_takes_out_what_it_decided(self):
        contact = self.env["mailing.contact"].create({"name": "A", "email": "a@example.org",
                                                      "list_ids": [(4, self.newsletter.id)]})
        row = self.member("a@example.org")
        self.env["mailchimp.reconcile"]._sync_members(self.audience, row.ids)
        self.env.flush_all()
        self.assertEqual(row.contact_id, contact)
        self.assertNotEqual(row.sync_status, "todo")
        self.assertFalse(entries(self.env.cr, row.ids), "decided and its Odoo side known: no longer listed")
        # What the reconcile reads next: nothing of this row.
        self.assertFalse(self.env["mailchimp.reconcile"]._todo_ids(self.audience))

    def test_stale_entries_are_dropped_only_where_nothing_is_left_to_do(self):
        still = self.member("still@example.org")
        stale = self.member("stale@example.org", sync_status="ok", odoo_subscribed=True)
        gone = self.member("gone@example.org")
        self.env.flush_all()
        self.env.cr.execute("INSERT INTO mailchimp_member_todo VALUES (%s, %s)", (self.audience.id, stale.id))
        gone_id = gone.id
        gone.unlink()
        self.Member._forget_stale_todo(self.audience)
        self.assertEqual(entries(self.env.cr, [still.id, stale.id, gone_id]), {still.id})
        self.assertEqual(self.env["mailchimp.reconcile"]._todo_ids(self.audience), still.ids)

    def test_an_upgrade_lists_the_rows_already_to_do(self):
        todo = self.member("todo@example.org")
        done = self.member("done@example.org", sync_status="ok", odoo_subscribed=True)
        self.env.flush_all()
        self.env.cr.execute("DROP TABLE mailchimp_member_todo")
        self.Member._init_todo_table()
        self.assertEqual(entries(self.env.cr, (todo + done).ids), {todo.id})

    def test_a_status_write_stays_on_its_page(self):
        """The reconcile's and the settle's write of a row's status adds no
        entry to any index of the cache (a HOT update), where the page has
        room: new pages keep FILLFACTOR percent of themselves for it."""
        self.env.cr.execute("SELECT reloptions FROM pg_class WHERE relname = 'mailchimp_member'")
        self.assertIn(f"fillfactor={FILLFACTOR}", self.env.cr.fetchone()[0] or [])
        row = self.member("hot@example.org")
        self.env.flush_all()
        self.env.cr.execute("SELECT pg_stat_get_xact_tuples_hot_updated('mailchimp_member'::regclass)")
        before = self.env.cr.fetchone()[0]
        self.env["mailchimp.reconcile"]._write_rows([(row.id, "ok", None, {})], self.audience)
        self.env.cr.execute("SELECT pg_stat_get_xact_tuples_hot_updated('mailchimp_member'::regclass)")
        self.assertEqual(self.env.cr.fetchone()[0], before + 1)


@tagged("post_install", "-at_install")
class TestTodoTableRaces(TransactionCase):
    """Two real connections, committed: the entry of a row being made to do
    by another transaction survives whoever cleans up meanwhile."""

    def setUp(self):
        super().setUp()
        self.db = db_connect(self.env.cr.dbname)
        if self.registry.test_cr is not None:
            test_cr = self.registry.test_cr
            self.registry.leave_test_mode()
            self.addCleanup(self.registry.enter_test_mode, test_cr)
        with self.db.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            newsletter = env["mailing.list"].create({"name": "Todo race"})
            audience = audience_of(env, newsletter)
            row = env["mailchimp.member"].create({"audience_id": audience.id, "email": "race@example.org",
                                                   "subscriber_hash": subscriber_hash("race@example.org"),
                                                   "sync_status": "ok",
                                                   "odoo_subscribed": False})
            cr.commit()
            self.ids = {"list": newsletter.id, "audience": audience.id, "account": audience.account_id.id,
                        "row": row.id}
        self.addCleanup(self.cleanup)

    def cleanup(self):
        with self.db.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["mailchimp.audience"].browse(self.ids["audience"]).unlink()
            env["mailchimp.account"].browse(self.ids["account"]).unlink()
            env["mailing.list"].browse(self.ids["list"]).unlink()
            cr.execute("DELETE FROM mailchimp_member_todo WHERE member_id = %s", (self.ids["row"],))
            cr.commit()

    def test_a_row_being_made_to_do_keeps_its_entry_through_a_cleanup(self):
        row_id = self.ids["row"]
        with self.db.cursor() as cr:
            # A stale entry, as a rename leaves one.
            cr.execute("INSERT INTO mailchimp_member_todo VALUES (%s, %s)", (self.ids["audience"], row_id))
            cr.commit()
        writer = self.db.cursor()
        try:
            # A webhook makes the row to do: its trigger finds the entry there.
            writer.execute("UPDATE mailchimp_member SET sync_status = 'todo' WHERE id = %s", (row_id,))
            done = {}
            # (The environment is made here: making one takes the
            # registry's lock, which the test runner's thread holds.)
            cleaner = self.db.cursor()
            env = api.Environment(cleaner, SUPERUSER_ID, {})
            audience = env["mailchimp.audience"].browse(self.ids["audience"])

            def clean():
                env["mailchimp.member"]._forget_stale_todo(audience)
                cleaner.commit()
                done["clean"] = True

            try:
                thread = threading.Thread(target=clean)
                thread.start()
                thread.join(10)
                self.assertTrue(done.get("clean"), "the cleanup skips the row the writer holds, without waiting")
            finally:
                thread.join(30)
                cleaner.close()
            writer.commit()
        finally:
            writer.close()
        with self.db.cursor() as cr:
            cr.execute("SELECT sync_status FROM mailchimp_member WHERE id = %s", (row_id,))
            self.assertEqual(cr.fetchone()[0], "todo")
            self.assertEqual(entries(cr, [row_id]), {row_id}, "the row to do is still listed")
