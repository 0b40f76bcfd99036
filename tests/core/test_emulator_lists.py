"""Lists, merge fields (required-field validation, skip_merge_validation),
interest categories and interests, through the SDK."""

import hashlib
import json

import pytest
from mailchimp_marketing.api_client import ApiClientError


def h(email):
    return hashlib.md5(email.lower().encode()).hexdigest()


@pytest.fixture
def lid(emulator):
    return emulator.control.seed([{"name": "Newsletter"}])["list_ids"][0]


def test_lists(sdk_client, lid):
    out = sdk_client.lists.get_all_lists()
    assert out["total_items"] == 1 and out["lists"][0]["id"] == lid
    assert {"may_create", "max_instances", "current_total_instances"} <= set(out["constraints"])
    lst = sdk_client.lists.get_list(lid)
    assert lst["name"] == "Newsletter" and lst["stats"]["member_count"] == 0
    assert "total_contacts" not in lst["stats"]
    assert "total_contacts" in sdk_client.lists.get_list(lid, include_total_contacts=True)["stats"]
    only = sdk_client.lists.get_all_lists(fields=["lists.id", "total_items"])
    assert only == {"lists": [{"id": lid}], "total_items": 1}


def test_list_stats_count_members(sdk_client, lid):
    sdk_client.lists.set_list_member(lid, h("a@example.org"), {"email_address": "a@example.org",
                                                              "status_if_new": "subscribed"})
    sdk_client.lists.set_list_member(lid, h("b@example.org"), {"email_address": "b@example.org",
                                                              "status_if_new": "unsubscribed"})
    stats = sdk_client.lists.get_list(lid)["stats"]
    assert stats["member_count"] == 1 and stats["unsubscribe_count"] == 1


def test_default_merge_fields(sdk_client, lid):
    out = sdk_client.lists.get_list_merge_fields(lid)
    assert [f["tag"] for f in out["merge_fields"]] == ["FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY"]
    assert [f["merge_id"] for f in out["merge_fields"]] == [1, 2, 3, 4, 5]
    assert out["list_id"] == lid and out["total_items"] == 5  # EMAIL is not listed


def test_merge_field_crud_and_required(sdk_client, lid):
    mf = sdk_client.lists.add_list_merge_field(lid, {"name": "Lifetime value", "type": "number",
                                                     "tag": "LTV", "required": True})
    assert mf["tag"] == "LTV" and mf["required"] is True and mf["merge_id"] == 6
    assert sdk_client.lists.get_list_merge_field(lid, mf["merge_id"])["name"] == "Lifetime value"
    body = {"email_address": "m@example.org", "status_if_new": "subscribed"}
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.set_list_member(lid, h("m@example.org"), body)
    err = json.loads(ei.value.text)
    assert err["detail"] == "Your merge fields were invalid."
    assert err["errors"] == [{"field": "LTV", "message": "Please enter a value"}]
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.set_list_member(lid, h("m@example.org"), dict(body, merge_fields={"LTV": "lots"}))
    assert json.loads(ei.value.text)["errors"] == [{"field": "LTV", "message": "Please enter a number"}]
    m = sdk_client.lists.set_list_member(lid, h("m@example.org"), body, skip_merge_validation=True)
    assert m["merge_fields"]["LTV"] == ""
    m = sdk_client.lists.set_list_member(lid, h("m@example.org"), {"merge_fields": {"LTV": "12.5"}})
    assert m["merge_fields"]["LTV"] == 12.5
    upd = sdk_client.lists.update_list_merge_field(lid, mf["merge_id"], {"name": "LTV", "required": False})
    assert upd["required"] is False
    r = sdk_client.lists.delete_list_merge_field(lid, mf["merge_id"])
    assert r.status_code == 204
    assert "LTV" not in sdk_client.lists.get_list_member(lid, h("m@example.org"))["merge_fields"]
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.get_list_merge_field(lid, mf["merge_id"])
    assert ei.value.status_code == 404


def test_address_merge_field(sdk_client, lid):
    body = {"email_address": "ad@example.org", "status_if_new": "subscribed",
            "merge_fields": {"ADDRESS": {"addr1": "1 Main St", "city": "Town"}}}
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.set_list_member(lid, h("ad@example.org"), body)
    assert json.loads(ei.value.text)["errors"][0]["message"] == "Please enter a complete address"
    body["merge_fields"]["ADDRESS"].update(state="ST", zip="12345")
    m = sdk_client.lists.set_list_member(lid, h("ad@example.org"), body)
    assert m["merge_fields"]["ADDRESS"]["city"] == "Town"
    m = sdk_client.lists.set_list_member(lid, h("ad@example.org"), {"merge_fields": {"ADDRESS": ""}})
    assert m["merge_fields"]["ADDRESS"] == ""


def test_interest_categories_and_interests(sdk_client, lid):
    cat = sdk_client.lists.create_list_interest_category(lid, {"title": "Topics", "type": "checkboxes"})
    assert len(cat["id"]) == 10 and cat["list_id"] == lid
    ev = sdk_client.lists.create_interest_category_interest(lid, cat["id"], {"name": "Events"})
    nw = sdk_client.lists.create_interest_category_interest(lid, cat["id"], {"name": "News"})
    assert ev["subscriber_count"] == "0" and ev["category_id"] == cat["id"]
    cats = sdk_client.lists.get_list_interest_categories(lid)
    assert cats["total_items"] == 1 and cats["categories"][0]["title"] == "Topics"
    ints = sdk_client.lists.list_interest_category_interests(lid, cat["id"])
    assert [i["name"] for i in ints["interests"]] == ["Events", "News"] and ints["category_id"] == cat["id"]
    m = sdk_client.lists.set_list_member(lid, h("i@example.org"), {
        "email_address": "i@example.org", "status_if_new": "subscribed", "interests": {ev["id"]: True}})
    assert m["interests"] == {ev["id"]: True, nw["id"]: False}
    got = sdk_client.lists.get_interest_category_interest(lid, cat["id"], ev["id"])
    assert got["subscriber_count"] == "1"
    upd = sdk_client.lists.update_interest_category_interest(lid, cat["id"], nw["id"], {"name": "Newsletter"})
    assert upd["name"] == "Newsletter"
    assert sdk_client.lists.update_interest_category(lid, cat["id"], {"title": "Themes", "type": "checkboxes"}
                                                     )["title"] == "Themes"
    assert sdk_client.lists.get_interest_category(lid, cat["id"])["title"] == "Themes"
    assert sdk_client.lists.delete_interest_category_interest(lid, cat["id"], nw["id"]).status_code == 204
    assert sdk_client.lists.get_list_member(lid, h("i@example.org"))["interests"] == {ev["id"]: True}
    assert sdk_client.lists.delete_interest_category(lid, cat["id"]).status_code == 204
    assert "interests" not in sdk_client.lists.get_list_member(lid, h("i@example.org"))


def test_seed_returns_ids(emulator, sdk_client):
    out = emulator.control.seed([{
        "name": "Seeded", "merge_fields": [{"tag": "FNAME", "name": "First", "type": "text"},
                                           {"tag": "LTV", "name": "Value", "type": "number"}],
        "interest_categories": [{"title": "Topics", "type": "checkboxes",
                                 "interests": [{"name": "Events"}, {"name": "News"}]}],
        "members": [{"email_address": "s@example.org", "status": "unsubscribed",
                     "merge_fields": {"FNAME": "S", "LTV": 3}, "interests": {"Events": True},
                     "tags": ["vip"], "last_changed": "2023-05-01T00:00:00Z"}]}])
    info = out["lists"][0]
    lid = info["id"]
    assert info["merge_fields"] == {"FNAME": 1, "LTV": 2} and set(info["interests"]) == {"Events", "News"}
    m = sdk_client.lists.get_list_member(lid, h("s@example.org"))
    assert m["status"] == "unsubscribed" and m["merge_fields"] == {"FNAME": "S", "LTV": 3}
    assert m["interests"][info["interests"]["Events"]] is True
    assert m["last_changed"] == "2023-05-01T00:00:00+00:00" and m["tags"][0]["name"] == "vip"
