"""Reconcile defects of issue 11 that subscribed, unsubscribed or stalled
real people: each test fails on the engine before its fix."""

from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import SyncCase


@tagged("post_install", "-at_install")
class TestReconcileDefects(SyncCase):
    def two_rows_of_one_contact(self, first, second, first_status="subscribed", second_status="subscribed"):
        """One contact behind two Mailchimp members (after an email change
        on one side only): the second row is pointed at the first's contact."""
        self.seed([{"email_address": first, "status": first_status},
                   {"email_address": second, "status": second_status}])
        self.sync()
        one, two = self.row(first), self.row(second)
        contact = one.contact_id
        self.env.cr.execute("UPDATE mailchimp_member SET contact_id = %s WHERE id = %s", (contact.id, two.id))
        self.env.invalidate_all()
        return contact, one, two

    def test_two_rows_opting_one_contact_in_at_once(self):
        """Item 1: two rows of one contact both decide 'opt in' in one chunk."""
        contact, one, two = self.two_rows_of_one_contact("pat@example.org", "pat.two@example.org")
        # The contact has no Odoo history for the list at all: Mailchimp
        # wins for both rows, and both opt it in.
        self.env.cr.execute("DELETE FROM mailing_subscription WHERE contact_id = %s", (contact.id,))
        self.env.cr.execute("DELETE FROM mailchimp_list_removal WHERE contact_id = %s", (contact.id,))
        self.env.cr.execute("UPDATE mailchimp_member SET sync_status = 'todo' WHERE id IN %s",
                            (tuple((one | two).ids),))
        self.env.invalidate_all()
        self.sync()
        self.assertTrue(self.subscribed(contact), "opted in once, no crash on the duplicate pair")
        self.assertFalse(self.audience.current_run_id)

    def test_poisoned_row_is_failed_and_the_cycle_goes_on(self):
        """Item 1: a row that breaks the reconcile twice is failed with the
        reason; the others are reconciled and the audience does not stall."""
        self.contact("good@example.org", [self.newsletter])
        self.contact("bad@example.org", [self.newsletter])
        self.seed()
        self.sync(settle=False, until="reconcile")
        bad = self.row("bad@example.org")
        self.env.cr.execute(
            """UPDATE mailchimp_member SET odoo_interests_changed = %s::jsonb WHERE id = %s""",
            ('{"%s": "not a time"}' % self.interest_ids["Events"], bad.id),
        )
        run = self.audience.current_run_id
        with mute_logger("odoo.addons.mailchimp_sync.models.mailchimp_sync",
                         "odoo.addons.mailchimp_sync.models.mailchimp_reconcile"):
            self.assertEqual(self.step(), "failed")
            self.assertEqual(self.audience.sync_stage, "failing", "the audience shows the stage keeps failing")
            run.next_retry_at = False
            self.assertEqual(self.step(), "failed")
            run.next_retry_at = False
            self.sync()
        bad.invalidate_recordset()
        self.assertEqual(bad.sync_status, "fail")
        self.assertIn("could not be reconciled", bad.sync_error)
        self.assertEqual(self.mc("good@example.org")["status"], "subscribed")

    def test_archived_member_is_not_recreated(self):
        """Item 2: an archived member is fetched; archived means not
        subscribed, and nobody re-creates it at Mailchimp."""
        carl = self.contact("carl@example.org", [self.newsletter])
        self.seed([{"email_address": "carl@example.org", "status": "subscribed"}])
        self.sync()
        self.mailchimp_later()
        self.emulator.control.admin_archive(self.list_id, "carl@example.org")
        self.emulator.control.clock(real=True)
        self.audience.full_sync_requested = True
        run = self.sync()
        self.assertEqual(self.row("carl@example.org").mc_status, "archived")
        self.assertFalse(self.subscribed(carl), "archived at Mailchimp, later: opted out in Odoo")
        self.assertEqual(run.to_add, 0)
        self.assertEqual(self.mc("carl@example.org")["status"], "archived", "not re-created")

    def test_own_opt_in_is_not_an_odoo_change(self):
        """Item 3: the sync's opt-in for one row must not make Odoo win the
        next reconcile of the contact's other row and resubscribe an
        address the person unsubscribed."""
        contact, one, two = self.two_rows_of_one_contact(
            "rae@example.org", "rae.old@example.org", second_status="unsubscribed")
        self.assertTrue(self.subscribed(contact), "row one opted the contact in")
        two.action_include_in_next_sync()
        self.sync()
        self.assertEqual(self.mc("rae.old@example.org")["status"], "unsubscribed", "not resubscribed")
        two.invalidate_recordset()
        self.assertFalse(two.update_ids.filtered(lambda u: (u.payload or {}).get("status") == "subscribed"))

    def test_cleaned_learnt_by_the_fetch_marks_the_address(self):
        """Item 5: a cleaned status from the fetch (no webhook) opts out and
        marks the address, as the cleaned webhook does."""
        dora = self.contact("dora@example.org", [self.newsletter])
        self.seed([{"email_address": "dora@example.org", "status": "subscribed"}])
        self.sync()
        self.mailchimp_later()
        self.emulator.control.bounce(self.list_id, "dora@example.org", reason="hard")
        self.emulator.control.clock(real=True)
        self.sync()
        dora.invalidate_recordset()
        self.assertFalse(self.subscribed(dora))
        self.assertGreaterEqual(dora.message_bounce, 5, "marked as bouncing")
        sub = dora.subscription_ids.filtered(lambda s: s.list_id == self.newsletter)
        self.assertEqual(sub.opt_out_reason_id, self.env.ref("mailchimp_sync.optout_reason_mailchimp_cleaned"))
        # Blacklist mode, and a second sync changes nothing.
        eve = self.contact("eve@example.org", [self.newsletter])
        self.sync()  # eve reaches Mailchimp
        self.audience.cleaned_action = "blacklist"
        self.mailchimp_later()
        self.emulator.control.bounce(self.list_id, "eve@example.org", reason="hard")
        self.emulator.control.clock(real=True)
        self.sync()
        self.assertTrue(self.env["mail.blacklist"].search([("email", "=", "eve@example.org")]))
        notes = eve.message_ids.filtered(lambda m: "cleaned" in (m.body or ""))
        self.sync()
        self.assertEqual(eve.message_ids.filtered(lambda m: "cleaned" in (m.body or "")), notes)

    def members_unsubscribing_at_mailchimp(self, prefix, leaving):
        """Forty members subscribed on both sides and synced; then
        ``leaving`` of them unsubscribe at Mailchimp.  Returns (members, contacts)."""
        members = [{"email_address": f"{prefix}{i}@example.org", "status": "subscribed"} for i in range(40)]
        contacts = [self.contact(m["email_address"], [self.newsletter]) for m in members]
        self.seed(members)
        self.sync()
        self.mailchimp_later()
        for m in members[:leaving]:
            self.emulator.control.admin_update(self.list_id, m["email_address"], status="unsubscribed")
        self.emulator.control.clock(real=True)
        return members, contacts

    def test_safety_valve_stops_a_mass_opt_out(self):
        """Item 13: a plan that would opt out an unusual share waits for a
        manager, with counts and examples, having changed nothing."""
        _members, contacts = self.members_unsubscribing_at_mailchimp("m", 15)
        self.sync(settle=False, until="reconcile")
        self.assertEqual(self.step(), "confirm")
        run = self.audience.current_run_id
        self.assertEqual((self.audience.sync_stage, run.plan_opt_outs), ("confirm", 15))
        self.assertIn("m0@example.org", run.message)
        self.assertTrue(all(self.subscribed(c) for c in contacts), "nothing changed yet")
        self.assertEqual(self.step(), "confirm", "it waits")
        self.audience.action_confirm_plan()
        self.sync()
        self.assertEqual(sum(not self.subscribed(c) for c in contacts), 15)

    def test_safety_valve_limit_is_the_smaller_of_share_and_cap(self):
        """The limit is the share of the subscribed members or the cap,
        whichever is smaller, never under 10: counting the subscribed only
        as far as the share can matter gives the same limit."""
        self.members_unsubscribing_at_mailchimp("v", 15)
        self.sync(settle=False, until="reconcile")
        Reconcile = self.env["mailchimp.reconcile"]
        # (share %, cap) -> the limit the message names, or None: within it
        for share, cap, limit in ((50, 1000, None), (30, 1000, 12), (100, 12, 12), (100, 14, 14),
                                  (5, 1000, 10), (0, 1000, 10), (100, 0, 10), (100, 15, None), (50, 15, None)):
            self.audience.write({"safety_share": share, "safety_max": cap})
            plan = Reconcile._plan(self.audience)
            self.assertEqual(plan["plan_opt_outs"], 15)
            # the stage's progress: every row to do, not only those changing
            self.assertEqual(plan["progress_total"], self.env["mailchimp.member"].search_count(
                [("audience_id", "=", self.audience.id), ("sync_status", "=", "todo")]))
            self.assertGreaterEqual(plan["progress_total"], 15)
            if limit is None:
                self.assertNotIn("message", plan, (share, cap))
            else:
                self.assertIn(f"allows ({limit})", plan["message"], (share, cap))

    def test_safety_valve_lets_a_small_change_through(self):
        self.members_unsubscribing_at_mailchimp("s", 3)
        run = self.sync()
        self.assertEqual(run.plan_opt_outs, 3)
        self.assertEqual(run.state, "done")

    def test_remove_invalid_keeps_a_row_whose_create_was_sent(self):
        """Item 10: a row whose contact was deleted after its create left
        for Mailchimp is kept until the result settles it, so the deleted
        contact is unsubscribed at Mailchimp rather than forgotten."""
        gus = self.contact("gus@example.org", [self.newsletter])
        self.seed()
        self.sync(settle=False)  # the create is in a submitted batch
        row = self.row("gus@example.org")
        self.assertEqual(row.update_ids.state, "sent")
        gus.unlink()
        self.env.flush_all()
        self.env["mailchimp.member"]._remove_invalid(self.audience)
        self.assertTrue(row.exists(), "kept: its update is in flight")
        # Mailchimp runs the batch clearly after the deletion (its times
        # have one-second resolution): the answer is the echo of the create
        # Odoo decided before it deleted gus, not a newer change of
        # Mailchimp's, so the deletion still wins.
        self.mailchimp_later()
        self.settle()
        self.emulator.control.clock(real=True)
        run = self.sync()
        self.assertEqual(run.to_remove, 1)
        self.assertEqual(self.mc("gus@example.org")["status"], "unsubscribed")

