"""Member logic: shape, validation, the §5 state machine, and the listing.

Everything that changes a member goes through here, whether the call came
over HTTP, from inside a batch, or from a simulated user/admin action of the
control API; ``Ctx.source`` says which (api|admin|user), and the webhook
events that a change raises are collected on the context.
"""

import re

from . import links, mergefields, webhooks
from .state import Member
from .util import (
    ApiError,
    as_bool,
    csv_param,
    drop,
    field_tree,
    hex_id,
    invalid,
    iso,
    keep,
    not_found,
    parse_iso,
    schema_error,
    subscriber_hash,
)

STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
PATCH_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending")
EMAIL_RE = re.compile(r"^[^@\s\"<>(),;:]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
DEFAULT_LOCATION = {"latitude": 0, "longitude": 0, "gmtoff": 0, "dstoff": 0,
                    "country_code": "", "timezone": "", "region": ""}


class Ctx:
    """Who is acting (source), from where (ip), and the events raised so far."""

    def __init__(self, store, source="api", ip="127.0.0.1"):
        self.store = store
        self.settings = store.settings
        self.source = source
        self.ip = ip
        self.events = []

    def emit(self, lst, type_, m=None, **extra):
        self.events.append(webhooks.build_event(self.store, lst, type_, m, self.source, extra))


# --- shape -----------------------------------------------------------------

def _merge_json(lst, m):
    return {mf.tag: m.merge.get(mf.tag, "") for mf in lst.merge_fields.values()}


def _tags_json(store, lst, m):
    names = sorted(m.tags)[: store.settings["member_tags_limit"]]
    return [{"id": lst.tag_ids.get(n, 0), "name": n} for n in names]


MEMBER_KEYS = {
    "id": lambda s, L, m: m.id,
    "email_address": lambda s, L, m: m.email,
    "unique_email_id": lambda s, L, m: m.unique_email_id,
    "contact_id": lambda s, L, m: m.contact_id,
    "full_name": lambda s, L, m: m.full_name,
    "web_id": lambda s, L, m: m.web_id,
    "email_type": lambda s, L, m: m.email_type,
    "status": lambda s, L, m: m.status,
    "unsubscribe_reason": lambda s, L, m: m.unsubscribe_reason or "",
    "consents_to_one_to_one_messaging": lambda s, L, m: True,
    "merge_fields": lambda s, L, m: _merge_json(L, m),
    "interests": lambda s, L, m: {i: i in m.interests for i in L.all_interest_ids()},
    "stats": lambda s, L, m: {"avg_open_rate": 0, "avg_click_rate": 0},
    "ip_signup": lambda s, L, m: m.ip_signup,
    "timestamp_signup": lambda s, L, m: iso(m.timestamp_signup),
    "ip_opt": lambda s, L, m: m.ip_opt,
    "timestamp_opt": lambda s, L, m: iso(m.timestamp_opt),
    "member_rating": lambda s, L, m: m.member_rating,
    "last_changed": lambda s, L, m: iso(m.last_changed),
    "language": lambda s, L, m: m.language,
    "vip": lambda s, L, m: m.vip,
    "email_client": lambda s, L, m: "",
    "location": lambda s, L, m: dict(m.location or DEFAULT_LOCATION),
    "source": lambda s, L, m: m.source,
    "tags_count": lambda s, L, m: len(m.tags),
    "tags": _tags_json,
    "list_id": lambda s, L, m: L.id,
    "_links": lambda s, L, m: links.member_links(s.link_base, L.id, m.id),
}


def member_json(store, lst, m, keys=None):
    """The §4.2 member object; ``keys`` restricts it to some top-level keys."""
    out = {}
    for k in (keys if keys is not None else MEMBER_KEYS):
        f = MEMBER_KEYS.get(k)
        if f is None:
            continue
        if k == "unsubscribe_reason" and m.status != "unsubscribed":
            continue
        if k == "interests" and not lst.categories:
            continue
        out[k] = f(store, lst, m)
    return out


def member_response(store, lst, m, query):
    """Single member with fields/exclude_fields applied, computing only what is asked."""
    f = csv_param(query, "fields")
    if f:
        tree = field_tree(f)
        out = keep(member_json(store, lst, m, [k for k in MEMBER_KEYS if k in tree]), tree)
    else:
        out = member_json(store, lst, m)
    x = csv_param(query, "exclude_fields")
    return drop(out, field_tree(x)) if x else out


def hidden_json(store, lst, m):
    """Member dump for the control API, including the hidden compliance state."""
    out = member_json(store, lst, m)
    out.update(compliance_locked=m.compliance_locked, unsubscribe_origin=m.unsubscribe_origin,
               prev_status=m.prev_status, interest_names=sorted(
                   lst.interest(i).name for i in m.interests if lst.interest(i)),
               tag_names=sorted(m.tags))
    return out


# --- validation ----------------------------------------------------------------

def validate_email(settings, email):
    if not isinstance(email, str) or not EMAIL_RE.match(email.strip()):
        raise invalid("Please provide a valid email address.")
    low = email.strip().lower()
    for pat in settings["fake_email_patterns"]:
        if re.search(pat, low):
            raise invalid(f"{email} looks fake or invalid, please enter a real email address.")
    return email.strip()


def _check_status(value, allowed, field="status"):
    if value not in allowed:
        raise schema_error([{"field": field, "message": "Data presented is not one of the accepted values: "
                             + ", ".join(allowed) + "."}])


def merged_fields(settings, lst, m, incoming, creating, skip):
    """New merge dict for ``m`` after applying ``incoming``; raises on invalid values.

    Values of the wrong JSON type fail the schema (``merge_fields.TAG``) before
    any merge-field rule runs, as Mailchimp validates the document first.
    """
    if incoming is None:
        incoming = {}
    if not isinstance(incoming, dict):
        raise schema_error([{"field": "merge_fields", "message": "Schema describes object, "
                             + type(incoming).__name__ + " found instead"}])
    new = dict(m.merge)
    errors, schema = [], []
    by_tag = {mf.tag: mf for mf in lst.merge_fields.values()}
    for key, raw in incoming.items():
        mf = by_tag.get(str(key).upper())
        if mf is None:
            continue  # unknown tags are silently ignored (§4.2)
        val, err = mergefields.value(mf, raw, settings)
        if err == mergefields.ANY_OF:
            schema.append({"field": f"merge_fields.{mf.tag}", "message": err})
        elif err:
            errors.append({"field": mf.tag, "message": err})
        else:
            new[mf.tag] = val
    if schema:
        raise schema_error(schema)
    if not skip:
        upper = {str(k).upper() for k in incoming}
        for mf in by_tag.values():
            if (mf.required and (creating or mf.tag in upper) and new.get(mf.tag, "") == ""
                    and not any(e["field"] == mf.tag for e in errors)):
                errors.append({"field": mf.tag, "message": mergefields.NEED_VALUE})
    if errors:
        raise invalid("Your merge fields were invalid.", errors)
    return new


def _new_interests(settings, lst, m, incoming):
    if incoming is None:
        return m.interests
    if not isinstance(incoming, dict):
        raise schema_error([{"field": "interests", "message": "Schema describes object, "
                             + type(incoming).__name__ + " found instead"}])
    new = set(m.interests)
    for iid, on in incoming.items():
        if lst.interest(iid) is None:
            if settings["unknown_interest_error"]:
                raise schema_error([{"field": "interests", "message": f"Invalid interest ID: '{iid}'"}])
            continue
        if as_bool(on):
            new.add(iid)
        else:
            new.discard(iid)
    return new


def _full_name(m):
    return " ".join(x for x in (str(m.merge.get("FNAME", "") or "").strip(),
                                str(m.merge.get("LNAME", "") or "").strip()) if x)


# --- state machine ----------------------------------------------------------------

def compliance_error(email):
    return ApiError(400, "Member In Compliance State",
                    f"{email} is in a compliance state due to unsubscribe, bounce, or compliance "
                    "review and cannot be subscribed.")


def member_exists(email):
    return ApiError(400, "Member Exists",
                    f"{email} is already a list member. Use PUT to insert or update list members.")


def forgotten_error(email):
    return ApiError(400, "Forgotten Email Not Subscribed",
                    f"{email} was permanently deleted and cannot be re-imported. "
                    "The contact must re-subscribe to get back on the list.")


def _set_status(ctx, lst, m, new, reason="manual", campaign_id=None, readd=False):
    """Apply a status change subject to §5.4; queue its event.  Returns changed?"""
    old = m.status
    if new == old:
        return False
    _check_transition(ctx, m, new)
    now = ctx.store.clock.now()
    m.status = new
    lst.note_status(new, now)
    if old == "archived" and readd and new == "subscribed":
        m.ip_opt, m.timestamp_opt = ctx.ip, now
    if new == "unsubscribed":
        m.unsubscribe_origin = ctx.source
        m.unsubscribe_reason = ("N/A (Unsubscribed by an admin)" if ctx.source != "user"
                                else ("Abuse complaint" if reason == "abuse" else "N/A"))
        if ctx.source == "user":
            m.compliance_locked = True
        extra = {"action": "unsub", "reason": reason}
        if campaign_id:
            extra["campaign_id"] = campaign_id
        ctx.emit(lst, "unsubscribe", m, **extra)
    elif new == "cleaned":
        m.compliance_locked = True
        ctx.emit(lst, "cleaned", m, reason=reason if reason in ("hard", "abuse") else "hard",
                 campaign_id=campaign_id)
    elif new == "subscribed":
        ctx.emit(lst, "subscribe", m)
    return True


def _apply_fields(ctx, lst, m, body, creating, skip):
    """Update the non-status fields; returns True when a profile field changed."""
    s = ctx.settings
    new_merge = merged_fields(s, lst, m, body.get("merge_fields"), creating, skip)
    new_int = _new_interests(s, lst, m, body.get("interests"))
    profile = False
    if new_merge != m.merge:
        m.merge = new_merge
        m.full_name = _full_name(m)
        profile = True
    if new_int != m.interests:
        m.interests = set(new_int)
        profile = True
    if "email_type" in body and body["email_type"] and body["email_type"] != m.email_type:
        if body["email_type"] not in ("html", "text"):
            _check_status(body["email_type"], ("html", "text"), "email_type")
        m.email_type = body["email_type"]
        profile = True
    other = False
    for key in ("language", "vip", "ip_signup", "ip_opt"):
        if key in body and body[key] is not None:
            val = as_bool(body[key]) if key == "vip" else str(body[key])
            if getattr(m, key) != val:
                setattr(m, key, val)
                other = True
    for key in ("timestamp_signup", "timestamp_opt"):
        if body.get(key):
            try:
                val = int(parse_iso(body[key]))
            except ValueError:
                raise schema_error([{"field": key, "message": "Please provide a valid date"}]) from None
            if getattr(m, key) != val:
                setattr(m, key, val)
                other = True
    if isinstance(body.get("location"), dict):
        loc = dict(m.location or DEFAULT_LOCATION)
        loc.update({k: v for k, v in body["location"].items() if k in DEFAULT_LOCATION})
        if loc != (m.location or DEFAULT_LOCATION):
            m.location = loc
            other = True
    if other and not s["touch_on_minor_fields"]:
        other = False
    return profile, other


def _tag_names(tags):
    """The ``tags`` of a member body: an array of strings (the spec's
    ``Add_List_Members_1``); objects are refused as Mailchimp refuses them."""
    if tags is None:
        return []
    if not isinstance(tags, list):
        raise schema_error([{"field": "tags", "message": "Schema describes array, "
                             + type(tags).__name__ + " found instead"}])
    bad = [{"field": f"tags.item:{n}", "message": "Schema describes string, "
            + ("object" if isinstance(t, dict) else type(t).__name__) + " found instead"}
           for n, t in enumerate(tags) if not isinstance(t, str)]
    if bad:
        raise schema_error(bad)
    return [t.strip() for t in tags if t.strip()]


def _add_tags(ctx, lst, m, names):
    now = ctx.store.clock.now()
    changed = False
    for n in names:
        if n not in m.tags:
            ctx.store.tag_id(lst, n)
            m.tags[n] = now
            changed = True
    return changed


def _create(ctx, lst, email, status, body, skip, tags=None):
    store = ctx.store
    m = Member()
    m.email = email
    m.id = subscriber_hash(email)
    m.unique_email_id = hex_id(10)
    m.contact_id = hex_id(32)
    m.web_id = store.new_web_id()
    m.status = status
    m.merge = {mf.tag: "" for mf in lst.merge_fields.values()}
    now = store.clock.now()
    _apply_fields(ctx, lst, m, body, creating=True, skip=skip)
    if status == "subscribed":
        m.ip_opt = m.ip_opt or ctx.ip
        m.timestamp_opt = m.timestamp_opt or now
    if status == "cleaned":
        m.compliance_locked = True
    if status == "unsubscribed":
        m.unsubscribe_origin = ctx.source
        m.unsubscribe_reason = "N/A (Unsubscribed by an admin)"
    if ctx.source != "api":
        m.source = "Hosted Signup Form" if ctx.source == "user" else "Admin Add"
    _add_tags(ctx, lst, m, tags or [])
    m.last_changed = now
    lst.note_status(status, now)
    lst.seq += 1
    m.seq = lst.seq
    lst.members[m.id] = m
    lst.by_contact[m.contact_id] = m
    lst.by_unique[m.unique_email_id] = m
    lst.touch()
    s = ctx.settings
    if status == "subscribed" or (status == "pending" and s["fire_on_pending_create"]):
        ctx.emit(lst, "subscribe", m)
    elif status in ("unsubscribed", "transactional") and s["fire_on_unsubscribed_create"]:
        ctx.emit(lst, "unsubscribe", m, action="unsub", reason="manual")
    return m


def _check_email_change(ctx, lst, m, new_email):
    new_email = validate_email(ctx.settings, new_email)
    if subscriber_hash(new_email) in lst.members:
        raise member_exists(new_email)
    if m.status == "cleaned":
        raise invalid('This member\'s status is "cleaned." You can only update email addresses '
                      'for members with a status of "subscribed."')
    if new_email.lower() in lst.forgotten:
        raise forgotten_error(new_email)
    return new_email


def _check_transition(ctx, m, new):
    if new == m.status:
        return
    if new == "subscribed" and m.compliance_locked:
        raise compliance_error(m.email)
    if new == "pending" and m.status == "cleaned" and not ctx.settings["cleaned_to_pending_allowed"]:
        raise compliance_error(m.email)


def _change_email(ctx, lst, m, new_email):
    new_email = _check_email_change(ctx, lst, m, new_email)
    h = subscriber_hash(new_email)
    old = m.email
    del lst.members[m.id]
    del lst.by_unique[m.unique_email_id]
    m.id, m.email, m.unique_email_id = h, new_email, hex_id(10)
    lst.members[h] = m
    lst.by_unique[m.unique_email_id] = m
    ctx.emit(lst, "upemail", m, old_email=old)
    return True


def _require_body(body):
    if not isinstance(body, dict):
        raise schema_error([{"field": "", "message": "Schema describes object, "
                             + ("NULL" if body is None else type(body).__name__) + " found instead"}])


def _bump(ctx, lst, m, profile_changed, status_changed, other_changed):
    if profile_changed or status_changed or other_changed:
        m.last_changed = ctx.store.clock.now()
        lst.touch()
    if profile_changed and not status_changed:
        ctx.emit(lst, "profile", m)


def add_member(ctx, lst, body, skip=False):
    """POST /lists/{id}/members."""
    _require_body(body)
    missing = [k for k in ("email_address", "status") if not body.get(k)]
    if missing:
        errs = [{"field": "", "message": "Required fields were not provided: " + ", ".join(missing)}]
        errs += [{"field": k, "message": "Schema describes string, NULL found instead"} for k in missing]
        raise schema_error(errs)
    _check_status(body["status"], STATUSES)
    email = validate_email(ctx.settings, body["email_address"])
    tags = _tag_names(body.get("tags"))
    if email.lower() in lst.forgotten:
        raise forgotten_error(email)
    m = lst.members.get(subscriber_hash(email))
    if m is None:
        return _create(ctx, lst, email, body["status"], body, skip, tags)
    if m.status != "archived":
        raise member_exists(email)
    # an archived member is re-added: new status, tags kept (§5.3)
    _check_transition(ctx, m, body["status"])
    merged_fields(ctx.settings, lst, m, body.get("merge_fields"), True, skip)
    profile, other = _apply_fields(ctx, lst, m, body, creating=True, skip=skip)
    changed = _set_status(ctx, lst, m, body["status"], readd=True)
    other = _add_tags(ctx, lst, m, tags) or other
    _bump(ctx, lst, m, profile, changed, other)
    return m


def put_member(ctx, lst, key, body, skip=False):
    """PUT /lists/{id}/members/{hash}: add-or-update (§5.2)."""
    _require_body(body)
    m = lst.find_member(key)
    if m is None:
        email = body.get("email_address")
        if not email:
            raise schema_error([{"field": "", "message": "Required fields were not provided: email_address"},
                                {"field": "email_address",
                                 "message": "Schema describes string, NULL found instead"}])
        email = validate_email(ctx.settings, email)
        if email.lower() in lst.forgotten:
            raise forgotten_error(email)
        if subscriber_hash(email) in lst.members:
            raise member_exists(email)
        status = body.get("status_if_new") or body.get("status")
        if not status:
            raise schema_error([{"field": "", "message": "Required fields were not provided: status_if_new"},
                                {"field": "status_if_new",
                                 "message": "Schema describes string, NULL found instead"}])
        _check_status(status, STATUSES, "status_if_new" if body.get("status_if_new") else "status")
        # PUT has no `tags` in the spec, but they are reported to apply when the PUT
        # creates the member (and to be ignored otherwise): put_tags_on_create
        tags = _tag_names(body.get("tags")) if ctx.settings["put_tags_on_create"] else []
        return _create(ctx, lst, email, status, body, skip, tags)
    return _update(ctx, lst, m, body, skip, STATUSES, put=True)


def patch_member(ctx, lst, key, body, skip=False):
    """PATCH /lists/{id}/members/{hash}: update only."""
    _require_body(body)
    m = lst.find_member(key)
    if m is None:
        raise not_found()
    return _update(ctx, lst, m, body, skip, PATCH_STATUSES, put=False)


def _update(ctx, lst, m, body, skip, allowed, put):
    status = body.get("status")
    if status:
        _check_status(status, allowed)
    elif m.status == "archived" and put:
        mode = ctx.settings["unarchive_without_status"]
        if mode == "restore":
            status = m.prev_status or "subscribed"
        elif mode == "status_if_new" and body.get("status_if_new"):
            status = body["status_if_new"]
    # check everything that can fail before changing anything: Mailchimp is atomic per call
    if status:
        _check_transition(ctx, m, status)
    new_email = body.get("email_address")
    if new_email and str(new_email).strip().lower() != m.email.lower():
        _check_email_change(ctx, lst, m, new_email)
    else:
        new_email = None
    merged_fields(ctx.settings, lst, m, body.get("merge_fields"), False, skip)
    _new_interests(ctx.settings, lst, m, body.get("interests"))
    email_changed = _change_email(ctx, lst, m, new_email) if new_email else False
    profile, other = _apply_fields(ctx, lst, m, body, creating=False, skip=skip)
    changed = _set_status(ctx, lst, m, status) if status else False
    _bump(ctx, lst, m, profile, changed, other or email_changed)
    return m


def archive_member(ctx, lst, key):
    """DELETE /lists/{id}/members/{hash}: archive, with the 405 rules."""
    m = lst.find_member(key)
    if m is None:
        raise not_found()
    if m.status in ("archived", "pending", "cleaned"):
        raise ApiError(405, "Method Not Allowed", "This list member cannot be removed. Can not archive "
                       "a contact that is bounced, pending or archived", headers={"Allow": "GET, PUT"})
    m.prev_status = m.status
    m.status = "archived"
    m.last_changed = ctx.store.clock.now()
    lst.touch()
    if ctx.settings["fire_on_archive"]:
        ctx.emit(lst, "unsubscribe", m, action="delete", reason="manual")


def delete_permanent(ctx, lst, key):
    """POST …/actions/delete-permanent: forget the member (§5.5)."""
    m = lst.find_member(key)
    if m is None:
        raise not_found()
    if ctx.settings["fire_on_delete_permanent"]:
        ctx.emit(lst, "unsubscribe", m, action="delete", reason="manual")
    del lst.members[m.id]
    lst.by_contact.pop(m.contact_id, None)
    lst.by_unique.pop(m.unique_email_id, None)
    lst.forgotten.add(m.email.lower())
    lst.touch()


def update_tags(ctx, lst, key, body):
    """POST …/tags: activate/deactivate tags (§5.7)."""
    m = lst.find_member(key)
    if m is None:
        raise not_found()
    _require_body(body)
    tags = body.get("tags")
    if not isinstance(tags, list):
        raise schema_error([{"field": "", "message": "Required fields were not provided: tags"}])
    # the whole body is checked before anything changes (Member_Tag: name and status required)
    wanted, errors = [], []
    for n, t in enumerate(tags):
        if not isinstance(t, dict):
            errors.append({"field": f"tags.item:{n}", "message": "Schema describes object, "
                           + type(t).__name__ + " found instead"})
            continue
        missing = [k for k in ("name", "status") if not str(t.get(k) or "").strip()]
        if missing:
            errors.append({"field": f"tags.item:{n}", "message": "Required fields were not provided: "
                           + ", ".join(missing)})
        elif t["status"] not in ("active", "inactive"):
            errors.append({"field": f"tags.item:{n}.status",
                           "message": "Data presented is not one of the accepted values: inactive, active."})
        else:
            wanted.append((str(t["name"]).strip(), t["status"]))
    if errors:
        raise schema_error(errors)
    now = ctx.store.clock.now()
    changed = False
    for name, st in wanted:
        if st == "active" and name not in m.tags:
            ctx.store.tag_id(lst, name)
            m.tags[name] = now
            changed = True
        elif st == "inactive" and name in m.tags:
            del m.tags[name]
            changed = True
    if changed:
        m.last_changed = now
        lst.touch()
        if ctx.settings["fire_on_tags"]:
            ctx.emit(lst, "profile", m)


# --- simulated user/admin actions (control API) ---------------------------------

def user_unsubscribe(ctx, lst, email, reason="manual", campaign_id=None):
    m = lst.find_member(email)
    if m is None:
        raise not_found()
    _set_status(ctx, lst, m, "unsubscribed", reason=reason, campaign_id=campaign_id)
    if reason == "abuse":
        m.compliance_locked = True
    m.last_changed = ctx.store.clock.now()
    lst.touch()
    return m


def bounce(ctx, lst, email, reason="hard", campaign_id=None):
    m = lst.find_member(email)
    if m is None:
        raise not_found()
    _set_status(ctx, lst, m, "cleaned", reason=reason, campaign_id=campaign_id)
    m.last_changed = ctx.store.clock.now()
    lst.touch()
    return m


def confirm_pending(ctx, lst, email):
    m = lst.find_member(email)
    if m is None:
        raise not_found()
    if m.status != "pending":
        raise invalid(f"{m.email} is not pending.")
    m.compliance_locked = False  # the person re-confirmed (§5.4)
    _set_status(ctx, lst, m, "subscribed")
    m.ip_opt, m.timestamp_opt = ctx.ip, ctx.store.clock.now()
    m.last_changed = ctx.store.clock.now()
    lst.touch()
    return m


def user_signup(ctx, lst, email, merge_fields=None):
    """Hosted signup form: clears a tombstone and the compliance lock."""
    email = validate_email({"fake_email_patterns": []}, email)
    lst.forgotten.discard(email.lower())
    m = lst.members.get(subscriber_hash(email))
    body = {"merge_fields": merge_fields or {}}
    if m is None:
        return _create(ctx, lst, email, "subscribed", body, skip=True)
    m.compliance_locked = False
    profile, other = _apply_fields(ctx, lst, m, body, creating=False, skip=True)
    changed = _set_status(ctx, lst, m, "subscribed", readd=True)
    _bump(ctx, lst, m, profile, changed, other)
    return m


def admin_update(ctx, lst, email, fields):
    m = lst.find_member(email)
    if m is None:
        raise not_found()
    return _update(ctx, lst, m, fields, True, STATUSES, put=True)


# --- listing -------------------------------------------------------------------------

def _filter_key(settings, query):
    def one(name):
        v = query.get(name)
        return v[0] if v else None
    return tuple(one(n) for n in (
        "status", "since_last_changed", "before_last_changed", "since_timestamp_opt",
        "before_timestamp_opt", "unique_email_id", "vip_only", "email_type",
        "interest_category_id", "interest_ids", "interest_match", "sort_field", "sort_dir",
        "unsubscribed_since")) + (settings["archived_in_default_listing"], settings["since_inclusive"],
                                  settings["default_order"])


def _time_param(name, value):
    try:
        return parse_iso(value)
    except ValueError:
        raise schema_error([{"field": name, "message": "Please provide a valid date"}]) from None


def _time_cond(attr, t, lower, inclusive):
    """Bound on a timestamp attribute; ``lower`` means since_ (>), else before_ (<)."""
    if lower:
        if inclusive:
            return lambda m: (getattr(m, attr) or 0) >= t
        return lambda m: (getattr(m, attr) or 0) > t
    if inclusive:
        return lambda m: getattr(m, attr) is not None and getattr(m, attr) <= t
    return lambda m: getattr(m, attr) is not None and getattr(m, attr) < t


def _select(store, lst, fk):
    (status, since_lc, before_lc, since_opt, before_opt, unique, vip_only, email_type, cat_id,
     interest_ids, match, sort_field, sort_dir, unsub_since, archived_default, inclusive, order) = fk
    if status:
        _check_status(status, STATUSES + ("archived",))
    if sort_field:
        _check_status(sort_field, ("timestamp_opt", "timestamp_signup", "last_changed"), "sort_field")
    # The time bounds apart: they are applied first (an incremental fetch
    # keeps few members after them).
    bounds, conds = [], []
    if status:
        conds.append(lambda m: m.status == status)
    elif not archived_default:
        conds.append(lambda m: m.status != "archived")
    for name, value, attr, lower in (("since_last_changed", since_lc, "last_changed", True),
                                     ("before_last_changed", before_lc, "last_changed", False),
                                     ("since_timestamp_opt", since_opt, "timestamp_opt", True),
                                     ("before_timestamp_opt", before_opt, "timestamp_opt", False),
                                     ("unsubscribed_since", unsub_since, "last_changed", True)):
        if value:
            bounds.append(_time_cond(attr, _time_param(name, value), lower, inclusive))
    if unsub_since:
        conds.append(lambda m: m.status == "unsubscribed")
    if unique:
        conds.append(lambda m: m.unique_email_id == unique)
    if vip_only and as_bool(vip_only):
        conds.append(lambda m: m.vip)
    if email_type:
        conds.append(lambda m: m.email_type == email_type)
    if cat_id and interest_ids:
        ids = {x for x in interest_ids.split(",") if x}
        match = (match or "any").lower()
        if match == "all":
            conds.append(lambda m: ids <= m.interests)
        elif match == "none":
            conds.append(lambda m: not (ids & m.interests))
        else:
            conds.append(lambda m: bool(ids & m.interests))
    if unique and not bounds and not conds[1:]:
        cand = [lst.by_unique[unique]] if unique in lst.by_unique else []
    else:
        cand = lst.members.values()
    # One pass per condition: a generator of every condition per member
    # made each listing of a large list cost a tenth of a second.
    rows = list(cand)
    for cond in bounds + conds:
        rows = [m for m in rows if cond(m)]
    if order == "email" and not sort_field:
        rows.sort(key=lambda m: m.email.lower())
    else:
        rows.sort(key=lambda m: m.seq)  # renames re-insert into the dict; seq keeps creation order
    if sort_field:
        rows.sort(key=lambda m: getattr(m, sort_field) or 0,
                  reverse=(sort_dir or "ASC").upper() == "DESC")
    return rows


def paging(query, default_count=10):
    try:
        count = int(query.get("count", [default_count])[0])
        offset = int(query.get("offset", [0])[0])
    except ValueError:
        raise schema_error([{"field": "count", "message": "Schema describes integer"}]) from None
    if count > 1000 or count < 0 or offset < 0:
        raise schema_error([{"field": "count",
                             "message": "Must be less than or equal to 1000" if count > 1000
                             else "Must be greater than or equal to 0"}])
    return count, offset


def list_members(store, lst, query):
    """GET /lists/{id}/members with filters, paging and a cached selection."""
    count, offset = paging(query)
    fk = _filter_key(store.settings, query)
    ck = (lst.id, lst.version, fk)
    rows = store.listing_cache.get(ck)
    if rows is None:
        rows = _select(store, lst, fk)
        if len(store.listing_cache) > 16:
            store.listing_cache.clear()
        store.listing_cache[ck] = rows
    page = rows[offset:offset + count]
    f = csv_param(query, "fields")
    tree = field_tree(f) if f else None
    out = {}
    if tree is None or "members" in tree:
        sub = tree.get("members") if tree else True
        if sub is True:
            out["members"] = [member_json(store, lst, m) for m in page]
        else:
            keys = [k for k in MEMBER_KEYS if k in sub]
            nested = any(v is not True for v in sub.values())
            ms = [member_json(store, lst, m, keys) for m in page]
            out["members"] = [keep(x, sub) for x in ms] if nested else ms
    for k in ("list_id", "total_items", "_links"):
        if tree is None or k in tree:
            out[k] = (lst.id if k == "list_id" else len(rows) if k == "total_items"
                      else links.members_collection(store.link_base, lst.id))
    x = csv_param(query, "exclude_fields")
    return drop(out, field_tree(x)) if x else out
