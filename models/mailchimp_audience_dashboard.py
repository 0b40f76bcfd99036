"""The audience on screen: the live figures of its form and dashboard card,
the lists behind each figure, and the notifications its buttons answer with.

A mixin of ``mailchimp.audience`` only: the fields stay on the audience
(models/mailchimp_audience.py), which computes them here.  The counts take
one query per table for the whole recordset, never one per member.
"""

from odoo import api, models

# Subscribed at Mailchimp, as every figure counts it.
MC_SUBSCRIBED_SQL = "mc_status IN ('subscribed', 'pending')"


class MailchimpAudienceDashboard(models.AbstractModel):
    _name = "mailchimp.audience.dashboard"
    _description = "Mailchimp Audience Dashboard"

    # ------------------------------------------------------------------
    # Live figures
    # ------------------------------------------------------------------

    @api.depends("member_ids.sync_status")
    def _compute_member_counts(self):
        Member = self.env["mailchimp.member"]
        totals = dict(Member._read_group([("audience_id", "in", self.ids)], ["audience_id"], ["__count"]))
        fails = dict(
            Member._read_group(
                [("audience_id", "in", self.ids), ("sync_status", "=", "fail")],
                ["audience_id"],
                ["__count"],
            )
        )
        for audience in self:
            audience.member_count = totals.get(audience, 0)
            audience.failed_count = fails.get(audience, 0)

    def _snapshot_counts(self):
        """(subscribed at Mailchimp, subscribed in Odoo, failing) of one
        audience, in one scan of its rows: what a finished run keeps of it.
        The live figures join the queued updates and count the batches
        besides, which a run's history does not show."""
        self.ensure_one()
        self.env.flush_all()
        self.env.cr.execute(
            f"""SELECT count(*) FILTER (WHERE {MC_SUBSCRIBED_SQL}), count(*) FILTER (WHERE odoo_subscribed),
                       count(*) FILTER (WHERE sync_status = 'fail')
                  FROM mailchimp_member WHERE audience_id = %s""",
            (self.id,),
        )
        return self.env.cr.fetchone()

    def _compute_sync_stats(self):
        stats = dict.fromkeys(self.ids, (0,) * 6)
        updates, batches = {}, {}
        if self.ids:
            self.env.cr.execute(
                f"""
                SELECT audience_id,
                       count(*) FILTER (WHERE {MC_SUBSCRIBED_SQL}),
                       count(*) FILTER (WHERE odoo_subscribed),
                       count(*) FILTER (WHERE odoo_subscribed AND sync_status != 'fail'
                                          AND coalesce(mc_status, '') NOT IN ('subscribed', 'pending')),
                       count(*) FILTER (WHERE NOT coalesce(odoo_subscribed, false) AND sync_status != 'fail'
                                          AND mc_status IN ('subscribed', 'pending')),
                       count(*) FILTER (WHERE sync_status IN ('todo', 'redo')),
                       -- In flight: sent and waiting for Mailchimp's answer.  A
                       -- row whose update is still queued (Retry, a webhook) is
                       -- counted once, among the unsent, not here as well.
                       count(*) FILTER (WHERE sync_status = 'live' AND q.member_id IS NULL)
                  FROM mailchimp_member m
             LEFT JOIN (SELECT DISTINCT member_id FROM mailchimp_update
                         WHERE state = 'queued' AND audience_id = ANY(%(ids)s)) q ON q.member_id = m.id
                 WHERE audience_id = ANY(%(ids)s)
              GROUP BY audience_id
                """,
                {"ids": self.ids},
            )
            stats.update({row[0]: row[1:] for row in self.env.cr.fetchall()})
            updates = dict(
                self.env["mailchimp.update"].sudo()._read_group(
                    [("audience_id", "in", self.ids), ("state", "=", "queued")], ["audience_id"], ["__count"]
                )
            )
            batches = dict(
                self.env["mailchimp.batch"].sudo()._read_group(
                    [("audience_id", "in", self.ids), ("result_state", "!=", "done")],
                    ["audience_id"],
                    ["__count"],
                )
            )
        for audience in self:
            mc_sub, odoo_sub, to_add, to_remove, todo, live = stats.get(audience.id, (0,) * 6)
            unsent = updates.get(audience._origin, 0)
            open_batches = batches.get(audience._origin, 0)
            audience.update(
                {
                    "mc_subscribed_count": mc_sub,
                    "odoo_subscribed_count": odoo_sub,
                    "to_add_count": to_add,
                    "to_remove_count": to_remove,
                    "todo_count": todo,
                    "live_count": live,
                    "unsent_count": unsent,
                    "open_batch_count": open_batches,
                    "in_sync": bool(
                        audience.last_sync_end
                        and audience.sync_stage == "idle"
                        and not (to_add or to_remove or todo or live or unsent or open_batches)
                        and not audience.failed_count and mc_sub == odoo_sub  # in_sync tells the truth
                    ),
                    # in_sync tells the truth: failures or counts that disagree are shown.
                    "needs_attention": bool(audience.mailing_list_id and audience.sync_stage == "idle"
                                            and (audience.failed_count or mc_sub != odoo_sub)),
                }
            )

    @api.depends("mapping_review_pending", "interest_ids.mapping_review_pending")
    def _compute_mapping_review_needed(self):
        for audience in self:
            audience.mapping_review_needed = audience.mapping_review_pending or any(
                audience.interest_ids.mapped("mapping_review_pending")
            )

    @api.depends("interest_ids.stale", "interest_ids.mailing_list_id")
    def _compute_stale_interest_names(self):
        for audience in self:
            stale = audience.interest_ids.filtered(lambda i: i.stale and i.mailing_list_id)
            audience.stale_interest_names = ", ".join(stale.mapped("display_name")) or False

    @api.depends("merge_fields")
    def _compute_merge_fields_text(self):
        for audience in self:
            audience.merge_fields_text = "\n".join(
                f"*|{field.get('tag')}|*  {field.get('name') or ''} ({field.get('type') or '?'})"
                + (" *" if field.get("required") else "")
                for field in audience.merge_fields or []
                if isinstance(field, dict)
            )

    def _compute_sync_progress(self):
        for audience in self:
            run = audience.current_run_id
            audience.sync_progress = run._progress_text() if run else False

    # ------------------------------------------------------------------
    # Screens: what needs attention
    # ------------------------------------------------------------------

    def _action_members(self, name, domain, context=None):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("mailchimp_sync.mailchimp_member_action")
        action.update(
            name=name,
            domain=[("audience_id", "=", self.id), *domain],
            context=dict(context or {}, default_audience_id=self.id),
        )
        return action

    def action_view_members(self):
        return self._action_members(self.env._("Members of %s", self.name), [])

    def action_view_failed(self):
        return self._action_members(
            self.env._("Failed rows of %s", self.name), [("sync_status", "=", "fail")]
        )

    def action_view_todo(self):
        return self._action_members(
            self.env._("Rows to reconcile in %s", self.name), [("sync_status", "in", ("todo", "redo"))]
        )

    def action_view_live(self):
        return self._action_members(
            self.env._("Rows in flight in %s", self.name), [("sync_status", "=", "live")]
        )

    def action_view_to_add(self):
        return self._action_members(
            self.env._("To add at Mailchimp in %s", self.name),
            [("odoo_subscribed", "=", True), ("sync_status", "!=", "fail"),
             "|", ("mc_status", "=", False), ("mc_status", "not in", ("subscribed", "pending"))],
        )

    def action_view_to_remove(self):
        return self._action_members(
            self.env._("To remove at Mailchimp in %s", self.name),
            [("odoo_subscribed", "=", False), ("sync_status", "!=", "fail"),
             ("mc_status", "in", ("subscribed", "pending"))],
        )

    def action_view_unsent(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("mailchimp_sync.mailchimp_update_action")
        action.update(
            name=self.env._("Unsent updates of %s", self.name),
            domain=[("audience_id", "=", self.id), ("state", "=", "queued")],
            context={},
        )
        return action

    def action_view_batches(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("mailchimp_sync.mailchimp_batch_action")
        action.update(
            name=self.env._("Batches of %s", self.name),
            domain=[("audience_id", "=", self.id)],
            context={"search_default_open": 1},
        )
        return action

    def action_view_attention(self):
        """The dashboard card's click: open what needs attention first
        (failed rows, then unsent updates, then rows to do), else the form."""
        self.ensure_one()
        if self.failed_count:
            return self.action_view_failed()
        if self.unsent_count:
            return self.action_view_unsent()
        if self.todo_count:
            return self.action_view_todo()
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "views": [(False, "form")],
        }

    def action_review_mapping(self):
        """Open the wizard that asks which side to trust for the newly mapped lists."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Review mapping change"),
            "res_model": "mailchimp.mapping.wizard",
            "view_mode": "form",
            "views": [(False, "form")],
            "target": "new",
            "context": {"default_audience_id": self.id},
        }

    # ------------------------------------------------------------------
    # Notifications
    # ------------------------------------------------------------------

    def _notify(self, message, title, kind="success"):
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"title": title, "message": message, "type": kind, "sticky": False,
                       "next": {"type": "ir.actions.act_window_close"}},
        }

    def _notify_started(self, message, title):
        """The notification of a started sync; closing it lets the form
        watch for the scheduled action to pick the cycle up (the
        ``mailchimp_sync_watch`` client action, static/src/views), since
        nothing shows on the audience before its first step."""
        action = self._notify(message, title)
        action["params"]["next"] = {
            "type": "ir.actions.client",
            "tag": "mailchimp_sync_watch",
            "params": {
                "audience_ids": self.ids,
                # The run to look past: a newer one is the sync just started.
                "last_run_ids": {str(a.id): a.sudo().run_ids[:1].id or 0 for a in self},
            },
        }
        return action
