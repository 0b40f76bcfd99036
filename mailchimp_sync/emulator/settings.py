"""Emulator settings.

Every behaviour that API-BEHAVIOUR.md tags [U] (unverified) is a setting
here, so a test can flip it and check the addon copes with either reading.
The defaults are what the document recommends.  ``SETTING_DOCS`` maps each
setting to the document item it covers; README.rst ("Mailchimp emulator") lists them.
"""

import copy

DEFAULTS = {
    # --- members (§5) ---
    "archived_in_default_listing": False,   # §5.6 [R/U] archived excluded unless status=archived
    "since_inclusive": False,               # §5.6 [U] since_/before_last_changed use strict > / <
    "cleaned_to_pending_allowed": True,     # §5.4 [U] cleaned -> pending allowed
    "unarchive_without_status": "stay",     # §5.4 [U] archived + PUT w/o status: stay|restore|status_if_new
    "default_order": "created",             # §5.6 [U] order without sort_field: created|email
    "fake_email_patterns": [                # §6.2 [V one case] regexes on the lowercased address
        r"^(foo|bar|baz|test|fake|asdf|qwerty)@(example|test)\.com$",
    ],
    # §4.3 [U] merge fields of a new list
    "default_merge_fields": ["FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY"],
    "unknown_interest_error": True,         # §4.2 [U] unknown interest id -> 400 Invalid Resource
    "untyped_error_titles": ["Member Exists", "Member In Compliance State"],  # §6.1 [V/R] no `type`
    "error_type_url": "https://mailchimp.com/developer/marketing/docs/errors/",
    "batch_error_type_url": "http://developer.mailchimp.com/documentation/mailchimp/guides/error-glossary/",
    "merge_null": "error",                  # §5.8 [R] null merge value: "error" (anyOf) or "clear"
    "merge_date_output": "iso",             # §4.2 [U] date values returned as "iso" (YYYY-MM-DD) or "field"
    "merge_validate_unverified": True,      # §5.8 [U] check US phones, URLs and ZIP codes
    "put_tags_on_create": True,             # §5.7 [R] PUT's `tags` applied when the PUT creates the member
    "member_tags_limit": 50,                # §4.2 [D] tags shown on a member
    "resource_links": True,                 # §2 [V] _links filled; False: empty, lighter payloads
    "touch_on_minor_fields": True,          # §5.6 [U] language/vip/location/ip changes move last_changed
    "json_parse_error_title": "JSON Parse Error",  # §6.2 [U] title spelling
    # --- webhooks sent (§8) ---
    "webhook_validate_get": True,           # §8.1 validating GET before registering
    "webhook_flag_default": False,          # §4.4 [U] value of an omitted events/sources flag
    "webhook_delivery": "async",            # §8.2 async|sync|off
    "webhook_delay": 0.0,                   # §8.2 [U] seconds before an async delivery
    "webhook_timeout": 10.0,                # §8.2 [D] Mailchimp cancels after 10 s
    "webhook_retries": 2,                   # §8.2 [D: "increasing intervals"] extra attempts
    "webhook_retry_delay": 1.0,             # §8.2 first retry delay, doubled each time
    "fire_on_pending_create": False,        # §8.4 [U] created pending -> no event
    "fire_on_unsubscribed_create": False,   # §8.4 [U] created unsubscribed/transactional -> no event
    "fire_on_archive": True,                # §8.4 [U] DELETE (archive) -> unsubscribe action=delete
    "fire_on_delete_permanent": True,       # §8.4 [U] delete-permanent -> unsubscribe action=delete
    "fire_on_tags": False,                  # §5.7/§8.4 [U] tag-only change -> profile
    "bounce_source": "user",                # §8.4 [U] source a bounce (cleaned) is filtered as
    "batch_webhook_type": "batch_operation_completed",  # §7.4 [U]
    "max_batch_webhooks": 20,               # §7.4 [D]
    # --- batches (§7) ---
    "batch_auto_run": True,                 # §7.2 background worker advances batches
    "batch_delay": 0.2,                     # seconds a batch stays pending before it starts
    "batch_started_seconds": 0.0,           # minimum seconds a batch stays visibly "started"
    "batch_results_require_no_auth": True,  # §7.3 [U] archive GET with Authorization -> 403 (S3)
    "batch_result_files": 2,                # §7.3 [R] JSON files the results are split into (+1 empty)
    "batch_result_dir": "./",               # §7.3 [R] prefix of member names in the tar
    "batch_204_response": "",               # §7.3 [U] `response` string for 204 operations
    "results_expiry_seconds": 600,          # §7.3 pre-signed URL lifetime
    "max_pending_batches": 500,             # §7.2 [D] pending batches (+ undelivered batch webhooks)
    # --- throttling (§6.3) ---
    "max_connections": 10,                  # §6.3 [D] simultaneous requests per key
    "datacenter": None,                     # §6.2 when set, keys of another dc -> 403 Wrong Datacenter
}

SETTING_DOCS = {
    "archived_in_default_listing": "§5.6 [R/U] archived members in GET /members without status",
    "since_inclusive": "§5.6 [U] bound of since_/before_last_changed",
    "cleaned_to_pending_allowed": "§5.4 [U] cleaned -> pending",
    "unarchive_without_status": "§5.4 [U] archived member PUT without status",
    "default_order": "§5.6 [U] default member order",
    "fake_email_patterns": "§6.2 [V one example] 'looks fake or invalid'",
    "default_merge_fields": "§4.3 [U] merge fields of a new list",
    "unknown_interest_error": "§4.2 [U] unknown interest id on write",
    "untyped_error_titles": "§6.1 [V/R] errors sent without `type`",
    "resource_links": "§2 [V] _links of resources and collections (off: empty arrays)",
    "merge_null": "§5.8 [R] a null merge value",
    "merge_date_output": "§4.2 [U] how date merge values are returned",
    "merge_validate_unverified": "§5.8 [U] US phone, URL and ZIP checks",
    "put_tags_on_create": "§5.7 [D/R] tags of a PUT that creates the member",
    "fire_on_pending_create": "§8.4 [U] event for a member created pending",
    "touch_on_minor_fields": "§5.6 [U] language/vip move last_changed",
    "json_parse_error_title": "§6.2 [U] title of the JSON parse error",
    "webhook_flag_default": "§4.4 [U] omitted webhook flags",
    "fire_on_unsubscribed_create": "§8.4 [U] event for a member created unsubscribed",
    "fire_on_archive": "§8.4 [U] unsubscribe action=delete on archive",
    "fire_on_delete_permanent": "§8.4 [U] unsubscribe action=delete on delete-permanent",
    "fire_on_tags": "§5.7 [U] tag-only changes fire profile",
    "bounce_source": "§8.4 [U] source of a bounce",
    "webhook_delay": "§8.2 [U] delivery delay",
    "batch_webhook_type": "§7.4 [U] `type` of batch webhooks",
    "batch_results_require_no_auth": "§7.3 [U] S3 refuses an Authorization header",
    "batch_204_response": "§7.3 [U] response string of 204 operations",
}


def make_settings(overrides=None):
    """Return a fresh settings dict: the defaults updated with ``overrides``.

    Unknown names raise ``KeyError`` so a typo in a test fails loudly.
    """
    s = copy.deepcopy(DEFAULTS)
    if overrides:
        update_settings(s, overrides)
    return s


def update_settings(settings, overrides):
    """Apply ``overrides`` to ``settings`` in place, refusing unknown names."""
    for k, v in overrides.items():
        if k not in DEFAULTS:
            raise KeyError(f"unknown emulator setting: {k}")
        settings[k] = copy.deepcopy(v)
    return settings
