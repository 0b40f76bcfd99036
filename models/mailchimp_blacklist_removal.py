from odoo import fields, models


class MailchimpBlacklistRemoval(models.Model):
    """When an address left the blacklist by deletion of its entry.

    Filled by a trigger on ``mail_blacklist`` (see ``mail.blacklist.init``).
    Unblacklisting archives the entry, whose stamp then says when; a
    deleted entry leaves no row to stamp, and without this one the
    contact's membership would keep its older time: the sync would then
    take Mailchimp's unsubscribe (made because of the blacklist) as the
    newer change, and opt the contact out in Odoo.
    """

    _name = "mailchimp.blacklist.removal"
    _description = "Mailchimp Sync: Address Deleted From the Blacklist"
    _log_access = False

    email = fields.Char(required=True)
    removed_at = fields.Datetime(required=True, index=True)

    _sql_constraints = [
        ("email_uniq", "unique(email)", "One removal per address."),
    ]
