"""Reconcile decisions: what to change on each side for one cache row.

Pure functions over plain data (no Odoo, no I/O) so that the whole rule set
of DESIGN.md §4 can be tested as a table.  The Odoo models load rows in
bulk, call :func:`reconcile_row` for each and apply the decisions in bulk.

Rules, per field (the subscription and each interest):

* who changed last: no Odoo history → Mailchimp; Odoo history but no
  Mailchimp member → Odoo; both → Odoo if its change time is at or after
  Mailchimp's per-field time (ties go to Odoo), else Mailchimp;
* a trust override forces one side, but only between two known states:
  members new to one side are copied to the other whatever the override;
* subscribed at Mailchimp = ``subscribed`` or ``pending``;
* we never delete at Mailchimp: leaving is an unsubscribe.
"""

from dataclasses import dataclass, field
from datetime import datetime

MAILCHIMP = "mailchimp"
ODOO = "odoo"
SUBSCRIBED_STATUSES = frozenset({"subscribed", "pending"})
RESUBSCRIBABLE_STATUSES = frozenset({"unsubscribed", "archived", "transactional"})

# sync_status values of a cache row
OK, LIVE, FAIL = "ok", "live", "fail"


@dataclass
class InterestState:
    """One mapped interest of one row, on both sides."""

    mc: bool | None = None  # None: Mailchimp's value is unknown (no member yet)
    mc_changed: datetime | None = None
    odoo: bool = False
    odoo_changed: datetime | None = None  # None: no Odoo history for that list
    override: str | None = None  # MAILCHIMP, ODOO or None


@dataclass
class RowState:
    """Everything the decision needs about one cache row."""

    email: str | None = None  # the address to create the member with
    mc_status: str | None = None  # None: not a member at Mailchimp
    mc_status_changed: datetime | None = None
    odoo_subscribed: bool = False
    odoo_changed: datetime | None = None  # None: no Odoo history for the list
    has_contact: bool = True
    blacklisted: bool = False
    bouncing: bool = False
    # Issue #9 of the reference: the same contact has another row in this
    # audience that is subscribed at Mailchimp (e.g. after an email change
    # on one side only).
    other_row_subscribed: bool = False
    # An unsent update of this row asked for 'pending' (reference issue #10).
    pending_cancelled: bool = False
    interests: dict = field(default_factory=dict)  # interest id -> InterestState
    # names: (first, last) on each side, and what each side held at the
    # last sync (None: never synced)
    odoo_names: tuple = ("", "")
    odoo_names_changed: datetime | None = None
    mc_names: tuple = ("", "")
    mc_names_changed: datetime | None = None
    synced_names: tuple | None = None
    odoo_tags: frozenset = frozenset()
    synced_tags: frozenset = frozenset()
    merge_fields: dict = field(default_factory=dict)  # extra merge fields from extensions
    synced_merge_fields: dict = field(default_factory=dict)


@dataclass
class AudienceRules:
    trust_override: str | None = None
    double_optin: bool = False


@dataclass
class Decision:
    """What to do for one row.

    ``odoo_subscribe``: True/False to opt the contact in/out of the
    subscription list, None to leave it.  ``odoo_interests``: interest id →
    bool for the interest lists to change in Odoo.  ``mc_body``: the member
    payload to queue for Mailchimp (None: nothing).  ``tags``: list of
    ``{"name", "status"}`` to queue as a tags operation.
    """

    status: str = OK
    reason: str | None = None
    final_subscribed: bool = False
    odoo_subscribe: bool | None = None
    odoo_interests: dict = field(default_factory=dict)
    odoo_names: tuple | None = None
    mc_body: dict | None = None
    tags: list = field(default_factory=list)
    synced_names: tuple | None = None
    synced_tags: frozenset | None = None
    synced_merge_fields: dict | None = None


def who_changed_last(odoo_changed, mc_changed, mc_known, override=None):
    """Return ODOO or MAILCHIMP for one field.

    ``mc_known`` is whether Mailchimp holds a value at all (a member).  The
    override only decides between two known states.
    """
    if odoo_changed is None:
        return MAILCHIMP if mc_known else ODOO
    if not mc_known:
        return ODOO
    if override in (MAILCHIMP, ODOO):
        return override
    if mc_changed is None:
        return ODOO
    return ODOO if odoo_changed >= mc_changed else MAILCHIMP


def is_subscribed_status(status):
    return status in SUBSCRIBED_STATUSES


def split_name(name):
    """Split a full name into (first, last): the first word, then the rest."""
    parts = (name or "").split(None, 1)
    if not parts:
        return ("", "")
    return (parts[0], parts[1] if len(parts) > 1 else "")


def join_name(first, last):
    """Join first and last names the way Mailchimp's full_name does."""
    return " ".join(p for p in ((first or "").strip(), (last or "").strip()) if p)


def _norm_names(names):
    return tuple((n or "").strip() for n in (names or ("", "")))


def reconcile_row(row, rules):
    """Decide, for one row, the changes on both sides (DESIGN.md §4)."""
    decision = Decision()
    mc_known = row.mc_status is not None
    mc_subscribed = is_subscribed_status(row.mc_status)
    winner = who_changed_last(row.odoo_changed, row.mc_status_changed, mc_known, rules.trust_override)
    body = {}
    if winner == MAILCHIMP:
        if row.odoo_subscribed and not mc_subscribed:
            if row.other_row_subscribed:
                return _fail(
                    "This contact is also subscribed at Mailchimp under another email address "
                    f"in this audience, while {row.email} is {row.mc_status} there: "
                    "fix the addresses so one member maps to one contact."
                )
            decision.odoo_subscribe = False
        elif not row.odoo_subscribed and mc_subscribed:
            if not row.has_contact:
                return _fail("Subscribed at Mailchimp but no Odoo contact could be matched or created.")
            decision.odoo_subscribe = True
        decision.final_subscribed = mc_subscribed
    elif row.odoo_subscribed:
        if not mc_known:
            if not row.email:
                return _fail(reasons.NO_EMAIL)
            if row.blacklisted or row.bouncing:
                # Never create at Mailchimp an address Odoo knows is dead or
                # unwanted, as for a resubscribe (issue 11, item 8).
                code = reasons.BLACKLISTED_IN_ODOO if row.blacklisted else reasons.BOUNCING_IN_ODOO
                return _fail(code, mc_status=None)
            body = {
                "email_address": row.email,
                "status": "pending" if rules.double_optin else "subscribed",
            }
        elif row.mc_status in RESUBSCRIBABLE_STATUSES:
            if row.blacklisted or row.bouncing:
                why = "blacklisted" if row.blacklisted else "bouncing"
                return _fail(
                    f"Subscribed in Odoo but {row.mc_status} at Mailchimp, and the email is "
                    f"{why} in Odoo: not resubscribed."
                )
            pending = row.pending_cancelled or rules.double_optin
            body = {"status": "pending" if pending else "subscribed"}
        elif row.mc_status == "cleaned":
            return _fail(
                "Subscribed in Odoo but cleaned at Mailchimp (bounced or reported abuse): "
                "Mailchimp cannot resubscribe a cleaned address."
            )
        decision.final_subscribed = True
    else:
        if mc_subscribed:
            body = {"status": "unsubscribed"}
        decision.final_subscribed = False

    if decision.final_subscribed:
        _reconcile_interests(row, decision, body, mc_known and "email_address" not in body)
        _reconcile_data(row, decision, body)
    if body:
        decision.mc_body = body
    if decision.mc_body or decision.tags:
        decision.status = LIVE
    return decision


def _fail(reason):
    return Decision(status=FAIL, reason=reason)


def _reconcile_interests(row, decision, body, mc_member_exists):
    interests = {}
    for interest_id, state in sorted(row.interests.items()):
        if not mc_member_exists or state.mc is None:
            # A member we create (or whose interests we never saw) gets
            # Odoo's interests, so it does not lose them on the next run.
            interests[interest_id] = bool(state.odoo)
            continue
        if bool(state.mc) == bool(state.odoo):
            continue
        side = who_changed_last(state.odoo_changed, state.mc_changed, True, state.override)
        if side == MAILCHIMP:
            decision.odoo_interests[interest_id] = bool(state.mc)
        else:
            interests[interest_id] = bool(state.odoo)
    if interests:
        body["interests"] = interests


def _reconcile_data(row, decision, body):
    merge_fields = {}
    odoo_names = _norm_names(row.odoo_names)
    mc_names = _norm_names(row.mc_names)
    synced = _norm_names(row.synced_names) if row.synced_names is not None else None
    final_names = odoo_names
    if odoo_names != mc_names:
        odoo_moved = synced is None or odoo_names != synced
        mc_moved = synced is None or mc_names != synced
        if odoo_moved and mc_moved:
            # Both sides differ from what we last saw: who changed last.
            side = who_changed_last(row.odoo_names_changed, row.mc_names_changed, True)
        else:
            side = ODOO if odoo_moved else MAILCHIMP
        # Never blank out a name with an empty one.
        if side == ODOO and not any(odoo_names):
            side = MAILCHIMP
        if side == MAILCHIMP and not any(mc_names):
            side = ODOO
        if side == ODOO:
            merge_fields["FNAME"], merge_fields["LNAME"] = odoo_names
        else:
            decision.odoo_names = mc_names
            final_names = mc_names
    decision.synced_names = final_names
    for key, value in sorted(row.merge_fields.items()):
        if row.synced_merge_fields.get(key) != value:
            merge_fields[key] = value
    decision.synced_merge_fields = dict(row.merge_fields)
    if merge_fields:
        body["merge_fields"] = merge_fields
    # Tags go one way, Odoo → Mailchimp, and only tags we put there are
    # ever removed: tags set by Mailchimp users stay.
    odoo_tags = frozenset(row.odoo_tags)
    added = sorted(odoo_tags - row.synced_tags)
    removed = sorted(row.synced_tags - odoo_tags)
    decision.tags = [{"name": t, "status": "active"} for t in added] + [
        {"name": t, "status": "inactive"} for t in removed
    ]
    decision.synced_tags = odoo_tags


def merge_superseded(new_body, old_bodies):
    """Fold unsent updates of a row into the newer one that replaces them.

    Data the older updates carried that the new one does not is kept; a
    status of 'pending' in a cancelled update wins over 'subscribed'
    (reference issue #10: resubscribing someone who unsubscribed themselves
    must go through a confirmation email).
    """
    merged = {}
    pending = False
    for old in old_bodies:
        pending = pending or old.get("status") == "pending"
        for key, value in old.items():
            if isinstance(value, dict):
                merged.setdefault(key, {}).update(value)
            else:
                merged[key] = value
    for key, value in new_body.items():
        if isinstance(value, dict):
            merged.setdefault(key, {}).update(value)
        else:
            merged[key] = value
    if pending and merged.get("status") == "subscribed":
        merged["status"] = "pending"
    return merged


def _as_datetime(value):
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def row_state_from_cache(row, interests, extra_fields):
    """Build the :class:`RowState` of one cache row as the models load it.

    ``row`` is a dict of the cache columns and of the joined contact
    (``contact_name``, ``first_name``, ``last_name``, ``contact_email``,
    ``bounce``, ``blacklisted``, ``contact_write_date``, ``tags``,
    ``other_sub``); ``interests`` is a list of (interest id, override);
    ``extra_fields`` maps contact id to the extension merge fields.
    """
    sent = row.get("sent_data") or {}
    mc_interests = row.get("mc_interests") or {}
    mc_times = row.get("mc_interests_changed") or {}
    odoo_interests = row.get("odoo_interests") or {}
    odoo_times = row.get("odoo_interests_changed") or {}
    interest_states = {
        key: InterestState(
            mc=mc_interests.get(key) if row["mc_status"] else None,
            mc_changed=_as_datetime(mc_times.get(key)),
            odoo=bool(odoo_interests.get(key)),
            odoo_changed=_as_datetime(odoo_times.get(key)),
            override=override,
        )
        for key, override in interests
    }
    if row.get("first_name") or row.get("last_name"):
        odoo_names = (row.get("first_name") or "", row.get("last_name") or "")
    else:
        contact_name = row.get("contact_name")
        odoo_names = split_name(contact_name if contact_name != row.get("contact_email") else "")
    synced_names = tuple(sent["names"]) if sent.get("names") is not None else None
    return RowState(
        email=row.get("email") or row.get("contact_email"),
        mc_status=row["mc_status"],
        mc_status_changed=row.get("mc_status_changed"),
        odoo_subscribed=bool(row.get("odoo_subscribed")),
        odoo_changed=row.get("odoo_changed"),
        has_contact=bool(row.get("contact_id")),
        blacklisted=bool(row.get("blacklisted")),
        bouncing=(row.get("bounce") or 0) > 0,
        other_row_subscribed=bool(row.get("other_sub")),
        interests=interest_states,
        odoo_names=odoo_names if row.get("contact_id") else ("", ""),
        odoo_names_changed=row.get("contact_write_date"),
        mc_names=(row.get("mc_first_name") or "", row.get("mc_last_name") or ""),
        mc_names_changed=row.get("mc_name_changed"),
        synced_names=synced_names,
        odoo_tags=frozenset(row.get("tags") or ()),
        synced_tags=frozenset(sent.get("tags") or ()),
        merge_fields=extra_fields.get(row.get("contact_id"), {}),
        synced_merge_fields=sent.get("merge_fields") or {},
    )
