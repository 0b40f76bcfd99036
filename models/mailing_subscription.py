from odoo import fields, models


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
        self.env.cr.execute(
            """
            CREATE OR REPLACE FUNCTION mailchimp_sync_subscription_stamp() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'INSERT'
                   OR COALESCE(NEW.opt_out, FALSE) IS DISTINCT FROM COALESCE(OLD.opt_out, FALSE) THEN
                    NEW.mailchimp_changed_at := clock_timestamp() AT TIME ZONE 'UTC';
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;

            CREATE OR REPLACE FUNCTION mailchimp_sync_subscription_removed() RETURNS trigger AS $$
            BEGIN
                -- Only mapped lists matter; removals from others are not kept.
                IF EXISTS (SELECT 1 FROM mailchimp_audience WHERE mailing_list_id = OLD.list_id)
                   OR EXISTS (SELECT 1 FROM mailchimp_interest WHERE mailing_list_id = OLD.list_id) THEN
                    INSERT INTO mailchimp_list_removal (contact_id, list_id, removed_at)
                    VALUES (OLD.contact_id, OLD.list_id, clock_timestamp() AT TIME ZONE 'UTC')
                    ON CONFLICT (contact_id, list_id) DO UPDATE SET removed_at = EXCLUDED.removed_at;
                END IF;
                RETURN OLD;
            END $$ LANGUAGE plpgsql;

            DROP TRIGGER IF EXISTS mailchimp_sync_subscription_stamp ON mailing_subscription;
            CREATE TRIGGER mailchimp_sync_subscription_stamp
                BEFORE INSERT OR UPDATE OF opt_out ON mailing_subscription
                FOR EACH ROW EXECUTE FUNCTION mailchimp_sync_subscription_stamp();
            DROP TRIGGER IF EXISTS mailchimp_sync_subscription_removed ON mailing_subscription;
            CREATE TRIGGER mailchimp_sync_subscription_removed
                AFTER DELETE ON mailing_subscription
                FOR EACH ROW EXECUTE FUNCTION mailchimp_sync_subscription_removed();

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
