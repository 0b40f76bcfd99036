/** @odoo-module **/
/**
 * A new user connects Mailchimp (here: the emulator), fetches the
 * audiences, maps a list and an interest, syncs, and reads the counts on the
 * dashboard; then watches a sync's progress, a failing sync and its retry
 * time, retries a failed row and aborts.  The test (tests/test_tour.py) puts
 * the emulator's URL and key in sessionStorage under "mailchimp_sync_tour"
 * before starting each tour, runs the audience's scheduled action as Odoo's
 * cron runner would (between tours, or while a tour runs when a step logs
 * "mailchimp_cron:<command>"), and may take a screenshot wherever a step
 * logs "mailchimp_screenshot:<name>".
 */
import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

function tourData() {
    return JSON.parse(window.sessionStorage.getItem("mailchimp_sync_tour") || "{}");
}

function screenshot(name, trigger) {
    return {
        content: `Screenshot of ${name}`,
        trigger,
        async run() {
            console.log(`mailchimp_screenshot:${name}`);
            // Let the test capture the page before the tour moves on.
            await new Promise((resolve) => setTimeout(resolve, 800));
        },
    };
}

/** Ask the test, standing in for Odoo's cron runner, to run the scheduled action. */
function cron(command) {
    return {
        content: `The scheduled action runs (${command})`,
        trigger: "body",
        run() {
            console.log(`mailchimp_cron:${command}`);
        },
    };
}

function openMailchimpMenu(xmlid, content) {
    return [
        {
            content: "Open the Mailchimp menu",
            trigger: 'button[data-menu-xmlid="mailchimp_sync.mailchimp_menu_root"]',
            run: "click",
        },
        {
            content,
            trigger: `.o-dropdown--menu a[data-menu-xmlid="mailchimp_sync.${xmlid}"]`,
            run: "click",
        },
    ];
}

function openTheAudience() {
    return [
        stepUtils.showAppsMenuItem(),
        {
            content: "Open Email Marketing",
            trigger: '.o_app[data-menu-xmlid="mass_mailing.mass_mailing_menu_root"]',
            run: "click",
        },
        ...openMailchimpMenu("mailchimp_audience_menu", "Configuration › Audiences"),
        {
            content: "Open the audience",
            trigger: ".o_data_row:contains(Tour Newsletter) td.o_data_cell",
            run: "click",
        },
    ];
}

function pickInMany2one(fieldSelector, value) {
    return [
        {
            content: `Type ${value}`,
            trigger: `${fieldSelector} input`,
            run: `edit ${value}`,
        },
        {
            content: `Choose ${value}`,
            trigger: `.o-autocomplete--dropdown-menu .o-autocomplete--dropdown-item a:contains(${value})`,
            run: "click",
        },
    ];
}

registry.category("web_tour.tours").add("mailchimp_sync_tour", {
    url: "/odoo",
    steps: () => [
        stepUtils.showAppsMenuItem(),
        {
            content: "Open Email Marketing",
            trigger: '.o_app[data-menu-xmlid="mass_mailing.mass_mailing_menu_root"]',
            run: "click",
        },
        {
            content: "Open the Mailchimp menu",
            trigger: 'button[data-menu-xmlid="mailchimp_sync.mailchimp_menu_root"]',
            run: "click",
        },
        {
            content: "Configuration › Accounts",
            trigger: '.o-dropdown--menu a[data-menu-xmlid="mailchimp_sync.mailchimp_account_menu"]',
            run: "click",
        },
        {
            content: "Create an account",
            trigger: ".o_list_button_add",
            run: "click",
        },
        {
            content: "Name it",
            trigger: ".o_field_widget[name=name] input",
            run: "edit Tour Mailchimp",
        },
        {
            content: "Enter the API key (administrators only)",
            trigger: ".o_field_widget[name=api_key] input",
            async run(helpers) {
                await helpers.edit(tourData().api_key);
            },
        },
        {
            content: "Point the account at the emulator",
            trigger: ".o_field_widget[name=api_base_url] input",
            async run(helpers) {
                await helpers.edit(tourData().api_base);
            },
        },
        {
            content: "Test the connection (saves the account first)",
            trigger: "button[name=action_test_connection]",
            run: "click",
        },
        {
            content: "The connection works",
            trigger: ".o_notification:contains(Connection works)",
        },
        {
            content: "The account is shown as a sandbox",
            trigger: ".ribbon:contains(Sandbox)",
        },
        {
            content: "Fetch the audiences",
            trigger: "button[name=action_fetch_audiences]",
            run: "click",
        },
        {
            content: "The audience was fetched",
            trigger: ".o_field_widget[name=audience_ids] .o_data_row:contains(Tour Newsletter)",
        },
        screenshot("account", ".o_field_widget[name=audience_ids] .o_data_row:contains(Tour Newsletter)"),
        {
            content: "Open the account's audiences",
            trigger: "button[name=action_view_audiences]",
            run: "click",
        },
        {
            content: "Open the audience",
            trigger: ".o_list_view .o_data_row td:contains(Tour Newsletter)",
            run: "click",
        },
        {
            content: "The audience form asks for a subscription list",
            trigger: ".o_form_view .alert-info:contains(subscription list)",
        },
        ...pickInMany2one(".o_inner_group .o_field_widget[name=mailing_list_id]", "Tour Subscribers"),
        {
            content: "Open the Interests tab",
            trigger: '.o_notebook a[name="interests"]',
            run: "click",
        },
        {
            content: "Map the interest 'Events' to a mailing list",
            trigger: ".o_field_widget[name=interest_ids] .o_data_row:contains(Events) td[name=mailing_list_id]",
            run: "click",
        },
        ...pickInMany2one(
            ".o_field_widget[name=interest_ids] .o_selected_row .o_field_widget[name=mailing_list_id]",
            "Tour Events"
        ),
        screenshot("audience_mapping", ".o_field_widget[name=interest_ids] .o_data_row:contains(Events)"),
        {
            content: "Sync now (saves the mapping first)",
            trigger: "button[name=action_sync_now]",
            run: "click",
        },
        {
            content: "The sync starts in the background, and says so",
            trigger: ".o_notification:contains(Sync started)",
        },
        {
            content: "The form waits for the scheduled action to start it",
            trigger: ".o_mailchimp_sync_waiting:contains(waiting for the scheduled action)",
        },
    ],
});

/**
 * After the audience's scheduled action ran the cycle (the test runs it as
 * Odoo's cron runner would), the user reads the result.
 */
registry.category("web_tour.tours").add("mailchimp_sync_tour_results", {
    url: "/odoo",
    steps: () => [
        ...openTheAudience(),
        {
            content: "The form says how the last sync ended",
            trigger: ".o_mailchimp_last_run:contains(Sync finished, with failed rows):contains(failed rows: 1)",
        },
        {
            content: "The sync ran: the counts show both sides",
            trigger: ".o_field_widget[name=mc_subscribed_count]:contains(2)",
        },
        {
            content: "Odoo's subscribers are counted",
            trigger: ".o_field_widget[name=odoo_subscribed_count]:contains(4)",
        },
        {
            content: "Abort is offered only while a sync is open",
            trigger: ".o_form_statusbar:not(:has(button[name=action_abort]))",
        },
        {
            content: "The run is in the log",
            trigger: '.o_notebook a[name="runs"]',
            run: "click",
        },
        {
            content: "One run, done",
            trigger: ".o_field_widget[name=run_ids] .o_data_row:contains(Done)",
        },
        screenshot("audience_status", ".o_field_widget[name=run_ids] .o_data_row:contains(Done)"),
        {
            content: "Open the Mailchimp menu",
            trigger: 'button[data-menu-xmlid="mailchimp_sync.mailchimp_menu_root"]',
            run: "click",
        },
        {
            content: "Open the dashboard",
            trigger: '.o-dropdown--menu a[data-menu-xmlid="mailchimp_sync.mailchimp_dashboard_menu"]',
            run: "click",
        },
        {
            content: "The dashboard card shows Mailchimp's subscribers",
            trigger: ".o_kanban_record:contains(Tour Newsletter) .o_mailchimp_mc_subscribed:contains(2)",
        },
        {
            content: "...and Odoo's",
            trigger: ".o_kanban_record:contains(Tour Newsletter) .o_mailchimp_odoo_subscribed:contains(4)",
        },
        {
            content: "...and one member on its way to Mailchimp",
            trigger: ".o_kanban_record:contains(Tour Newsletter):contains(To add: 1)",
        },
        {
            content: "...and the row that failed",
            trigger: ".o_kanban_record:contains(Tour Newsletter) .text-danger:contains(Failed: 1)",
        },
        screenshot("dashboard", ".o_kanban_record:contains(Tour Newsletter)"),
        {
            content: "Open the members",
            trigger: 'button[data-menu-xmlid="mailchimp_sync.mailchimp_menu_root"]',
            run: "click",
        },
        {
            content: "Members",
            trigger: '.o-dropdown--menu a[data-menu-xmlid="mailchimp_sync.mailchimp_member_menu"]',
            run: "click",
        },
        {
            content: "The member added in Odoo is listed",
            trigger: ".o_list_view .o_data_row:contains(carla@example.org)",
        },
        {
            content: "The failed row says why, and what to do",
            trigger: ".o_data_row:contains(erin@example.org) td[name=sync_error]:contains(ask the person for another address)",
        },
        {
            content: "Select the failed row",
            trigger: ".o_data_row:contains(erin@example.org) .o_list_record_selector input",
            run: "click",
        },
        {
            content: "Retry it",
            trigger: "button[name=action_retry]",
            run: "click",
        },
        {
            content: "Retry says which row it could not help, and why",
            trigger: ".o_notification:contains(cannot be helped by a retry):contains(erin@example.org)",
        },
        screenshot("members", ".o_notification:contains(cannot be helped by a retry)"),
    ],
});

/**
 * A larger audience: the scheduled action has done the first step of a
 * cycle.  The form shows the stage and the progress, follows the cycle by
 * itself to its end, then shows a failing cycle with its next try; the
 * user aborts it.
 */
registry.category("web_tour.tours").add("mailchimp_sync_tour_live", {
    url: "/odoo",
    steps: () => [
        ...openTheAudience(),
        {
            content: "The statusbar shows the stage",
            trigger: '.o_field_statusbar[name=sync_stage] .o_arrow_button_current[data-value="fetch"]',
        },
        {
            content: "The progress: the stage, done and remaining",
            trigger: `.o_mailchimp_sync_running:contains(Fetching from Mailchimp) .o_mailchimp_progress_text:contains(${tourData().remaining} remaining)`,
        },
        {
            content: "...with a progress bar",
            trigger: ".o_mailchimp_sync_running .o_mailchimp_progress_bar",
        },
        {
            content: "Abort is offered while the sync is open",
            trigger: ".o_form_statusbar button[name=action_abort]",
        },
        screenshot("audience_progress", ".o_mailchimp_sync_running"),
        cron("finish"),
        {
            content: "The form follows the cycle by itself to its end, and says how it ended",
            trigger: ".o_mailchimp_last_run:contains(Sync finished)",
            timeout: 60000,
        },
        {
            content: "...in a notification too",
            trigger: ".o_notification:contains(members read from Mailchimp)",
        },
        {
            content: "...and the whole form followed: the audience is idle again",
            trigger: '.o_field_statusbar[name=sync_stage] .o_arrow_button_current[data-value="idle"]',
        },
        cron("fail"),
        {
            content: "The next cycle fails: the form shows it by itself, in red",
            trigger: '.o_field_statusbar[name=sync_stage] .o_arrow_button_current[data-value="failing"]',
            timeout: 60000,
        },
        {
            content: "...with the time of the next try",
            trigger: ".o_form_statusbar .o_field_widget[name=next_retry_at]",
        },
        {
            content: "...and what went wrong, in plain words",
            trigger: ".o_mailchimp_sync_failing:contains(Failing, will retry at) .o_mailchimp_failure:contains(Mailchimp had a problem on its side)",
        },
        screenshot("audience_failing", ".o_mailchimp_sync_failing"),
        {
            content: "The run log shows the failing run as such",
            trigger: '.o_notebook a[name="runs"]',
            run: "click",
        },
        {
            content: "A failing run, distinct from a running one",
            trigger: ".o_field_widget[name=run_ids] .o_data_row .text-bg-danger:contains(Failing, will retry)",
        },
        ...openMailchimpMenu("mailchimp_dashboard_menu", "Open the dashboard"),
        {
            content: "The dashboard card: failing, in red, with the next try",
            trigger: ".o_kanban_record:contains(Tour Newsletter) .o_mailchimp_failing.text-bg-danger:contains(Failing, will retry at)",
        },
        screenshot("dashboard_failing", ".o_kanban_record:contains(Tour Newsletter)"),
        ...openMailchimpMenu("mailchimp_audience_menu", "Configuration › Audiences"),
        {
            content: "The list's badge: failing, in red, with the next try",
            trigger: ".o_data_row:contains(Tour Newsletter) .text-bg-danger:contains(Failing, will retry)",
        },
        {
            content: "...and the time of the next try",
            trigger: ".o_data_row:contains(Tour Newsletter) td[name=next_retry_at]:not(:empty)",
        },
        {
            content: "Open the audience",
            trigger: ".o_data_row:contains(Tour Newsletter) td.o_data_cell",
            run: "click",
        },
        {
            content: "Abort the failing sync",
            trigger: ".o_form_statusbar button[name=action_abort]",
            run: "click",
        },
        {
            content: "Confirm",
            trigger: ".modal-footer .btn-primary",
            run: "click",
        },
        {
            content: "Abort says what it did",
            trigger: ".o_notification:contains(Sync aborted)",
        },
        {
            content: "The audience is idle again, and Abort is gone",
            trigger: '.o_form_statusbar:not(:has(button[name=action_abort])) .o_arrow_button_current[data-value="idle"]',
        },
        {
            content: "The form says the last sync was aborted",
            trigger: ".o_mailchimp_last_run:contains(Sync aborted)",
        },
    ],
});
