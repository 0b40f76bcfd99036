from contextlib import contextmanager

from odoo import api, fields, models

from ..tools.sql import int_array, row_trigger_sql


class MailingSubscription(models.Model):
    """Records when each membership last changed, however it was changed.

    Odoo writes subscriptions through the ORM, but also through raw SQL
    ("add to list", the import wizard, list merge) with no create_date, and
    keeps no history.  A PostgreSQL trigger stamps ``mailchimp_changed_at``
    on every insert and every change of ``opt_out``, and records removals,
    so the reconcile can tell who changed last whatever path was taken.
    """

    _inherit = "mailing.subscription"

    mailchimp_changed_at = fields.Datetime(
        string="Membership Changed",
        readonly=True,
        copy=False,
        help="When this subscription was created or last opted in or out.",
    )

    def init(self):
        res = super().init()
        self.env.cr.execute(row_trigger_sql(
            "mailchimp_sync_subscription_stamp", "mailing_subscription", "BEFORE INSERT OR UPDATE OF opt_out", """
                -- The sync applying Mailchimp's state is not a change made
                -- in Odoo: it keeps the stamp it was given (or had).
                IF current_setting('mailchimp_sync.own_write', true) = 'on' THEN
                    RETURN NEW;
                END IF;
                IF TG_OP = 'INSERT'
                   OR COALESCE(NEW.opt_out, FALSE) IS DISTINCT FROM COALESCE(OLD.opt_out, FALSE) THEN
                    NEW.mailchimp_changed_at := clock_timestamp() AT TIME ZONE 'UTC';
                END IF;
                RETURN NEW;"""))
        self.env.cr.execute(row_trigger_sql(
            "mailchimp_sync_subscription_removed", "mailing_subscription", "AFTER DELETE", """
                -- Only mapped lists matter; removals from others are not kept.
                IF EXISTS (SELECT 1 FROM mailchimp_audience WHERE mailing_list_id = OLD.list_id)
                   OR EXISTS (SELECT 1 FROM mailchimp_interest WHERE mailing_list_id = OLD.list_id) THEN
                    INSERT INTO mailchimp_list_removal (contact_id, list_id, removed_at)
                    VALUES (OLD.contact_id, OLD.list_id, clock_timestamp() AT TIME ZONE 'UTC')
                    ON CONFLICT (contact_id, list_id) DO UPDATE SET removed_at = EXCLUDED.removed_at;
                END IF;
                RETURN OLD;"""))
        self.env.cr.execute(
            """
            -- the Odoo-changes stage of an incremental cycle reads the
            -- stamps since the last cycle
            CREATE INDEX IF NOT EXISTS mailchimp_sync_subscription_stamp_idx
                ON mailing_subscription (mailchimp_changed_at);

            -- Memberships that existed before the addon: the last time Odoo
            -- wrote them is the best we know; rows inserted by raw SQL had
            -- no date at all and count as old history.
            UPDATE mailing_subscription
               SET mailchimp_changed_at = COALESCE(opt_out_datetime, write_date, create_date,
                                                   TIMESTAMP '2000-01-01')
             WHERE mailchimp_changed_at IS NULL;
            """
        )
        return res

    @api.model
    def _mailchimp_apply(self, audience, subscribe, unsubscribe):
        """Apply Mailchimp's changes to Odoo memberships at once:
        ``subscribe`` and ``unsubscribe`` are [(contact id, list id)].  An
        opt-out gets a reason that names Mailchimp; each changed contact
        gets a note signed by the system, naming the audience."""
        with self._mailchimp_own_writes():
            self._mailchimp_write(subscribe, unsubscribe)
        if not (subscribe or unsubscribe):
            return
        self._mailchimp_notes(audience, subscribe, unsubscribe)

    @contextmanager
    def _mailchimp_own_writes(self):
        """Writes made inside are the sync applying Mailchimp's state, not
        changes made in Odoo: the change-stamp triggers leave them alone, so
        the next reconcile does not let "Odoo" win against the member whose
        state was just copied (issue #3 of the reconcile defects)."""
        self.env.flush_all()
        self.env.cr.execute("SELECT set_config('mailchimp_sync.own_write', 'on', true)")
        try:
            yield
            self.env.flush_all()
        finally:
            self.env.cr.execute("SELECT set_config('mailchimp_sync.own_write', 'off', true)")

    def _mailchimp_write(self, subscribe, unsubscribe):
        cr = self.env.cr
        if subscribe:
            # One row per pair: two cache rows of one contact may both opt it in.
            contacts, lists = zip(*sorted(set(subscribe)), strict=True)
            cr.execute(
                """
                INSERT INTO mailing_subscription (contact_id, list_id, opt_out, create_uid, write_uid,
                                                  create_date, write_date, mailchimp_changed_at)
                -- A membership the sync creates has no history of Odoo's own:
                -- older than anything Mailchimp did, until a person changes it.
                SELECT c, l, FALSE, %(uid)s, %(uid)s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC',
                       TIMESTAMP '1970-01-01'
                  FROM unnest(%(c)s::int[], %(l)s::int[]) AS x(c, l)
                ON CONFLICT (contact_id, list_id) DO UPDATE
                   SET opt_out = FALSE, opt_out_reason_id = NULL, opt_out_datetime = NULL,
                       write_date = EXCLUDED.write_date
                 WHERE mailing_subscription.opt_out
                """,
                {"uid": self.env.uid, "c": int_array(contacts), "l": int_array(lists)},
            )
        if unsubscribe:
            contacts, lists = zip(*sorted(set(unsubscribe)), strict=True)
            reason = self.env.ref("mailchimp_sync.optout_reason_mailchimp", raise_if_not_found=False)
            cr.execute(
                """
                UPDATE mailing_subscription s
                   SET opt_out = TRUE, opt_out_reason_id = %(reason)s,
                       opt_out_datetime = now() AT TIME ZONE 'UTC', write_date = now() AT TIME ZONE 'UTC'
                  FROM unnest(%(c)s::int[], %(l)s::int[]) AS x(c, l)
                 WHERE s.contact_id = x.c AND s.list_id = x.l AND NOT COALESCE(s.opt_out, FALSE)
                   -- the contacts again on the memberships' side: joined to
                   -- the pairs alone, a chunk could hash every membership
                   AND s.contact_id = ANY(%(c)s::int[])
                """,
                {"reason": reason.id if reason else None, "c": int_array(contacts), "l": int_array(lists)},
            )
        self.invalidate_model()

    def _mailchimp_notes(self, audience, subscribe, unsubscribe):
        names = {ml.id: ml.name for ml in self.env["mailing.list"].browse({lst for _c, lst in subscribe + unsubscribe})}
        per_contact = {}
        for pairs, text in ((subscribe, self.env._("Subscribed at Mailchimp: %s")),
                            (unsubscribe, self.env._("Unsubscribed at Mailchimp: %s"))):
            lists_of = {}
            for contact_id, list_id in pairs:
                lists_of.setdefault(contact_id, []).append(names[list_id])
            for contact_id, list_names in lists_of.items():
                per_contact.setdefault(contact_id, []).append(text % ", ".join(sorted(list_names)))
        self.env["mailing.contact"]._mailchimp_log_notes(audience, per_contact)
        self.invalidate_model()
        self.env["mailing.contact"].invalidate_model()
