from odoo.tests import tagged

from odoo.addons.mailchimp_sync.mailchimp_sync import exceptions as mc
from odoo.addons.mailchimp_sync.mailchimp_sync.exceptions import (
    MailchimpAuthError,
    MailchimpNotFoundError,
    MailchimpPermanentError,
    MailchimpRetryableError,
)

from .common import MailchimpCase


@tagged("post_install", "-at_install")
class TestClientThroughAccount(MailchimpCase):
    """The account's client talks to the emulator over real HTTP."""

    def test_ping_and_connection_action(self):
        client = self.account._get_client()
        self.assertEqual(client.ping(), "Everything's Chimpy!")
        action = self.account.action_test_connection()
        self.assertEqual(action["params"]["type"], "success")
        # Mailchimp's own text is not shown to people (issue 14, item 7).
        self.assertEqual(self.account.last_connection_state, "ok")
        self.assertNotIn("Chimpy", self.account.last_connection_message)

    def test_paging_2500_members(self):
        ids = self.emulator.control.seed(
            lists=[{"name": "Big", "generate_members": 2500, "status_mix": {"subscribed": 0.9, "unsubscribed": 0.1}}]
        )
        list_id = ids["lists"][0]["id"]
        client = self.account._get_client()
        pages = list(client.iter_member_pages(list_id, fields=["id", "email_address", "status"]))
        self.assertEqual([len(p.members) for p in pages], [1000, 1000, 500])
        hashes = {m["id"] for p in pages for m in p.members}
        self.assertEqual(len(hashes), 2500)
        self.assertEqual(pages[-1].total_items, 2500)
        self.assertEqual(set(pages[0].members[0]), {"id", "email_address", "status"})

    def test_wrong_key(self):
        self.account.api_key = "f" * 32 + "-us1"
        with self.assertRaises(MailchimpAuthError) as caught:
            self.account._get_client().ping()
        self.assertEqual(caught.exception.status, 401)
        self.assertEqual(caught.exception.kind, mc.AUTH)
        self.assertNotIn("f" * 32, str(caught.exception), "the key is never in a message")
        # Reported and recorded, not raised (a raise would roll the record back).
        action = self.account.action_test_connection()
        self.assertEqual(action["params"]["type"], "danger")
        self.assertEqual(self.account.last_connection_state, "failed")

    def test_not_found_and_bad_request(self):
        client = self.account._get_client()
        with self.assertRaises(MailchimpNotFoundError) as missing:
            client.get_list("0000000000")
        self.assertEqual(missing.exception.kind, mc.NOT_FOUND)
        ids = self.emulator.control.seed(lists=[{"name": "Small"}])
        list_id = ids["lists"][0]["id"]
        with self.assertRaises(MailchimpPermanentError) as caught:
            client.create_webhook(list_id, {"url": "not a url at all"})
        self.assertFalse(caught.exception.retryable)
        self.assertEqual(caught.exception.status, 400)
        self.assertTrue(caught.exception.title)
        self.assertEqual(caught.exception.kind, mc.INVALID)

    def test_retryable_faults(self):
        client = self.account._get_client()
        for kind, status, error_kind in (("429_json", 429, mc.RATE_LIMITED), ("429_empty", 429, mc.RATE_LIMITED),
                                         ("403_empty", 403, mc.RATE_LIMITED), ("500", 500, mc.SERVER_ERROR),
                                         ("503", 503, mc.SERVER_ERROR)):
            self.emulator.control.faults(rules=[{"kind": kind, "count": 1}])
            with self.assertRaises(MailchimpRetryableError, msg=kind) as caught:
                client.ping()
            self.assertEqual(caught.exception.status, status, kind)
            self.assertEqual(caught.exception.kind, error_kind, kind)
        self.assertEqual(client.ping(), "Everything's Chimpy!", "faults are used up")

    def test_timeout_is_retryable(self):
        self.account.timeout = 1
        client = self.account._get_client()
        self.emulator.control.faults(rules=[{"kind": "timeout", "count": 1, "delay": 3}])
        with self.assertRaises(MailchimpRetryableError) as caught:
            client.ping()
        self.assertIsNone(caught.exception.status)
        self.assertEqual(caught.exception.kind, mc.TIMEOUT)
        self.assertRegex(str(caught.exception), r"^Mailchimp at 127\.0\.0\.1:\d+ did not answer within 1 second\.$")
