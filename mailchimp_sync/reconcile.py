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

from . import merge_fields as merge_fields_mod
from . import reasons
from .reasons import Reason

MAILCHIMP = "mailchimp"
ODOO = "odoo"
# The merge fields that hold a person's name: never blanked from Mailchimp.
NAME_TAGS = frozenset({"FNAME", "LNAME"})
# Trust override for a newly mapped list: the side that has the membership wins.
ADD_ONLY = "add"
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
    # Data: the mapped merge fields (FNAME and LNAME among them), merge tag
    # -> FieldState; their values as both sides last agreed on (canonical,
    # by tag; a tag absent: never agreed).
    fields: dict = field(default_factory=dict)
    synced_merge_fields: dict = field(default_factory=dict)
    merge_fields: dict = field(default_factory=dict)  # extra merge fields from extensions, Odoo → Mailchimp
    # Tags: the contact's (None: no contact), Mailchimp's (None: never
    # read; ``mc_tags_partial``: Mailchimp showed only some of them), and
    # the set both sides last agreed on (None: never synced).  Only tags
    # starting with ``tag_prefix`` take part.
    odoo_tags: frozenset | None = frozenset()
    mc_tags: frozenset | None = None
    mc_tags_partial: bool = False
    synced_tags: frozenset | None = frozenset()
    tag_prefix: str = ""
    # Email: the contact's address (normalized), and whether another member
    # of this audience at Mailchimp already has it.
    odoo_email: str | None = None
    odoo_email_taken: bool = False


@dataclass
class FieldState:
    """One mapped merge field of one row, on both sides.

    ``odoo``: the Odoo value in plain Python (``odoo_known`` False: the row
    has no record to read it from, e.g. no partner); ``mc``: Mailchimp's
    value as it answered (``mc_known`` False: not read yet).  Each side's
    change time (a datetime, or its ISO text) decides when both moved since
    they last agreed."""

    type: str = "text"
    options: dict = field(default_factory=dict)
    direction: str = merge_fields_mod.BOTH
    odoo: object = None
    odoo_known: bool = True
    odoo_changed: datetime | str | None = None
    mc: object = None
    mc_known: bool = True
    mc_changed: datetime | str | None = None


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
    reason: Reason | None = None  # why the row fails: a code the Odoo side puts in words
    final_subscribed: bool = False
    odoo_subscribe: bool | None = None
    odoo_interests: dict = field(default_factory=dict)
    mc_body: dict | None = None
    tags: list = field(default_factory=list)
    # Data for Odoo: merge tag -> Mailchimp's canonical value to write into
    # the mapped field; tag names to add to and remove from the contact.
    odoo_values: dict = field(default_factory=dict)
    odoo_tags_add: frozenset = frozenset()
    odoo_tags_remove: frozenset = frozenset()
    # What both sides agree on once the decision is applied (None: keep
    # what was agreed before).
    synced_tags: frozenset | None = None
    synced_merge_fields: dict | None = None
    # Values that could not go to the other side (merge_fields.DataProblem):
    # the row fails with them, the rest of its changes still go.
    data_problems: list = field(default_factory=list)


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


def resolve_override(override, mc_has):
    """The side a trust override forces; 'Only add, never remove' (for a
    newly mapped list) is the side that has the membership (``mc_has``:
    Mailchimp's), so both sides end with the union and nobody loses it."""
    if override == ADD_ONLY:
        return MAILCHIMP if mc_has else ODOO
    return override


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


def reconcile_row(row, rules):
    """Decide, for one row, the changes on both sides (DESIGN.md §4)."""
    decision = Decision()
    mc_known = row.mc_status is not None
    mc_subscribed = is_subscribed_status(row.mc_status)
    winner = who_changed_last(row.odoo_changed, row.mc_status_changed, mc_known,
                              resolve_override(rules.trust_override, mc_subscribed))
    body = {}
    if winner == MAILCHIMP:
        if row.odoo_subscribed and not mc_subscribed:
            if row.other_row_subscribed:
                return _fail(reasons.OTHER_EMAIL_SUBSCRIBED, email=row.email, mc_status=row.mc_status)
            decision.odoo_subscribe = False
        elif not row.odoo_subscribed and mc_subscribed:
            if not row.has_contact:
                return _fail(reasons.NO_CONTACT)
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
                code = reasons.BLACKLISTED_IN_ODOO if row.blacklisted else reasons.BOUNCING_IN_ODOO
                return _fail(code, mc_status=row.mc_status)
            pending = row.pending_cancelled or rules.double_optin
            body = {"status": "pending" if pending else "subscribed"}
        elif row.mc_status == "cleaned":
            return _fail(reasons.CLEANED_AT_MAILCHIMP)
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


def _fail(code, **params):
    return Decision(status=FAIL, reason=Reason(code, params))


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
        side = who_changed_last(state.odoo_changed, state.mc_changed, True, resolve_override(state.override, state.mc))
        if side == MAILCHIMP:
            decision.odoo_interests[interest_id] = bool(state.mc)
        else:
            interests[interest_id] = bool(state.odoo)
    if interests:
        body["interests"] = interests


def _reconcile_data(row, decision, body):
    """Merge fields, tags and the email address of a row that ends up
    subscribed.  Each merge field and each tag goes the way of the side
    that changed it since both last agreed; a merge field both sides
    changed goes to the later change.  Values that cannot go to the other
    side are listed in ``decision.data_problems``."""
    merge_fields = {}
    synced = dict(row.synced_merge_fields)
    for tag, state in sorted(row.fields.items()):
        _reconcile_field(tag, state, synced, merge_fields, decision)
    # Fields defined in code (the extension point) go Odoo → Mailchimp,
    # and only when their value changed since it was last sent.
    for key, value in sorted(row.merge_fields.items()):
        if key in row.fields:
            continue
        if synced.get(key) != value:
            merge_fields[key] = value
        synced[key] = value
    decision.synced_merge_fields = synced
    if merge_fields:
        body["merge_fields"] = merge_fields
    renamed = _reconcile_email(row, decision, body)
    # A tags operation runs on the member's hash, which a rename changes
    # (and Mailchimp does not keep a batch's order): tags wait for the
    # next sync, once the rename is settled.
    if not renamed:
        _reconcile_tags(row, decision)


def _reconcile_field(tag, state, synced, merge_fields, decision):
    """Decide one mapped merge field; updates ``synced`` (canonical values
    both sides agree on, by tag), ``merge_fields`` (to send) and
    ``decision.odoo_values`` (to write in Odoo)."""
    if not state.odoo_known:
        return  # no Odoo record holds this field for this row
    mtype, options = state.type, state.options
    try:
        odoo = merge_fields_mod.canonical(mtype, options, state.odoo)
        odoo_problem = None
    except merge_fields_mod.MergeValueError as exc:
        odoo, odoo_problem = None, exc.problem(tag)
    mc = merge_fields_mod.canonical(mtype, options, state.mc, strict=False) if state.mc_known else None
    agreed = synced.get(tag)
    known = tag in synced
    if odoo_problem is None and mc is not None and odoo == mc:
        synced[tag] = odoo
        return
    odoo_moved = odoo_problem is not None or not known or odoo != agreed
    mc_moved = mc is not None and (not known or mc != agreed)
    to_mc = state.direction != merge_fields_mod.TO_ODOO
    to_odoo = state.direction != merge_fields_mod.TO_MAILCHIMP and mc is not None
    if not to_odoo:
        side = ODOO if to_mc else None
    elif not to_mc:
        side = MAILCHIMP
    elif odoo_moved and mc_moved:
        side = who_changed_last(_as_datetime(state.odoo_changed), _as_datetime(state.mc_changed), True)
    else:
        side = ODOO if odoo_moved else MAILCHIMP
    # An empty value wins only as a deliberate clear of a value both sides
    # agreed on: never on a first sync, never by standing still.
    if side == ODOO and odoo_problem is None and merge_fields_mod.is_empty(odoo) and not (known and odoo_moved):
        side = MAILCHIMP if to_odoo else None
    # A name is never erased from Mailchimp: an empty FNAME or LNAME there
    # leaves Odoo's name as it is (issue 11, item 6).
    name_part = tag in NAME_TAGS and not merge_fields_mod.is_empty(odoo)
    if side == MAILCHIMP and merge_fields_mod.is_empty(mc) and (name_part or not (known and mc_moved)):
        side = ODOO if to_mc and (odoo_problem or not merge_fields_mod.is_empty(odoo)) else None
    if side == ODOO:
        if odoo_problem is not None:
            decision.data_problems.append(odoo_problem)
            return
        merge_fields[tag] = odoo
        synced[tag] = odoo
    elif side == MAILCHIMP:
        decision.odoo_values[tag] = mc
        synced[tag] = mc


def _reconcile_email(row, decision, body):
    """An address changed in Odoo goes to the same member at Mailchimp (the
    new ``email_address`` sent to the old hash), not to a new member; an
    address another member already has fails the row.  Returns whether a
    rename is queued."""
    new, old = row.odoo_email, (row.email or "")
    if row.mc_status is None or not new or new.lower() == old.lower():
        return False
    if row.odoo_email_taken:
        decision.data_problems.append(
            merge_fields_mod.DataProblem(merge_fields_mod.EMAIL_TAKEN, "", new, {"email": new, "old": old}))
        return False
    body["email_address"] = new
    return True


def _reconcile_tags(row, decision):
    """Tags both ways, each from the side that changed it since both last
    agreed: on the agreed set, a tag one side added is added on the other
    and a tag one side removed is removed on the other.  Without an agreed
    set (first sync) nothing is removed; without Mailchimp's set (never
    read) it holds what was agreed."""
    if row.odoo_tags is None:
        return
    if not (row.odoo_tags or row.mc_tags or row.synced_tags):
        decision.synced_tags = frozenset()  # no tags on either side, none agreed
        return
    prefix = row.tag_prefix or ""

    def scoped(tags):
        return frozenset(t for t in tags or () if t.startswith(prefix))

    odoo = scoped(row.odoo_tags)
    agreed = scoped(row.synced_tags) if row.synced_tags is not None else frozenset()
    mc = scoped(row.mc_tags) if row.mc_tags is not None else agreed
    add_mc, remove_mc, add_odoo, remove_odoo, final = set(), set(), set(), set(), set()
    for tag in odoo | mc | agreed:
        in_odoo, in_mc, was = tag in odoo, tag in mc, tag in agreed
        if in_odoo and in_mc:
            final.add(tag)
        elif in_odoo:
            if not was:
                add_mc.add(tag)
                final.add(tag)
            elif row.mc_tags_partial:
                final.add(tag)  # Mailchimp showed only some tags: it may well have it
            else:
                remove_odoo.add(tag)
        elif in_mc:
            if was:
                remove_mc.add(tag)
            else:
                add_odoo.add(tag)
                final.add(tag)
    decision.tags = [{"name": t, "status": "active"} for t in sorted(add_mc)] + [
        {"name": t, "status": "inactive"} for t in sorted(remove_mc)
    ]
    decision.odoo_tags_add = frozenset(add_odoo)
    decision.odoo_tags_remove = frozenset(remove_odoo)
    # Tags outside the prefix are neither ours nor agreed on.
    decision.synced_tags = frozenset(final)


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


def row_state_from_cache(row, interests, extra_fields, mappings=(), tag_prefix=""):
    """Build the :class:`RowState` of one cache row as the models load it.

    ``row`` is a dict of the cache columns and of the joined contact
    (``contact_email``, ``bounce``, ``blacklisted``, ``tags``,
    ``other_sub``, ``email_taken``, and ``odoo_values``: merge tag ->
    (Odoo value in plain Python, its change time) for the mapped fields
    the row's records hold); ``interests`` is a list of (interest id,
    override); ``extra_fields`` maps contact id to the extension merge
    fields; ``mappings`` lists the mapped merge fields as (tag, type,
    options, direction); ``tag_prefix`` scopes the tags that sync.
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
    mc_values = dict(row.get("mc_merge_fields") or {})
    mc_value_times = dict(row.get("mc_merge_fields_changed") or {})
    # Rows read before merge fields were kept whole have the names only.
    for tag, column in (("FNAME", "mc_first_name"), ("LNAME", "mc_last_name")):
        if tag not in mc_values and row.get(column) is not None:
            mc_values[tag] = row[column]
            mc_value_times[tag] = row.get("mc_name_changed")
    odoo_values = row.get("odoo_values") or {}
    field_states = {}
    for tag, mtype, options, direction in mappings:
        odoo_value, odoo_changed = odoo_values.get(tag, (None, None))
        field_states[tag] = FieldState(
            type=mtype, options=options or {}, direction=direction,
            odoo=odoo_value, odoo_known=tag in odoo_values, odoo_changed=odoo_changed,
            mc=mc_values.get(tag), mc_known=bool(row["mc_status"]) and tag in mc_values,
            # Times stay as read (ISO text) until two changes meet: parsing
            # them all would cost more than the decisions.
            mc_changed=mc_value_times.get(tag),
        )
    mc_tags = row.get("mc_tags")
    contact_email = row.get("contact_email")
    return RowState(
        # A member still to create gets the contact's address as it is now.
        email=(contact_email if not row["mc_status"] and contact_email else row.get("email") or contact_email),
        mc_status=row["mc_status"],
        mc_status_changed=row.get("mc_status_changed"),
        odoo_subscribed=bool(row.get("odoo_subscribed")),
        odoo_changed=row.get("odoo_changed"),
        has_contact=bool(row.get("contact_id")),
        blacklisted=bool(row.get("blacklisted")),
        bouncing=(row.get("bounce") or 0) > 0,
        other_row_subscribed=bool(row.get("other_sub")),
        interests=interest_states,
        fields=field_states,
        synced_merge_fields=sent.get("merge_fields") or {},
        merge_fields=extra_fields.get(row.get("contact_id"), {}),
        odoo_tags=frozenset(row["tags"]) if row.get("contact_id") and row.get("tags") is not None else None,
        mc_tags=frozenset(mc_tags) if mc_tags is not None and row["mc_status"] else None,
        mc_tags_partial=bool(row.get("mc_tags_partial")),
        synced_tags=frozenset(sent["tags"]) if sent.get("tags") is not None else None,
        tag_prefix=tag_prefix or "",
        odoo_email=contact_email if row.get("contact_id") else None,
        odoo_email_taken=bool(row.get("email_taken")),
    )
