from odoo.tests import tagged

from ..models.mailchimp_sync import PAGE_OVERLAP
from .common import SyncCase


@tagged("post_install", "-at_install")
class TestSyncEndToEnd(SyncCase):
    """Emulator + real database: changes on both sides, sync, batches run by
    the emulator, results settled, and a second sync finds nothing to do."""

    def test_first_sync_then_incremental_both_sides(self):
        anna = self.contact("anna@example.org", [self.newsletter])
        fay = self.contact("fay@example.org", [self.newsletter], name="Fay Wray")
        gus = self.contact("gus@example.org", [self.newsletter, self.events_list])
        erik = self.contact("erik@example.org")  # known to Odoo, on no list
        self.seed(
            [
                {"email_address": "anna@example.org", "status": "subscribed",
                 "merge_fields": {"FNAME": "Anna", "LNAME": "Gebhard"}, "interests": {"Events": True}},
                {"email_address": "bob@example.org", "status": "unsubscribed"},
                {"email_address": "carl@example.org", "status": "cleaned"},
                {"email_address": "dora@example.org", "status": "pending",
                 "merge_fields": {"FNAME": "Dora", "LNAME": "Maar"}},
                {"email_address": "erik@example.org", "status": "subscribed"},
            ]
        )
        run = self.sync()
        self.assertEqual(run.state, "done")
        self.assertEqual(run.fetched, 5, "every member once")
        self.assertEqual(run.created, 1, "dora (pending) gets a contact; bob and carl do not")
        self.assertEqual(run.batches_sent, 1)
        # Mailchimp → Odoo
        self.assertTrue(self.subscribed(anna, self.events_list), "anna's interest comes from Mailchimp")
        dora = self.Contact.search([("email", "=", "dora@example.org")])
        self.assertEqual(dora.name, "Dora Maar")
        self.assertTrue(self.subscribed(dora))
        self.assertTrue(self.subscribed(erik), "no Odoo history: Mailchimp decides")
        self.assertFalse(self.Contact.search([("email", "in", ["bob@example.org", "carl@example.org"])]))
        # Odoo → Mailchimp, after the batch ran and was settled
        self.assertEqual(self.mc("fay@example.org")["status"], "subscribed")
        self.assertEqual(self.mc("fay@example.org")["merge_fields"]["FNAME"], "Fay")
        gus_mc = self.mc("gus@example.org")
        self.assertEqual(gus_mc["status"], "subscribed")
        self.assertEqual(gus_mc["interests"],
                         {self.interest_ids["Events"]: True, self.interest_ids["News"]: False})
        self.assertEqual(self.row("fay@example.org").sync_status, "ok")
        self.assertEqual(self.row("gus@example.org").mc_status, "subscribed")
        self.assertFalse(self.env["mailchimp.update"].search([("state", "in", ("queued", "sent"))]))

        # Second sync: nothing to do
        run = self.sync()
        self.assertEqual((run.updates_queued, run.odoo_changes, run.created, run.batches_sent), (0, 0, 0, 0))

        # Changes on both sides
        self.newsletter._update_subscription_from_email("anna@example.org", opt_out=True)
        self.mailchimp_later()
        self.emulator.control.user_unsubscribe(self.list_id, "erik@example.org")
        self.emulator.control.admin_update(self.list_id, "dora@example.org",
                                           merge_fields={"FNAME": "Dorothea"})
        self.emulator.control.clock(real=True)
        run = self.sync()
        self.assertEqual(run.to_remove, 1)
        self.assertEqual(self.mc("anna@example.org")["status"], "unsubscribed")
        self.assertFalse(self.subscribed(erik))
        erik_sub = erik.subscription_ids.filtered(lambda s: s.list_id == self.newsletter)
        self.assertEqual(erik_sub.opt_out_reason_id,
                         self.env.ref("mailchimp_sync.optout_reason_mailchimp"))
        self.assertIn("Mailchimp", erik.message_ids[:1].body)
        self.assertEqual(dora.first_name, "Dorothea")
        self.assertEqual(dora.name, "Dorothea Maar")

        # ... and both sides are equal: nothing more to do
        run = self.sync()
        self.assertEqual((run.updates_queued, run.odoo_changes, run.batches_sent), (0, 0, 0))
        for contact in (anna, fay, gus, erik, dora):
            mc_status = self.mc(contact.email)["status"]
            self.assertEqual(self.subscribed(contact), mc_status in ("subscribed", "pending"), contact.email)

    def test_a_blacklist_entry_deleted_subscribes_the_member_again(self):
        """Deleting a blacklist entry (rather than archiving it) takes the
        address out of the blacklist as of the deletion: the next cycle
        subscribes the member again at Mailchimp, and the contact stays on
        the list in Odoo."""
        hana = self.contact("hana@example.org", [self.newsletter])
        self.seed([])
        self.sync()
        self.assertEqual(self.mc("hana@example.org")["status"], "subscribed")
        # She joined the list long ago; the blacklist came later.
        self.env.cr.execute("UPDATE mailing_subscription SET mailchimp_changed_at = '2020-01-01' WHERE contact_id = %s",
                            (hana.id,))
        self.env["mail.blacklist"]._add("hana@example.org")
        self.sync()
        self.assertEqual(self.mc("hana@example.org")["status"], "unsubscribed")
        self.env["mail.blacklist"].with_context(active_test=False).search(
            [("email", "=", "hana@example.org")]).unlink()
        run = self.sync()
        self.assertFalse(run.full)
        self.assertEqual(self.mc("hana@example.org")["status"], "subscribed")
        self.assertTrue(self.subscribed(hana))
        # ... and a full cycle, which looks at every row, agrees.
        self.audience.full_sync_requested = True
        run = self.sync()
        self.assertEqual((run.full, run.updates_queued, run.odoo_changes), (True, 0, 0))
        self.assertTrue(self.subscribed(hana))

    def test_batch_answers_carry_only_what_settling_reads(self):
        """A member operation asks Mailchimp to answer with the fields the
        fetch reads (a batch's thousand whole members, with their links and
        statistics, are several times larger to download and parse), and
        settling still fills the cache from those answers."""
        import tempfile  # noqa: PLC0415

        from ..mailchimp_sync.batches import iter_results_archive  # noqa: PLC0415

        self.contact("hana@example.org", [self.newsletter, self.events_list], name="Hana Mori")
        self.seed([{"email_address": "ivo@example.org", "status": "subscribed",
                    "merge_fields": {"FNAME": "Ivo", "LNAME": "Pek"}}])
        # Ivo joins the Events list in Odoo after Mailchimp last saw him.
        self.contact("ivo@example.org", [self.newsletter, self.events_list], name="Ivo Pek")
        self.sync(settle=False)
        self.emulator.control.run_batches()
        batch = self.env["mailchimp.batch"].search([("audience_id", "=", self.audience.id)])
        client = self.audience.account_id._get_client()
        info = client.get_batch(batch.mailchimp_batch_id)
        with tempfile.TemporaryFile() as tmp:
            client.download(info["response_body_url"], tmp)
            answers = {r.body["email_address"]: r.body for r in iter_results_archive(tmp)}
        self.assertEqual(set(answers), {"hana@example.org", "ivo@example.org"})
        wanted = {f.split(".")[0] for f in self.env["mailchimp.merge.field"]._fetch_fields(self.audience)}
        for email, body in answers.items():
            self.assertLessEqual(set(body), wanted, email)
            self.assertNotIn("_links", body, email)
        self.settle()
        hana, ivo = self.row("hana@example.org"), self.row("ivo@example.org")
        self.assertEqual((hana.mc_status, hana.mc_first_name, hana.mc_last_name, hana.sync_status),
                         ("subscribed", "Hana", "Mori", "ok"))
        self.assertEqual(hana.mc_interests[self.interest_ids["Events"]], True)
        self.assertTrue(hana.mc_unique_email_id)
        self.assertEqual((ivo.mc_status, ivo.sync_status), ("subscribed", "ok"))
        self.assertEqual(ivo.mc_interests[self.interest_ids["Events"]], True)
        # The echo of the push is no change: the next sync has nothing to do.
        self.emulator.control.clock(real=True)
        run = self.sync()
        self.assertEqual((run.updates_queued, run.odoo_changes, run.batches_sent), (0, 0, 0))

    def test_finished_run_keeps_the_audience_figures(self):
        """The run's history keeps the audience's figures as the run left
        them: the same counts the audience form shows."""
        self.seed([
            {"email_address": "jo@example.org", "status": "subscribed"},
            {"email_address": "kim@example.org", "status": "unsubscribed"},
            {"email_address": "lou@example.org", "status": "cleaned"},
            {"email_address": "max@example.org", "status": "pending"},
        ])
        self.contact("lou@example.org", [self.newsletter])  # cleaned at Mailchimp: this row fails
        self.contact("ned@example.org", [self.newsletter])
        run = self.sync(settle=False)
        self.audience.invalidate_recordset()
        self.assertEqual((run.mc_subscribed_count, run.odoo_subscribed_count, run.failing_count),
                         (self.audience.mc_subscribed_count, self.audience.odoo_subscribed_count,
                          self.audience.failed_count))
        self.assertEqual((run.mc_subscribed_count, run.odoo_subscribed_count, run.failing_count), (2, 4, 1))

    def test_reconcile_writes_each_row_once(self):
        """The rows whose contact the reconcile opts in take their new Odoo
        side in the same write as their decision: one write per row (a
        second write of a row in one transaction checks its foreign keys
        again), and the next cycle sees nothing changed in Odoo."""
        self.seed([{"email_address": f"sub{i}@example.org", "status": "subscribed",
                    "interests": {"Events": True}} for i in range(4)]
                  + [{"email_address": "out@example.org", "status": "unsubscribed"}])
        run = self.sync(until="reconcile")
        cr = self.env.cr

        def updated():
            cr.execute("SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'mailchimp_member'")
            return cr.fetchone()[0]

        before = updated()
        while self.audience.current_run_id.stage == "reconcile":
            self.assertEqual(self.step(), "partial")
        self.assertEqual(updated() - before, 5, "one write for each of the five rows")
        self.assertEqual(run.odoo_opt_ins, 8, "four contacts on the newsletter and on Events")
        for i in range(4):
            row = self.row(f"sub{i}@example.org")
            subscription = row.contact_id.subscription_ids.filtered(lambda s: s.list_id == self.newsletter)
            self.assertTrue(row.odoo_subscribed)
            self.assertEqual(row.odoo_changed, subscription.mailchimp_changed_at)
            self.assertEqual(row.odoo_interests, {self.interest_ids["Events"]: True, self.interest_ids["News"]: False})
        self.sync()  # this cycle's end: its batch sent and settled
        run = self.sync()
        self.assertEqual((run.odoo_changes, run.updates_queued), (0, 0), "no Odoo change seen again")

    def test_updates_keep_when_they_were_queued_and_sent(self):
        self.contact("quinn@example.org", [self.newsletter])
        self.seed([])
        self.sync(settle=False)
        update = self.env["mailchimp.update"].search([("member_id.email", "=", "quinn@example.org")])
        self.assertEqual(update.state, "sent")
        self.assertTrue(update.queued_at)
        self.assertTrue(update.sent_at)
        self.assertLessEqual(update.queued_at, update.sent_at)

    def test_contacts_are_created_chunk_after_chunk(self):
        """The create stage gives contacts in chunks, each from where the
        last one ended (a stage that starts over reads every row it already
        did again): every member still gets one, once."""
        from unittest.mock import patch  # noqa: PLC0415

        from ..models import mailchimp_sync, mailing_contact  # noqa: PLC0415

        self.seed([{"email_address": f"new{i}@example.org", "status": "subscribed"} for i in range(7)]
                  + [{"email_address": "gone@example.org", "status": "unsubscribed"}])
        calls = []
        create_chunk = type(self.Contact)._mailchimp_create_chunk

        def spy(contacts, audience, member_ids=None, after_id=0):
            created = create_chunk(contacts, audience, member_ids, after_id)
            calls.append((after_id, len(created)))
            return created

        with patch.object(mailing_contact, "CREATE_CHUNK", 3), patch.object(mailchimp_sync, "CREATE_CHUNK", 3), \
                patch.object(type(self.Contact), "_mailchimp_create_chunk", spy):
            run = self.sync(settle=False)
        self.assertEqual(run.created, 7)
        self.assertEqual([n for _after, n in calls], [3, 3, 1])
        afters = [after for after, _n in calls]
        self.assertEqual(afters, sorted(set(afters)), "each chunk starts after the last")
        for i in range(7):
            self.assertEqual(len(self.Contact.search([("email", "=", f"new{i}@example.org")])), 1)


@tagged("post_install", "-at_install")
class TestPollerReadsAhead(SyncCase):
    """The poller reads the next batch from Mailchimp while the one before
    it settles: each batch still ends as if read and settled alone."""

    def test_batches_settle_around_those_mailchimp_cannot_report(self):
        self.seed()
        emails = ["ada@example.org", "bo@example.org", "cy@example.org", "di@example.org"]
        for email in emails:
            self.contact(email, [self.newsletter])
            self.sync(settle=False)
        Batch = self.env["mailchimp.batch"]
        batches = Batch.search([("audience_id", "=", self.audience.id)], order="id")
        self.assertEqual(len(batches), 4, "one batch per cycle")
        self.emulator.control.run_batches()
        failing, gone = batches[1], batches[2]
        # Mailchimp cannot say how the second batch stands this time, and
        # no longer knows the third.
        self.emulator.control.faults(
            rules=[{"method": "GET", "path": f"/batches/{failing.mailchimp_batch_id}$", "kind": "500"}])
        gone.mailchimp_batch_id = "gone000000"
        with self.assertLogs("odoo.addons.mailchimp_sync.models.mailchimp_batch", "WARNING") as logs:
            Batch._cron_poll_batches(min_age_minutes=0, limit=10, recheck_seconds=0)
        self.assertEqual(len(logs.output), 1)
        self.assertIn(f"Could not settle Mailchimp batch {failing.mailchimp_batch_id}", logs.output[0])
        self.commit_like_the_runner()
        self.assertEqual(batches.mapped("result_state"), ["done", "waiting", "done", "done"])
        self.assertEqual(gone.status, "expired")
        self.assertIn("no longer knows this batch", gone.result_message)
        self.assertEqual(batches[0].result_message, "1 done, 0 failed, 0 queued again as pending")
        self.assertTrue(failing.last_checked, "the failed reading is noted, so the batch is polled again later")
        self.assertIn("Mailchimp had a problem on its side", failing.result_message)
        self.assertEqual([(self.row(e).sync_status, self.row(e).mc_status) for e in emails], [
            ("ok", "subscribed"),
            ("live", False),  # its update's result is still to come
            ("todo", False),  # the expired batch's row is decided again by the next cycle
            ("ok", "subscribed"),
        ])
        Batch._cron_poll_batches(min_age_minutes=0, limit=10, recheck_seconds=0)
        self.commit_like_the_runner()
        self.assertEqual(failing.result_state, "done")
        self.assertEqual((self.row("bo@example.org").sync_status, self.row("bo@example.org").mc_status),
                         ("ok", "subscribed"))

    def test_an_archive_cut_short_waits_and_the_other_batches_settle(self):
        self.seed()
        emails = ["ada@example.org", "bo@example.org"]
        for email in emails:
            self.contact(email, [self.newsletter])
            self.sync(settle=False)
        Batch = self.env["mailchimp.batch"]
        batches = Batch.search([("audience_id", "=", self.audience.id)], order="id")
        self.emulator.control.run_batches()
        # The first batch's results arrive cut short, though whole to look at.
        self.emulator.control.faults(rules=[{"method": "GET", "path": "^/_batch-results/", "kind": "truncated"}])
        with self.assertLogs("odoo.addons.mailchimp_sync.models.mailchimp_batch", "WARNING") as logs:
            Batch._cron_poll_batches(min_age_minutes=0, limit=10, recheck_seconds=0)
        self.assertIn("batch results could not be read", logs.output[0])
        self.commit_like_the_runner()
        self.assertEqual(batches.mapped("result_state"), ["waiting", "done"])
        self.assertEqual([self.row(e).sync_status for e in emails], ["live", "ok"])
        Batch._cron_poll_batches(min_age_minutes=0, limit=10, recheck_seconds=0)
        self.commit_like_the_runner()
        self.assertEqual(batches.mapped("result_state"), ["done", "done"])
        self.assertEqual([self.row(e).sync_status for e in emails], ["ok", "ok"])


@tagged("post_install", "-at_install")
class TestTextPostgresRefuses(SyncCase):
    """Mailchimp stores any Unicode text, but PostgreSQL refuses a NUL
    character in its text and JSON values, and JSON refuses half of a
    surrogate pair.  A member holding one is synced without it, as the
    rest of the audience is, instead of failing every page, batch or
    webhook that carries it."""

    ODD_FIRST = "An\x00na"
    ODD_LAST = "Geb\ud800hard"

    def seed_odd_member(self, **extra):
        self.seed([{"email_address": "odd@example.org", "status": "subscribed",
                    "merge_fields": {"FNAME": self.ODD_FIRST, "LNAME": self.ODD_LAST}, **extra},
                   {"email_address": "plain@example.org", "status": "subscribed"}])

    def test_a_member_with_text_postgres_refuses_is_synced_without_it(self):
        self.seed_odd_member(tags=["VIP\x00"])
        run = self.sync()
        self.assertEqual(run.state, "done", run.message)
        self.assertEqual(run.fetched, 2)
        odd = self.Contact.search([("email", "=", "odd@example.org")])
        self.assertEqual(odd.name, "Anna Geb\ufffdhard", "the NUL left out, the half pair replaced")
        self.assertTrue(self.subscribed(odd))
        row = self.row("odd@example.org")
        self.assertEqual(row.mc_first_name, "Anna")
        self.assertEqual(row.sync_status, "ok", row.sync_error)
        self.assertTrue(self.subscribed(self.Contact.search([("email", "=", "plain@example.org")])))
        self.assertEqual(self.mc("odd@example.org")["merge_fields"]["FNAME"], self.ODD_FIRST,
                         "nothing sent back for text that only reads differently here")
        # The next cycle finds both sides agreeing.
        run = self.sync()
        self.assertEqual((run.updates_queued, run.odoo_changes), (0, 0))

    def test_a_batch_answer_with_text_postgres_refuses_settles(self):
        self.seed_odd_member()
        self.sync()
        odd = self.Contact.search([("email", "=", "odd@example.org")])
        odd.list_ids = [(4, self.events_list.id)]
        run = self.sync()
        self.assertEqual(run.updates_queued, 1)
        # Mailchimp answered with the whole member, its odd names included.
        updates = self.env["mailchimp.update"].search([("member_id", "=", self.row("odd@example.org").id)])
        self.assertEqual(set(updates.mapped("state")), {"done"})
        self.assertEqual(self.row("odd@example.org").sync_status, "ok")
        self.assertTrue(self.mc("odd@example.org")["interests"][self.interest_ids["Events"]])
        self.assertEqual(self.mc("odd@example.org")["merge_fields"]["FNAME"], self.ODD_FIRST)


@tagged("post_install", "-at_install")
class TestUndocumentedStatus(SyncCase):
    """A member status Mailchimp does not document stops the audience's
    sync before anything is decided, with a sentence naming the member."""

    def test_the_run_stops_naming_the_member_and_nothing_is_decided(self):
        self.seed([{"email_address": "ann@example.org", "status": "subscribed"},
                   {"email_address": "zed@example.org", "status": "zombie"}])
        self.contact("zed@example.org", [self.newsletter])
        with self.assertLogs("odoo.addons.mailchimp_sync.models.mailchimp_sync", "WARNING") as logs:
            result = self.step()
        self.assertEqual(result, "failed")
        self.assertNotIn("Traceback", "\n".join(logs.output), "an answer Mailchimp gave, not a bug")
        run = self.audience.current_run_id
        self.assertIn('Mailchimp reported the member zed@example.org with the status "zombie"', run.message)
        self.assertIn("give that member a usual status at Mailchimp", run.message)
        self.assertEqual(run.stage, "fetch")
        self.assertFalse(self.env["mailchimp.update"].search([("audience_id", "=", self.audience.id)]),
                         "nothing queued for Mailchimp")
        self.assertEqual(self.mc("zed@example.org")["status"], "zombie")


@tagged("post_install", "-at_install")
class TestEchoFetchedBeforeSettling(SyncCase):
    """A fetch may read the echo of our own update before its batch is
    settled.  The echo is what Odoo decided when it queued the update, so
    it is no later than that, however late Mailchimp ran the batch."""

    def test_an_opt_out_made_while_our_subscribe_travels_wins_over_its_echo(self):
        self.seed()
        ada = self.contact("ada@example.org", [self.newsletter])
        self.sync(settle=False)  # ada's subscribe is on its way
        # Mailchimp runs the batch a while later, after ada opted out in Odoo.
        self.newsletter._update_subscription_from_email("ada@example.org", opt_out=True)
        self.mailchimp_later()
        self.emulator.control.run_batches()
        self.emulator.control.clock(real=True)
        # The next cycle fetches the echo before the poller settles the batch.
        self.sync(settle=False)
        self.assertEqual(self.row("ada@example.org").mc_status, "subscribed")
        self.settle()
        self.sync()
        self.assertFalse(self.subscribed(ada), "her opt-out stands")
        self.assertEqual(self.mc("ada@example.org")["status"], "unsubscribed")

    def test_a_member_who_left_at_mailchimp_meanwhile_is_not_an_echo(self):
        self.seed()
        bea = self.contact("bea@example.org", [self.newsletter])
        self.sync(settle=False)
        self.emulator.control.run_batches()
        # Bea unsubscribes at Mailchimp after the batch ran, then the cycle
        # fetches before the poller settles: her own change, not our echo.
        self.mailchimp_later()
        self.emulator.control.user_unsubscribe(self.list_id, "bea@example.org")
        self.emulator.control.clock(real=True)
        self.sync(settle=False)
        self.settle()
        self.sync()
        self.assertFalse(self.subscribed(bea), "Mailchimp changed last")
        self.assertEqual(self.mc("bea@example.org")["status"], "unsubscribed")


@tagged("post_install", "-at_install")
class TestFetchPages(SyncCase):
    def test_the_run_counts_every_page_it_reads(self):
        """A member page is one request, counted on the run: the first page
        of each listing (the default one, then the archived members) from
        its start, each next one from the last members of the page before,
        so that a listing that shifts meanwhile skips nobody."""
        self.seed(generate=2500)
        members = self.emulator.control.state(self.list_id)["lists"][0]["members"]
        archived = sum(m["status"] == "archived" for m in members)
        self.assertTrue(0 < archived < 1000, "both listings have members")
        before = self.emulator.control.stats()["requests"]
        run = self.sync(settle=False)
        expected = listing_pages(len(members) - archived, PAGE_OVERLAP) + listing_pages(archived, PAGE_OVERLAP)
        self.assertEqual(expected, 4, "three pages of 2,500 minus the archived ones, one of the archived")
        self.assertEqual(run.fetch_pages, expected)
        self.assertEqual(run.fetched, 2500)
        # Besides the pages and the batches, only the audience's interests
        # (their categories, then each category's interests) were asked for.
        self.assertEqual(self.emulator.control.stats()["requests"] - before,
                         run.fetch_pages + run.batches_sent + 2)


def listing_pages(total, overlap, count=1000):
    """The page requests that list ``total`` members: each page after the
    first starts ``overlap`` members before where the one before ended."""
    pages, offset = 0, 0
    while True:
        start = max(0, offset - overlap) if pages else offset
        pages += 1
        offset = min(start + count, total)
        if offset >= total:
            return pages
