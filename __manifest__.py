{
    "name": "Mailchimp Sync",
    "summary": "Two-way sync of mailing lists with Mailchimp audiences and interests",
    "version": "18.0.1.0.0",
    "category": "Marketing",
    "website": "https://github.com/mailchimp-sync/mailchimp_sync",
    "author": "mailchimp_sync developers",
    "maintainers": ["mailchimp_sync"],
    "license": "LGPL-3",
    "development_status": "Alpha",
    "depends": ["mass_mailing"],
    "uninstall_hook": "uninstall_hook",
    "external_dependencies": {
        "python": ["requests", "mailchimp_marketing"],
    },
    "data": [
        "security/mailchimp_sync_security.xml",
        "security/ir.model.access.csv",
        "data/mailchimp_data.xml",
        "data/ir_cron_data.xml",
        "views/mailchimp_account_views.xml",
        "views/mailchimp_audience_views.xml",
        "wizards/mailchimp_mapping_wizard_views.xml",
        "views/mailchimp_merge_field_views.xml",
        "views/mailchimp_member_views.xml",
        "views/mailchimp_update_views.xml",
        "views/mailchimp_batch_views.xml",
        "views/mailchimp_sync_run_views.xml",
        "views/mailing_list_views.xml",
        "views/mailing_contact_views.xml",
        "views/res_partner_views.xml",
        "views/mailchimp_menus.xml",
        "views/res_config_settings_views.xml",
    ],
    "assets": {
        # The audience form's live sync status (static/src/views).
        "web.assets_backend": [
            "mailchimp_sync/static/src/views/**/*",
        ],
        "web.assets_tests": [
            "mailchimp_sync/static/src/tests/tours/**/*",
        ],
    },
}
