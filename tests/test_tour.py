"""The screens in a real browser: an Odoo tour, run by HttpCase in headless
Chromium against the Mailchimp emulator.

``scripts/install_browser.sh`` installs Chromium and ``websocket-client``
on a fresh machine; where either is still missing the test is skipped with
the reason (Odoo itself would only log a warning, which the suite treats as
a failure).  With ``MAILCHIMP_SCREENSHOTS=1`` the tour's marked steps are
saved as PNGs into ``readme/screenshots/`` for README.rst.

Sync Now only triggers the audience's scheduled action: the test runs that
action as Odoo's cron runner would, one step per call with a commit after
each, between the tours and, when a step asks for it, while a tour runs (in
a thread, on the test's cursor as a request would), so the tour sees the
form follow a running cycle by itself.
"""

import base64
import importlib.util
import json
import logging
import os
import pathlib
import queue
import threading
from unittest.mock import patch

from odoo import SUPERUSER_ID, api
from odoo.tests import HttpCase, tagged
from odoo.tests.common import ChromeBrowser, _find_executable
from odoo.tools.misc import Callbacks
from odoo.tools import mute_logger

from odoo.addons.mailchimp_sync.mailchimp_sync.emulator import EmulatorServer

_logger = logging.getLogger(__name__)

SCREENSHOT_MARK = "mailchimp_screenshot:"
CRON_MARK = "mailchimp_cron:"
SCREENSHOT_DIR = pathlib.Path(__file__).resolve().parent.parent / "readme" / "screenshots"


def browser_missing():
    """Why the browser test cannot run here, or None."""
    if importlib.util.find_spec("websocket") is None:
        return "websocket-client is not installed (run scripts/install_browser.sh)"
    try:
        _find_executable()
    except Exception:  # noqa: BLE001 - any failure means no usable browser
        return "no Chromium/Chrome executable on PATH (run scripts/install_browser.sh)"
    return None


def _tour_console(original, commands, screenshots):
    """Wrap ChromeBrowser._handle_console: a console line
    ``mailchimp_cron:<command>`` hands the command to the test's cron
    thread; with ``screenshots``, ``mailchimp_screenshot:<name>`` captures
    the page into <name>.png."""

    def handle_console(browser, type, args=None, stackTrace=None, **kw):  # noqa: A002
        value = args and args[0].get("value")
        if isinstance(value, str) and value.startswith(CRON_MARK):
            commands.put(value[len(CRON_MARK):].strip())
            return None
        if screenshots and isinstance(value, str) and value.startswith(SCREENSHOT_MARK):
            name = value[len(SCREENSHOT_MARK):].strip() or "screen"
            future = browser._websocket_send("Page.captureScreenshot", with_future=True)

            def save(done, name=name):
                data = (done.result(timeout=0) or {}).get("data")
                if data:
                    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
                    (SCREENSHOT_DIR / f"{name}.png").write_bytes(base64.b64decode(data))
                    _logger.info("Screenshot saved: %s.png", name)

            future.add_done_callback(save)
            return None
        return original(browser, type, args=args, stackTrace=stackTrace, **kw)

    return handle_console


@tagged("post_install", "-at_install")
class TestMailchimpTour(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.emulator = EmulatorServer(port=0).start()
        cls.addClassCleanup(cls.emulator.stop)

    def setUp(self):
        super().setUp()
        why = browser_missing()
        if why:
            self.skipTest(why)
        # Odoo's own onboarding tours (Email Marketing's) would run alongside.
        self.env.ref("base.user_admin").tour_enabled = False
        self.emulator.control.reset(settings={"batch_auto_run": False, "webhook_delivery": "off"})
        answer = self.emulator.control.seed(
            lists=[
                {
                    "name": "Tour Newsletter",
                    "interest_categories": [
                        {"title": "Topics", "type": "checkboxes",
                         "interests": [{"name": "Events"}, {"name": "News"}]}
                    ],
                    "members": [
                        {"email_address": "anna@example.org", "status": "subscribed",
                         "merge_fields": {"FNAME": "Anna", "LNAME": "Ames"}},
                        {"email_address": "bob@example.org", "status": "subscribed"},
                        {"email_address": "dan@example.org", "status": "unsubscribed"},
                        # Cleaned long ago, subscribed in Odoo since: a row that fails.
                        {"email_address": "erin@example.org", "status": "cleaned",
                         "last_changed": "2025-01-01T00:00:00+00:00"},
                    ],
                }
            ]
        )
        self.list_id = answer["lists"][0]["id"]
        self.subscribers = self.env["mailing.list"].create({"name": "Tour Subscribers"})
        self.events = self.env["mailing.list"].create({"name": "Tour Events"})
        self.env["mailing.contact"].create([
            {"name": "Carla", "email": "carla@example.org", "list_ids": [(4, self.subscribers.id)]},
            {"name": "Erin", "email": "erin@example.org", "list_ids": [(4, self.subscribers.id)]},
        ])

    def run_tour(self, name, **data):
        data = {"api_key": self.emulator.api_key, "api_base": self.emulator.api_base, **data}
        code = (
            f"window.sessionStorage.setItem('mailchimp_sync_tour', {json.dumps(json.dumps(data))});"
            f"odoo.startTour('{name}', {{stepDelay: 0, keepWatchBrowser: false, "
            "debug: false, startUrl: '/odoo'})"
        )
        self.start_tour("/odoo", name, login="admin", code=code, timeout=300)

    def cron_call(self, audience_id):
        """One call of the audience's scheduled action, then the commit (on
        the test's cursor: flush and the post-commit hooks, as a commit
        would).  Returns whether a cycle is still open."""
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["mailchimp.audience"]._cron_sync_audience(audience_id)
            env.flush_all()
            cr.flush()
            still_open = bool(env["mailchimp.audience"].browse(audience_id).current_run_id)
            # The hooks run once this cursor is let go, as a real commit's
            # run with no lock held: a test cursor holds the test's lock,
            # which the batch senders' own cursors wait for.
            postcommit, cr.postcommit = cr.postcommit, Callbacks()
        postcommit.run()
        return still_open

    def cron_thread(self, audience_id, commands, failures):
        """Stand in for the cron runner while a tour runs: 'finish' runs the
        open cycle to its end, 'fail' makes Mailchimp fail and runs the
        next cycle's first step."""
        while (command := commands.get()) is not None:
            try:
                if command == "finish":
                    for _call in range(100):
                        if not self.cron_call(audience_id):
                            break
                elif command == "fail":
                    self.emulator.control.faults(rules=[
                        {"method": "GET", "path": "^/lists/[^/]+/members$", "kind": "503", "count": 100}])
                    # (The runner logs the failed step as a warning: expected here.)
                    with mute_logger("odoo.addons.mailchimp_sync.models.mailchimp_sync"):
                        self.cron_call(audience_id)
                else:
                    raise ValueError(f"unknown cron command {command!r}")
            except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
                _logger.info("Tour cron command %s failed: %s", command, exc)
                failures.append(exc)

    def test_new_user_connects_maps_syncs_and_reads_the_dashboard(self):
        commands, failures = queue.Queue(), []
        handler = _tour_console(ChromeBrowser._handle_console, commands,
                                screenshots=bool(os.environ.get("MAILCHIMP_SCREENSHOTS")))
        patcher = patch.object(ChromeBrowser, "_handle_console", handler)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.run_tour("mailchimp_sync_tour")

        # Sync Now only triggered the audience's scheduled action: nothing
        # ran inside the request.  Run it as Odoo's cron runner would.
        account = self.env["mailchimp.account"].search([("name", "=", "Tour Mailchimp")])
        audience = account.audience_ids
        self.assertTrue(self.env["ir.cron.trigger"].search([("cron_id", "=", audience.cron_id.id)]))
        self.assertFalse(audience.run_ids, "nothing ran inside the request")
        for _call in range(50):
            if not self.cron_call(audience.id):
                break
        self.env.invalidate_all()
        self.assertEqual(audience.run_ids.mapped("state"), ["done"])
        self.run_tour("mailchimp_sync_tour_results")

        # What the tours did is really in the database.
        self.env.invalidate_all()
        self.assertEqual(account.api_base_url, self.emulator.api_base)
        self.assertTrue(account.is_sandbox)
        self.assertEqual(audience.mailchimp_list_id, self.list_id)
        self.assertEqual(audience.mailing_list_id, self.subscribers)
        events = audience.interest_ids.filtered(lambda i: i.name == "Events")
        self.assertEqual(events.mailing_list_id, self.events)
        self.assertEqual(
            sorted(audience.member_ids.mapped("email")),
            ["anna@example.org", "bob@example.org", "carla@example.org", "dan@example.org", "erin@example.org"],
        )
        self.assertEqual((audience.mc_subscribed_count, audience.odoo_subscribed_count), (2, 4))
        erin = audience.member_ids.filtered(lambda m: m.email == "erin@example.org")
        self.assertEqual(erin.sync_status, "fail", "retried, and still failing: a cleaned address")
        self.assertIn("cleaned", erin.sync_error)
        # Carla, subscribed only in Odoo, is on her way to Mailchimp.
        self.emulator.control.run_batches()
        self.env["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0, recheck_seconds=0)
        carla = self.emulator.control.member(self.list_id, "carla@example.org")
        self.assertEqual(carla["status"], "subscribed")

        # A larger audience, resynced in full: the cycle's first step reads
        # one page of members out of several, and stops there (its budget
        # is spent).
        self.emulator.control.seed(lists=[{"id": self.list_id, "generate_members": 1500}])
        audience.action_full_resync()
        self.env.flush_all()
        self.assertEqual(self.env["mailchimp.sync"]._step(audience, budget=0.001), "partial")
        self.env.flush_all()
        self.env.cr.postcommit.run()
        run = audience.current_run_id
        self.assertEqual((run.stage, run.progress_done), ("fetch", 1000))
        self.assertGreater(run.progress_total, 1000)

        worker = threading.Thread(target=self.cron_thread, args=(audience.id, commands, failures),
                                  name="mailchimp-tour-cron", daemon=True)
        worker.start()
        try:
            self.run_tour("mailchimp_sync_tour_live", remaining=f"{run.progress_total - 1000:,}")
        finally:
            commands.put(None)
            worker.join(timeout=120)
        self.assertFalse(failures)
        self.env.invalidate_all()
        self.assertEqual(audience.run_ids.mapped("state"), ["aborted", "done", "done"])
        self.assertEqual(audience.sync_stage, "idle")
        self.assertGreater(audience.member_count, 1000)
