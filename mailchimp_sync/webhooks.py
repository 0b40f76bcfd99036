"""Webhooks Mailchimp sends to the addon (API-BEHAVIOUR.md §7.4 and §8).

Mailchimp posts ``application/x-www-form-urlencoded`` bodies whose keys use
PHP's bracket syntax (``data[merges][FNAME]``,
``data[merges][GROUPINGS][0][name]``).  This module turns the decoded
key/value pairs into nested dicts, then into small, validated events:

* :class:`MemberEvent` for list webhooks (subscribe, unsubscribe, profile,
  upemail, cleaned, campaign);
* :class:`BatchEvent` for batch webhooks (only the batch id is used: the
  addon re-reads the batch with ``GET /batches/{id}``).

Anything malformed raises :class:`WebhookError`, never anything else, so a
controller can answer 400 to every odd body.  The payload is *not* trusted
for state: the events only say which member to re-fetch.

It also holds what a correctly registered webhook looks like, so the
registration code and its tests agree on one definition.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from .client import subscriber_hash

MAX_FIELDS = 500
MAX_DEPTH = 6
MAX_VALUE_LENGTH = 10000

MEMBER_EVENT_TYPES = ("subscribe", "unsubscribe", "profile", "upemail", "cleaned", "campaign")
BATCH_EVENT_TYPES = ("batch_operation_completed",)

# What the addon registers (DESIGN.md §5): every flag sent explicitly,
# campaign off, and api off so that the addon's own writes do not echo back.
MEMBER_WEBHOOK_EVENTS = {
    "subscribe": True,
    "unsubscribe": True,
    "profile": True,
    "cleaned": True,
    "upemail": True,
    "campaign": False,
}
MEMBER_WEBHOOK_SOURCES = {"user": True, "admin": True, "api": False}

MEMBER_WEBHOOK_PATH = "/mailchimp/webhook"
BATCH_WEBHOOK_PATH = "/mailchimp/batch-webhook"

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART_RE = re.compile(r"\[([^\[\]]*)\]")
# A part of an address: no control character either (PostgreSQL refuses a
# NUL, and no address has one).
_ADDRESS_PART = r"[^@\s<>\"',;\x00-\x1f\x7f]+"
_EMAIL_RE = re.compile(rf"^{_ADDRESS_PART}@{_ADDRESS_PART}\.{_ADDRESS_PART}$")
_LIST_ID_RE = re.compile(r"^[0-9A-Za-z]{1,32}$")
_BATCH_ID_RE = re.compile(r"^[0-9A-Za-z]{1,32}$")


class WebhookError(ValueError):
    """The body is not a webhook the addon understands (answer 400)."""


# ---------------------------------------------------------------------------
# Form keys
# ---------------------------------------------------------------------------


def parse_form(pairs):
    """Nest decoded form pairs by their PHP-style bracket keys.

    ``[("data[merges][FNAME]", "Anna")]`` → ``{"data": {"merges": {"FNAME": "Anna"}}}``.
    Numeric parts stay strings (``GROUPINGS: {"0": {...}}``); an empty
    part (``a[]``) appends at the next free index.  A key that is both a
    value and a container, a malformed key, too many fields or too deep a
    nesting raise :class:`WebhookError`.
    """
    result = {}
    count = 0
    for pair in pairs:
        count += 1
        if count > MAX_FIELDS:
            raise WebhookError(f"More than {MAX_FIELDS} fields.")
        try:
            key, value = pair
        except (TypeError, ValueError):
            raise WebhookError("A field is not a key/value pair.") from None
        if not isinstance(key, str) or not isinstance(value, str):
            raise WebhookError("A field is not text.")
        if len(value) > MAX_VALUE_LENGTH:
            raise WebhookError("A field is too long.")
        match = _KEY_RE.match(key)
        if not match:
            raise WebhookError("A field name is malformed.")
        parts = [match.group(1), *_PART_RE.findall(match.group(2))]
        if len(parts) > MAX_DEPTH:
            raise WebhookError("A field name is nested too deeply.")
        node = result
        for depth, raw_part in enumerate(parts):
            last = depth == len(parts) - 1
            part = str(len(node)) if raw_part == "" and depth else raw_part
            if last:
                if isinstance(node.get(part), dict):
                    raise WebhookError("A field is both a value and a group.")
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise WebhookError("A field is both a value and a group.")
                node = child
    return result


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberEvent:
    """A list webhook, reduced to what the addon acts on.

    ``email`` is the member's address now (for ``upemail``: the new one);
    ``old_email`` is set for ``upemail`` only, and ``new_id``: the
    renamed member's new ``unique_email_id`` as Mailchimp announces it (the
    re-fetched member must have it).  Names come from the merges but are
    informative only: the member is re-fetched.
    """

    type: str
    list_id: str
    email: str | None = None
    old_email: str | None = None
    fired_at: datetime | None = None
    action: str | None = None
    reason: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    new_id: str | None = None

    @property
    def subscriber_hash(self):
        return subscriber_hash(self.email) if self.email else None

    @property
    def is_campaign(self):
        return self.type == "campaign"


@dataclass(frozen=True)
class BatchEvent:
    """A batch webhook: which batch finished."""

    type: str
    batch_id: str
    status: str | None = None


def _text(data, key, required=False, what=None):
    value = data.get(key)
    if isinstance(value, dict):
        raise WebhookError(f"{what or key} is not a single value.")
    value = (value or "").strip()
    if required and not value:
        raise WebhookError(f"{what or key} is missing.")
    return value or None


def _email(data, key, required=True):
    value = _text(data, key, required=required, what=f"data[{key}]")
    if value is None:
        return None
    if len(value) > 254 or not _EMAIL_RE.match(value):
        raise WebhookError(f"data[{key}] is not an email address.")
    return value


def parse_fired_at(value):
    """``YYYY-MM-DD HH:MM:SS`` (UTC) → naive datetime; None if absent or odd."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


def _event_type(form, allowed):
    event_type = _text(form, "type", required=True)
    if event_type not in allowed:
        raise WebhookError("Unknown event type.")
    return event_type


def parse_member_event(pairs):
    """Validate and normalise a list webhook body → :class:`MemberEvent`."""
    form = pairs if isinstance(pairs, dict) else parse_form(pairs)
    event_type = _event_type(form, MEMBER_EVENT_TYPES)
    data = form.get("data")
    if not isinstance(data, dict):
        raise WebhookError("data is missing.")
    list_id = _text(data, "list_id", required=True, what="data[list_id]")
    if not _LIST_ID_RE.match(list_id):
        raise WebhookError("data[list_id] is malformed.")
    fired_at = parse_fired_at(form.get("fired_at") if isinstance(form.get("fired_at"), str) else None)
    if event_type == "campaign":
        return MemberEvent(type=event_type, list_id=list_id, fired_at=fired_at)
    if event_type == "upemail":
        new_email = _email(data, "new_email")
        old_email = _email(data, "old_email")
        return MemberEvent(type=event_type, list_id=list_id, email=new_email, old_email=old_email,
                           fired_at=fired_at, new_id=_text(data, "new_id"))
    email = _email(data, "email")
    merges = data.get("merges")
    first = last = None
    if isinstance(merges, dict):
        first = merges.get("FNAME") if isinstance(merges.get("FNAME"), str) else None
        last = merges.get("LNAME") if isinstance(merges.get("LNAME"), str) else None
    elif merges is not None:
        raise WebhookError("data[merges] is not a group.")
    return MemberEvent(
        type=event_type,
        list_id=list_id,
        email=email,
        fired_at=fired_at,
        action=_text(data, "action"),
        reason=_text(data, "reason"),
        first_name=first,
        last_name=last,
    )


def parse_batch_event(pairs):
    """Validate a batch webhook body → :class:`BatchEvent`.

    Only ``data[id]`` is relied on; ``data[response_body_url]`` is ignored
    on purpose (the addon re-reads the batch from Mailchimp).
    """
    form = pairs if isinstance(pairs, dict) else parse_form(pairs)
    event_type = _event_type(form, BATCH_EVENT_TYPES)
    data = form.get("data")
    if not isinstance(data, dict):
        raise WebhookError("data is missing.")
    batch_id = _text(data, "id", required=True, what="data[id]")
    if not _BATCH_ID_RE.match(batch_id):
        raise WebhookError("data[id] is malformed.")
    return BatchEvent(type=event_type, batch_id=batch_id, status=_text(data, "status"))


# ---------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------


def member_webhook_url(base_url, secret):
    return f"{base_url.rstrip('/')}{MEMBER_WEBHOOK_PATH}/{secret}"


def batch_webhook_url(base_url, secret):
    return f"{base_url.rstrip('/')}{BATCH_WEBHOOK_PATH}/{secret}"


def member_webhook_body(url):
    """The body to create or repair a list webhook: all nine flags."""
    return {"url": url, "events": dict(MEMBER_WEBHOOK_EVENTS), "sources": dict(MEMBER_WEBHOOK_SOURCES)}


def _norm(url):
    parts = urlsplit((url or "").strip())
    return (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"))


def same_url(a, b):
    """Same scheme, host and path (Mailchimp ignores the query string too)."""
    return _norm(a) == _norm(b)


def is_ours(url, expected):
    """True when ``url`` is an addon webhook of the same site and kind as
    ``expected``, whatever its secret (an older secret: needs repair)."""
    scheme, netloc, path = _norm(url)
    e_scheme, e_netloc, e_path = _norm(expected)
    prefix = e_path.rsplit("/", 1)[0] + "/"
    return (scheme, netloc) == (e_scheme, e_netloc) and path.startswith(prefix)


def member_webhook_problems(webhook):
    """What differs between a registered list webhook and the addon's
    definition, as readable phrases (empty: healthy)."""
    problems = []
    events = webhook.get("events") or {}
    sources = webhook.get("sources") or {}
    for name, wanted in MEMBER_WEBHOOK_EVENTS.items():
        if bool(events.get(name)) != wanted:
            problems.append(f"event {name} should be {'on' if wanted else 'off'}")
    for name, wanted in MEMBER_WEBHOOK_SOURCES.items():
        if bool(sources.get(name)) != wanted:
            problems.append(f"source {name} should be {'on' if wanted else 'off'}")
    return problems


def classify_webhooks(webhooks, expected_url):
    """Split registered webhooks into (exact, stale).

    ``exact``: the one at ``expected_url`` (or None); ``stale``: addon
    webhooks of this site and kind with another secret.  Webhooks of
    other sites or tools are left alone.
    """
    exact, stale = None, []
    for webhook in webhooks:
        url = webhook.get("url") or ""
        if same_url(url, expected_url) and exact is None:
            exact = webhook
        elif is_ours(url, expected_url):
            stale.append(webhook)
    return exact, stale
