"""The webhook routes over real HTTP: form-encoded bodies as Mailchimp sends
them (recorded by the emulator, or written by hand), posted to the running
Odoo test server.  Good, duplicated, out of order, wrong secret, malformed
and oversized bodies."""

import logging
from datetime import timedelta
from urllib.parse import urlencode

from odoo.tests import HttpCase, tagged

from odoo.addons.mailchimp_sync.mailchimp_sync.client import subscriber_hash

from .common import SyncCase


class WebhookCase(SyncCase, HttpCase):
    """SyncCase served over HTTP: the emulator can reach the test server,
    whose requests run in the test transaction."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["ir.config_parameter"].set_param("mailchimp_sync.webhook_base_url", cls.base_url())
        cls.secret = cls.account.sudo().webhook_secret

    def client(self):
        return self.account._get_client()

    def member_url(self, secret=None):
        return f"{self.base_url()}/mailchimp/webhook/{secret or self.secret}"

    def batch_url(self, secret=None):
        return f"{self.base_url()}/mailchimp/batch-webhook/{secret or self.secret}"

    def post(self, url, body, headers=None):
        """POST a body (form pairs, or a raw str/bytes) as Mailchimp would."""
        self.env.flush_all()
        if not isinstance(body, (str, bytes)):
            body = urlencode(body)
        headers = headers or {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "MailChimp.com",
        }
        response = self.opener.post(url, data=body, headers=headers, timeout=30)
        self.env.invalidate_all()
        return response

    def control(self, method, *args, **kwargs):
        """Run an emulator control event (which may deliver webhooks to us)."""
        self.env.flush_all()
        result = getattr(self.emulator.control, method)(*args, **kwargs)
        self.env.invalidate_all()
        return result

    def captured(self, method, *args, **kwargs):
        """Run an emulator event with delivery off; return the form bodies it
        would have posted, as Mailchimp encodes them."""
        self.emulator.control.deliveries(clear=True)
        self.control(method, *args, **kwargs)
        return [d["body"] for d in self.emulator.control.deliveries() if d["kind"] == "list"]

    def register(self):
        self.env.flush_all()
        self.env["mailchimp.webhook"]._register_all(self.account)
        self.env.invalidate_all()

    def synced(self, members, contacts):
        """Seed Mailchimp, create Odoo contacts, sync to a settled state."""
        self.seed(members)
        made = {email: self.contact(email, lists) for email, lists in contacts.items()}
        self.sync()
        return made

    def sub(self, contact, mailing_list=None):
        mailing_list = mailing_list or self.newsletter
        return contact.subscription_ids.filtered(lambda s: s.list_id == mailing_list)

    def counts(self):
        """A fingerprint of everything a webhook could change."""
        self.env.flush_all()
        cr = self.env.cr
        cr.execute(
            """SELECT (SELECT count(*) FROM mailchimp_member), (SELECT count(*) FROM mailchimp_update),
                      (SELECT count(*) FROM mailing_contact), (SELECT count(*) FROM mail_message),
                      (SELECT count(*) FROM mail_blacklist),
                      (SELECT string_agg(concat_ws(':', id, sync_status, mc_status, email), ',' ORDER BY id)
                         FROM mailchimp_member),
                      (SELECT string_agg(concat_ws(':', id, opt_out), ',' ORDER BY id)
                         FROM mailing_subscription),
                      (SELECT string_agg(concat_ws(':', id, state), ',' ORDER BY id) FROM mailchimp_update)"""
        )
        return cr.fetchone()


@tagged("post_install", "-at_install")
class TestWebhookRoutes(WebhookCase):
    def test_get_validates_and_secret_guards(self):
        self.seed()
        for url in (self.member_url(), self.batch_url()):
            self.assertEqual(self.opener.get(url, timeout=10).status_code, 200, url)
        for url in (
            self.member_url("wrong"),
            self.batch_url("wrong"),
            f"{self.base_url()}/mailchimp/webhook",
            f"{self.base_url()}/mailchimp/batch-webhook",
            self.member_url(self.secret[:-1]),
            self.member_url(self.secret + "x"),
        ):
            self.assertEqual(self.opener.get(url, timeout=10).status_code, 403, url)

    def test_wrong_secret_changes_nothing(self):
        anna = self.synced(
            [{"email_address": "anna@example.org", "status": "subscribed"}],
            {"anna@example.org": [self.newsletter]},
        )["anna@example.org"]
        self.register()
        self.mailchimp_later()
        body = self.captured("user_unsubscribe", self.list_id, "anna@example.org")[0]
        before = self.counts()
        for url in (self.member_url("not-the-secret"), f"{self.base_url()}/mailchimp/webhook"):
            self.assertEqual(self.post(url, body).status_code, 403)
        self.assertEqual(self.counts(), before)
        self.assertTrue(self.subscribed(anna))
        # The secret is never logged, neither by the routes nor in the access log.
        seen = []
        handler = logging.Handler(logging.INFO)
        handler.emit = lambda record: seen.append(record.getMessage())
        route_logger = logging.getLogger("odoo.addons.mailchimp_sync.controllers.main")
        route_logger.addHandler(handler)
        try:
            self.post(self.member_url(), body)
            self.post(self.member_url("wrong-" + self.secret), body)
        finally:
            route_logger.removeHandler(handler)
        self.assertEqual(len(seen), 2, seen)
        self.assertNotIn(self.secret, "\n".join(seen))
        self.assertFalse(self.subscribed(anna))
        access = logging.LogRecord(
            "werkzeug",
            logging.INFO,
            __file__,
            1,
            '%s - - [%s] "%s" %s %s',
            ("127.0.0.1", "now", f"POST /mailchimp/webhook/{self.secret} HTTP/1.1", "200", "-"),
            None,
        )
        for log_filter in logging.getLogger("werkzeug").filters:
            log_filter.filter(access)
        self.assertNotIn(self.secret, access.getMessage())
        self.assertIn("/mailchimp/webhook/***", access.getMessage())

    def test_unsubscribe_cancels_unsent_and_duplicate_changes_nothing(self):
        anna = self.synced(
            [
                {
                    "email_address": "anna@example.org",
                    "status": "subscribed",
                    "merge_fields": {"FNAME": "Anna"},
                }
            ],
            {"anna@example.org": [self.newsletter]},
        )["anna@example.org"]
        self.register()
        # An Odoo edit queued for Mailchimp but not sent yet.
        anna.write({"name": "Anna Other"})
        self.sync(settle=False, until="submit")
        row = self.row("anna@example.org")
        queued = row.update_ids.filtered(lambda u: u.state == "queued")
        self.assertTrue(queued)
        self.mailchimp_later()
        bodies = self.captured("user_unsubscribe", self.list_id, "anna@example.org")
        self.control("clock", real=True)
        self.assertEqual(len(bodies), 1)
        self.assertIn("type=unsubscribe", bodies[0])
        response = self.post(self.member_url(), bodies[0])
        self.assertEqual(response.status_code, 200, response.text)
        self.assertFalse(self.subscribed(anna))
        self.assertEqual(
            self.sub(anna).opt_out_reason_id, self.env.ref("mailchimp_sync.optout_reason_mailchimp")
        )
        self.assertIn("Mailchimp", anna.message_ids[:1].body)
        self.assertEqual(queued.state, "cancelled")
        self.assertEqual(row.mc_status, "unsubscribed")
        self.assertFalse(
            row.update_ids.filtered(lambda u: u.state == "queued"), "nothing queued for Mailchimp"
        )
        # Mailchimp retries, or delivers twice: nothing more changes.
        before = self.counts()
        for _attempt in range(2):
            self.assertEqual(self.post(self.member_url(), bodies[0]).status_code, 200)
        self.assertEqual(self.counts(), before)

    def test_profile_event_keeps_the_pending_retry(self):
        """Issue 11, item 4: after "Member In Compliance State" the update is
        queued again as 'pending'; a profile event before it is sent keeps
        it pending instead of re-queuing 'subscribed'."""
        cara = self.contact("cara@example.org", [self.newsletter])
        self.seed([{"email_address": "cara@example.org", "status": "unsubscribed"}])
        self.register()
        row = self.env["mailchimp.member"].create({
            "audience_id": self.audience.id, "email": "cara@example.org", "contact_id": cara.id,
            "subscriber_hash": subscriber_hash("cara@example.org"), "mc_status": "unsubscribed",
            "sync_status": "live", "odoo_subscribed": True,
        })
        pending = self.env["mailchimp.update"].create({
            "member_id": row.id, "audience_id": self.audience.id, "kind": "member",
            "payload": {"status": "pending"}, "state": "queued",
        })
        self.mailchimp_later()
        profile = self.captured("admin_update", self.list_id, "cara@example.org", merge_fields={"FNAME": "Cara"})
        self.assertIn("type=profile", profile[0])
        self.assertEqual(self.post(self.member_url(), profile[0]).status_code, 200)
        queued = row.update_ids.filtered(lambda u: u.state == "queued" and u.kind == "member")
        self.assertEqual(len(queued), 1)
        self.assertEqual(queued.payload.get("status"), "pending", "the pending retry survives")
        self.assertIn(pending.state, ("queued", "cancelled"))

    def test_profile_before_subscribe(self):
        self.seed()
        self.register()
        self.mailchimp_later()
        subscribe = self.captured(
            "user_signup", self.list_id, "bob@example.org", merge_fields={"FNAME": "Bob", "LNAME": "Dylan"}
        )
        profile = self.captured(
            "admin_update",
            self.list_id,
            "bob@example.org",
            merge_fields={"FNAME": "Robert", "LNAME": "Zimmerman"},
        )
        self.assertIn("type=subscribe", subscribe[0])
        self.assertIn("type=profile", profile[0])
        # The profile arrives first: the member is re-fetched, so the
        # contact is created, subscribed and named as Mailchimp has it now.
        self.assertEqual(self.post(self.member_url(), profile[0]).status_code, 200)
        bob = self.Contact.search([("email", "=", "bob@example.org")])
        self.assertEqual(len(bob), 1)
        self.assertTrue(self.subscribed(bob))
        self.assertEqual(bob.name, "Robert Zimmerman")
        before = self.counts()
        self.assertEqual(self.post(self.member_url(), subscribe[0]).status_code, 200)
        self.assertEqual(self.counts(), before, "the late subscribe changes nothing")
        self.assertEqual(self.row("bob@example.org").sync_status, "ok")

    def test_upemail_moves_row_and_contact(self):
        carl = self.synced(
            [{"email_address": "carl@example.org", "status": "subscribed"}],
            {"carl@example.org": [self.newsletter]},
        )["carl@example.org"]
        self.register()
        old_hash = self.row("carl@example.org").subscriber_hash
        bodies = self.captured(
            "admin_update", self.list_id, "carl@example.org", email_address="carl@new.example.org"
        )
        upemail = [b for b in bodies if "type=upemail" in b]
        self.assertEqual(len(upemail), 1, bodies)
        self.assertEqual(self.post(self.member_url(), upemail[0]).status_code, 200)
        row = self.row("carl@new.example.org")
        self.assertEqual(row.subscriber_hash, subscriber_hash("carl@new.example.org"))
        self.assertFalse(self.Member.search([("subscriber_hash", "=", old_hash)]))
        self.assertEqual(row.contact_id, carl)
        self.assertEqual(carl.email, "carl@new.example.org")
        self.assertIn("carl@example.org", carl.message_ids[:1].body, "the old address is kept in the chatter")
        self.assertTrue(self.subscribed(carl))
        before = self.counts()
        self.assertEqual(self.post(self.member_url(), upemail[0]).status_code, 200)
        self.assertEqual(self.counts(), before)
        # A sync finds both sides equal: nothing to send, nobody created.
        run = self.sync()
        self.assertEqual((run.updates_queued, run.created, run.odoo_changes), (0, 0, 0))

    def test_upemail_moves_the_partner_only_where_partners_follow(self):
        """The partner keeps its email (and gets a note) unless the audience
        says partners follow their contacts; then it takes the new address."""
        self.seed()
        self.register()
        for follow, email in ((False, "dina@example.org"), (True, "ed@example.org")):
            self.audience.update_partners = follow
            partner = self.env["res.partner"].create({"name": email.split("@")[0], "email": email})
            contact = self.contact(email, [self.newsletter], partner_id=partner.id)
            self.sync()  # the contact reaches Mailchimp
            bodies = self.captured("admin_update", self.list_id, email, email_address=f"new.{email}")
            upemail = [b for b in bodies if "type=upemail" in b]
            self.assertEqual(self.post(self.member_url(), upemail[0]).status_code, 200)
            contact.invalidate_recordset()
            partner.invalidate_recordset()
            self.assertEqual(contact.email, f"new.{email}")
            self.assertEqual(partner.email, f"new.{email}" if follow else email, f"follow={follow}")

    def test_unsubscribe_before_upemail(self):
        dora = self.synced(
            [{"email_address": "dora@example.org", "status": "subscribed"}],
            {"dora@example.org": [self.newsletter]},
        )["dora@example.org"]
        self.register()
        self.mailchimp_later()
        upemail = [
            b
            for b in self.captured(
                "admin_update", self.list_id, "dora@example.org", email_address="dora@new.example.org"
            )
            if "type=upemail" in b
        ]
        unsub = self.captured("user_unsubscribe", self.list_id, "dora@new.example.org")
        self.control("clock", real=True)
        # Out of order: the unsubscribe of the new address comes first.
        self.assertEqual(self.post(self.member_url(), unsub[0]).status_code, 200)
        self.assertFalse(self.Contact.search([("email", "=", "dora@new.example.org")]), "no stray contact")
        self.assertEqual(self.post(self.member_url(), upemail[0]).status_code, 200)
        self.assertEqual(dora.email, "dora@new.example.org")
        self.assertFalse(self.subscribed(dora))
        self.assertEqual(self.row("dora@new.example.org").contact_id, dora)
        self.assertFalse(self.row("dora@example.org").contact_id)

    def test_cleaned_bounce_and_blacklist(self):
        contacts = self.synced(
            [
                {"email_address": "eve@example.org", "status": "subscribed"},
                {"email_address": "finn@example.org", "status": "subscribed"},
            ],
            {"eve@example.org": [self.newsletter], "finn@example.org": [self.newsletter]},
        )
        self.register()
        cleaned_reason = self.env.ref("mailchimp_sync.optout_reason_mailchimp_cleaned")
        self.mailchimp_later()
        eve_body = self.captured("bounce", self.list_id, "eve@example.org")
        finn_body = self.captured("bounce", self.list_id, "finn@example.org")
        self.control("clock", real=True)
        self.assertIn("type=cleaned", eve_body[0])
        # eve: the audience marks cleaned addresses as bouncing
        self.assertEqual(self.post(self.member_url(), eve_body[0]).status_code, 200)
        eve = contacts["eve@example.org"]
        self.assertFalse(self.subscribed(eve))
        self.assertEqual(self.sub(eve).opt_out_reason_id, cleaned_reason)
        self.assertGreaterEqual(eve.message_bounce, 5)
        self.assertFalse(self.env["mail.blacklist"].search([("email", "=", "eve@example.org")]))
        before = self.counts()
        self.post(self.member_url(), eve_body[0])
        self.assertEqual(self.counts(), before, "a repeated cleaned event changes nothing")
        # finn: ... blacklists them
        self.audience.cleaned_action = "blacklist"
        self.assertEqual(self.post(self.member_url(), finn_body[0]).status_code, 200)
        finn = contacts["finn@example.org"]
        self.assertFalse(self.subscribed(finn))
        self.assertEqual(self.sub(finn).opt_out_reason_id, cleaned_reason)
        self.assertTrue(self.env["mail.blacklist"].search([("email", "=", "finn@example.org")]))
        before = self.counts()
        self.post(self.member_url(), finn_body[0])
        self.assertEqual(self.counts(), before, "a repeated cleaned event changes nothing")
        # Nothing goes back to Mailchimp: the next sync has nothing to do.
        run = self.sync()
        self.assertEqual((run.updates_queued, run.odoo_changes), (0, 0))

    def test_malformed_unknown_and_campaign(self):
        anna = self.synced(
            [{"email_address": "anna@example.org", "status": "subscribed"}],
            {"anna@example.org": [self.newsletter]},
        )["anna@example.org"]
        self.control("user_unsubscribe", self.list_id, "anna@example.org")  # no webhook registered
        before = self.counts()
        list_id = self.list_id
        bad = [
            "",
            "type=subscribe",
            f"type=nonsense&data[email]=anna%40example.org&data[list_id]={list_id}",
            f"type=unsubscribe&data[email]=not-an-email&data[list_id]={list_id}",
            "type=unsubscribe&data[email]=anna%40example.org",
            f"type=unsubscribe&data=x&data[email]=anna%40example.org&data[list_id]={list_id}",
            f"type=unsubscribe&data[email][0]=anna%40example.org&data[list_id]={list_id}",
            "type[]=unsubscribe",
            "data[merges=1&type=profile",
            b"\xff\xfe\x00\x01binary\x00junk",
            "%%%%%%=&&&==",
            "&".join(f"f{i}=x" for i in range(2000)),
        ]
        for body in bad:
            response = self.post(self.member_url(), body)
            self.assertEqual(response.status_code, 400, body[:80])
        odd_types = [
            ('{"type": "unsubscribe"}', {"Content-Type": "application/json"}),
            (
                '--x\r\nContent-Disposition: form-data; name="type"\r\n\r\nunsub',
                {"Content-Type": "multipart/form-data; boundary=x"},
            ),
            ("type=unsubscribe", {"Content-Type": "multipart/form-data"}),
            ("type=unsubscribe", {"Content-Type": "text/plain"}),
        ]
        for body, headers in odd_types:
            response = self.post(self.member_url(), body, headers=headers)
            self.assertIn(response.status_code, (400, 413), body[:80])
        # oversized
        huge = urlencode(
            [
                ("type", "unsubscribe"),
                ("data[email]", "anna@example.org"),
                ("data[list_id]", list_id),
                ("pad", "x" * 200_000),
            ]
        )
        self.assertEqual(self.post(self.member_url(), huge).status_code, 413)
        self.assertEqual(self.counts(), before)
        self.assertTrue(self.subscribed(anna))
        # An unknown list: 200 (logged) so that Mailchimp stops retrying.
        unknown = urlencode(
            [("type", "unsubscribe"), ("data[email]", "anna@example.org"), ("data[list_id]", "0000000000")]
        )
        self.assertEqual(self.post(self.member_url(), unknown).status_code, 200)
        campaign = urlencode(
            [
                ("type", "campaign"),
                ("data[id]", "c1"),
                ("data[subject]", "Hi"),
                ("data[status]", "sent"),
                ("data[list_id]", list_id),
            ]
        )
        self.assertEqual(self.post(self.member_url(), campaign).status_code, 200)
        self.assertEqual(self.counts(), before)
        self.assertTrue(self.subscribed(anna))

    # ------------------------------------------------------------------
    # Batch webhook
    # ------------------------------------------------------------------

    def test_batch_webhook_settles_exactly_once(self):
        self.seed()
        fay = self.contact("fay@example.org", [self.newsletter], name="Fay Wray")
        self.register()
        self.sync(settle=False)
        batch = self.env["mailchimp.batch"].search([("audience_id", "=", self.audience.id)])
        self.assertEqual(len(batch), 1)
        self.emulator.control.deliveries(clear=True)
        self.control("run_batches")
        bodies = [d["body"] for d in self.emulator.control.deliveries() if d["kind"] == "batch"]
        self.assertEqual(len(bodies), 1)
        # Guards: secret, body, unknown batch
        self.assertEqual(self.post(self.batch_url("wrong"), bodies[0]).status_code, 403)
        self.assertEqual(self.post(self.batch_url(), "type=batch_operation_completed").status_code, 400)
        self.assertEqual(self.post(self.batch_url(), "type=subscribe&data[id]=abc").status_code, 400)
        unknown = urlencode(
            [
                ("type", "batch_operation_completed"),
                ("data[id]", "ffffffffff"),
                ("data[response_body_url]", "http://127.0.0.1:9/evil"),
            ]
        )
        self.assertEqual(self.post(self.batch_url(), unknown).status_code, 200)
        self.assertEqual(batch.result_state, "waiting")
        # The real one
        response = self.post(self.batch_url(), bodies[0])
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(batch.result_state, "done")
        row = self.row("fay@example.org")
        self.assertEqual((row.sync_status, row.mc_status), ("ok", "subscribed"))
        self.assertTrue(row.mc_unique_email_id)
        self.assertTrue(self.subscribed(fay))
        self.assertEqual(row.update_ids.mapped("state"), ["done"])
        # Twice, then the poller: settled once
        before = self.counts()
        self.assertEqual(self.post(self.batch_url(), bodies[0]).status_code, 200)
        self.env["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0)
        self.assertEqual(self.counts(), before)

    def test_batch_webhook_after_poller_and_before_finish(self):
        self.seed()
        self.contact("gus@example.org", [self.newsletter])
        self.register()
        self.sync(settle=False)
        batch = self.env["mailchimp.batch"].search([("audience_id", "=", self.audience.id)])
        early = urlencode(
            [
                ("type", "batch_operation_completed"),
                ("data[id]", batch.mailchimp_batch_id),
                ("data[status]", "finished"),
            ]
        )
        # A webhook for a batch Mailchimp has not finished: nothing settles.
        self.assertEqual(self.post(self.batch_url(), early).status_code, 200)
        self.assertEqual(batch.result_state, "waiting")
        self.emulator.control.deliveries(clear=True)
        self.control("run_batches")
        body = [d["body"] for d in self.emulator.control.deliveries() if d["kind"] == "batch"][0]
        # (The webhook just asked about the batch: the poller's pause is over.)
        self.env["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0, recheck_seconds=0)
        self.env.invalidate_all()
        self.assertEqual(batch.result_state, "done")
        before = self.counts()
        self.assertEqual(self.post(self.batch_url(), body).status_code, 200)
        self.assertEqual(self.counts(), before)


@tagged("post_install", "-at_install")
class TestWebhookTextPostgresRefuses(WebhookCase):
    def test_an_address_with_a_nul_is_refused_and_a_member_with_one_is_fetched(self):
        self.seed([{"email_address": "odd@example.org", "status": "subscribed",
                    "merge_fields": {"FNAME": "An\x00na"}}])
        self.sync()
        list_id = self.list_id
        before = self.counts()
        for email in ("od\x00d@example.org", "odd@example.org\x00"):
            body = urlencode([("type", "unsubscribe"), ("fired_at", "2026-01-01 00:00:00"),
                              ("data[email]", email), ("data[list_id]", list_id)])
            self.assertEqual(self.post(self.member_url(), body).status_code, 400, repr(email))
        self.assertEqual(self.counts(), before)
        # A profile change Mailchimp reports for a member whose names hold
        # a NUL: the member is fetched again and synced.
        self.emulator.control.admin_update(list_id, "odd@example.org", merge_fields={"LNAME": "Geb\x00hard"})
        body = urlencode([("type", "profile"), ("fired_at", "2026-01-01 00:00:00"),
                          ("data[email]", "odd@example.org"), ("data[list_id]", list_id),
                          ("data[merges][FNAME]", "An\x00na"), ("data[merges][LNAME]", "Geb\x00hard")])
        self.assertEqual(self.post(self.member_url(), body).status_code, 200)
        self.assertEqual(self.row("odd@example.org").mc_last_name, "Gebhard")
        self.assertEqual(self.Contact.search([("email", "=", "odd@example.org")]).name, "Anna Gebhard")


@tagged("post_install", "-at_install")
class TestWebhookNotAnEcho(WebhookCase):
    def test_a_signup_reported_while_our_create_travels_keeps_mailchimp_time(self):
        """A webhook reports what a person did at Mailchimp: a member who
        signs up while our own subscribe of the address is on its way is
        not taken for that subscribe's echo (timed when it was queued)."""
        self.seed()
        self.register()
        cleo = self.contact("cleo@example.org", [self.newsletter])
        self.sync(settle=False)
        update = self.row("cleo@example.org").update_ids
        self.assertEqual(update.state, "sent")
        self.mailchimp_later(60)
        bodies = self.captured("user_signup", self.list_id, "cleo@example.org")
        signed_up_at = self.mc("cleo@example.org")["last_changed"]
        self.control("clock", real=True)
        self.assertEqual(self.post(self.member_url(), bodies[0]).status_code, 200)
        row = self.row("cleo@example.org")
        self.assertEqual(row.mc_status, "subscribed")
        self.assertGreater(row.mc_status_changed, update.queued_at + timedelta(seconds=30),
                           f"Mailchimp's time ({signed_up_at}), not the queued update's")
        self.assertTrue(self.subscribed(cleo))
