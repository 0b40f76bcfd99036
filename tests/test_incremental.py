"""Incremental cycles on committed data: each cycle looks at the Odoo-side
changes written since the previous one began to look, including changes
of transactions still open then, and nothing older."""
# These tests run real transactions on real connections, which commit.
# pylint: disable=invalid-commit

from odoo.tests import tagged

from .common import SyncCase
from .test_engine import CommittedFixture


@tagged("post_install", "-at_install")
class TestIncrementalCycles(CommittedFixture, SyncCase):
    def settle_committed(self):
        self.emulator.control.run_batches()
        with self.db.cursor() as cr:
            self.env_on(cr)["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0, limit=100, recheck_seconds=0)
            cr.commit()

    def cycle(self):
        self.run_steps()
        self.settle_committed()
        with self.db.cursor() as cr:
            return self.env_on(cr)["mailchimp.sync.run"].search(
                [("audience_id", "=", self.ids["audience"])], order="id desc", limit=1).read(
                ["full", "odoo_since", "odoo_horizon", "reconciled"])[0]

    def test_change_committed_after_a_cycle_looked_is_seen_by_the_next(self):
        self.setup_committed(odoo_only=2)
        first = self.cycle()
        self.assertTrue(first["full"])
        self.assertEqual(self.emulator.control.member(self.list_id, "racer0@example.org")["status"], "subscribed")
        # A person opts out in a transaction that began before the next cycle
        # opened and commits only after that cycle has ended.
        late = self.db.cursor()
        try:
            late.execute("UPDATE mailing_subscription SET opt_out = TRUE WHERE contact_id = %s AND list_id = %s",
                         (self.ids["contacts"][0], self.ids["list"]))
            second = self.cycle()
            self.assertFalse(second["full"])
            self.assertLessEqual(second["odoo_horizon"], fields_now(self.db),
                                 "the horizon is no later than the open transaction's start")
            self.assertEqual(self.emulator.control.member(self.list_id, "racer0@example.org")["status"],
                             "subscribed", "the open transaction's change was not visible yet")
            late.commit()
        finally:
            late.close()
        third = self.cycle()
        self.assertEqual(third["odoo_since"], second["odoo_horizon"])
        self.assertEqual(self.emulator.control.member(self.list_id, "racer0@example.org")["status"],
                         "unsubscribed", "the next cycle saw the late change")
        self.assertEqual(self.emulator.control.member(self.list_id, "racer1@example.org")["status"], "subscribed")
        # Nothing changed since: the next cycle looks at no row.
        self.assertEqual(self.cycle()["reconciled"], 0)

    def test_data_written_in_odoo_between_cycles_reaches_mailchimp(self):
        self.setup_committed(odoo_only=2)
        self.cycle()
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            env["mailing.contact"].browse(self.ids["contacts"][1]).write({"first_name": "Renamed"})
            cr.commit()
        second = self.cycle()
        self.assertFalse(second["full"])
        self.assertEqual(second["reconciled"], 1, "only the renamed contact's row is looked at")
        merge_fields = self.emulator.control.member(self.list_id, "racer1@example.org")["merge_fields"]
        self.assertEqual(merge_fields["FNAME"], "Renamed")

    def test_data_is_looked_at_from_where_the_last_cycle_began_to_look(self):
        self.setup_committed(odoo_only=1, members=[
            {"email_address": "mconly@example.org", "status": "subscribed",
             "merge_fields": {"FNAME": "Mc", "LNAME": "Only"}}])
        self.addCleanup(self.drop_contact, "mconly@example.org")
        self.cycle()  # creates the contact of mconly@, before the data stage looks
        with self.db.cursor() as cr:
            cr.execute("SELECT count(*) FROM mailing_contact WHERE email = 'mconly@example.org'")
            self.assertEqual(cr.fetchone()[0], 1)
            # Were the next cycle to fingerprint these contacts again, it
            # would find each one changed.
            cr.execute("""UPDATE mailchimp_member SET sent_data = sent_data || '{"odoo": "stale"}'::jsonb
                           WHERE audience_id = %s AND sent_data ? 'odoo'""", (self.ids["audience"],))
            self.assertEqual(cr.rowcount, 2)
            cr.commit()
        self.unpin_data_horizon()
        second = self.cycle()
        self.assertEqual(second["reconciled"], 0, "written before the first cycle looked at data")
        self.unpin_data_horizon()
        # A person's rename afterwards is still seen.
        with self.db.cursor() as cr:
            env = self.env_on(cr)
            env["mailing.contact"].search([("email", "=", "mconly@example.org")]).write({"last_name": "Person"})
            cr.commit()
        self.assertEqual(self.cycle()["reconciled"], 1)
        self.assertEqual(self.emulator.control.member(self.list_id, "mconly@example.org")["merge_fields"]["LNAME"],
                         "Person")

    def test_a_first_cycle_sees_an_opt_out_stamped_while_it_ran(self):
        self.setup_committed(odoo_only=2)
        self.run_steps(until="odoo_changes")
        racer0 = self.ids["contacts"][0]
        with self.db.cursor() as cr:
            run = self.env_on(cr)["mailchimp.audience"].browse(self.ids["audience"]).current_run_id
            self.assertTrue(run.cache_was_empty, "the audience had no cache row when the cycle began")
            cr.execute("SELECT odoo_subscribed FROM mailchimp_member WHERE contact_id = %s", (racer0,))
            self.assertTrue(cr.fetchone()[0], "the Odoo-only stage wrote the row with its Odoo side")
            # A person opts racer0 out after that stage looked.
            cr.execute("UPDATE mailing_subscription SET opt_out = TRUE WHERE contact_id = %s AND list_id = %s",
                       (racer0, self.ids["list"]))
            cr.commit()
        self.run_steps()
        self.settle_committed()
        with self.db.cursor() as cr:
            cr.execute("SELECT odoo_subscribed, mc_status FROM mailchimp_member WHERE contact_id = %s", (racer0,))
            self.assertEqual(cr.fetchone(), (False, None), "the opt-out was seen: nothing was sent for racer0")
        self.assertEqual(self.emulator.control.member(self.list_id, "racer1@example.org")["status"], "subscribed")

    def test_a_full_cycle_on_a_filled_cache_recomputes_every_odoo_side(self):
        self.setup_committed(odoo_only=2)
        self.assertTrue(self.cycle()["full"])
        racer1 = self.ids["contacts"][1]
        with self.db.cursor() as cr:
            # A row whose Odoo side went wrong without any change stamp (as
            # after a restore): only a look at every row finds it.
            cr.execute("UPDATE mailchimp_member SET odoo_subscribed = FALSE WHERE contact_id = %s", (racer1,))
            self.env_on(cr)["mailchimp.audience"].browse(self.ids["audience"]).full_sync_requested = True
            cr.commit()
        self.run_steps(until="data")
        with self.db.cursor() as cr:
            run = self.env_on(cr)["mailchimp.audience"].browse(self.ids["audience"]).current_run_id
            self.assertEqual((run.full, run.cache_was_empty), (True, False))
            cr.execute("SELECT odoo_subscribed FROM mailchimp_member WHERE contact_id = %s", (racer1,))
            self.assertTrue(cr.fetchone()[0], "the full cycle recomputed the row")
        self.run_steps()
        self.settle_committed()
        self.assertEqual(self.emulator.control.member(self.list_id, "racer1@example.org")["status"], "subscribed")

    def unpin_data_horizon(self):
        """The data horizon is the start of the oldest transaction open when
        the data stage was about to look; this test's own transaction, open
        since it began, holds it back.  Set it as on a server where none was
        open: just after the contacts the cycle wrote before it looked."""
        with self.db.cursor() as cr:
            cr.execute("""UPDATE mailchimp_sync_run r SET data_horizon = (
                              SELECT max(c.write_date) + interval '1 millisecond' FROM mailing_contact c
                                JOIN mailchimp_member m ON m.contact_id = c.id AND m.audience_id = r.audience_id)
                           WHERE id = (SELECT max(id) FROM mailchimp_sync_run WHERE audience_id = %s)""",
                       (self.ids["audience"],))
            cr.commit()

    def drop_contact(self, email):
        with self.db.cursor() as cr:
            self.env_on(cr)["mailing.contact"].search([("email", "=", email)]).unlink()
            cr.commit()


def fields_now(db):
    with db.cursor() as cr:
        cr.execute("SELECT now() AT TIME ZONE 'UTC'")
        return cr.fetchone()[0]
