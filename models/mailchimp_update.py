from odoo import fields, models

UPDATE_STATES = [
    ("queued", "Queued"),
    ("sent", "Sent"),
    ("done", "Done"),
    ("failed", "Failed"),
    ("cancelled", "Cancelled"),
]


class MailchimpUpdate(models.Model):
    """A write queued for Mailchimp, sent as one operation of a batch."""

    _name = "mailchimp.update"
    _description = "Queued Mailchimp Update"
    _order = "id desc"

    member_id = fields.Many2one(
        "mailchimp.member", required=True, ondelete="cascade", index=True
    )
    audience_id = fields.Many2one(
        "mailchimp.audience", required=True, ondelete="cascade", index=True
    )
    email = fields.Char(related="member_id.email")
    kind = fields.Selection(
        [("member", "Member"), ("tags", "Tags")], default="member", required=True
    )
    payload = fields.Json(required=True)
    state = fields.Selection(UPDATE_STATES, default="queued", required=True, index=True)
    batch_id = fields.Many2one("mailchimp.batch", ondelete="set null", index="btree_not_null")
    status_code = fields.Integer(readonly=True)
    error_title = fields.Char(readonly=True)
    error_detail = fields.Text(readonly=True)
    done_at = fields.Datetime(readonly=True)
