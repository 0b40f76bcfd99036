import itertools
from datetime import datetime, timedelta

from odoo import SUPERUSER_ID, api
from odoo.sql_db import db_connect
from odoo.tests import TransactionCase, tagged
from odoo.tools import mute_logger


from .common import SyncCase

T0 = datetime(2026, 1, 1, 12, 0, 0)
MC_TIMES = {"odoo_later": T0 - timedelta(hours=1), "mc_later": T0 + timedelta(hours=1), "tie": T0}
ODOO_STATES = ("subscribed", "unsubscribed", "no_history")
MC_STATUSES = (None, "subscribed", "pending", "unsubscribed", "cleaned", "archived", "transactional")

# (winner, subscribed in Odoo, Mailchimp status) -> (Odoo action, status sent to Mailchimp, row status)
# Mailchimp winning makes Odoo match; Odoo winning makes Mailchimp match,
# except that a cleaned address cannot be resubscribed.
OUTCOMES = {
    ("mailchimp", True, "subscribed"): (None, None, "ok"),
    ("mailchimp", True, "pending"): (None, None, "ok"),
    ("mailchimp", True, "unsubscribed"): ("out", None, "ok"),
    ("mailchimp", True, "cleaned"): ("out", None, "ok"),
    ("mailchimp", True, "archived"): ("out", None, "ok"),
    ("mailchimp", True, "transactional"): ("out", None, "ok"),
    ("mailchimp", False, "subscribed"): ("in", None, "ok"),
    ("mailchimp", False, "pending"): ("in", None, "ok"),
    ("mailchimp", False, "unsubscribed"): (None, None, "ok"),
    ("mailchimp", False, "cleaned"): (None, None, "ok"),
    ("mailchimp", False, "archived"): (None, None, "ok"),
    ("mailchimp", False, "transactional"): (None, None, "ok"),
    ("odoo", True, None): (None, "subscribed", "live"),
    ("odoo", True, "subscribed"): (None, None, "ok"),
    ("odoo", True, "pending"): (None, None, "ok"),
    ("odoo", True, "unsubscribed"): (None, "subscribed", "live"),
    ("odoo", True, "cleaned"): (None, None, "fail"),
    ("odoo", True, "archived"): (None, "subscribed", "live"),
    ("odoo", True, "transactional"): (None, "subscribed", "live"),
    ("odoo", False, None): (None, None, "ok"),
    ("odoo", False, "subscribed"): (None, "unsubscribed", "live"),
    ("odoo", False, "pending"): (None, "unsubscribed", "live"),
    ("odoo", False, "unsubscribed"): (None, None, "ok"),
    ("odoo", False, "cleaned"): (None, None, "ok"),
    ("odoo", False, "archived"): (None, None, "ok"),
    ("odoo", False, "transactional"): (None, None, "ok"),
}


def winner(odoo_state, mc_status, timing, override):
    if odoo_state == "no_history":
        return "mailchimp" if mc_status else "odoo"
    if mc_status is None:
        return "odoo"
    if override:
        return override
    return "mailchimp" if timing == "mc_later" else "odoo"


@tagged("post_install", "-at_install")
class TestReconcileMatrix(TransactionCase):
    """The whole matrix (Odoo state x Mailchimp status x who changed last x
    override) through the real tables: cache rows and memberships are set
    up in the database, the Odoo-changes and reconcile stages run, and the
    outcome is read back from the database."""

    def test_matrix(self):
        account = self.env["mailchimp.account"].create({"name": "M", "api_key": "0" * 32 + "-us1"})
        Sync = self.env["mailchimp.sync"]
        checked = 0
        for override in (None, "mailchimp", "odoo"):
            tag = override or "none"
            newsletter = self.env["mailing.list"].create({"name": f"Matrix {tag}"})
            audience = self.env["mailchimp.audience"].create(
                {"name": tag, "account_id": account.id, "mailchimp_list_id": f"matrix{tag}"[:10],
                 "mailing_list_id": newsletter.id, "trust_override": override,
                 # the matrix checks the rules, not the safety valve
                 "safety_share": 100, "safety_max": 100000}
            )
            cells = {}
            for n, (odoo_state, mc_status, timing) in enumerate(
                itertools.product(ODOO_STATES, MC_STATUSES, MC_TIMES)
            ):
                email = f"{tag}{n}@example.org"
                lists = [(4, newsletter.id)] if odoo_state != "no_history" else []
                # Named by their email: no name to sync, only the subscription.
                contact = self.env["mailing.contact"].create({"name": email, "email": email, "list_ids": lists})
                self.env.flush_all()
                if odoo_state != "no_history":
                    self.env.cr.execute(
                        "UPDATE mailing_subscription SET opt_out = %s WHERE contact_id = %s",
                        (odoo_state == "unsubscribed", contact.id),
                    )
                    self.env.cr.execute(
                        "UPDATE mailing_subscription SET mailchimp_changed_at = %s WHERE contact_id = %s",
                        (T0, contact.id),
                    )
                member = self.env["mailchimp.member"].create(
                    {"audience_id": audience.id, "email": email, "contact_id": contact.id,
                     "subscriber_hash": f"{n:032x}", "mc_status": mc_status,
                     "mc_status_changed": MC_TIMES[timing] if mc_status else False,
                     "mc_last_changed": MC_TIMES[timing] if mc_status else False}
                )
                cells[(odoo_state, mc_status, timing)] = (contact, member)
            self.env.flush_all()
            run = self.env["mailchimp.sync.run"].create({"audience_id": audience.id})
            Sync._stages()["odoo_changes"](audience, run, float("inf"))
            Sync._stage_reconcile(audience, run, float("inf"))
            self.env.invalidate_all()
            for (odoo_state, mc_status, timing), (contact, member) in cells.items():
                side = winner(odoo_state, mc_status, timing, override)
                odoo_sub = odoo_state == "subscribed"
                action, sent, status = OUTCOMES[(side, odoo_sub, mc_status)]
                sub = contact.subscription_ids.filtered(lambda s, nl=newsletter: s.list_id == nl)
                now_subscribed = bool(sub) and not sub.opt_out
                expected_sub = {"in": True, "out": False, None: odoo_sub}[action]
                update = member.update_ids.filtered(lambda u: u.state == "queued" and u.kind == "member")
                label = f"override={override} odoo={odoo_state} mc={mc_status} {timing}"
                self.assertEqual(now_subscribed, expected_sub, label)
                self.assertEqual((update.payload or {}).get("status"), sent, label)
                self.assertEqual(member.sync_status, status, label)
                if action == "out":
                    # A cleaned address is opted out with the reason that says so.
                    reason = "optout_reason_mailchimp_cleaned" if mc_status == "cleaned" else "optout_reason_mailchimp"
                    self.assertEqual(sub.opt_out_reason_id, self.env.ref(f"mailchimp_sync.{reason}"), label)
                checked += 1
        self.assertEqual(checked, 3 * 3 * 7 * 3)


@tagged("post_install", "-at_install")
class TestSyncRunning(SyncCase):
    """Resuming, locking, deletions, overrides, double opt-in."""

    def test_interrupted_sync_resumes_without_double_processing(self):
        self.seed(generate=2500)
        for i in range(300):
            self.contact(f"odoo{i}@example.org", [self.newsletter])
        self.assertEqual(self.step(budget=0.0001), "partial", "the budget stops after a page")
        run = self.audience.current_run_id
        self.assertEqual((self.audience.sync_stage, run.fetch_offset), ("fetch", 1000))
        # A crash mid-fetch: Mailchimp fails the next page; the step stops
        # there with what the earlier steps committed, says why on the run,
        # and the cycle resumes from it once the retry time has come.
        self.emulator.control.faults(rules=[{"method": "GET", "path": "/members$", "kind": "500", "count": 1}])
        with mute_logger("odoo.addons.mailchimp_sync.models.mailchimp_sync"):
            self.assertEqual(self.step(budget=0.0001), "failed")
        self.assertEqual((self.audience.sync_stage, run.fetch_offset), ("failing", 1000))
        self.assertIn("Fetching from Mailchimp failed", run.message)
        self.assertTrue(run.next_retry_at)
        run.next_retry_at = False  # the retry time has come
        calls = 0
        while True:
            calls += 1
            result = self.step(budget=0.0001)
            if result == "done":
                break
            self.assertLess(calls, 200)
            self.assertEqual(result, "partial")
        self.assertGreater(calls, 5, "the budget stopped the cycle many times")
        # Every member once, every Odoo-only contact queued exactly once
        self.env.cr.execute(
            "SELECT count(*), count(DISTINCT subscriber_hash) FROM mailchimp_member WHERE audience_id = %s",
            (self.audience.id,),
        )
        total, distinct = self.env.cr.fetchone()
        self.assertEqual(total, distinct)
        self.env.cr.execute(
            """SELECT count(*), count(DISTINCT member_id) FROM mailchimp_update
                WHERE audience_id = %s AND state IN ('queued', 'sent')""",
            (self.audience.id,),
        )
        updates, rows = self.env.cr.fetchone()
        self.assertEqual(updates, rows, "no row has two live updates")
        self.env.cr.execute("SELECT count(*) FROM mailing_contact WHERE email LIKE 'member%%'")
        created = self.env.cr.fetchone()[0]
        mc = self.emulator.control.state(self.list_id, limit=5000)["lists"][0]["members"]
        mc_subscribed = sum(1 for m in mc if m["status"] in ("subscribed", "pending"))
        self.assertEqual(created, mc_subscribed, "one contact per subscribed member, none twice")
        self.settle()
        self.assertEqual(self.mc("odoo7@example.org")["status"], "subscribed")
        run = self.sync()
        self.assertEqual((run.updates_queued, run.odoo_changes, run.created), (0, 0, 0))

    def test_deleted_contact_is_unsubscribed_not_recreated(self):
        anna = self.contact("anna@example.org", [self.newsletter])
        self.seed([{"email_address": "anna@example.org", "status": "subscribed"}])
        self.sync()
        anna.unlink()
        run = self.sync()
        self.assertEqual(run.to_remove, 1)
        self.assertEqual(run.created, 0)
        self.assertEqual(self.mc("anna@example.org")["status"], "unsubscribed")
        self.assertFalse(self.Contact.search([("email", "=", "anna@example.org")]))
        run = self.sync()
        self.assertEqual((run.created, run.updates_queued), (0, 0))

    def test_trust_override_odoo_then_cleared(self):
        bea = self.contact("bea@example.org", [self.newsletter])
        self.seed([{"email_address": "bea@example.org", "status": "subscribed"}])
        self.sync()
        self.newsletter._update_subscription_from_email("bea@example.org", opt_out=True)
        self.mailchimp_later()
        self.emulator.control.admin_update(self.list_id, "bea@example.org", status="subscribed",
                                           merge_fields={"FNAME": "Bea"})
        self.emulator.control.clock(real=True)
        self.audience.trust_override = "odoo"
        run = self.sync()
        self.assertTrue(run.full)
        self.assertEqual(self.mc("bea@example.org")["status"], "unsubscribed", "Odoo trusted")
        self.assertFalse(self.audience.trust_override, "cleared after the full sync")
        self.assertFalse(self.subscribed(bea))

    def test_double_optin_sends_pending(self):
        self.contact("cleo@example.org", [self.newsletter])
        self.seed()
        self.audience.double_optin = True
        self.sync()
        self.assertEqual(self.mc("cleo@example.org")["status"], "pending")

    def test_unsent_update_superseded_not_duplicated(self):
        dan = self.contact("dan@example.org", [self.newsletter])
        self.seed()
        self.sync(settle=False, until="submit")
        self.assertEqual(self.row("dan@example.org").update_ids.mapped("state"), ["queued"])
        dan.first_name = "Dan"
        dan.last_name = "Brown"
        self.env["mailchimp.member"].search([("email", "=", "dan@example.org")]).sync_status = "todo"
        self.env.flush_all()
        Reconcile = self.env["mailchimp.reconcile"]
        Reconcile._reconcile_rows(
            self.audience, self.audience.current_run_id,
            Reconcile._load_rows(self.audience, member_ids=self.row("dan@example.org").ids),
        )
        updates = self.row("dan@example.org").update_ids
        self.assertEqual(sorted(updates.mapped("state")), ["cancelled", "queued"])
        queued = updates.filtered(lambda u: u.state == "queued")
        self.assertEqual(queued.payload["status"], "subscribed")
        self.assertEqual(queued.payload["merge_fields"], {"FNAME": "Dan", "LNAME": "Brown"})

    def test_batch_settled_by_one_worker_at_a_time(self):
        """The batch webhook and the poller may reach the same batch at the
        same moment: only one of them may settle it (two real connections)."""
        database = db_connect(self.env.cr.dbname)
        with database.cursor() as setup_cr:
            setup_cr.execute(
                "INSERT INTO mailchimp_account (name, active, timeout) VALUES ('race', true, 5) RETURNING id"
            )
            account_id = setup_cr.fetchone()[0]
            setup_cr.execute(
                """INSERT INTO mailchimp_batch (account_id, mailchimp_batch_id, status, result_state, submit_state)
                   VALUES (%s, 'race000001', 'finished', 'waiting', 'submitted') RETURNING id""",
                (account_id,),
            )
            batch_id = setup_cr.fetchone()[0]
            setup_cr.commit()
        try:
            with database.cursor() as cr1, database.cursor() as cr2:
                first = api.Environment(cr1, SUPERUSER_ID, {})["mailchimp.batch"].browse(batch_id)
                second = api.Environment(cr2, SUPERUSER_ID, {})["mailchimp.batch"].browse(batch_id)
                self.assertTrue(first._lock_for_settling(), "the first worker settles")
                self.assertFalse(second._lock_for_settling(), "the second skips it at once")
                cr1.execute("UPDATE mailchimp_batch SET result_state = 'done' WHERE id = %s", (batch_id,))
                cr1.commit()
                self.assertFalse(second._lock_for_settling(), "and never settles it again")
                cr2.rollback()
        finally:
            with database.cursor() as cleanup:
                cleanup.execute("DELETE FROM mailchimp_account WHERE id = %s", (account_id,))
                cleanup.commit()
