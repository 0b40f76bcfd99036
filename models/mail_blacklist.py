from odoo import fields, models

from ..tools.sql import row_trigger_sql


class MailBlacklist(models.Model):
    """A blacklisted email counts as not subscribed (by default): stamp when
    an address enters or leaves the blacklist, whatever path did it (a
    deleted entry in ``mailchimp.blacklist.removal``)."""

    _inherit = "mail.blacklist"

    mailchimp_changed_at = fields.Datetime(string="Blacklist Changed", readonly=True, copy=False)

    def init(self):
        res = super().init()
        self.env.cr.execute(row_trigger_sql(
            "mailchimp_sync_blacklist_stamp", "mail_blacklist", "BEFORE INSERT OR UPDATE OF active", """
                -- (the sync marking an address Mailchimp cleaned is not a
                -- change made in Odoo: see mailing.subscription)
                IF current_setting('mailchimp_sync.own_write', true) = 'on' THEN
                    NEW.mailchimp_changed_at := COALESCE(NEW.mailchimp_changed_at, TIMESTAMP '1970-01-01');
                    RETURN NEW;
                END IF;
                IF TG_OP = 'INSERT' OR NEW.active IS DISTINCT FROM OLD.active THEN
                    NEW.mailchimp_changed_at := clock_timestamp() AT TIME ZONE 'UTC';
                END IF;
                RETURN NEW;"""))
        # A deleted entry: when its address left the blacklist (now, or, for
        # an entry archived before, when it was archived).
        self.env.cr.execute(row_trigger_sql(
            "mailchimp_sync_blacklist_removed", "mail_blacklist", "AFTER DELETE", """
                INSERT INTO mailchimp_blacklist_removal (email, removed_at)
                VALUES (OLD.email, CASE WHEN OLD.active THEN clock_timestamp() AT TIME ZONE 'UTC'
                                        ELSE COALESCE(OLD.mailchimp_changed_at,
                                                      clock_timestamp() AT TIME ZONE 'UTC') END)
                ON CONFLICT (email) DO UPDATE SET removed_at = EXCLUDED.removed_at;
                RETURN OLD;"""))
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS mailchimp_sync_blacklist_stamp_idx
                ON mail_blacklist (mailchimp_changed_at);
            UPDATE mail_blacklist SET mailchimp_changed_at = COALESCE(write_date, create_date)
             WHERE mailchimp_changed_at IS NULL;
            """
        )
        return res
