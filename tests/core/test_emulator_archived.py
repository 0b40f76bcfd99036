"""Issue 11 item 2, the emulator's side: archived members as API-BEHAVIOUR.md
§3, §5.2-§5.4 and §5.6 describe them.  The default listing leaves them out,
``status=archived`` lists them (with ``since_last_changed`` for incremental
reads), GET of the hash still answers, a PUT with a status re-adds one,
and POST of a known, live address is Member Exists."""

import hashlib
import json

import pytest
from mailchimp_marketing.api_client import ApiClientError


def h(email):
    return hashlib.md5(email.lower().encode()).hexdigest()


@pytest.fixture
def lid(emulator):
    emulator.control.clock(now="2024-02-01T08:00:00Z")
    return emulator.control.seed([{"name": "Newsletter", "members": [
        {"email_address": "live@example.org", "last_changed": "2024-01-01T00:00:00Z"},
        {"email_address": "old@example.org", "status": "archived", "last_changed": "2024-01-02T00:00:00Z"},
        {"email_address": "gone@example.org", "last_changed": "2024-01-03T00:00:00Z"},
        {"email_address": "left@example.org", "status": "unsubscribed", "last_changed": "2024-01-04T00:00:00Z"},
    ]}])["list_ids"][0]


def emails(sdk, lid, **kw):
    page = sdk.lists.get_list_members_info(lid, count=1000, fields=["members.email_address", "total_items"], **kw)
    found = [m["email_address"] for m in page["members"]]
    assert page["total_items"] == len(found)
    return found


def test_default_listing_leaves_archived_out(sdk_client, lid):
    sdk_client.lists.delete_list_member(lid, h("gone@example.org"))
    assert emails(sdk_client, lid) == ["live@example.org", "left@example.org"]
    # filtering by another status never shows them either
    assert emails(sdk_client, lid, status="subscribed") == ["live@example.org"]
    # but the member itself still answers, as archived
    m = sdk_client.lists.get_list_member(lid, h("gone@example.org"))
    assert m["status"] == "archived"
    # and an archived member counts in no stat
    stats = sdk_client.lists.get_list(lid)["stats"]
    assert stats["member_count"] == 1 and stats["unsubscribe_count"] == 1


def test_status_archived_lists_them_with_paging(sdk_client, lid, emulator):
    sdk_client.lists.delete_list_member(lid, h("gone@example.org"))
    assert emails(sdk_client, lid, status="archived") == ["old@example.org", "gone@example.org"]
    page = sdk_client.lists.get_list_members_info(lid, status="archived", count=1, offset=1)
    assert [m["email_address"] for m in page["members"]] == ["gone@example.org"]
    assert page["total_items"] == 2 and page["members"][0]["status"] == "archived"
    emulator.control.clock(advance=5)
    emulator.control.admin_archive(lid, "left@example.org")
    assert emails(sdk_client, lid, status="archived", sort_field="last_changed", sort_dir="DESC") == [
        "left@example.org", "gone@example.org", "old@example.org"]


def test_since_last_changed_with_status_archived(sdk_client, lid, emulator):
    ctl = emulator.control
    mark = "2024-02-01T08:00:00+00:00"
    assert emails(sdk_client, lid, status="archived", since_last_changed=mark) == []
    ctl.clock(advance=30)
    sdk_client.lists.delete_list_member(lid, h("gone@example.org"))
    ctl.clock(advance=30)
    ctl.admin_archive(lid, "left@example.org")
    # an incremental read of the archive sees exactly what was archived since
    assert emails(sdk_client, lid, status="archived", since_last_changed=mark) == [
        "gone@example.org", "left@example.org"]
    assert emails(sdk_client, lid, status="archived", since_last_changed="2024-02-01T08:00:30Z") == [
        "left@example.org"]
    assert emails(sdk_client, lid, status="archived", before_last_changed="2024-02-01T08:00:30Z") == [
        "old@example.org"]
    # and the default listing's incremental read does not
    assert emails(sdk_client, lid, since_last_changed=mark) == []


def test_put_with_status_re_adds_an_archived_member(sdk_client, lid, emulator):
    emulator.control.clock(advance=10)
    sdk_client.lists.update_list_member_tags(lid, h("old@example.org"),
                                             {"tags": [{"name": "kept", "status": "active"}]})
    # status_if_new alone is ignored for a known member: it stays archived
    m = sdk_client.lists.set_list_member(lid, h("old@example.org"), {"email_address": "old@example.org",
                                                                    "status_if_new": "subscribed"})
    assert m["status"] == "archived"
    emulator.control.clock(advance=10)
    m = sdk_client.lists.set_list_member(lid, h("old@example.org"), {"email_address": "old@example.org",
                                                                    "status_if_new": "subscribed",
                                                                    "status": "subscribed"})
    assert m["status"] == "subscribed" and m["id"] == h("old@example.org")
    assert [t["name"] for t in m["tags"]] == ["kept"]
    assert m["last_changed"] == "2024-02-01T08:00:20+00:00"
    # it moved from the archive back to the default listing, with a new last_changed
    assert emails(sdk_client, lid, status="archived") == []
    assert emails(sdk_client, lid, since_last_changed="2024-02-01T08:00:15Z") == ["old@example.org"]


def test_put_re_add_inside_a_batch(sdk_client, lid, emulator):
    emulator.control.settings(batch_auto_run=False)
    batch = sdk_client.batches.start({"operations": [
        {"method": "PUT", "path": f"/lists/{lid}/members/{h('old@example.org')}", "operation_id": "readd",
         "body": json.dumps({"email_address": "old@example.org", "status": "pending"})}]})
    emulator.control.run_batches()
    assert sdk_client.batches.status(batch["id"])["errored_operations"] == 0
    assert sdk_client.lists.get_list_member(lid, h("old@example.org"))["status"] == "pending"


def test_post_of_a_known_address(sdk_client, lid):
    # a live member: Member Exists, with Mailchimp's wording and no `type`
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.add_list_member(lid, {"email_address": "live@example.org", "status": "subscribed"})
    body = json.loads(ei.value.text)
    assert ei.value.status_code == 400 and body["title"] == "Member Exists" and "type" not in body
    assert body["detail"] == ("live@example.org is already a list member. "
                              "Use PUT to insert or update list members.")
    # an unsubscribed one too: POST never updates
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.add_list_member(lid, {"email_address": "LEFT@example.org", "status": "subscribed"})
    assert json.loads(ei.value.text)["title"] == "Member Exists"
    # an archived one is re-added (§5.3), keeping its identity
    before = sdk_client.lists.get_list_member(lid, h("old@example.org"))
    m = sdk_client.lists.add_list_member(lid, {"email_address": "old@example.org", "status": "unsubscribed"})
    assert m["status"] == "unsubscribed"
    assert (m["id"], m["contact_id"], m["web_id"]) == (before["id"], before["contact_id"], before["web_id"])
    # and once live again, a second POST is Member Exists
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.add_list_member(lid, {"email_address": "old@example.org", "status": "subscribed"})
    assert json.loads(ei.value.text)["title"] == "Member Exists"


def test_patch_unarchives_to_the_given_status(sdk_client, lid):
    m = sdk_client.lists.update_list_member(lid, h("old@example.org"), {"status": "subscribed"})
    assert m["status"] == "subscribed"  # not the pre-archive status: the one asked for
    assert emails(sdk_client, lid, status="archived") == []


def test_archived_in_default_listing_setting(sdk_client, lid, emulator):
    emulator.control.settings(archived_in_default_listing=True)
    assert "old@example.org" in emails(sdk_client, lid)
