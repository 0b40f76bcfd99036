from odoo import api, fields, models

MAILCHIMP_STATUSES = [
    ("subscribed", "Subscribed"),
    ("pending", "Pending"),
    ("unsubscribed", "Unsubscribed"),
    ("cleaned", "Cleaned"),
    ("transactional", "Transactional"),
    ("archived", "Archived"),
]

SYNC_STATUSES = [
    ("todo", "To Do"),
    ("live", "In Flight"),
    ("ok", "In Sync"),
    ("fail", "Failed"),
    ("redo", "Retry as Pending"),
]


class MailchimpMember(models.Model):
    """The sync cache: one row per audience and member-or-contact.

    The Mailchimp side mirrors what the last fetch saw, with a change
    timestamp per field that only moves when the value changed (Mailchimp's
    own ``last_changed`` moves on any edit).  The Odoo side caches the
    contact's memberships with the time each last changed.  Bulk stages read
    and write this table with set-based SQL; the ORM fields are for the
    screens and for single-row paths (webhooks).
    """

    _name = "mailchimp.member"
    _description = "Mailchimp Sync Cache Row"
    _order = "audience_id, email, id"
    _rec_name = "email"

    audience_id = fields.Many2one(
        "mailchimp.audience", required=True, ondelete="cascade", index=True
    )
    email = fields.Char(index=True)

    # Mailchimp side
    subscriber_hash = fields.Char(
        size=32, help="md5 of the lowercased email: Mailchimp's member id."
    )
    mc_status = fields.Selection(MAILCHIMP_STATUSES, string="Mailchimp Status")
    mc_last_changed = fields.Datetime(string="Mailchimp Last Changed")
    mc_status_changed = fields.Datetime(string="Status Changed at Mailchimp")
    mc_first_name = fields.Char(string="First Name at Mailchimp")
    mc_last_name = fields.Char(string="Last Name at Mailchimp")
    mc_name_changed = fields.Datetime(string="Name Changed at Mailchimp")
    mc_interests = fields.Json(string="Interests at Mailchimp")
    mc_interests_changed = fields.Json(string="Interest Change Times at Mailchimp")
    mc_unique_email_id = fields.Char(string="Mailchimp Unique Email ID")

    # Odoo side
    contact_id = fields.Many2one(
        "mailing.contact", string="Mailing Contact", ondelete="set null", index="btree_not_null"
    )
    partner_id = fields.Many2one(
        "res.partner", string="Contact", ondelete="set null", index="btree_not_null"
    )
    odoo_deleted_at = fields.Datetime(
        string="Contact Deleted", help="When the Odoo contact of this row was deleted."
    )
    odoo_subscribed = fields.Boolean(string="Subscribed in Odoo")
    odoo_changed = fields.Datetime(string="Subscription Changed in Odoo")
    odoo_interests = fields.Json(string="Interests in Odoo")
    odoo_interests_changed = fields.Json(string="Interest Change Times in Odoo")
    sent_data = fields.Json(
        help="Data (names, tags, merge fields) Mailchimp is known to hold, so that "
        "only real changes are sent."
    )

    sync_status = fields.Selection(
        SYNC_STATUSES, default="todo", required=True, index=True
    )
    sync_error = fields.Text(string="Why It Failed")
    last_synced = fields.Datetime()
    update_ids = fields.One2many("mailchimp.update", "member_id", string="Updates")
    pending_update_count = fields.Integer(compute="_compute_pending_update_count")

    _sql_constraints = [
        (
            "hash_uniq",
            "unique(audience_id, subscriber_hash)",
            "One cache row per audience and Mailchimp member.",
        ),
    ]

    # ------------------------------------------------------------------
    # Screen actions (Members list and form)
    # ------------------------------------------------------------------

    def action_include_in_next_sync(self):
        """Put the rows back in line: the next sync reconciles them again
        (rows still in flight are left alone until their batch settles)."""
        self.audience_id._as_sync_operator()
        rows = self.sudo().filtered(lambda m: m.sync_status != "live")
        rows.write({"sync_status": "todo"})
        return self._notify(
            self.env._("%s row(s) will be reconciled by the next sync.", len(rows)),
            self.env._("Included in next sync"),
        )

    def action_retry(self):
        """Reconcile the rows now, as a webhook would; the updates this
        decides for Mailchimp are queued and sent with the next sync."""
        by_audience = {}
        for member in self.sudo().filtered(lambda m: m.sync_status != "live"):
            by_audience.setdefault(member.audience_id, []).append(member.id)
        self.audience_id._as_sync_operator()
        Sync = self.env["mailchimp.sync"].sudo()
        failed = 0
        for audience, member_ids in by_audience.items():
            rows = self.sudo().browse(member_ids)
            rows.write({"sync_status": "todo", "sync_error": False})
            rows.flush_recordset()  # the engine reads the cache with SQL
            Sync._sync_members(audience, member_ids)
            rows.invalidate_recordset()
            failed += len(rows.filtered(lambda m: m.sync_status == "fail"))
        done = sum(len(ids) for ids in by_audience.values())
        if failed:
            message = self.env._("%(done)s row(s) retried, %(failed)s failed again: see why on each row.",
                                 done=done, failed=failed)
        else:
            message = self.env._("%s row(s) retried; their updates go out with the next sync.", done)
        return self._notify(message, self.env._("Retried"), "warning" if failed else "success")

    def _notify(self, message, title, kind="success"):
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": title,
                "message": message,
                "type": kind,
                "sticky": False,
                "next": {"type": "ir.actions.act_window_close"},
            },
        }

    @api.depends("update_ids.state")
    def _compute_pending_update_count(self):
        counts = dict(
            self.env["mailchimp.update"]._read_group(
                [("member_id", "in", self.ids), ("state", "in", ("queued", "sent"))],
                ["member_id"],
                ["__count"],
            )
        )
        for member in self:
            member.pending_update_count = counts.get(member, 0)
