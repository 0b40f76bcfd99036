from odoo import api, fields, models

from .mailchimp_reconcile import COUNTERS, Counts


class MailchimpReconcileTally(models.Model):
    """What one reconcile chunk decided on a lane (or how many contacts one
    create chunk created, or the batch a sender claimed), committed with it.

    A lane commits its chunks on a connection of its own, while the step's
    transaction keeps the run: the step adds the counts its lanes handed
    it to the run, and marks the run with the step's token.  A step killed
    before its commit (or rolled back) loses those counts, but each chunk
    also wrote its counts here, in its own transaction, under the step's
    token: the next reconcile (create, submit) step of the run adds the tallies
    of any token but the one on the run, so every chunk is counted once.  (The
    step cannot fold its own lanes' tallies: its snapshot, taken before
    they committed, does not show them.)
    """

    _name = "mailchimp.reconcile.tally"
    _description = "Mailchimp Sync: Counts of a Reconcile Chunk"
    _log_access = False

    run_id = fields.Many2one("mailchimp.sync.run", required=True, ondelete="cascade", index=True)
    step_token = fields.Char(required=True)
    reconciled = fields.Integer()
    to_add = fields.Integer()
    to_remove = fields.Integer()
    failed = fields.Integer()
    odoo_changes = fields.Integer()
    odoo_opt_ins = fields.Integer()
    odoo_opt_outs = fields.Integer()
    updates_queued = fields.Integer()
    created = fields.Integer(help="Contacts a create chunk created.")
    batches_sent = fields.Integer(help="Batches a sender of a submit step claimed.")

    @api.model
    def _record(self, run_id, step_token, counts):
        """Write a chunk's ``counts`` (a ``Counts``) for the step
        ``step_token`` of ``run_id``, in the chunk's transaction."""
        self.env.cr.execute(
            f"""INSERT INTO mailchimp_reconcile_tally (run_id, step_token, {", ".join(COUNTERS)})
                VALUES (%s, %s, {", ".join(["%s"] * len(COUNTERS))})""",
            [run_id, step_token, *(getattr(counts, name) for name in COUNTERS)],
        )

    @api.model
    def _fold_into(self, run):
        """Delete the tallies of ``run`` this transaction sees, adding to its
        counters (and progress) those of steps that never counted them
        (any token but ``run.lanes_token``)."""
        self.env.cr.execute(
            f"""WITH gone AS (DELETE FROM mailchimp_reconcile_tally WHERE run_id = %s
                              RETURNING step_token, {", ".join(COUNTERS)})
                SELECT {", ".join(f"COALESCE(sum({name}), 0)::int" for name in COUNTERS)} FROM gone
                 WHERE step_token IS DISTINCT FROM %s""",
            (run.id, run.lanes_token or None),
        )
        counts = Counts()
        for name, value in zip(COUNTERS, self.env.cr.fetchone(), strict=True):
            setattr(counts, name, value)
        if any(getattr(counts, name) for name in COUNTERS):
            counts.add_to_run(run)

    @api.model
    def _drop_closed(self, audience):
        """Delete the tallies of ``audience``'s closed runs, as its next run
        opens.  Every one was counted: a run closes in a step that folded
        the tallies it saw, and those it could not see (its snapshot was
        taken before they committed) are its own lanes', which it counted
        itself.  Without this, each run kept a row per chunk and per batch
        until the run itself was purged."""
        self.env.cr.execute(
            """DELETE FROM mailchimp_reconcile_tally t USING mailchimp_sync_run r
                WHERE t.run_id = r.id AND r.audience_id = %s AND r.ended_at IS NOT NULL""",
            (audience.id,),
        )
