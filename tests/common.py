"""Shared set-up for the Odoo suite: a running Mailchimp emulator and an
account, audience and mapped lists pointing at it."""

from odoo.tests import TransactionCase

from odoo.addons.mailchimp_sync.mailchimp_sync.emulator import EmulatorServer


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
