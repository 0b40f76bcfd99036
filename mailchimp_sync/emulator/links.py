"""``_links`` as Mailchimp returns them (API-BEHAVIOUR.md §2).

Every resource and every collection carries an array of
``{rel, href, method, targetSchema?, schema?}``.  The rels, their order and
the schema paths follow recorded Mailchimp responses (lists, members, merge
fields, interest categories, interests, webhooks, batches); hrefs are
absolute, on the emulator's own base URL (``Store.base_url``), so a client
can follow them; with the ``resource_links`` setting off (``base`` None)
every ``_links`` is empty.  Links to endpoints the emulator does not implement
(activity, segments, ...) are listed as Mailchimp lists them and answer 404.

Members are listed by the thousand, so their links are built from strings
prepared once per base URL and list.
"""

from functools import lru_cache


@lru_cache(maxsize=32)
def _roots(base):
    return base + "/3.0", base + "/schema/3.0"


def _resp(schema, defn):
    return f"{schema}/Definitions/{defn}/Response.json"


def _coll(schema, defn):
    return f"{schema}/Definitions/{defn}/CollectionResponse.json"


def _coll_links(schema, defn):
    return f"{schema}/CollectionLinks/{defn}.json"


def _self(href, schema, defn):
    return {"rel": "self", "href": href, "method": "GET", "targetSchema": _resp(schema, defn)}


def _parent_collection(href, schema, defn):
    return {"rel": "parent", "href": href, "method": "GET", "targetSchema": _coll(schema, defn),
            "schema": _coll_links(schema, defn)}


def _update(href, schema, defn):
    return {"rel": "update", "href": href, "method": "PATCH", "targetSchema": _resp(schema, defn),
            "schema": f"{schema}/Definitions/{defn}/PATCH.json"}


def _delete(href):
    return {"rel": "delete", "href": href, "method": "DELETE"}


def _sub_collection(rel, href, schema, defn):
    return {"rel": rel, "href": href, "method": "GET", "targetSchema": _coll(schema, defn),
            "schema": _coll_links(schema, defn)}


def _item(base, href, parent_href, defn, extra=()):
    """self, parent, update, delete, then ``extra``: the common resource shape."""
    _api, schema = _roots(base)
    return [_self(href, schema, defn), _parent_collection(parent_href, schema, defn),
            _update(href, schema, defn), _delete(href), *extra]


def collection(base, path, defn, parent_path, parent_defn, create=True):
    """Links of a collection envelope: self, parent, create (POST)."""
    if base is None:
        return []
    api, schema = _roots(base)
    href = api + path
    out = [{"rel": "self", "href": href, "method": "GET", "targetSchema": _coll(schema, defn),
            "schema": _coll_links(schema, defn)},
           {"rel": "parent", "href": api + parent_path, "method": "GET",
            "targetSchema": _resp(schema, parent_defn)}]
    if create:
        out.append({"rel": "create", "href": href, "method": "POST", "targetSchema": _resp(schema, defn),
                    "schema": f"{schema}/Definitions/{defn}/POST.json"})
    return out


# --- lists ----------------------------------------------------------------

_LIST_SUBS = (("abuse-reports", "Lists/Abuse"), ("activity", None), ("clients", None),
              ("growth-history", "Lists/Growth"), ("interest-categories", "Lists/InterestCategories"),
              ("members", "Lists/Members"), ("merge-fields", "Lists/MergeFields"),
              ("segments", "Lists/Segments"), ("webhooks", "Lists/Webhooks"),
              ("signup-forms", "Lists/SignupForms"), ("locations", "Lists/Locations"))


def list_links(base, list_id):
    if base is None:
        return []
    api, schema = _roots(base)
    href = f"{api}/lists/{list_id}"
    out = [_self(href, schema, "Lists"), _parent_collection(api + "/lists", schema, "Lists"),
           _update(href, schema, "Lists"),
           {"rel": "batch-sub-unsub-members", "href": href, "method": "POST",
            "targetSchema": f"{schema}/Definitions/Lists/BatchPOST-Response.json",
            "schema": f"{schema}/Definitions/Lists/BatchPOST.json"},
           _delete(href)]
    for rel, defn in _LIST_SUBS:
        sub = f"{href}/{rel}"
        if defn is None:  # single resources, not collections
            name = rel.capitalize()
            out.append({"rel": rel, "href": sub, "method": "GET",
                        "targetSchema": f"{schema}/Definitions/Lists/{name}/Response.json"})
        else:
            out.append(_sub_collection(rel, sub, schema, defn))
    return out


# --- members --------------------------------------------------------------

@lru_cache(maxsize=64)
def _member_parts(base, list_id):
    """Everything of a member's links that does not depend on the member."""
    api, schema = _roots(base)
    coll = f"{api}/lists/{list_id}/members"
    resp = _resp(schema, "Lists/Members")
    return (coll + "/", resp, _parent_collection(coll, schema, "Lists/Members"),
            f"{schema}/Definitions/Lists/Members/PATCH.json", f"{schema}/Definitions/Lists/Members/PUT.json",
            f"{schema}/Definitions/Lists/Members/Activity/Response.json",
            f"{schema}/Definitions/Lists/Members/Goals/Response.json",
            f"{schema}/Definitions/Lists/Members/Notes/CollectionResponse.json")


def member_links(base, list_id, member_id):
    if base is None:
        return []
    prefix, resp, parent, patch, put, activity, goals, notes = _member_parts(base, list_id)
    href = prefix + member_id
    return [
        {"rel": "self", "href": href, "method": "GET", "targetSchema": resp},
        parent,  # shared: responses are only serialized, never changed
        {"rel": "update", "href": href, "method": "PATCH", "targetSchema": resp, "schema": patch},
        {"rel": "upsert", "href": href, "method": "PUT", "targetSchema": resp, "schema": put},
        {"rel": "delete", "href": href, "method": "DELETE"},
        {"rel": "activity", "href": href + "/activity", "method": "GET", "targetSchema": activity},
        {"rel": "goals", "href": href + "/goals", "method": "GET", "targetSchema": goals},
        {"rel": "notes", "href": href + "/notes", "method": "GET", "targetSchema": notes},
        {"rel": "delete_permanent", "href": href + "/actions/delete-permanent", "method": "POST"},
    ]


def members_collection(base, list_id):
    return collection(base, f"/lists/{list_id}/members", "Lists/Members", f"/lists/{list_id}", "Lists")


def member_tags_collection(base, list_id, member_id):
    return collection(base, f"/lists/{list_id}/members/{member_id}/tags", "Lists/Members/Tags",
                      f"/lists/{list_id}/members/{member_id}", "Lists/Members")


# --- merge fields, interest categories, interests, webhooks -----------------

def merge_field_links(base, list_id, merge_id):
    if base is None:
        return []
    api = _roots(base)[0]
    coll = f"{api}/lists/{list_id}/merge-fields"
    return _item(base, f"{coll}/{merge_id}", coll, "Lists/MergeFields")


def category_links(base, list_id, category_id):
    if base is None:
        return []
    api, schema = _roots(base)
    coll = f"{api}/lists/{list_id}/interest-categories"
    href = f"{coll}/{category_id}"
    return _item(base, href, coll, "Lists/InterestCategories",
                 [_sub_collection("interests", href + "/interests", schema, "Lists/Interests")])


def interest_links(base, list_id, category_id, interest_id):
    if base is None:
        return []
    api = _roots(base)[0]
    coll = f"{api}/lists/{list_id}/interest-categories/{category_id}/interests"
    return _item(base, f"{coll}/{interest_id}", coll, "Lists/Interests")


def webhook_links(base, list_id, webhook_id):
    if base is None:
        return []
    api = _roots(base)[0]
    coll = f"{api}/lists/{list_id}/webhooks"
    return _item(base, f"{coll}/{webhook_id}", coll, "Lists/Webhooks")


# --- batches and batch webhooks ------------------------------------------

def batch_links(base, batch_id):
    """Mailchimp lists a batch's parent first, and a batch cannot be updated."""
    if base is None:
        return []
    api, schema = _roots(base)
    href = f"{api}/batches/{batch_id}"
    return [_parent_collection(api + "/batches", schema, "Batches"), _self(href, schema, "Batches"),
            _delete(href)]


def batch_webhook_links(base, webhook_id):
    if base is None:
        return []
    api = _roots(base)[0]
    return _item(base, f"{api}/batch-webhooks/{webhook_id}", api + "/batch-webhooks", "BatchWebhooks")
