"""Why a cache row failed, as a code with parameters.

The core decides (reconcile) and reads Mailchimp's answers (batch results)
but speaks no human language: it returns a :class:`Reason`, a code from the
list below with the few values a sentence needs.  The Odoo side turns it
into one translated sentence that says what went wrong and what to do next
(``tools/user_messages.describe_reason``).  Parameters never carry a
subscriber hash: marketing users read these sentences.
"""

from dataclasses import dataclass, field

# Decided by the reconcile rules (mailchimp_sync/reconcile.py)
OTHER_EMAIL_SUBSCRIBED = "other_email_subscribed"  # email, mc_status
NO_CONTACT = "no_contact"
NO_EMAIL = "no_email"
BLACKLISTED_IN_ODOO = "blacklisted_in_odoo"  # mc_status
BOUNCING_IN_ODOO = "bouncing_in_odoo"  # mc_status
CLEANED_AT_MAILCHIMP = "cleaned_at_mailchimp"

# Read from Mailchimp's answer to one batch operation (mailchimp_sync/batches.py)
NO_RESULT = "no_result"
COMPLIANCE_STATE = "compliance_state"
MEMBER_EXISTS = "member_exists"
FORGOTTEN = "forgotten"
INVALID_EMAIL = "invalid_email"
INVALID_MERGE_FIELDS = "invalid_merge_fields"  # fields: "TAG: Mailchimp's message; ..."
MEMBER_NOT_FOUND = "member_not_found"
TEMPORARY = "temporary"  # status
REFUSED = "refused"  # status, title, detail

CODES = frozenset({
    OTHER_EMAIL_SUBSCRIBED, NO_CONTACT, NO_EMAIL, BLACKLISTED_IN_ODOO, BOUNCING_IN_ODOO,
    CLEANED_AT_MAILCHIMP, NO_RESULT, COMPLIANCE_STATE, MEMBER_EXISTS, FORGOTTEN, INVALID_EMAIL,
    INVALID_MERGE_FIELDS, MEMBER_NOT_FOUND, TEMPORARY, REFUSED,
})


@dataclass(frozen=True)
class Reason:
    """A failure: ``code`` (one of :data:`CODES`) and its ``params``."""

    code: str
    params: dict = field(default_factory=dict, hash=False)

    def as_text(self):
        """One technical line, for logs: ``code (key=value, ...)``."""
        if not self.params:
            return self.code
        return f"{self.code} ({', '.join(f'{k}={v}' for k, v in sorted(self.params.items()))})"
