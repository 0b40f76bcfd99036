"""The Mailchimp API surface: routing and handlers for everything under /3.0.

``Api.dispatch`` is the single entry point: the HTTP server calls it for
each request and the batch runner calls it for each operation, so a batch
operation behaves exactly like the equivalent single call.
"""

import json
import re
import uuid
from urllib.parse import parse_qs, unquote

from . import links, mergefields, webhooks
from . import members as mem
from .members import Ctx
from .state import Webhook
from .util import (
    ERR_INVALID_SCHEMA,
    ApiError,
    as_bool,
    hex_id,
    invalid,
    not_found,
    project,
    schema_error,
)


class Response:
    __slots__ = ("body", "error", "headers", "status")

    def __init__(self, status, body=None, headers=None, error=False):
        self.status, self.body, self.headers, self.error = status, body, headers or {}, error


ROUTES = []


def route(pattern, *methods, prelock=None):
    """Register a handler for a path pattern (``{name}`` segments) and methods."""
    rx = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "/?$")

    def deco(fn):
        for m in methods:
            ROUTES.append((rx, m, fn, prelock))
        return fn
    return deco


class Request:
    """One API call, from HTTP or from a batch operation."""

    def __init__(self, api, method, path, query, raw_body, ip, source, in_batch=False):
        self.api = api
        self.store = api.store
        self.method = method
        self.path = path
        self.query = query
        self.raw_body = raw_body
        self.ip = ip
        self.source = source
        self.in_batch = in_batch
        self.params = {}
        self.ctx = Ctx(api.store, source, ip)
        self.pre = None  # result of the handler's prelock step

    def json(self):
        raw = self.raw_body
        if raw is None or (isinstance(raw, (bytes, str)) and not raw.strip()):
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, self.store.settings["json_parse_error_title"],
                           "We encountered an unspecified JSON parsing error.") from None

    def obj(self):
        body = self.json()
        if not isinstance(body, dict):
            raise schema_error([{"field": "", "message": "Schema describes object, "
                                 + ("NULL" if body is None else "array" if isinstance(body, list)
                                    else type(body).__name__) + " found instead"}])
        return body

    def skip_merge(self):
        return as_bool(self.query.get("skip_merge_validation", ["false"])[0])

    def lst(self):
        return self.store.get_list(self.params["list_id"])


def parse_query(qs):
    return parse_qs(qs, keep_blank_values=True)


class Api:
    """Routes and runs API calls against one Store, queuing webhooks it raises."""

    def __init__(self, store, dispatcher, batches=None):
        self.store = store
        self.dispatcher = dispatcher
        self.batches = batches

    def dispatch(self, method, path, query, raw_body, ip="127.0.0.1", source="api",
                 in_batch=False):
        """Run one call.  ``path`` is relative to /3.0; returns a ``Response``."""
        method = method.upper()
        allowed = []
        req = None
        for rx, m, fn, prelock in ROUTES:
            mt = rx.match(path)
            if not mt:
                continue
            if m != method:
                allowed.append(m)
                continue
            req = Request(self, method, path, query, raw_body, ip, source, in_batch)
            req.params = {k: unquote(v) for k, v in mt.groupdict().items()}
            try:
                if prelock:
                    req.pre = prelock(req)
                with self.store.lock:
                    out = fn(req)
                    records = self.dispatcher.queue_events(req.ctx.events)
                    records += getattr(req, "extra_records", [])
            except ApiError as e:
                return self.error(e, in_batch)
            self.dispatcher.settle(records)
            if out is None:
                return Response(204)
            if isinstance(out, Response):
                return out
            return Response(200, project(out, query) if method == "GET" or "fields" in query else out)
        if allowed:
            return self.error(ApiError(405, "Method Not Allowed",
                                       "The requested method and resource are not compatible. See the "
                                       "Allow header for this resource's available methods.",
                                       headers={"Allow": ", ".join(sorted(set(allowed)))}), in_batch)
        return self.error(not_found(), in_batch)

    def error(self, e, in_batch=False):
        s = self.store.settings
        rid = "" if in_batch else str(uuid.uuid4())
        body = e.body(s, rid, s["batch_error_type_url"] if in_batch else None)
        headers = dict(e.headers)
        if rid:
            headers["X-Request-Id"] = rid
        return Response(e.status, body, headers, error=True)


def collection(req, key, items, coll_links, extra=None, default_count=10):
    """A collection envelope: one page of ``items``, parent ids, total and links."""
    count, offset = mem.paging(req.query, default_count)
    out = {key: items[offset:offset + count]}
    out.update(extra or {})
    out["total_items"] = len(items)
    out["_links"] = coll_links
    return out


# --- ping and lists ---------------------------------------------------------

@route("/ping", "GET")
def ping(req):
    return {"health_status": "Everything's Chimpy!"}


@route("/lists", "GET")
def get_lists(req):
    inc = as_bool(req.query.get("include_total_contacts", ["false"])[0])
    lists = list(req.store.lists.values())
    email = req.query.get("email", [None])[0]
    if email:
        h = mem.subscriber_hash(email)
        lists = [x for x in lists if h in x.members]
    items = [x.to_json(req.store, inc) for x in lists]
    out = collection(req, "lists", items, links.collection(req.store.link_base, "/lists", "Lists", "/", "Root"))
    out["constraints"] = {"may_create": True, "max_instances": 100,
                          "current_total_instances": len(req.store.lists)}
    return out


@route("/lists", "POST")
def create_list(req):
    body = req.obj()
    if not body.get("name"):
        raise schema_error([{"field": "name", "message": "This value should not be blank."}])
    props = {k: v for k, v in body.items() if k != "name"}
    return req.store.create_list(body["name"], props=props).to_json(req.store)


@route("/lists/{list_id}", "GET")
def get_list(req):
    inc = as_bool(req.query.get("include_total_contacts", ["false"])[0])
    return req.lst().to_json(req.store, inc)


@route("/lists/{list_id}", "PATCH")
def update_list(req):
    lst = req.lst()
    body = req.obj()
    if body.get("name"):
        lst.name = body["name"]
    lst.props.update({k: v for k, v in body.items() if k != "name"})
    return lst.to_json(req.store)


@route("/lists/{list_id}", "DELETE")
def delete_list(req):
    req.lst()
    del req.store.lists[req.params["list_id"]]


# --- members ---------------------------------------------------------------

def _member_out(req, lst, m):
    return mem.member_json(req.store, lst, m)


@route("/lists/{list_id}/members", "GET")
def list_members(req):
    out = mem.list_members(req.store, req.lst(), req.query)
    return Response(200, out)  # fields already applied (fast path)


@route("/lists/{list_id}/members", "POST")
def add_member(req):
    lst = req.lst()
    m = mem.add_member(req.ctx, lst, req.obj(), req.skip_merge())
    return _member_out(req, lst, m)


@route("/lists/{list_id}/members/{hash}", "GET")
def get_member(req):
    lst = req.lst()
    m = lst.find_member(req.params["hash"])
    if m is None:
        raise not_found()
    return Response(200, mem.member_response(req.store, lst, m, req.query))


@route("/lists/{list_id}/members/{hash}", "PUT")
def put_member(req):
    lst = req.lst()
    m = mem.put_member(req.ctx, lst, req.params["hash"], req.obj(), req.skip_merge())
    return _member_out(req, lst, m)


@route("/lists/{list_id}/members/{hash}", "PATCH")
def patch_member(req):
    lst = req.lst()
    m = mem.patch_member(req.ctx, lst, req.params["hash"], req.obj(), req.skip_merge())
    return _member_out(req, lst, m)


@route("/lists/{list_id}/members/{hash}", "DELETE")
def delete_member(req):
    mem.archive_member(req.ctx, req.lst(), req.params["hash"])


@route("/lists/{list_id}/members/{hash}/actions/delete-permanent", "POST")
def delete_member_permanent(req):
    mem.delete_permanent(req.ctx, req.lst(), req.params["hash"])


@route("/lists/{list_id}/members/{hash}/tags", "POST")
def post_tags(req):
    mem.update_tags(req.ctx, req.lst(), req.params["hash"], req.json())


@route("/lists/{list_id}/members/{hash}/tags", "GET")
def get_tags(req):
    lst = req.lst()
    m = lst.find_member(req.params["hash"])
    if m is None:
        raise not_found()
    from .util import iso
    items = [{"id": lst.tag_ids.get(n, 0), "name": n, "date_added": iso(t)}
             for n, t in sorted(m.tags.items())]
    return collection(req, "tags", items, links.member_tags_collection(req.store.link_base, lst.id, m.id))


# --- merge fields -------------------------------------------------------------

def _merge_field(req):
    lst = req.lst()
    try:
        mf = lst.merge_fields.get(int(req.params["merge_id"]))
    except ValueError:
        mf = None
    if mf is None:
        raise not_found()
    return lst, mf


@route("/lists/{list_id}/merge-fields", "GET")
def list_merge_fields(req):
    lst = req.lst()
    items = [mf.to_json(lst.id, req.store.link_base) for mf in lst.merge_fields.values()]
    t = req.query.get("type", [None])[0]
    if t:
        items = [x for x in items if x["type"] == t]
    req_only = req.query.get("required", [None])[0]
    if req_only is not None:
        items = [x for x in items if x["required"] == as_bool(req_only)]
    return collection(req, "merge_fields", items,
                      links.collection(req.store.link_base, f"/lists/{lst.id}/merge-fields", "Lists/MergeFields",
                                       f"/lists/{lst.id}", "Lists"), {"list_id": lst.id})


@route("/lists/{list_id}/merge-fields", "POST")
def add_merge_field(req):
    lst = req.lst()
    body = req.obj()
    missing = [k for k in ("name", "type") if not body.get(k)]
    if missing:
        raise schema_error([{"field": "", "message": "Required fields were not provided: "
                             + ", ".join(missing)}])
    mf = req.store.add_merge_field(lst, body)
    return mf.to_json(lst.id, req.store.link_base)


@route("/lists/{list_id}/merge-fields/{merge_id}", "GET")
def get_merge_field(req):
    lst, mf = _merge_field(req)
    return mf.to_json(lst.id, req.store.link_base)


@route("/lists/{list_id}/merge-fields/{merge_id}", "PATCH")
def update_merge_field(req):
    lst, mf = _merge_field(req)
    body = req.obj()
    # the type is read-only (the spec's PATCH schema has none); options follow it
    options = mergefields.clean_options(mf.type, body.get("options"), mf.options)
    new_tag = str(body.get("tag") or "").upper()[:10]
    if new_tag and new_tag != mf.tag and lst.merge_by_tag(new_tag):
        raise invalid(f'A Merge Field with the tag "{new_tag}" already exists for this list.')
    for k in ("name", "required", "default_value", "public", "display_order", "help_text"):
        if k in body:
            setattr(mf, k, as_bool(body[k]) if k in ("required", "public") else body[k])
    mf.options = options
    if new_tag and new_tag != mf.tag:
        old, mf.tag = mf.tag, new_tag
        for m in lst.members.values():
            m.merge[mf.tag] = m.merge.pop(old, "")
    lst.touch()
    return mf.to_json(lst.id, req.store.link_base)


@route("/lists/{list_id}/merge-fields/{merge_id}", "DELETE")
def delete_merge_field(req):
    lst, mf = _merge_field(req)
    del lst.merge_fields[mf.merge_id]
    for m in lst.members.values():
        m.merge.pop(mf.tag, None)
    lst.touch()


# --- interest categories and interests --------------------------------------------

CATEGORY_TYPES = ("checkboxes", "dropdown", "radio", "hidden")


def _cat_json(req, lst, cat):
    return {"list_id": lst.id, "id": cat.id, "title": cat.title, "display_order": cat.display_order,
            "type": cat.type, "_links": links.category_links(req.store.link_base, lst.id, cat.id)}


def _interest_json(req, lst, cat, it):
    count = sum(1 for m in lst.members.values() if it.id in m.interests and m.status == "subscribed")
    return {"category_id": cat.id, "list_id": lst.id, "id": it.id, "name": it.name,
            "subscriber_count": str(count), "display_order": it.display_order,
            "_links": links.interest_links(req.store.link_base, lst.id, cat.id, it.id)}


def _category(req):
    lst = req.lst()
    cat = lst.categories.get(req.params["category_id"])
    if cat is None:
        raise not_found()
    return lst, cat


@route("/lists/{list_id}/interest-categories", "GET")
def list_categories(req):
    lst = req.lst()
    items = [_cat_json(req, lst, c) for c in lst.categories.values()]
    t = req.query.get("type", [None])[0]
    if t:
        items = [x for x in items if x["type"] == t]
    return collection(req, "categories", items,
                      links.collection(req.store.link_base, f"/lists/{lst.id}/interest-categories",
                                       "Lists/InterestCategories", f"/lists/{lst.id}", "Lists"),
                      {"list_id": lst.id})


@route("/lists/{list_id}/interest-categories", "POST")
def add_category(req):
    lst = req.lst()
    body = req.obj()
    missing = [k for k in ("title", "type") if not body.get(k)]
    if missing:
        raise schema_error([{"field": "", "message": "Required fields were not provided: "
                             + ", ".join(missing)}])
    mem._check_status(body["type"], CATEGORY_TYPES, "type")
    if any(c.title == body["title"] for c in lst.categories.values()):
        raise invalid("Cannot add \"{}\" because it already exists on the list.".format(body["title"]))
    cat = req.store.add_category(lst, body["title"], body["type"], body.get("display_order"))
    return _cat_json(req, lst, cat)


@route("/lists/{list_id}/interest-categories/{category_id}", "GET")
def get_category(req):
    return _cat_json(req, *_category(req))


@route("/lists/{list_id}/interest-categories/{category_id}", "PATCH")
def update_category(req):
    lst, cat = _category(req)
    body = req.obj()
    if body.get("type"):
        mem._check_status(body["type"], CATEGORY_TYPES, "type")
        cat.type = body["type"]
    if body.get("title"):
        cat.title = body["title"]
    if "display_order" in body:
        cat.display_order = body["display_order"]
    lst.touch()
    return _cat_json(req, lst, cat)


@route("/lists/{list_id}/interest-categories/{category_id}", "DELETE")
def delete_category(req):
    lst, cat = _category(req)
    ids = set(cat.interests)
    del lst.categories[cat.id]
    for m in lst.members.values():
        if m.interests & ids:
            m.interests -= ids
    lst.touch()


@route("/lists/{list_id}/interest-categories/{category_id}/interests", "GET")
def list_interests(req):
    lst, cat = _category(req)
    items = [_interest_json(req, lst, cat, it) for it in cat.interests.values()]
    path = f"/lists/{lst.id}/interest-categories/{cat.id}"
    return collection(req, "interests", items,
                      links.collection(req.store.link_base, path + "/interests", "Lists/Interests", path,
                                       "Lists/InterestCategories"),
                      {"list_id": lst.id, "category_id": cat.id})


@route("/lists/{list_id}/interest-categories/{category_id}/interests", "POST")
def add_interest(req):
    lst, cat = _category(req)
    body = req.obj()
    if not body.get("name"):
        raise schema_error([{"field": "", "message": "Required fields were not provided: name"}])
    if any(it.name == body["name"] for it in cat.interests.values()):
        raise invalid("Cannot add \"{}\" because it already exists on the list.".format(body["name"]))
    it = req.store.add_interest(lst, cat, body["name"], body.get("display_order"))
    return _interest_json(req, lst, cat, it)


def _interest(req):
    lst, cat = _category(req)
    it = cat.interests.get(req.params["interest_id"])
    if it is None:
        raise not_found()
    return lst, cat, it


@route("/lists/{list_id}/interest-categories/{category_id}/interests/{interest_id}", "GET")
def get_interest(req):
    return _interest_json(req, *_interest(req))


@route("/lists/{list_id}/interest-categories/{category_id}/interests/{interest_id}", "PATCH")
def update_interest(req):
    lst, cat, it = _interest(req)
    body = req.obj()
    if body.get("name"):
        it.name = body["name"]
    if "display_order" in body:
        it.display_order = body["display_order"]
    lst.touch()
    return _interest_json(req, lst, cat, it)


@route("/lists/{list_id}/interest-categories/{category_id}/interests/{interest_id}", "DELETE")
def delete_interest(req):
    lst, cat, it = _interest(req)
    del cat.interests[it.id]
    for m in lst.members.values():
        m.interests.discard(it.id)
    lst.touch()


# --- list webhooks ----------------------------------------------------------------

DUPLICATE_URL = [{"field": "url", "message": "Sorry, you can't set up multiple WebHooks for one URL"}]
DUPLICATE_BATCH_URL = [{"field": "url", "message": "A batch webhook with this URL already exists."}]


def _norm_url(url):
    return url.split("?", 1)[0].rstrip("/").lower()


def _validate_prelock(req):
    """The validating GET happens outside the store lock: it may take seconds."""
    if "list_id" in req.params:
        with req.store.lock:
            req.lst()  # an unknown list is a 404 before any GET goes out
    body = req.obj()
    url = body.get("url")
    if not url or not isinstance(url, str) or not re.match(r"^https?://", url):
        raise schema_error([{"field": "url", "message": "This value should be a valid URL."}])
    if req.store.settings["webhook_validate_get"] and req.method == "POST":
        code = webhooks.validate_url(url, float(req.store.settings["webhook_timeout"]))
        if not 200 <= code < 300:
            raise invalid("We couldn't verify the URL is working. Please double check and try again. "
                          f"HTTP Code: {code}")
    return body


def _flags(given, names, base=None, default=False):
    out = dict(base) if base else {n: default for n in names}
    if isinstance(given, dict):
        for n in names:
            if n in given:
                out[n] = as_bool(given[n])
    return out


@route("/lists/{list_id}/webhooks", "GET")
def list_webhooks(req):
    lst = req.lst()
    items = [w.to_json(lst.id, req.store.link_base) for w in lst.webhooks.values()]
    # the SDK sends no paging parameters and Mailchimp answers with all of them
    return {"webhooks": items, "list_id": lst.id, "total_items": len(items),
            "_links": links.collection(req.store.link_base, f"/lists/{lst.id}/webhooks", "Lists/Webhooks",
                                       f"/lists/{lst.id}", "Lists")}


@route("/lists/{list_id}/webhooks", "POST", prelock=_validate_prelock)
def add_webhook(req):
    lst = req.lst()
    body = req.pre
    if any(_norm_url(w.url) == _norm_url(body["url"]) for w in lst.webhooks.values()):
        raise invalid(ERR_INVALID_SCHEMA, DUPLICATE_URL)
    dflt = bool(req.store.settings["webhook_flag_default"])
    wh = Webhook(hex_id(10), body["url"], _flags(body.get("events"), Webhook.EVENTS, default=dflt),
                 _flags(body.get("sources"), Webhook.SOURCES, default=dflt))
    lst.webhooks[wh.id] = wh
    return wh.to_json(lst.id, req.store.link_base)


def _webhook(req):
    lst = req.lst()
    wh = lst.webhooks.get(req.params["webhook_id"])
    if wh is None:
        raise not_found()
    return lst, wh


@route("/lists/{list_id}/webhooks/{webhook_id}", "GET")
def get_webhook(req):
    lst, wh = _webhook(req)
    return wh.to_json(lst.id, req.store.link_base)


@route("/lists/{list_id}/webhooks/{webhook_id}", "PATCH")
def update_webhook(req):
    lst, wh = _webhook(req)
    body = req.obj()
    if body.get("url"):
        if any(w is not wh and _norm_url(w.url) == _norm_url(body["url"]) for w in lst.webhooks.values()):
            raise invalid(ERR_INVALID_SCHEMA, DUPLICATE_URL)
        wh.url = body["url"]
    wh.events = _flags(body.get("events"), Webhook.EVENTS, wh.events)
    wh.sources = _flags(body.get("sources"), Webhook.SOURCES, wh.sources)
    return wh.to_json(lst.id, req.store.link_base)


@route("/lists/{list_id}/webhooks/{webhook_id}", "DELETE")
def delete_webhook(req):
    lst, wh = _webhook(req)
    del lst.webhooks[wh.id]


# --- batch webhooks ------------------------------------------------------------

def _bw_json(req, bw):
    return {"id": bw["id"], "url": bw["url"], "enabled": bw["enabled"],
            "_links": links.batch_webhook_links(req.store.link_base, bw["id"])}


@route("/batch-webhooks", "GET")
def list_batch_webhooks(req):
    items = [_bw_json(req, b) for b in req.store.batch_webhooks.values()]
    return collection(req, "webhooks", items,
                      links.collection(req.store.link_base, "/batch-webhooks", "BatchWebhooks", "/", "Root"))


@route("/batch-webhooks", "POST", prelock=_validate_prelock)
def add_batch_webhook(req):
    body = req.pre
    limit = req.store.settings["max_batch_webhooks"]
    if len(req.store.batch_webhooks) >= limit:
        raise invalid(f"You have reached the maximum of {limit} batch webhooks.")
    if any(_norm_url(b["url"]) == _norm_url(body["url"]) for b in req.store.batch_webhooks.values()):
        raise invalid(ERR_INVALID_SCHEMA, DUPLICATE_BATCH_URL)
    bw = {"id": hex_id(10), "url": body["url"],
          "enabled": as_bool(body["enabled"]) if "enabled" in body else True}
    req.store.batch_webhooks[bw["id"]] = bw
    return _bw_json(req, bw)


def _batch_webhook(req):
    bw = req.store.batch_webhooks.get(req.params["batch_webhook_id"])
    if bw is None:
        raise not_found()
    return bw


@route("/batch-webhooks/{batch_webhook_id}", "GET")
def get_batch_webhook(req):
    return _bw_json(req, _batch_webhook(req))


@route("/batch-webhooks/{batch_webhook_id}", "PATCH")
def update_batch_webhook(req):
    bw = _batch_webhook(req)
    body = req.obj()
    if body.get("url"):
        bw["url"] = body["url"]
    if "enabled" in body:
        bw["enabled"] = as_bool(body["enabled"])
    return _bw_json(req, bw)


@route("/batch-webhooks/{batch_webhook_id}", "DELETE")
def delete_batch_webhook(req):
    _batch_webhook(req)
    del req.store.batch_webhooks[req.params["batch_webhook_id"]]


# --- batches (logic in batches.py) ---------------------------------------------------

@route("/batches", "POST")
def start_batch(req):
    if req.in_batch:
        raise invalid("Batch operations cannot create batches.")
    return req.api.batches.create(req, req.json())


@route("/batches", "GET")
def list_batches(req):
    items = [req.api.batches.to_json(b) for b in req.store.batches.values()]
    return collection(req, "batches", items,
                      links.collection(req.store.link_base, "/batches", "Batches", "/", "Root"))


@route("/batches/{batch_id}", "GET")
def get_batch(req):
    b = req.store.batches.get(req.params["batch_id"])
    if b is None:
        raise not_found()
    return req.api.batches.to_json(b)


@route("/batches/{batch_id}", "DELETE")
def delete_batch(req):
    if req.params["batch_id"] not in req.store.batches:
        raise not_found()
    req.api.batches.delete(req.params["batch_id"])
