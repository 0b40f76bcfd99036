from psycopg2 import errors

from odoo import fields, models
from odoo.tools import mute_logger


class MailchimpSyncLock(models.Model):
    """The row a sync worker locks (``FOR UPDATE NOWAIT``) for as long as it
    works on an audience, on a cursor of its own, so that a second worker
    cannot run the same audience while the first commits stage by stage."""

    _name = "mailchimp.sync.lock"
    _description = "Mailchimp Sync Lock"
    _log_access = False

    audience_id = fields.Many2one("mailchimp.audience", required=True, ondelete="cascade")

    _sql_constraints = [("audience_uniq", "unique(audience_id)", "One lock row per audience.")]

    def _try_lock(self, cr, audience_id, commit_insert=True):
        """Lock the audience's row on ``cr``; return False if another worker holds it.

        The row is created (and committed) first if missing: a second
        worker inserting the same key would otherwise wait on the first
        worker's uncommitted insert instead of being refused at once.
        """
        cr.execute("SELECT 1 FROM mailchimp_sync_lock WHERE audience_id = %s", (audience_id,))
        if not cr.fetchone():
            cr.execute(
                "INSERT INTO mailchimp_sync_lock (audience_id) VALUES (%s) ON CONFLICT DO NOTHING",
                (audience_id,),
            )
            if commit_insert:
                # The lock cursor is the worker's own: committing the new
                # row is what lets a second worker be refused at once.
                cr.commit()  # pylint: disable=invalid-commit
        try:
            cr.execute("SAVEPOINT mailchimp_lock")
            # A busy audience is normal, not an SQL error worth logging.
            with mute_logger("odoo.sql_db"):
                cr.execute(
                    "SELECT id FROM mailchimp_sync_lock WHERE audience_id = %s FOR UPDATE NOWAIT",
                    (audience_id,),
                )
        except errors.LockNotAvailable:
            cr.execute("ROLLBACK TO SAVEPOINT mailchimp_lock")
            return False
        cr.execute("RELEASE SAVEPOINT mailchimp_lock")
        return True
