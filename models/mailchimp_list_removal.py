from odoo import fields, models


class MailchimpListRemoval(models.Model):
    """When a contact left a mapped list by deletion of its subscription.

    Filled by a trigger on ``mailing_subscription`` (see
    ``mailing.subscription.init``).  Plain integers rather than foreign keys:
    the row must outlive the contact, whose deletion is itself a change the
    sync has to send to Mailchimp.
    """

    _name = "mailchimp.list.removal"
    _description = "Mailchimp Sync: Removal From a Mapped List"
    _log_access = False

    contact_id = fields.Integer(required=True, index=True)
    list_id = fields.Integer(required=True)
    removed_at = fields.Datetime(required=True)

    _sql_constraints = [
        ("contact_list_uniq", "unique(contact_id, list_id)", "One removal per contact and list."),
    ]
