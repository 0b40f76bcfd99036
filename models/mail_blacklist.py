from odoo import fields, models


class MailBlacklist(models.Model):
    """A blacklisted email counts as not subscribed (by default): stamp when
    an address enters or leaves the blacklist, whatever path did it (a
    deleted entry in ``mailchimp.blacklist.removal``)."""

    _inherit = "mail.blacklist"

    mailchimp_changed_at = fields.Datetime(string="Blacklist Changed", readonly=True, copy=False)

    def init(self):
        res = super().init()
        self.env.cr.execute(
            """
            CREATE OR REPLACE FUNCTION mailchimp_sync_blacklist_stamp() RETURNS trigger AS $$
            BEGIN
                -- (the sync marking an address Mailchimp cleaned is not a
                -- change made in Odoo: see mailing.subscription)
                IF current_setting('mailchimp_sync.own_write', true) = 'on' THEN
                    NEW.mailchimp_changed_at := COALESCE(NEW.mailchimp_changed_at, TIMESTAMP '1970-01-01');
                    RETURN NEW;
                END IF;
                IF TG_OP = 'INSERT' OR NEW.active IS DISTINCT FROM OLD.active THEN
                    NEW.mailchimp_changed_at := clock_timestamp() AT TIME ZONE 'UTC';
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;
            -- A deleted entry: when its address left the blacklist (now,
            -- or, for an entry archived before, when it was archived).
            CREATE OR REPLACE FUNCTION mailchimp_sync_blacklist_removed() RETURNS trigger AS $$
            BEGIN
                INSERT INTO mailchimp_blacklist_removal (email, removed_at)
                VALUES (OLD.email, CASE WHEN OLD.active THEN clock_timestamp() AT TIME ZONE 'UTC'
                                        ELSE COALESCE(OLD.mailchimp_changed_at,
                                                      clock_timestamp() AT TIME ZONE 'UTC') END)
                ON CONFLICT (email) DO UPDATE SET removed_at = EXCLUDED.removed_at;
                RETURN OLD;
            END $$ LANGUAGE plpgsql;
            DROP TRIGGER IF EXISTS mailchimp_sync_blacklist_removed ON mail_blacklist;
            CREATE TRIGGER mailchimp_sync_blacklist_removed
                AFTER DELETE ON mail_blacklist
                FOR EACH ROW EXECUTE FUNCTION mailchimp_sync_blacklist_removed();
            CREATE INDEX IF NOT EXISTS mailchimp_sync_blacklist_stamp_idx
                ON mail_blacklist (mailchimp_changed_at);
            DROP TRIGGER IF EXISTS mailchimp_sync_blacklist_stamp ON mail_blacklist;
            CREATE TRIGGER mailchimp_sync_blacklist_stamp
                BEFORE INSERT OR UPDATE OF active ON mail_blacklist
                FOR EACH ROW EXECUTE FUNCTION mailchimp_sync_blacklist_stamp();
            UPDATE mail_blacklist SET mailchimp_changed_at = COALESCE(write_date, create_date)
             WHERE mailchimp_changed_at IS NULL;
            """
        )
        return res
