/** @odoo-module **/
/**
 * A new user connects Mailchimp (here: the emulator), fetches the
 * audiences, maps a list and an interest, syncs, and reads the counts on the
 * dashboard.  The test (tests/test_tour.py) puts the emulator's URL and key
 * in sessionStorage under "mailchimp_sync_tour" before starting the tour,
 * and may take a screenshot wherever a step logs "mailchimp_screenshot:<name>".
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
            content: "The sync ran: the counts show both sides",
            trigger: ".o_field_widget[name=mc_subscribed_count]:contains(2)",
        },
        {
            content: "Odoo's subscribers are counted",
            trigger: ".o_field_widget[name=odoo_subscribed_count]:contains(3)",
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
            trigger: ".o_kanban_record:contains(Tour Newsletter) .o_mailchimp_odoo_subscribed:contains(3)",
        },
        {
            content: "...and one member on its way to Mailchimp",
            trigger: ".o_kanban_record:contains(Tour Newsletter):contains(To add: 1)",
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
        screenshot("members", ".o_list_view .o_data_row:contains(carla@example.org)"),
    ],
});
