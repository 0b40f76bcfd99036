"""Odoo-free core of the mailchimp_sync addon.

Everything here runs without Odoo: the Mailchimp client, the reconcile
decisions, batch building and result parsing, webhook parsing and the
Mailchimp emulator.  The Odoo models, crons and controllers of the addon
load records, call into this package and persist what it decides.

This package must never import ``odoo`` (enforced by ruff's banned-api rule).
"""

__version__ = "18.0.1.0.0"
