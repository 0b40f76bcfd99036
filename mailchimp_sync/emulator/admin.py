"""Server side of the control API (``/_emulator/...``), not part of Mailchimp.

Each handler takes the Emulator and the parsed JSON body / query and returns
``(status, json)``.  Simulated user/admin actions go through the same member
logic as API calls, with source ``user`` or ``admin``, so they fire the
webhooks a real action would (§8.4, §9).
"""

import random
import re

from . import members as mem
from .state import Member
from .util import ApiError, as_bool, hex_id, iso, parse_iso, subscriber_hash

KEY_RE = re.compile(r"^[0-9a-f]{32}-us\d+$")
FIRST = ("Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas")
LAST = ("Meyer", "Dubois", "Rossi", "Garcia", "Novak", "Jansen", "Berg", "Silva", "Kowalski", "Moreau")
DEFAULT_MIX = {"subscribed": 0.85, "unsubscribed": 0.08, "cleaned": 0.03, "pending": 0.02,
               "archived": 0.02}


def _seed_member(emu, lst, spec, now, rng):
    store = emu.store
    email = spec["email_address"].strip()
    h = subscriber_hash(email)
    m = lst.members.get(h)
    new = m is None
    if new:
        m = Member()
        m.email, m.id = email, h
        m.unique_email_id = spec.get("unique_email_id") or hex_id(10, rng)
        m.contact_id = hex_id(32, rng)
        m.web_id = store.new_web_id()
        m.merge = {mf.tag: "" for mf in lst.merge_fields.values()}
        m.source = "Import"
    status = spec.get("status", "subscribed")
    if status == "archived":
        m.prev_status = spec.get("prev_status", "subscribed")
    m.status = status
    # seeded values obey the merge-field rules too, so a test cannot seed what
    # Mailchimp would never hold; required fields are not enforced (an import)
    m.merge = mem.merged_fields(store.settings, lst, m, spec.get("merge_fields"), False, True)
    m.full_name = mem._full_name(m)
    names = {it.name: it.id for cat in lst.categories.values() for it in cat.interests.values()}
    for k, on in (spec.get("interests") or {}).items():
        iid = k if lst.interest(k) else names.get(k)
        if iid is None:
            raise ApiError(400, "Invalid Resource", f"unknown interest {k!r}")
        (m.interests.add if as_bool(on) else m.interests.discard)(iid)
    for t in spec.get("tags") or []:
        store.tag_id(lst, t)
        m.tags[t] = now
    for key in ("language", "email_type", "ip_signup", "ip_opt"):
        if key in spec:
            setattr(m, key, spec[key])
    if "vip" in spec:
        m.vip = as_bool(spec["vip"])
    m.last_changed = int(parse_iso(spec["last_changed"])) if spec.get("last_changed") else now
    if status == "subscribed" and m.timestamp_opt is None:
        m.timestamp_opt = m.last_changed
    if status == "cleaned":
        m.compliance_locked = True
    if status == "unsubscribed":
        m.unsubscribe_origin = spec.get("unsubscribe_origin", "admin")
        m.compliance_locked = m.unsubscribe_origin == "user"
        m.unsubscribe_reason = "N/A (Unsubscribed by an admin)"
    if "compliance_locked" in spec:
        m.compliance_locked = as_bool(spec["compliance_locked"])
    lst.note_status(status, m.timestamp_opt if status == "subscribed" else m.last_changed)
    if new:
        lst.seq += 1
        m.seq = lst.seq
        lst.members[h] = m
        lst.by_contact[m.contact_id] = m
        lst.by_unique[m.unique_email_id] = m
    return m


def _generate(emu, lst, n, mix, seed, domain, now):
    """N synthetic members in one pass: no validation, no events, no copies."""
    store = emu.store
    rng = random.Random(seed)
    statuses, weights = zip(*(mix or DEFAULT_MIX).items(), strict=True)
    cum, acc = [], 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    total = acc
    tags = list(lst.merge_fields.values())
    tag_set = {mf.tag for mf in tags}
    start = now - n
    base = len(lst.members)
    members, by_contact, by_unique = lst.members, lst.by_contact, lst.by_unique
    getbits = rng.getrandbits
    last_sub = last_unsub = None  # last_changed grows with i: the last one seen is the latest
    for i in range(n):
        idx = base + i
        email = f"member{idx:06d}@{domain}"
        m = Member()
        m.email = email
        m.id = subscriber_hash(email)
        m.unique_email_id = f"{getbits(40):010x}"
        m.contact_id = f"{getbits(128):032x}"
        store.next_web_id += 1
        m.web_id = store.next_web_id
        r = rng.random() * total
        k = 0
        while cum[k] < r:
            k += 1
        st = statuses[k]
        fname, lname = FIRST[idx % 10], LAST[(idx // 10) % 10]
        merge = dict.fromkeys(tag_set, "")
        if "FNAME" in tag_set:
            merge["FNAME"] = fname
        if "LNAME" in tag_set:
            merge["LNAME"] = lname
        m.merge = merge
        m.full_name = f"{fname} {lname}"
        m.source = "Import"
        lc = start + i
        m.last_changed = lc
        if st == "archived":
            m.prev_status = "subscribed"
        elif st == "subscribed":
            m.timestamp_opt = lc
        elif st == "cleaned":
            m.compliance_locked = True
        elif st == "unsubscribed":
            m.unsubscribe_origin = "user"
            m.compliance_locked = True
            m.unsubscribe_reason = "N/A"
            last_unsub = lc
        if st == "subscribed":
            last_sub = lc
        m.status = st
        lst.seq += 1
        m.seq = lst.seq
        members[m.id] = m
        by_contact[m.contact_id] = m
        by_unique[m.unique_email_id] = m
    lst.note_status("subscribed", last_sub)
    lst.note_status("unsubscribed", last_unsub)
    lst.touch()


def seed(emu, body):
    """Create lists with merge fields, interests and members; returns their ids."""
    store = emu.store
    out = {"lists": []}
    with store.lock:
        now = store.clock.now()
        for spec in body.get("lists") or []:
            lst = store.lists.get(spec.get("id") or "")
            if lst is None:
                lst = store.create_list(spec.get("name") or "Newsletter", spec.get("id"),
                                        spec.get("merge_fields"),
                                        {k: v for k, v in spec.items() if k in (
                                            "double_optin", "permission_reminder", "contact",
                                            "campaign_defaults", "email_type_option",
                                            "marketing_permissions")})
                added = spec.get("add_merge_fields") or []
            else:
                added = (spec.get("merge_fields") or []) + (spec.get("add_merge_fields") or [])
            # ``add_merge_fields`` come on top of the defaults; an existing list
            # gains the fields of either key that it does not have yet
            for mf_spec in added:
                tag = str(mf_spec if isinstance(mf_spec, str) else mf_spec.get("tag") or "").upper()
                if not tag or lst.merge_by_tag(tag) is None:
                    store.add_merge_field(lst, mf_spec)
            info = {"id": lst.id, "name": lst.name, "merge_fields": {}, "categories": {},
                    "interests": {}}
            for c in spec.get("interest_categories") or []:
                cat = next((x for x in lst.categories.values() if x.title == c["title"]), None)
                if cat is None:
                    cat = store.add_category(lst, c["title"], c.get("type", "checkboxes"),
                                             c.get("display_order"))
                info["categories"][cat.title] = cat.id
                for it in c.get("interests") or []:
                    name = it["name"] if isinstance(it, dict) else it
                    obj = next((x for x in cat.interests.values() if x.name == name), None)
                    if obj is None:
                        obj = store.add_interest(lst, cat, name)
                    info["interests"][name] = obj.id
            rng = random.Random(spec.get("seed", 42))
            for ms in spec.get("members") or []:
                _seed_member(emu, lst, ms, now, rng)
            if spec.get("generate_members"):
                _generate(emu, lst, int(spec["generate_members"]), spec.get("status_mix"),
                          spec.get("seed", 42), spec.get("email_domain", "example.net"), now)
            for webhook in spec.get("webhooks") or []:
                from .api import _flags
                from .state import Webhook
                wh = Webhook(hex_id(10), webhook["url"], _flags(webhook.get("events"), Webhook.EVENTS),
                             _flags(webhook.get("sources"), Webhook.SOURCES))
                lst.webhooks[wh.id] = wh
            lst.touch()
            info["merge_fields"] = {mf.tag: mf.merge_id for mf in lst.merge_fields.values()}
            for cat in lst.categories.values():
                info["categories"][cat.title] = cat.id
                info["interests"].update({it.name: it.id for it in cat.interests.values()})
            info["member_count"] = len(lst.members)
            out["lists"].append(info)
    out["list_ids"] = [x["id"] for x in out["lists"]]
    return out


def state(emu, query):
    """Dump of everything, members with hidden fields (capped by ``limit``)."""
    store = emu.store
    list_id = query.get("list_id", [None])[0]
    limit = int(query.get("limit", ["10000"])[0])
    with store.lock:
        lists = []
        for lst in store.lists.values():
            if list_id and lst.id != list_id:
                continue
            d = {"id": lst.id, "name": lst.name, "web_id": lst.web_id,
                 "merge_fields": [mf.to_json(lst.id, store.link_base) for mf in lst.merge_fields.values()],
                 "interest_categories": [{"id": c.id, "title": c.title, "type": c.type,
                                          "interests": [{"id": i.id, "name": i.name}
                                                        for i in c.interests.values()]}
                                         for c in lst.categories.values()],
                 "webhooks": [w.to_json(lst.id, store.link_base) for w in lst.webhooks.values()],
                 "tags": dict(lst.tag_ids), "forgotten": sorted(lst.forgotten),
                 "member_count": len(lst.members)}
            ms = sorted(lst.members.values(), key=lambda m: m.seq)[:limit]
            d["members"] = [mem.hidden_json(store, lst, m) for m in ms]
            lists.append(d)
        batches = [emu.batches.to_json(b) for b in store.batches.values()]
        bws = [dict(b) for b in store.batch_webhooks.values()]
        return {"now": iso(store.clock.now()), "settings": store.settings, "lists": lists,
                "batches": batches, "batch_webhooks": bws, "api_keys": sorted(emu.keys)}


def member(emu, query):
    store = emu.store
    with store.lock:
        lst = store.get_list(query.get("list_id", [""])[0])
        m = lst.find_member(query.get("email", [""])[0])
        if m is None:
            email = query.get("email", [""])[0]
            if email.lower() in lst.forgotten:
                return {"email_address": email, "status": "forgotten", "forgotten": True}
            raise ApiError(404, "Resource Not Found", "The requested resource could not be found.")
        return mem.hidden_json(store, lst, m)


def event(emu, name, body):
    """Simulated person/admin action, with its webhooks."""
    store = emu.store
    sources = {"user-unsubscribe": "user", "bounce": store.settings["bounce_source"],
               "confirm-pending": "user", "user-signup": "user", "admin-update": "admin",
               "admin-archive": "admin", "campaign": "admin"}
    if name not in sources:
        raise ApiError(404, "Resource Not Found", f"unknown event {name}")
    ctx = mem.Ctx(store, sources[name], body.get("ip", "198.51.100.7"))
    with store.lock:
        lst = store.get_list(body.get("list_id", ""))
        email = body.get("email", "")
        if name == "user-unsubscribe":
            m = mem.user_unsubscribe(ctx, lst, email, body.get("reason", "manual"), body.get("campaign_id"))
        elif name == "bounce":
            m = mem.bounce(ctx, lst, email, body.get("reason", "hard"), body.get("campaign_id"))
        elif name == "confirm-pending":
            m = mem.confirm_pending(ctx, lst, email)
        elif name == "user-signup":
            m = mem.user_signup(ctx, lst, email, body.get("merge_fields"))
        elif name == "admin-update":
            m = mem.admin_update(ctx, lst, email, body.get("fields") or {})
        elif name == "admin-archive":
            m = lst.find_member(email)
            if m is None:
                raise ApiError(404, "Resource Not Found", "The requested resource could not be found.")
            if m.status != "archived":
                m.prev_status, m.status = m.status, "archived"
                m.last_changed = store.clock.now()
                lst.touch()
                if store.settings["fire_on_archive"]:
                    ctx.emit(lst, "unsubscribe", m, action="delete", reason="manual")
        else:  # campaign
            m = None
            ctx.emit(lst, "campaign", None, id=body.get("campaign_id") or hex_id(10),
                     subject=body.get("subject", ""), status=body.get("status", "sent"))
        records = emu.dispatcher.queue_events(ctx.events)
        out = mem.hidden_json(store, lst, m) if m is not None else {}
    emu.dispatcher.settle(records)
    out["webhook_deliveries"] = [r["id"] for r in records]
    return out
