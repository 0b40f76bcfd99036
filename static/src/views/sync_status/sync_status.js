/** @odoo-module **/
/**
 * The audience form's live sync status.
 *
 * A cycle runs in the audience's scheduled action, one bounded step after
 * another, while the form stays open: this widget reloads the record every
 * few seconds while a cycle is open (or was just requested), and shows the
 * stage, a progress bar with what is done and what remains, the failing
 * state with the time of the next try, and, once the cycle ends, its
 * outcome (also as a notification).  While idle it only looks, now and
 * then, whether the scheduled action started a cycle by itself.
 */
import { Component, onMounted, onWillUnmount, useState } from "@odoo/owl";
import { deserializeDateTime, formatDateTime } from "@web/core/l10n/dates";
import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { useRecordObserver } from "@web/model/relational_model/utils";
import { formatInteger } from "@web/views/fields/formatters";
import { standardWidgetProps } from "@web/views/widgets/standard_widget_props";

export const POLL_DELAY = 2000;
// While idle: how often to look for a cycle the scheduled action started.
export const IDLE_DELAY = 15000;
// How long a form waits for the scheduled action to pick a requested sync
// up (Odoo's cron workers wake at once on a trigger; a busy server is slower).
const WATCH_DURATION = 10 * 60 * 1000;
const RUN_FIELDS = [
    "state", "stage", "full", "progress_done", "progress_total", "message", "next_retry_at",
    "started_at", "ended_at", "fetched", "created", "odoo_opt_ins", "odoo_opt_outs",
    "to_add", "to_remove", "failed", "renamed",
];
const CLOSED = ["done", "failed", "aborted"];

// Audience id -> {until, lastRunId}: syncs requested from this browser tab
// (Sync Now, Full Resync) that no run shows yet.
const requested = new Map();

/**
 * Client action chained after the "Sync started" notification: the forms
 * of these audiences watch for the cycle to start.
 */
export function watchRequestedSync(env, action) {
    const { audience_ids = [], last_run_ids = {} } = action.params || {};
    for (const id of audience_ids) {
        requested.set(id, { until: Date.now() + WATCH_DURATION, lastRunId: last_run_ids[id] || 0 });
    }
    // Closing reloads the form that ran the button.
    return { type: "ir.actions.act_window_close" };
}

registry.category("actions").add("mailchimp_sync_watch", watchRequestedSync);

export class MailchimpSyncStatus extends Component {
    static template = "mailchimp_sync.SyncStatus";
    static props = { ...standardWidgetProps };

    setup() {
        this.orm = useService("orm");
        this.notification = useService("notification");
        this.state = useState({ run: null });
        // The open run this form has seen: its end is announced.
        this.openRunId = null;
        // The latest run this form knows of, and when it last looked.
        this.knownRunId = null;
        this.lastLook = Date.now();
        useRecordObserver(async (record) => {
            // Read to be observed: a reload that moves them refetches the run.
            void [record.data.sync_stage, record.data.last_sync_start, record.data.last_sync_end];
            await this.fetchRun(record.resId);
        });
        onMounted(() => this.schedule());
        onWillUnmount(() => {
            this.stopped = true;
            clearTimeout(this.timer);
        });
    }

    schedule() {
        if (!this.stopped) {
            this.timer = setTimeout(() => this.tick(), POLL_DELAY);
        }
    }

    get record() {
        return this.props.record;
    }

    get watch() {
        const watch = requested.get(this.record.resId);
        if (watch && watch.until < Date.now()) {
            requested.delete(this.record.resId);
            return null;
        }
        return watch || null;
    }

    get busy() {
        return Boolean(this.record.data.sync_stage !== "idle" || this.openRunId || this.watch);
    }

    async tick() {
        try {
            const resId = this.record.resId;
            if (resId && this.busy) {
                await this.reloadForm();
                if (!this.stopped) {
                    await this.fetchRun(resId);
                }
            } else if (resId && Date.now() - this.lastLook >= IDLE_DELAY) {
                // A cycle started (or even ended) without this form asking.
                const known = this.knownRunId;
                await this.fetchRun(resId);
                if (this.knownRunId !== known) {
                    await this.reloadForm();
                }
            }
        } catch {
            // A lost request is tried again on the next tick.
        } finally {
            this.schedule();
        }
    }

    async reloadForm() {
        if (!this.record.dirty && !this.stopped) {
            // The whole form: statusbar, buttons, counts.
            await this.record.load();
        }
    }

    async fetchRun(resId) {
        this.lastLook = Date.now();
        if (!resId) {
            this.state.run = null;
            return;
        }
        const [run] = await this.orm.searchRead("mailchimp.sync.run", [["audience_id", "=", resId]], RUN_FIELDS, {
            limit: 1,
            order: "id desc",
        });
        if (this.stopped || resId !== this.record.resId) {
            return;
        }
        this.state.run = run || null;
        this.knownRunId = run ? run.id : null;
        this.followRun(run);
    }

    followRun(run) {
        const watch = this.watch;
        if (!run) {
            return;
        }
        const isNew = watch && run.id > watch.lastRunId;
        if (isNew) {
            requested.delete(this.record.resId);
        }
        if (!CLOSED.includes(run.state)) {
            this.openRunId = run.id;
        } else if (run.id === this.openRunId || isNew) {
            // The cycle this form followed (or the one just requested) ended
            // (an abort is announced by the Abort button itself).
            this.openRunId = null;
            if (run.state === "aborted") {
                return;
            }
            this.notification.add(this.outcomeText(run), {
                title: this.outcomeTitle(run),
                type: run.state === "done" && !run.failed ? "success" : "warning",
            });
        }
    }

    // ------------------------------------------------------------------
    // What the template shows
    // ------------------------------------------------------------------

    get mode() {
        const run = this.state.run;
        if (run && run.state === "failing") {
            return "failing";
        }
        if (run && !CLOSED.includes(run.state)) {
            return "running";
        }
        if (this.watch) {
            return "waiting";
        }
        return run ? "ended" : "none";
    }

    get stages() {
        // The audience's own selection: idle, the run's stages, failing.
        return (this.record.fields.sync_stage.selection || []).filter(
            ([value]) => value !== "idle" && value !== "failing"
        );
    }

    get stageLabel() {
        const stage = this.stages.find(([value]) => value === this.state.run.stage);
        return stage ? stage[1] : this.state.run.stage;
    }

    get stageNumber() {
        const index = this.stages.findIndex(([value]) => value === this.state.run.stage);
        return _t("Stage %(number)s of %(count)s", { number: index + 1, count: this.stages.length });
    }

    get percent() {
        const { progress_done: done, progress_total: total } = this.state.run;
        return total ? Math.min(100, Math.round((100 * done) / total)) : 100;
    }

    get progressText() {
        const { progress_done: done, progress_total: total } = this.state.run;
        if (total) {
            return _t("%(done)s of %(total)s done, %(remaining)s remaining", {
                done: formatInteger(done),
                total: formatInteger(total),
                remaining: formatInteger(Math.max(total - done, 0)),
            });
        }
        if (done) {
            return _t("%(done)s done so far", { done: formatInteger(done) });
        }
        return _t("Working on this stage…");
    }

    formatTime(value) {
        return value ? formatDateTime(deserializeDateTime(value)) : "";
    }

    get nextRetry() {
        return this.formatTime(this.state.run.next_retry_at);
    }

    outcomeTitle(run) {
        if (run.state === "done") {
            return run.failed ? _t("Sync finished, with failed rows") : _t("Sync finished");
        }
        return run.state === "aborted" ? _t("Sync aborted") : _t("Sync failed");
    }

    outcomeText(run) {
        if (run.state !== "done") {
            return run.message || "";
        }
        const text = _t(
            "%(fetched)s members read from Mailchimp and %(created)s contacts created; in Odoo, %(optins)s opt-ins and %(optouts)s opt-outs; at Mailchimp, %(add)s to add and %(remove)s to remove; failed rows: %(failed)s.",
            {
                fetched: formatInteger(run.fetched),
                created: formatInteger(run.created),
                optins: formatInteger(run.odoo_opt_ins),
                optouts: formatInteger(run.odoo_opt_outs),
                add: formatInteger(run.to_add),
                remove: formatInteger(run.to_remove),
                failed: formatInteger(run.failed),
            }
        );
        if (!run.renamed) {
            return text;
        }
        const renamed = _t(
            "%(renamed)s members changed their address at Mailchimp; their contacts took the new address.",
            { renamed: formatInteger(run.renamed) }
        );
        return text + " " + renamed;
    }

    get endedClass() {
        const run = this.state.run;
        if (run.state === "done") {
            return run.failed ? "alert-warning" : "alert-success";
        }
        return run.state === "aborted" ? "alert-secondary" : "alert-danger";
    }
}

registry.category("view_widgets").add("mailchimp_sync_status", { component: MailchimpSyncStatus });
