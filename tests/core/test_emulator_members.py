"""Members: GET/PUT/PATCH/POST/DELETE, delete-permanent, tags, status rules,
listing (paging, fields, filters) -- all through the mailchimp-marketing SDK."""

import hashlib
import json

import pytest
import requests
from mailchimp_marketing.api_client import ApiClientError


def h(email):
    return hashlib.md5(email.lower().encode()).hexdigest()


def err(exc_info):
    """The problem-detail dict of an SDK error (the SDK hands over raw JSON text)."""
    e = exc_info.value
    assert isinstance(e.text, str), "errors must be application/problem+json, not application/json"
    return json.loads(e.text)


@pytest.fixture
def lid(emulator):
    out = emulator.control.seed([{"name": "Newsletter", "interest_categories": [
        {"title": "Topics", "type": "checkboxes", "interests": [{"name": "Events"}, {"name": "News"}]}]}])
    return out["list_ids"][0]


def put(sdk, lid, email, **body):
    body.setdefault("email_address", email)
    return sdk.lists.set_list_member(lid, h(email), body)


def test_ping(sdk_client):
    assert sdk_client.ping.get() == {"health_status": "Everything's Chimpy!"}


def test_member_shape(sdk_client, lid, emulator):
    m = put(sdk_client, lid, "Anna@Example.org", status_if_new="subscribed",
            merge_fields={"FNAME": "Anna", "LNAME": "Meyer", "NOTATAG": "x"})
    assert m["id"] == h("anna@example.org")
    assert m["email_address"] == "Anna@Example.org"
    assert m["status"] == "subscribed" and m["full_name"] == "Anna Meyer"
    assert set(m["merge_fields"]) == {"FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY"}
    assert m["merge_fields"]["PHONE"] == ""
    ints = emulator.control.seed([{"id": lid}])["lists"][0]["interests"]
    assert m["interests"] == {ints["Events"]: False, ints["News"]: False}
    assert len(m["unique_email_id"]) == 10 and len(m["contact_id"]) == 32
    assert isinstance(m["web_id"], int)
    assert m["timestamp_signup"] == "" and m["ip_opt"]
    assert m["last_changed"].endswith("+00:00") and len(m["last_changed"]) == 25
    assert m["source"] == "API - Generic" and m["member_rating"] == 2
    assert m["tags"] == [] and m["tags_count"] == 0 and m["list_id"] == lid
    # GET by hash, by email, by contact_id
    assert sdk_client.lists.get_list_member(lid, m["id"])["id"] == m["id"]
    assert sdk_client.lists.get_list_member(lid, "anna@example.org")["id"] == m["id"]
    assert sdk_client.lists.get_list_member(lid, m["contact_id"])["id"] == m["id"]


def test_interests_key_absent_without_categories(sdk_client, emulator):
    lid = emulator.control.seed([{"name": "Plain"}])["list_ids"][0]
    m = put(sdk_client, lid, "bob@example.org", status_if_new="subscribed")
    assert "interests" not in m


def test_unknown_member_and_list_404(sdk_client, lid):
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.get_list_member(lid, h("nobody@example.org"))
    body = err(ei)
    assert ei.value.status_code == 404 and body["title"] == "Resource Not Found"
    assert body["detail"] == "The requested resource could not be found."
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.get_list("0000000000")
    assert ei.value.status_code == 404


def test_put_status_if_new_only_for_new(sdk_client, lid):
    put(sdk_client, lid, "c@example.org", status_if_new="pending")
    m = put(sdk_client, lid, "c@example.org", status_if_new="subscribed", merge_fields={"FNAME": "C"})
    assert m["status"] == "pending" and m["merge_fields"]["FNAME"] == "C"
    m = sdk_client.lists.set_list_member(lid, h("c@example.org"), {"status": "unsubscribed"})
    assert m["status"] == "unsubscribed"


def test_put_new_needs_a_status(sdk_client, lid):
    with pytest.raises(ApiClientError) as ei:
        put(sdk_client, lid, "d@example.org")
    body = err(ei)
    assert body["title"] == "Invalid Resource" and body["errors"]


def test_put_id_follows_body_email(sdk_client, lid):
    m = sdk_client.lists.set_list_member(lid, h("path@example.org"),
                                         {"email_address": "body@example.org", "status": "subscribed"})
    assert m["id"] == h("body@example.org")


def test_post_member_exists_and_untyped_error(sdk_client, lid):
    sdk_client.lists.add_list_member(lid, {"email_address": "e@example.org", "status": "subscribed"})
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.add_list_member(lid, {"email_address": "e@example.org", "status": "subscribed"})
    body = err(ei)
    assert ei.value.status_code == 400 and body["title"] == "Member Exists"
    assert "type" not in body
    assert body["detail"] == ("e@example.org is already a list member. "
                              "Use PUT to insert or update list members.")


def test_post_missing_email(sdk_client, lid):
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.add_list_member(lid, {"status": "subscribed"})
    body = err(ei)
    assert body["title"] == "Invalid Resource"
    assert {"field": "", "message": "Required fields were not provided: email_address"} in body["errors"]


def test_email_change_through_put(sdk_client, lid, emulator):
    a = put(sdk_client, lid, "old@example.org", status_if_new="subscribed")
    sdk_client.lists.update_list_member_tags(lid, a["id"], {"tags": [{"name": "odoo", "status": "active"}]})
    b = sdk_client.lists.set_list_member(lid, a["id"], {"email_address": "new@example.org"})
    assert b["id"] == h("new@example.org") and b["unique_email_id"] != a["unique_email_id"]
    assert b["contact_id"] == a["contact_id"] and b["web_id"] == a["web_id"]
    assert [t["name"] for t in b["tags"]] == ["odoo"]
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.get_list_member(lid, a["id"])
    assert ei.value.status_code == 404
    # contact_id still resolves after the rename
    assert sdk_client.lists.get_list_member(lid, a["contact_id"])["email_address"] == "new@example.org"
    # renaming onto another member's address -> Member Exists
    put(sdk_client, lid, "other@example.org", status_if_new="subscribed")
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.set_list_member(lid, b["id"], {"email_address": "other@example.org"})
    assert err(ei)["title"] == "Member Exists"


def test_patch_updates_only(sdk_client, lid):
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.update_list_member(lid, h("ghost@example.org"), {"status": "subscribed"})
    assert ei.value.status_code == 404
    put(sdk_client, lid, "p@example.org", status_if_new="subscribed")
    m = sdk_client.lists.update_list_member(lid, h("p@example.org"), {"merge_fields": {"LNAME": "X"}})
    assert m["merge_fields"]["LNAME"] == "X" and m["status"] == "subscribed"


def test_archive_rules(sdk_client, lid):
    put(sdk_client, lid, "arch@example.org", status_if_new="subscribed")
    r = sdk_client.lists.delete_list_member(lid, h("arch@example.org"))
    assert isinstance(r, requests.Response) and r.status_code == 204 and r.text == ""
    m = sdk_client.lists.get_list_member(lid, h("arch@example.org"))
    assert m["status"] == "archived"
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.delete_list_member(lid, h("arch@example.org"))
    body = err(ei)
    assert ei.value.status_code == 405 and body["title"] == "Method Not Allowed"
    for status in ("pending", "cleaned"):
        email = f"{status}@example.org"
        put(sdk_client, lid, email, status_if_new=status)
        with pytest.raises(ApiClientError) as ei:
            sdk_client.lists.delete_list_member(lid, h(email))
        assert ei.value.status_code == 405


def test_archive_405_allow_header(emulator, lid, sdk_client):
    put(sdk_client, lid, "pend@example.org", status_if_new="pending")
    r = requests.delete(f"{emulator.api_base}/lists/{lid}/members/{h('pend@example.org')}",
                        auth=("anything", emulator.api_key), timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, PUT"
    assert r.headers["Content-Type"] == "application/problem+json; charset=utf-8"


def test_archived_comes_back(sdk_client, lid):
    put(sdk_client, lid, "back@example.org", status_if_new="subscribed")
    sdk_client.lists.update_list_member_tags(lid, h("back@example.org"),
                                             {"tags": [{"name": "keep", "status": "active"}]})
    sdk_client.lists.delete_list_member(lid, h("back@example.org"))
    # PUT without status: stays archived (default setting)
    m = put(sdk_client, lid, "back@example.org", status_if_new="subscribed", merge_fields={"FNAME": "B"})
    assert m["status"] == "archived"
    m = put(sdk_client, lid, "back@example.org", status="subscribed")
    assert m["status"] == "subscribed"
    sdk_client.lists.delete_list_member(lid, h("back@example.org"))
    m = sdk_client.lists.add_list_member(lid, {"email_address": "back@example.org", "status": "pending"})
    assert m["status"] == "pending" and [t["name"] for t in m["tags"]] == ["keep"]


def test_unarchive_without_status_setting(sdk_client, lid, emulator):
    emulator.control.settings(unarchive_without_status="restore")
    put(sdk_client, lid, "r@example.org", status_if_new="unsubscribed")
    sdk_client.lists.delete_list_member(lid, h("r@example.org"))
    assert put(sdk_client, lid, "r@example.org", merge_fields={"FNAME": "R"})["status"] == "unsubscribed"


def test_patch_unarchives(sdk_client, lid):
    put(sdk_client, lid, "pa@example.org", status_if_new="subscribed")
    sdk_client.lists.delete_list_member(lid, h("pa@example.org"))
    m = sdk_client.lists.update_list_member(lid, h("pa@example.org"), {"status": "unsubscribed"})
    assert m["status"] == "unsubscribed"


def test_delete_permanent_then_forgotten(sdk_client, lid, emulator):
    put(sdk_client, lid, "gdpr@example.org", status_if_new="subscribed")
    r = sdk_client.lists.delete_list_member_permanent(lid, h("gdpr@example.org"))
    assert isinstance(r, requests.Response) and r.status_code == 204
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.get_list_member(lid, h("gdpr@example.org"))
    assert ei.value.status_code == 404
    for call in (lambda: put(sdk_client, lid, "gdpr@example.org", status_if_new="subscribed"),
                 lambda: sdk_client.lists.add_list_member(
                     lid, {"email_address": "gdpr@example.org", "status": "subscribed"})):
        with pytest.raises(ApiClientError) as ei:
            call()
        body = err(ei)
        assert body["title"] == "Forgotten Email Not Subscribed"
        assert body["detail"] == ("gdpr@example.org was permanently deleted and cannot be re-imported. "
                                  "The contact must re-subscribe to get back on the list.")
    # only a hosted-form signup brings the address back
    emulator.control.user_signup(lid, "gdpr@example.org")
    assert sdk_client.lists.get_list_member(lid, h("gdpr@example.org"))["status"] == "subscribed"


def test_tags(sdk_client, lid):
    put(sdk_client, lid, "t@example.org", status_if_new="subscribed")
    before = sdk_client.lists.get_list_member(lid, h("t@example.org"))["last_changed"]
    r = sdk_client.lists.update_list_member_tags(lid, h("t@example.org"), {"tags": [
        {"name": "zeta", "status": "active"}, {"name": "alpha", "status": "active"},
        {"name": "never", "status": "inactive"}]})
    assert isinstance(r, requests.Response) and r.status_code == 204
    m = sdk_client.lists.get_list_member(lid, h("t@example.org"))
    assert [t["name"] for t in m["tags"]] == ["alpha", "zeta"] and m["tags_count"] == 2
    assert all(isinstance(t["id"], int) for t in m["tags"])
    assert m["last_changed"] >= before
    tags = sdk_client.lists.get_list_member_tags(lid, h("t@example.org"))
    assert tags["total_items"] == 2 and tags["tags"][0]["date_added"]
    sdk_client.lists.update_list_member_tags(lid, h("t@example.org"),
                                             {"tags": [{"name": "zeta", "status": "inactive"}]})
    assert [t["name"] for t in sdk_client.lists.get_list_member(lid, h("t@example.org"))["tags"]] == ["alpha"]
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.update_list_member_tags(lid, h("none@example.org"), {"tags": []})
    assert ei.value.status_code == 404


def test_tags_on_post(sdk_client, lid):
    m = sdk_client.lists.add_list_member(lid, {"email_address": "tp@example.org", "status": "subscribed",
                                               "tags": ["b", "a"]})
    assert [t["name"] for t in m["tags"]] == ["a", "b"]


def test_compliance_state(sdk_client, lid, emulator):
    ctl = emulator.control
    put(sdk_client, lid, "self@example.org", status_if_new="subscribed")
    ctl.user_unsubscribe(lid, "self@example.org")
    hidden = ctl.member(lid, "self@example.org")
    assert hidden["compliance_locked"] is True and hidden["unsubscribe_origin"] == "user"
    with pytest.raises(ApiClientError) as ei:
        put(sdk_client, lid, "self@example.org", status="subscribed", merge_fields={"FNAME": "Nope"})
    body = err(ei)
    assert body["title"] == "Member In Compliance State" and "type" not in body
    assert body["detail"] == ("self@example.org is in a compliance state due to unsubscribe, bounce, "
                              "or compliance review and cannot be subscribed.")
    # nothing of the refused call was applied
    assert sdk_client.lists.get_list_member(lid, h("self@example.org"))["merge_fields"]["FNAME"] == ""
    # updates without status are fine; pending is the documented way back
    put(sdk_client, lid, "self@example.org", merge_fields={"FNAME": "Yes"})
    assert put(sdk_client, lid, "self@example.org", status="pending")["status"] == "pending"
    ctl.confirm_pending(lid, "self@example.org")
    assert ctl.member(lid, "self@example.org")["compliance_locked"] is False


def test_api_unsubscribe_can_resubscribe(sdk_client, lid, emulator):
    put(sdk_client, lid, "api@example.org", status_if_new="subscribed")
    put(sdk_client, lid, "api@example.org", status="unsubscribed")
    assert emulator.control.member(lid, "api@example.org")["unsubscribe_origin"] == "api"
    assert put(sdk_client, lid, "api@example.org", status="subscribed")["status"] == "subscribed"


def test_cleaned_rules(sdk_client, lid, emulator):
    put(sdk_client, lid, "cl@example.org", status_if_new="subscribed")
    emulator.control.bounce(lid, "cl@example.org")
    with pytest.raises(ApiClientError) as ei:
        put(sdk_client, lid, "cl@example.org", status="subscribed")
    assert err(ei)["title"] == "Member In Compliance State"
    with pytest.raises(ApiClientError) as ei:
        put(sdk_client, lid, "cl@example.org", email_address="cl2@example.org")
    assert "cleaned" in err(ei)["detail"]
    assert put(sdk_client, lid, "cl@example.org", status="pending")["status"] == "pending"


def test_cleaned_to_pending_setting(sdk_client, lid, emulator):
    emulator.control.settings(cleaned_to_pending_allowed=False)
    put(sdk_client, lid, "cp@example.org", status_if_new="cleaned")
    with pytest.raises(ApiClientError) as ei:
        put(sdk_client, lid, "cp@example.org", status="pending")
    assert err(ei)["title"] == "Member In Compliance State"


def test_last_changed_moves_on_change_only(sdk_client, lid, emulator):
    ctl = emulator.control
    ctl.clock(now="2024-01-01T10:00:00Z")
    put(sdk_client, lid, "lc@example.org", status_if_new="subscribed", merge_fields={"FNAME": "A"})
    steps = [("noop", lambda: put(sdk_client, lid, "lc@example.org", status="subscribed",
                                  merge_fields={"FNAME": "A"}), False),
             ("merge", lambda: put(sdk_client, lid, "lc@example.org", merge_fields={"FNAME": "B"}), True),
             ("status", lambda: put(sdk_client, lid, "lc@example.org", status="unsubscribed"), True),
             ("tag", lambda: sdk_client.lists.update_list_member_tags(
                 lid, h("lc@example.org"), {"tags": [{"name": "x", "status": "active"}]}), True),
             ("vip", lambda: put(sdk_client, lid, "lc@example.org", vip=True), True),
             ("archive", lambda: sdk_client.lists.delete_list_member(lid, h("lc@example.org")), True)]
    last = sdk_client.lists.get_list_member(lid, h("lc@example.org"))["last_changed"]
    assert last == "2024-01-01T10:00:00+00:00"
    for name, step, moves in steps:
        ctl.clock(advance=5)
        step()
        now = sdk_client.lists.get_list_member(lid, h("lc@example.org"))["last_changed"]
        assert (now != last) == moves, name
        last = now


def test_interests_write(sdk_client, lid, emulator):
    ids = emulator.control.seed([{"id": lid}])["lists"][0]["interests"]
    m = put(sdk_client, lid, "i@example.org", status_if_new="subscribed", interests={ids["Events"]: True})
    assert m["interests"] == {ids["Events"]: True, ids["News"]: False}
    m = put(sdk_client, lid, "i@example.org", interests={ids["News"]: True})
    assert m["interests"] == {ids["Events"]: True, ids["News"]: True}
    with pytest.raises(ApiClientError) as ei:
        put(sdk_client, lid, "i@example.org", interests={"ffffffffff": True})
    assert err(ei)["title"] == "Invalid Resource"


@pytest.mark.parametrize("email,detail", [
    ("AAAAA", "Please provide a valid email address."),
    ("foo@example.com", "foo@example.com looks fake or invalid, please enter a real email address."),
])
def test_invalid_and_fake_emails(sdk_client, lid, email, detail):
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.add_list_member(lid, {"email_address": email, "status": "subscribed"})
    body = err(ei)
    assert body["title"] == "Invalid Resource" and body["detail"] == detail


def test_fake_patterns_setting(sdk_client, lid, emulator):
    assert put(sdk_client, lid, "anna@example.org", status_if_new="subscribed")["status"] == "subscribed"
    emulator.control.settings(fake_email_patterns=[r"@example\.org$"])
    with pytest.raises(ApiClientError) as ei:
        put(sdk_client, lid, "bert@example.org", status_if_new="subscribed")
    assert "looks fake" in err(ei)["detail"]


# --- listing ----------------------------------------------------------------

@pytest.fixture
def big(emulator):
    out = emulator.control.seed([{"name": "Big", "generate_members": 2500,
                                  "status_mix": {"subscribed": 0.8, "unsubscribed": 0.1,
                                                 "archived": 0.1}}])
    return out["list_ids"][0]


def test_listing_paging_total_and_fields(sdk_client, big):
    fields = ["members.email_address", "members.status", "total_items"]
    seen = []
    for offset in range(0, 3000, 1000):
        page = sdk_client.lists.get_list_members_info(big, count=1000, offset=offset, fields=fields)
        assert set(page) == {"members", "total_items"}
        seen += page["members"]
    total = page["total_items"]
    assert len(seen) == total and all(set(m) == {"email_address", "status"} for m in seen)
    assert len({m["email_address"] for m in seen}) == total
    assert "archived" not in {m["status"] for m in seen}  # default excludes archived
    past = sdk_client.lists.get_list_members_info(big, count=10, offset=5000)
    assert past["members"] == [] and past["total_items"] == total
    default = sdk_client.lists.get_list_members_info(big)
    assert len(default["members"]) == 10 and default["list_id"] == big and "_links" in default


def test_listing_status_and_archived(sdk_client, big, emulator):
    arch = sdk_client.lists.get_list_members_info(big, status="archived", count=1000)
    assert arch["total_items"] > 0 and {m["status"] for m in arch["members"]} == {"archived"}
    sub = sdk_client.lists.get_list_members_info(big, status="subscribed", count=1)
    all_default = sdk_client.lists.get_list_members_info(big, count=1)["total_items"]
    emulator.control.settings(archived_in_default_listing=True)
    all_incl = sdk_client.lists.get_list_members_info(big, count=1)["total_items"]
    assert all_incl == all_default + arch["total_items"]
    assert sub["total_items"] < all_default


def test_listing_exclude_fields(sdk_client, big):
    page = sdk_client.lists.get_list_members_info(big, count=2, exclude_fields=["members.merge_fields",
                                                                                  "_links"])
    assert "_links" not in page and "merge_fields" not in page["members"][0]
    page = sdk_client.lists.get_list_members_info(big, count=2, exclude_fields=["email_address"])
    assert "email_address" in page["members"][0]  # not addressed to members.* -> no effect


def test_listing_nested_fields(sdk_client, big):
    page = sdk_client.lists.get_list_members_info(big, count=3, fields=["members.merge_fields.FNAME"])
    assert page == {"members": [{"merge_fields": {"FNAME": m["merge_fields"]["FNAME"]}}
                                for m in page["members"]]}


def test_count_over_1000_refused(emulator, big):
    r = requests.get(f"{emulator.api_base}/lists/{big}/members", params={"count": 1001},
                     auth=("u", emulator.api_key), timeout=10)
    assert r.status_code == 400 and r.json()["title"] == "Invalid Resource"


def test_since_last_changed_and_sort(sdk_client, lid, emulator):
    ctl = emulator.control
    ctl.clock(now="2024-03-01T12:00:00Z")
    put(sdk_client, lid, "s1@example.org", status_if_new="subscribed")
    ctl.clock(advance=10)
    put(sdk_client, lid, "s2@example.org", status_if_new="subscribed")
    ctl.clock(advance=10)
    put(sdk_client, lid, "s3@example.org", status_if_new="subscribed")
    ctl.clock(advance=10)
    put(sdk_client, lid, "s1@example.org", merge_fields={"FNAME": "again"})

    def emails(**kw):
        page = sdk_client.lists.get_list_members_info(lid, count=100, fields=["members.email_address"], **kw)
        return [m["email_address"] for m in page["members"]]
    # strict >, any ISO-8601 spelling
    assert emails(since_last_changed="2024-03-01T12:00:10+00:00") == ["s1@example.org", "s3@example.org"]
    assert emails(since_last_changed="2024-03-01T12:00:09.999Z") == ["s1@example.org", "s2@example.org",
                                                                     "s3@example.org"]
    assert emails(since_last_changed="2024-03-01T14:00:10+02:00") == ["s1@example.org", "s3@example.org"]
    assert emails(before_last_changed="2024-03-01T12:00:20Z") == ["s2@example.org"]
    assert emails(sort_field="last_changed", sort_dir="ASC") == ["s2@example.org", "s3@example.org",
                                                                 "s1@example.org"]
    assert emails(sort_field="last_changed", sort_dir="DESC") == ["s1@example.org", "s3@example.org",
                                                                  "s2@example.org"]
    assert emails() == ["s1@example.org", "s2@example.org", "s3@example.org"]  # creation order
    ctl.settings(since_inclusive=True)
    assert emails(since_last_changed="2024-03-01T12:00:10Z") == ["s1@example.org", "s2@example.org",
                                                                 "s3@example.org"]
