"""End to end: the emulator registers, validates and really POSTs webhooks
to the running Odoo test server ("sync" delivery: a control event returns
once Odoo answered), and batches settle by webhook or by the poller."""

import logging
import time
from datetime import timedelta

from odoo import fields
from odoo.tests import tagged

from odoo.addons.mailchimp_sync.mailchimp_sync.exceptions import MailchimpNotFoundError
from odoo.addons.mailchimp_sync.mailchimp_sync.webhooks import (
    MEMBER_WEBHOOK_EVENTS,
    MEMBER_WEBHOOK_SOURCES,
)

from .test_webhook_routes import WebhookCase

_logger = logging.getLogger(__name__)


@tagged("post_install", "-at_install")
class TestWebhookRegistration(WebhookCase):
    def test_register_check_and_repair(self):
        self.seed()
        client = self.client()
        self.account.action_check_webhooks()
        self.assertEqual(
            (self.audience.webhook_state, self.account.batch_webhook_state), ("missing", "missing")
        )

        self.account.action_register_webhooks()
        self.assertEqual((self.audience.webhook_state, self.account.batch_webhook_state), ("ok", "ok"))
        hooks = client.list_webhooks(self.list_id)
        self.assertEqual(len(hooks), 1)
        self.assertEqual(hooks[0]["url"], self.member_url())
        self.assertEqual(hooks[0]["events"], MEMBER_WEBHOOK_EVENTS)
        self.assertEqual(hooks[0]["sources"], MEMBER_WEBHOOK_SOURCES)
        self.assertEqual(self.audience.webhook_mailchimp_id, hooks[0]["id"])
        batch_hooks = client.list_batch_webhooks()
        self.assertEqual([(h["url"], h["enabled"]) for h in batch_hooks], [(self.batch_url(), True)])
        # Mailchimp validated both URLs with a GET before accepting them.
        self.account.action_check_webhooks()
        self.assertEqual((self.audience.webhook_state, self.account.batch_webhook_state), ("ok", "ok"))
        self.account.action_register_webhooks()  # recognised: nothing added
        self.assertEqual(len(client.list_webhooks(self.list_id)), 1)
        self.assertEqual(len(client.list_batch_webhooks()), 1)

        # Someone turns on the api source (echo loop) and disables the batch webhook.
        client.update_webhook(self.list_id, hooks[0]["id"], {"sources": {"api": True}})
        client.update_batch_webhook(batch_hooks[0]["id"], {"enabled": False})
        self.account.action_check_webhooks()
        self.assertEqual((self.audience.webhook_state, self.account.batch_webhook_state), ("wrong", "wrong"))
        self.assertIn("api", self.audience.webhook_message)
        self.account.action_register_webhooks()
        self.assertEqual((self.audience.webhook_state, self.account.batch_webhook_state), ("ok", "ok"))
        self.assertFalse(client.list_webhooks(self.list_id)[0]["sources"]["api"])
        self.assertTrue(client.list_batch_webhooks()[0]["enabled"])

        # The secret is rotated: old registrations are recognised and moved.
        self.account.sudo().webhook_secret = "rotated-secret-0123456789"
        self.account.action_check_webhooks()
        self.assertEqual((self.audience.webhook_state, self.account.batch_webhook_state), ("wrong", "wrong"))
        self.account.action_register_webhooks()
        hooks = client.list_webhooks(self.list_id)
        self.assertEqual([h["url"] for h in hooks], [self.member_url("rotated-secret-0123456789")])
        self.assertEqual(
            [h["url"] for h in client.list_batch_webhooks()], [self.batch_url("rotated-secret-0123456789")]
        )

        # Deleted at Mailchimp: missing, then registered again from the audience form.
        client.delete_webhook(self.list_id, hooks[0]["id"])
        self.audience.action_register_webhook()
        self.assertEqual(self.audience.webhook_state, "ok")
        self.assertEqual(len(client.list_webhooks(self.list_id)), 1)
        # A webhook of another tool on the same audience is left alone.
        self.emulator.control.settings(webhook_validate_get=False)
        client.create_webhook(
            self.list_id,
            {
                "url": "https://zapier.example.com/hook",
                "events": {"subscribe": True},
                "sources": {"user": True},
            },
        )
        self.account.action_register_webhooks()
        self.assertEqual(len(client.list_webhooks(self.list_id)), 2)
        self.assertEqual(self.audience.webhook_state, "ok")

    def test_registration_failure_is_recorded(self):
        self.seed()
        self.env["ir.config_parameter"].set_param("mailchimp_sync.webhook_base_url", "http://127.0.0.1:9")
        self.account.action_register_webhooks()
        self.assertEqual(self.audience.webhook_state, "missing")
        self.assertIn("verify", self.audience.webhook_message)
        self.env["ir.config_parameter"].set_param("mailchimp_sync.webhook_base_url", self.base_url())


@tagged("post_install", "-at_install")
class TestWebhooksEndToEnd(WebhookCase):
    def setUp(self):
        super().setUp()
        self.emulator.control.settings(webhook_delivery="sync", webhook_retries=0)

    def test_unsubscribe_at_mailchimp_opts_out_in_odoo(self):
        anna = self.synced(
            [{"email_address": "anna@example.org", "status": "subscribed"}],
            {"anna@example.org": [self.newsletter]},
        )["anna@example.org"]
        self.register()
        self.mailchimp_later()
        answer = self.control("user_unsubscribe", self.list_id, "anna@example.org")
        self.control("clock", real=True)
        delivery = [d for d in self.emulator.control.deliveries() if d["type"] == "unsubscribe"]
        self.assertEqual(
            [(d["status"], d["response_status"]) for d in delivery], [("delivered", 200)], answer
        )
        self.assertFalse(self.subscribed(anna))
        self.assertEqual(self.row("anna@example.org").mc_status, "unsubscribed")
        # ... and the next sync sends nothing back (api source off: no echo either).
        run = self.sync()
        self.assertEqual((run.updates_queued, run.odoo_changes), (0, 0))
        self.assertEqual(self.mc("anna@example.org")["status"], "unsubscribed")

    def test_signup_and_confirm_create_the_contact(self):
        self.seed()
        self.register()
        self.control(
            "user_signup", self.list_id, "ivy@example.org", merge_fields={"FNAME": "Ivy", "LNAME": "Lee"}
        )
        ivy = self.Contact.search([("email", "=", "ivy@example.org")])
        self.assertEqual(ivy.name, "Ivy Lee")
        self.assertTrue(self.subscribed(ivy))

    def test_compliance_failure_requeued_as_pending_then_settled(self):
        self.seed(
            [
                {
                    "email_address": "hank@example.org",
                    "status": "unsubscribed",
                    "unsubscribe_origin": "user",
                    "last_changed": "2020-01-01T00:00:00+00:00",
                }
            ]
        )
        hank = self.contact("hank@example.org", [self.newsletter])
        self.register()
        self.sync(settle=False)  # Odoo subscribed later than Mailchimp's unsubscribe: resubscribe
        batch = self.env["mailchimp.batch"].search([("audience_id", "=", self.audience.id)])
        self.assertEqual(len(batch), 1)
        self.control("run_batches")  # the batch webhook reaches Odoo, which settles at once
        self.assertEqual(batch.result_state, "done")
        row = self.row("hank@example.org")
        failed = row.update_ids.filtered(lambda u: u.state == "failed")
        self.assertEqual(failed.error_title, "Member In Compliance State")
        queued = row.update_ids.filtered(lambda u: u.state == "queued")
        self.assertEqual(queued.payload.get("status"), "pending")
        self.assertEqual(row.sync_status, "live")
        # The next cycle sends the pending subscribe; its webhook settles it.
        run = self.sync(settle=False)
        self.assertEqual((run.updates_queued, run.updates_carried, run.batches_sent), (0, 1, 1),
                         "the run says where the update its batch sent came from")
        self.control("run_batches")
        self.assertEqual(self.env["mailchimp.batch"].search_count([("result_state", "!=", "done")]), 0)
        self.assertEqual(queued.state, "done")
        self.assertEqual((row.sync_status, row.mc_status), ("ok", "pending"))
        self.assertEqual(self.mc("hank@example.org")["status"], "pending")
        self.assertTrue(self.subscribed(hank))

    def test_blocked_batch_webhook_settled_by_poller(self):
        self.seed()
        self.contact("jan@example.org", [self.newsletter])
        self.register()
        client = self.account._get_client()
        hook = client.list_batch_webhooks()[0]
        client.update_batch_webhook(hook["id"], {"url": "http://127.0.0.1:9/blocked"})  # a firewall
        self.sync(settle=False)
        batch = self.env["mailchimp.batch"].search([("audience_id", "=", self.audience.id)])
        self.control("run_batches")
        self.assertEqual(
            [d["status"] for d in self.emulator.control.deliveries() if d["kind"] == "batch"], ["failed"]
        )
        self.assertEqual(batch.result_state, "waiting")
        Batch = self.env["mailchimp.batch"]
        Batch._cron_poll_batches()  # too early: the webhook may still come
        self.assertEqual(batch.result_state, "waiting")
        batch.submitted_at = fields.Datetime.now() - timedelta(minutes=5)
        Batch._cron_poll_batches()
        self.assertEqual(batch.result_state, "done")
        row = self.row("jan@example.org")
        self.assertEqual((row.sync_status, row.mc_status), ("ok", "subscribed"))

    def test_abort_deletes_unfinished_batches(self):
        self.seed()
        self.contact("kim@example.org", [self.newsletter])
        self.sync(settle=False)
        batch = self.env["mailchimp.batch"].search([("audience_id", "=", self.audience.id)])
        self.assertEqual(batch.status, "pending")
        self.audience.action_abort()
        self.assertEqual((batch.status, batch.result_state), ("aborted", "done"))
        row = self.row("kim@example.org")
        # Back in line: the next cycle decides the row again.
        self.assertEqual(row.sync_status, "todo")
        self.assertEqual(row.update_ids.mapped("state"), ["cancelled"])
        self.assertIn("aborted", row.update_ids.error_detail)
        self.assertEqual(self.emulator.control.run_batches()["finished"], [], "deleted at Mailchimp")
        with self.assertRaises(MailchimpNotFoundError):
            self.client().get_member(self.list_id, "kim@example.org")

    def test_deleted_member_is_gone(self):
        """A member deleted for good at Mailchimp: the re-fetch answers 404,
        which counts as archived from now on, so Odoo opts the contact out."""
        lea = self.synced(
            [{"email_address": "lea@example.org", "status": "subscribed"}],
            {"lea@example.org": [self.newsletter]},
        )["lea@example.org"]
        self.register()
        self.emulator.control.settings(webhook_delivery="off")
        self.emulator.control.deliveries(clear=True)
        self.client()._sdk.lists.delete_list_member_permanent(
            self.list_id, self.row("lea@example.org").subscriber_hash
        )
        body = (
            "type=unsubscribe&data[action]=delete&data[reason]=manual&data[email]=lea%40example.org"
            f"&data[list_id]={self.list_id}"
        )
        self.assertEqual(self.post(self.member_url(), body).status_code, 200)
        self.assertFalse(self.subscribed(lea))
        self.assertEqual(self.row("lea@example.org").mc_status, "archived")

    def test_large_batch_settled_by_webhook_in_time(self):
        """1,000 operations settled inside the webhook request, well within
        Mailchimp's 10 s."""
        self.seed()
        self.Contact.create(
            [
                {"name": f"P{i}", "email": f"p{i:04d}@example.org", "list_ids": [(4, self.newsletter.id)]}
                for i in range(1000)
            ]
        )
        self.register()
        self.sync(settle=False)
        batches = self.env["mailchimp.batch"].search([("audience_id", "=", self.audience.id)])
        self.assertEqual(len(batches), 1)
        started = time.monotonic()
        self.control("run_batches")
        total = time.monotonic() - started
        delivery = [d for d in self.emulator.control.deliveries() if d["kind"] == "batch"][0]
        elapsed = delivery["attempts"][0]["elapsed"]
        _logger.info(
            "batch webhook settling 1000 operations answered in %.2f s (run_batches %.2f s)", elapsed, total
        )
        self.assertEqual(delivery["response_status"], 200)
        self.assertLess(elapsed, 10)
        self.assertEqual(batches.result_state, "done")
        self.assertEqual(
            self.Member.search_count([("audience_id", "=", self.audience.id), ("sync_status", "=", "ok")]),
            1000,
        )
