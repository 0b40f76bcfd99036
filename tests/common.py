"""Shared set-up for the Odoo suite: a running Mailchimp emulator and an
account, audience and mapped lists pointing at it."""

from odoo.tests import TransactionCase

from odoo.addons.mailchimp_sync.mailchimp_sync.emulator import EmulatorServer


def audience_of(env, mailing_list, **values):
    """An audience of a new account, synced with ``mailing_list``."""
    account = env["mailchimp.account"].create({"name": "A", "api_key": "0" * 32 + "-us1"})
    return env["mailchimp.audience"].create(dict({
        "name": "A", "account_id": account.id, "mailchimp_list_id": "a1b2c3d4e5",
        "mailing_list_id": mailing_list.id}, **values))


class EmulatorMixin:
    """Starts one emulator per test class (real HTTP on a free port) and
    resets it before each test."""

    emulator = None

    @classmethod
    def start_emulator(cls, **settings):
        cls.emulator = EmulatorServer(port=0, settings=settings or None).start()
        cls.addClassCleanup(cls.emulator.stop)
        return cls.emulator

    def reset_emulator(self, **settings):
        self.emulator.control.reset(settings=settings or None)


class MailchimpCase(EmulatorMixin, TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Code that opens a cursor of its own (the batch sender, as Odoo's
        # HTTP tests do for requests) gets one on the test's transaction.
        if cls.registry.test_cr is None:
            cls.registry.enter_test_mode(cls.cr)
            cls.addClassCleanup(cls.registry.leave_test_mode)
        cls.start_emulator()
        cls.account = cls.env["mailchimp.account"].create(
            {
                "name": "Emulated account",
                "api_key": cls.emulator.api_key,
                "api_base_url": cls.emulator.api_base,
                "timeout": 5,
            }
        )

    def setUp(self):
        super().setUp()
        self.reset_emulator()


class SyncCase(MailchimpCase):
    """An audience with two mapped interests, seeded in the emulator, and
    its three mailing lists in Odoo."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.newsletter = cls.env["mailing.list"].create({"name": "Newsletter"})
        cls.events_list = cls.env["mailing.list"].create({"name": "Events"})
        cls.news_list = cls.env["mailing.list"].create({"name": "News"})
        cls.Contact = cls.env["mailing.contact"]
        cls.Member = cls.env["mailchimp.member"]

    def setUp(self):
        super().setUp()
        self.emulator.control.reset(settings={"batch_auto_run": False, "webhook_delivery": "off"})
        self.audience = None

    def seed(self, members=(), generate=0):
        """Seed the Mailchimp list and configure the audience mapping it."""
        answer = self.emulator.control.seed(
            lists=[
                {
                    "name": "Newsletter",
                    "interest_categories": [
                        {"title": "Topics", "type": "checkboxes",
                         "interests": [{"name": "Events"}, {"name": "News"}]}
                    ],
                    "members": list(members),
                    "generate_members": generate,
                }
            ]
        )["lists"][0]
        self.list_id = answer["id"]
        self.interest_ids = answer["interests"]
        self.audience = self.env["mailchimp.audience"].create(
            {
                "name": "Newsletter",
                "account_id": self.account.id,
                "mailchimp_list_id": self.list_id,
                "mailing_list_id": self.newsletter.id,
                "interest_ids": [
                    (0, 0, {"mailchimp_interest_id": self.interest_ids["Events"], "name": "Events",
                            "category_name": "Topics", "mailing_list_id": self.events_list.id}),
                    (0, 0, {"mailchimp_interest_id": self.interest_ids["News"], "name": "News",
                            "category_name": "Topics", "mailing_list_id": self.news_list.id}),
                ],
            }
        )
        return answer

    def contact(self, email, lists=(), name=None, **vals):
        return self.Contact.create(
            {"name": name or email.split("@")[0].title(), "email": email,
             "list_ids": [(4, lst.id) for lst in lists], **vals}
        )

    def commit_like_the_runner(self):
        """What Odoo's cron runner does between two calls: commit.  A test
        cannot commit; flushing and running the post-commit hooks (the
        batch sender) is what a commit would do here."""
        self.env.flush_all()
        self.env.cr.flush()  # the pre-commit hooks (tracking) too
        self.env.cr.postcommit.run()
        self.env.invalidate_all()

    def step(self, audience=None, budget=None):
        """One step of the audience's cycle, as its scheduled action runs
        it, then the commit."""
        audience = audience or self.audience
        result = self.env["mailchimp.sync"]._step(audience, budget)
        self.commit_like_the_runner()
        return result

    def sync(self, settle=True, until=None):
        """Run the cycle step by step, as the audience's scheduled action
        does, to the end (or until the run reaches stage ``until``); then
        let Mailchimp run the batches and settle their results as the
        poller would.  Returns the run."""
        run = self.audience.current_run_id
        for _attempt in range(500):
            if until and self.audience.current_run_id.stage == until:
                return self.audience.current_run_id
            result = self.step()
            run = run or self.env["mailchimp.sync.run"].search([("audience_id", "=", self.audience.id)], limit=1)
            if result == "done":
                break
            self.assertNotIn(result, ("failed", "busy"), run.message)
        self.assertEqual(result, "done")
        if settle:
            self.settle()
        return run

    def settle(self):
        self.emulator.control.run_batches()
        self.env["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0, limit=1000, recheck_seconds=0)
        self.commit_like_the_runner()

    def mc(self, email):
        return self.emulator.control.member(self.list_id, email)

    def row(self, email):
        return self.Member.search([("audience_id", "=", self.audience.id), ("email", "=ilike", email)])

    def subscribed(self, contact, mailing_list=None):
        mailing_list = mailing_list or self.newsletter
        sub = contact.subscription_ids.filtered(lambda s: s.list_id == mailing_list)
        return bool(sub) and not sub.opt_out

    def mailchimp_later(self, seconds=5):
        """Make the next Mailchimp changes happen clearly after any Odoo one
        (Mailchimp's times have one-second resolution)."""
        from datetime import datetime, timedelta, timezone  # noqa: PLC0415
        future = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        self.emulator.control.clock(now=future.replace(microsecond=0).isoformat())
