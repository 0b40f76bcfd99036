"""Issue 15's emulator needs, tags: ``POST …/tags`` (active/inactive),
``GET …/tags``, tags in the body of a member created by POST (or by a PUT
that creates it), ``tags``/``tags_count`` in member answers, and
``last_changed`` moving on a tag change as API-BEHAVIOUR.md §5.6 records;
also inside batch operations."""

import hashlib
import json

import pytest
import requests
from mailchimp_marketing.api_client import ApiClientError


def h(email):
    return hashlib.md5(email.lower().encode()).hexdigest()


def problem(exc_info):
    return json.loads(exc_info.value.text)


def names(member):
    return [t["name"] for t in member["tags"]]


@pytest.fixture
def lid(emulator):
    emulator.control.clock(now="2024-07-01T10:00:00Z")
    return emulator.control.seed([{"name": "Tags", "members": [
        {"email_address": "anna@example.org"}, {"email_address": "bob@example.org"}]}])["list_ids"][0]


def tag(sdk, lid, email, *pairs):
    return sdk.lists.update_list_member_tags(lid, h(email), {"tags": [
        {"name": n, "status": s} for n, s in pairs]})


def test_activate_and_deactivate(sdk_client, lid, emulator):
    r = tag(sdk_client, lid, "anna@example.org", ("vip", "active"), ("odoo", "active"))
    assert isinstance(r, requests.Response) and r.status_code == 204 and r.text == ""
    anna = sdk_client.lists.get_list_member(lid, h("anna@example.org"))
    assert names(anna) == ["odoo", "vip"] and anna["tags_count"] == 2
    # a tag is a list-level object: the same id on every member
    tag(sdk_client, lid, "bob@example.org", ("vip", "active"))
    bob = sdk_client.lists.get_list_member(lid, h("bob@example.org"))
    assert bob["tags"][0]["id"] == next(t["id"] for t in anna["tags"] if t["name"] == "vip")
    tag(sdk_client, lid, "anna@example.org", ("vip", "inactive"), ("never-had", "inactive"))
    assert names(sdk_client.lists.get_list_member(lid, h("anna@example.org"))) == ["odoo"]
    # an empty list is a 204 that changes nothing; an unknown member is a 404
    assert sdk_client.lists.update_list_member_tags(lid, h("anna@example.org"), {"tags": []}).status_code == 204
    with pytest.raises(ApiClientError) as ei:
        tag(sdk_client, lid, "nobody@example.org", ("vip", "active"))
    assert ei.value.status_code == 404


def test_get_tags(sdk_client, lid, emulator):
    tag(sdk_client, lid, "anna@example.org", *[(f"t{n:02d}", "active") for n in range(12)])
    out = sdk_client.lists.get_list_member_tags(lid, h("anna@example.org"))
    assert out["total_items"] == 12 and len(out["tags"]) == 10  # count defaults to 10
    assert out["tags"][0] == {"id": out["tags"][0]["id"], "name": "t00", "date_added": "2024-07-01T10:00:00+00:00"}
    rest = sdk_client.lists.get_list_member_tags(lid, h("anna@example.org"), count=10, offset=10)
    assert [t["name"] for t in rest["tags"]] == ["t10", "t11"]
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.get_list_member_tags(lid, h("nobody@example.org"))
    assert ei.value.status_code == 404


@pytest.mark.parametrize("body,field", [
    ({"tags": [{"name": "x"}]}, "tags.item:0"),
    ({"tags": [{"status": "active"}]}, "tags.item:0"),
    ({"tags": [{"name": "x", "status": "on"}]}, "tags.item:0.status"),
    ({"tags": ["x"]}, "tags.item:0"),
    ({"is_syncing": True}, ""),
])
def test_tags_body_is_checked_whole(sdk_client, lid, body, field):
    if "tags" in body:
        body = {"tags": [{"name": "first", "status": "active"}, *body["tags"]]}
        field = field.replace("item:0", "item:1")
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.update_list_member_tags(lid, h("anna@example.org"), body)
    err = problem(ei)
    assert err["title"] == "Invalid Resource" and err["errors"][0]["field"] == field
    # nothing applied, not even the valid first item
    assert sdk_client.lists.get_list_member(lid, h("anna@example.org"))["tags"] == []


def test_tags_move_last_changed_only_when_they_change(sdk_client, lid, emulator):
    ctl = emulator.control

    def last():
        return sdk_client.lists.get_list_member(lid, h("anna@example.org"))["last_changed"]
    ctl.clock(advance=5)
    tag(sdk_client, lid, "anna@example.org", ("a", "active"))
    assert last() == "2024-07-01T10:00:05+00:00"   # §5.6 [V]: a tag add moves it
    ctl.clock(advance=5)
    tag(sdk_client, lid, "anna@example.org", ("a", "active"), ("b", "inactive"))
    assert last() == "2024-07-01T10:00:05+00:00"   # nothing changed
    ctl.clock(advance=5)
    tag(sdk_client, lid, "anna@example.org", ("a", "inactive"))
    assert last() == "2024-07-01T10:00:15+00:00"   # and a removal moves it
    # so an incremental read sees tag changes
    page = sdk_client.lists.get_list_members_info(lid, since_last_changed="2024-07-01T10:00:10Z",
                                                  fields=["members.email_address"])
    assert page["members"] == [{"email_address": "anna@example.org"}]


def test_tag_change_fires_no_webhook(sdk_client, lid, emulator, webhook_receiver):
    emulator.control.settings(webhook_delivery="sync")
    sdk_client.lists.create_list_webhook(lid, {"url": webhook_receiver.url, "events": {"profile": True},
                                               "sources": {"api": True}})
    tag(sdk_client, lid, "anna@example.org", ("a", "active"))
    assert emulator.control.deliveries() == []
    emulator.control.settings(fire_on_tags=True)
    tag(sdk_client, lid, "anna@example.org", ("b", "active"))
    assert [d["type"] for d in emulator.control.deliveries()] == ["profile"]


def test_tags_on_archived_members(sdk_client, lid):
    sdk_client.lists.delete_list_member(lid, h("bob@example.org"))
    tag(sdk_client, lid, "bob@example.org", ("kept", "active"))
    bob = sdk_client.lists.get_list_member(lid, h("bob@example.org"))
    assert bob["status"] == "archived" and names(bob) == ["kept"]


def test_tags_in_the_body_of_a_create(sdk_client, lid, emulator):
    m = sdk_client.lists.add_list_member(lid, {"email_address": "new@example.org", "status": "subscribed",
                                               "tags": ["zeta", "alpha", " "]})
    assert names(m) == ["alpha", "zeta"] and m["tags_count"] == 2
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.add_list_member(lid, {"email_address": "obj@example.org", "status": "subscribed",
                                               "tags": [{"name": "x", "status": "active"}]})
    assert problem(ei)["errors"] == [{"field": "tags.item:0",
                                      "message": "Schema describes string, object found instead"}]
    with pytest.raises(ApiClientError):  # nothing was created
        sdk_client.lists.get_list_member(lid, h("obj@example.org"))
    # a PUT that creates the member applies them (put_tags_on_create) ...
    m = sdk_client.lists.set_list_member(lid, h("put@example.org"), {
        "email_address": "put@example.org", "status_if_new": "subscribed", "tags": ["from-put"]})
    assert names(m) == ["from-put"]
    # ... a PUT to a known member ignores them, as PATCH does
    m = sdk_client.lists.set_list_member(lid, h("put@example.org"), {"email_address": "put@example.org",
                                                                    "tags": ["ignored"]})
    assert names(m) == ["from-put"]
    m = sdk_client.lists.update_list_member(lid, h("put@example.org"), {"tags": ["ignored"]})
    assert names(m) == ["from-put"]
    # re-adding an archived member by POST keeps its tags and adds the new ones
    sdk_client.lists.delete_list_member(lid, h("put@example.org"))
    m = sdk_client.lists.add_list_member(lid, {"email_address": "put@example.org", "status": "subscribed",
                                               "tags": ["back"]})
    assert names(m) == ["back", "from-put"]
    emulator.control.settings(put_tags_on_create=False)
    m = sdk_client.lists.set_list_member(lid, h("put2@example.org"), {
        "email_address": "put2@example.org", "status_if_new": "subscribed", "tags": ["from-put"]})
    assert m["tags"] == []


def test_tags_limit_on_member(sdk_client, lid, emulator):
    emulator.control.settings(member_tags_limit=3)
    tag(sdk_client, lid, "anna@example.org", *[(f"t{n}", "active") for n in range(5)])
    anna = sdk_client.lists.get_list_member(lid, h("anna@example.org"))
    assert len(anna["tags"]) == 3 and anna["tags_count"] == 5


def test_tags_inside_a_batch(sdk_client, lid, emulator):
    emulator.control.settings(batch_auto_run=False)
    ops = [
        {"method": "POST", "path": f"/lists/{lid}/members", "operation_id": "create",
         "body": json.dumps({"email_address": "c@example.org", "status": "subscribed", "tags": ["odoo"]})},
        {"method": "POST", "path": f"/lists/{lid}/members/{h('anna@example.org')}/tags", "operation_id": "tags",
         "body": json.dumps({"tags": [{"name": "odoo", "status": "active"}], "is_syncing": True})},
        {"method": "POST", "path": f"/lists/{lid}/members/{h('ghost@example.org')}/tags", "operation_id": "ghost",
         "body": json.dumps({"tags": [{"name": "odoo", "status": "active"}]})},
    ]
    batch = sdk_client.batches.start({"operations": ops})
    emulator.control.run_batches()
    status = sdk_client.batches.status(batch["id"])
    assert (status["total_operations"], status["errored_operations"]) == (3, 1)
    assert names(sdk_client.lists.get_list_member(lid, h("c@example.org"))) == ["odoo"]
    assert names(sdk_client.lists.get_list_member(lid, h("anna@example.org"))) == ["odoo"]
