"""Fetched Mailchimp members → the Mailchimp side of a cache row.

Mailchimp's ``last_changed`` moves on *any* edit of a member, so it cannot
tell which field changed.  We keep a change time per field (status, names,
each interest, each merge field) that moves to ``last_changed`` only when that field's value
differs from what we cached before.
"""

from datetime import datetime, timezone

from .client import subscriber_hash

# Only what the sync needs, so pages stay small.
FETCH_FIELDS = [
    "id",
    "email_address",
    "unique_email_id",
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


def _iso(dt):
    return dt.isoformat() if dt else None


def merge_member(cached, member):
    """Return the Mailchimp-side values of a cache row after a fetch.

    :param cached: dict of the row's current Mailchimp side (keys as
        returned here, interest change times as ISO strings), or None for a
        member we never saw.
    :param member: the member as Mailchimp returned it.
    :returns: dict with subscriber_hash, email, mc_status, mc_last_changed,
        mc_status_changed, mc_first_name, mc_last_name, mc_name_changed,
        mc_interests, mc_interests_changed, mc_unique_email_id,
        mc_merge_fields, mc_merge_fields_changed (merge tag -> value and its
        change time; tags the member did not carry keep their cached value),
        mc_tags (tag names, sorted; None: not read) and mc_tags_partial
        (Mailchimp showed only some of the member's tags).
    """
    cached = cached or {}
    email = (member.get("email_address") or "").strip()
    last_changed = parse_mailchimp_datetime(member.get("last_changed"))
    status = member.get("status")
    if status not in STATUSES:
        raise ValueError(f"Unknown Mailchimp status {status!r} for {email}")
    merge_fields = member.get("merge_fields") or {}
    first = (merge_fields.get("FNAME") or "").strip() if isinstance(merge_fields.get("FNAME"), str) else ""
    last = (merge_fields.get("LNAME") or "").strip() if isinstance(merge_fields.get("LNAME"), str) else ""

    def moved(old_value, old_time, new_value):
        """A field's time moves only when its value changed (or was never timed)."""
        if old_time is None or old_value != new_value:
            return last_changed
        return old_time

    old_names = (cached.get("mc_first_name") or "", cached.get("mc_last_name") or "")
    interests = {k: bool(v) for k, v in (member.get("interests") or {}).items()}
    old_interests = cached.get("mc_interests") or {}
    old_interest_times = cached.get("mc_interests_changed") or {}
    interest_times = {}
    for interest_id, value in interests.items():
        old_time = parse_mailchimp_datetime(old_interest_times.get(interest_id))
        interest_times[interest_id] = _iso(moved(old_interests.get(interest_id), old_time, value))
    merge_values = dict(cached.get("mc_merge_fields") or {})
    merge_times = dict(cached.get("mc_merge_fields_changed") or {})
    for tag, value in merge_fields.items():
        old_time = parse_mailchimp_datetime(merge_times.get(tag))
        merge_times[tag] = _iso(moved(merge_values.get(tag), old_time, value))
        merge_values[tag] = value
    if isinstance(member.get("tags"), list):
        tags = sorted({t.get("name") for t in member["tags"] if isinstance(t, dict) and t.get("name")})
        partial = (member.get("tags_count") or 0) > len(tags)
    else:
        tags, partial = cached.get("mc_tags"), bool(cached.get("mc_tags_partial"))
    return {
        "subscriber_hash": member.get("id") or subscriber_hash(email),
        "email": email,
        "mc_status": status,
        "mc_last_changed": last_changed,
        "mc_status_changed": moved(cached.get("mc_status"), cached.get("mc_status_changed"), status),
        "mc_first_name": first,
        "mc_last_name": last,
        "mc_name_changed": moved(old_names, cached.get("mc_name_changed"), (first, last)),
        "mc_interests": interests,
        "mc_interests_changed": interest_times,
        "mc_unique_email_id": member.get("unique_email_id") or None,
        "mc_merge_fields": merge_values,
        "mc_merge_fields_changed": merge_times,
        "mc_tags": tags,
        "mc_tags_partial": partial,
    }
