def uninstall_hook(env):
    """Drop the triggers, functions and indexes the models' init() created:
    Odoo drops our columns on uninstall but knows nothing of triggers, which
    would then fail on every write to mailing lists, nor of our indexes on
    its tables.  The audiences' own scheduled actions go first: they run
    code of this addon."""
    env["mailchimp.audience"].with_context(active_test=False).search([]).cron_id.unlink()
    env.cr.execute(
        """
        DROP TRIGGER IF EXISTS mailchimp_sync_subscription_stamp ON mailing_subscription;
        DROP TRIGGER IF EXISTS mailchimp_sync_subscription_removed ON mailing_subscription;
        DROP TRIGGER IF EXISTS mailchimp_sync_blacklist_stamp ON mail_blacklist;
        DROP TRIGGER IF EXISTS mailchimp_sync_blacklist_removed ON mail_blacklist;
        DROP TRIGGER IF EXISTS mailchimp_sync_contact_deleted ON mailing_contact;
        DROP FUNCTION IF EXISTS mailchimp_sync_subscription_stamp();
        DROP FUNCTION IF EXISTS mailchimp_sync_subscription_removed();
        DROP FUNCTION IF EXISTS mailchimp_sync_blacklist_stamp();
        DROP FUNCTION IF EXISTS mailchimp_sync_blacklist_removed();
        DROP FUNCTION IF EXISTS mailchimp_sync_contact_deleted();
        DROP INDEX IF EXISTS mailchimp_sync_contact_email_idx;
        DROP INDEX IF EXISTS mailchimp_sync_partner_email_idx;
        """
    )
