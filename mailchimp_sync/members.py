"""Fetched Mailchimp members: the fields the sync asks for, their statuses
and times.  A member becomes the Mailchimp side of a cache row in SQL, a
page or a batch at a time (``mailchimp.member``: each field keeps a change
time of its own, which moves only when its value does).
"""

from datetime import datetime, timezone

from .exceptions import MailchimpUnexpectedAnswer


# Only what the sync needs, so pages stay small.
FETCH_FIELDS = [
    "id",
    "email_address",
    "unique_email_id",
    # Mailchimp's id of the person, kept when the address changes: how a
    # fetch tells a member renamed at Mailchimp from a new one.
    "contact_id",
    "status",
    "last_changed",
    "merge_fields.FNAME",
    "merge_fields.LNAME",
    "interests",
    "tags",
    "tags_count",
]


def fetch_fields(merge_tags=()):
    """FETCH_FIELDS plus the merge fields a sync maps (only those: a list
    may have dozens, and each is on every member of every page)."""
    extra = [f"merge_fields.{tag}" for tag in sorted(set(merge_tags)) if tag not in ("FNAME", "LNAME")]
    return FETCH_FIELDS + extra

STATUSES = ("subscribed", "pending", "unsubscribed", "cleaned", "transactional", "archived")


def parse_mailchimp_datetime(value):
    """Parse Mailchimp's ISO-8601 timestamps into naive UTC datetimes (Odoo's
    convention); '' and None give None."""
    if not value:
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        text = value.strip().replace("Z", "+00:00")
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt


def format_mailchimp_datetime(dt):
    """Naive UTC datetime → the ISO form Mailchimp's filters accept."""
    return dt.replace(microsecond=0).isoformat() + "+00:00"


def check_statuses(members):
    """Raise :class:`MailchimpUnexpectedAnswer` naming the first member
    whose status is not one Mailchimp documents: the cache (and every
    decision) holds only those."""
    for member in members:
        if member.get("status") not in STATUSES:
            email = (member.get("email_address") or "").strip()
            status = member.get("status")
            raise MailchimpUnexpectedAnswer(
                f"Unknown Mailchimp status {status!r} for {email}", email=email, value=str(status),
                title="Unknown Member Status", detail=f"Mailchimp reported {email} with the status {status!r}")
