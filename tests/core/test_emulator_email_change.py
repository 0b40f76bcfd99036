"""Issue 15's emulator needs, email changes (API-BEHAVIOUR.md §5.2 case 3):
a PATCH or PUT to the old hash with a new ``email_address`` renames the
member (new hash, the old one 404), keeping its identity and data; Mailchimp
refuses it with Member Exists when the new address belongs to another member
of the list; also inside batch operations."""

import hashlib
import json

import pytest
from mailchimp_marketing.api_client import ApiClientError


def h(email):
    return hashlib.md5(email.lower().encode()).hexdigest()


def problem(exc_info):
    return json.loads(exc_info.value.text)


@pytest.fixture
def lid(emulator):
    emulator.control.clock(now="2024-08-01T12:00:00Z")
    return emulator.control.seed([{"name": "Renames", "add_merge_fields": [{"tag": "LTV", "type": "number"}],
                                   "interest_categories": [{"title": "Topics", "interests": ["Events"]}],
                                   "members": [
        {"email_address": "old@example.org", "merge_fields": {"FNAME": "Olga", "LTV": 5},
         "interests": {"Events": True}, "tags": ["odoo"], "last_changed": "2024-07-01T00:00:00Z"},
        {"email_address": "taken@example.org"},
        {"email_address": "archived@example.org", "status": "archived"},
    ]}])["list_ids"][0]


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_rename_through_the_old_hash(sdk_client, lid, emulator, method):
    before = sdk_client.lists.get_list_member(lid, h("old@example.org"))
    emulator.control.clock(advance=10)
    call = sdk_client.lists.update_list_member if method == "PATCH" else sdk_client.lists.set_list_member
    m = call(lid, h("old@example.org"), {"email_address": "New@Example.org", "merge_fields": {"LTV": 6}})
    assert m["email_address"] == "New@Example.org" and m["id"] == h("new@example.org")
    assert m["unique_email_id"] != before["unique_email_id"]
    assert (m["contact_id"], m["web_id"], m["status"]) == (before["contact_id"], before["web_id"], "subscribed")
    assert m["merge_fields"]["FNAME"] == "Olga" and m["merge_fields"]["LTV"] == 6
    assert m["interests"] == before["interests"] and [t["name"] for t in m["tags"]] == ["odoo"]
    assert m["last_changed"] == "2024-08-01T12:00:10+00:00"
    # the old hash is gone, the new one answers, and the listing has only the new address
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.get_list_member(lid, h("old@example.org"))
    assert ei.value.status_code == 404
    assert sdk_client.lists.get_list_member(lid, h("new@example.org"))["contact_id"] == before["contact_id"]
    listed = sdk_client.lists.get_list_members_info(lid, fields=["members.email_address"])["members"]
    assert {x["email_address"] for x in listed} == {"New@Example.org", "taken@example.org"}
    # an update to the old hash is now a 404 (PATCH), and the tag endpoint too
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.update_list_member(lid, h("old@example.org"), {"merge_fields": {"FNAME": "x"}})
    assert ei.value.status_code == 404


@pytest.mark.parametrize("target", ["taken@example.org", "TAKEN@example.org", "archived@example.org"])
@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_rename_onto_another_member_is_member_exists(sdk_client, lid, method, target):
    call = sdk_client.lists.update_list_member if method == "PATCH" else sdk_client.lists.set_list_member
    with pytest.raises(ApiClientError) as ei:
        call(lid, h("old@example.org"), {"email_address": target, "merge_fields": {"FNAME": "Changed"}})
    err = problem(ei)
    assert ei.value.status_code == 400 and err["title"] == "Member Exists" and "type" not in err
    assert err["detail"] == f"{target} is already a list member. Use PUT to insert or update list members."
    # nothing of the call was applied
    old = sdk_client.lists.get_list_member(lid, h("old@example.org"))
    assert old["email_address"] == "old@example.org" and old["merge_fields"]["FNAME"] == "Olga"


def test_a_change_of_case_only_is_no_rename(sdk_client, lid):
    m = sdk_client.lists.update_list_member(lid, h("old@example.org"), {"email_address": "OLD@example.org"})
    assert m["id"] == h("old@example.org")


def test_renames_refused_by_state(sdk_client, lid, emulator):
    emulator.control.bounce(lid, "taken@example.org")
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.update_list_member(lid, h("taken@example.org"), {"email_address": "fresh@example.org"})
    assert problem(ei)["detail"] == ('This member\'s status is "cleaned." You can only update email addresses '
                                     'for members with a status of "subscribed."')
    sdk_client.lists.set_list_member(lid, h("gdpr@example.org"), {"email_address": "gdpr@example.org",
                                                                 "status_if_new": "subscribed"})
    sdk_client.lists.delete_list_member_permanent(lid, h("gdpr@example.org"))
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.update_list_member(lid, h("old@example.org"), {"email_address": "gdpr@example.org"})
    assert problem(ei)["title"] == "Forgotten Email Not Subscribed"
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.update_list_member(lid, h("old@example.org"), {"email_address": "not-an-email"})
    assert problem(ei)["detail"] == "Please provide a valid email address."


def test_rename_fires_upemail(sdk_client, lid, emulator, webhook_receiver):
    emulator.control.settings(webhook_delivery="sync")
    sdk_client.lists.create_list_webhook(lid, {"url": webhook_receiver.url, "events": {"upemail": True},
                                               "sources": {"api": True}})
    m = sdk_client.lists.update_list_member(lid, h("old@example.org"), {"email_address": "new@example.org"})
    (d,) = emulator.control.deliveries()
    assert d["type"] == "upemail" and d["data"]["data[old_email]"] == "old@example.org"
    assert d["data"]["data[new_email]"] == "new@example.org" and d["data"]["data[new_id]"] == m["unique_email_id"]


def test_renames_inside_a_batch(sdk_client, lid, emulator):
    emulator.control.settings(batch_auto_run=False)
    ops = [
        {"method": "PUT", "path": f"/lists/{lid}/members/{h('old@example.org')}", "operation_id": "rename",
         "body": json.dumps({"email_address": "new@example.org", "status_if_new": "subscribed"})},
        {"method": "PATCH", "path": f"/lists/{lid}/members/{h('old@example.org')}", "operation_id": "stale",
         "body": json.dumps({"merge_fields": {"FNAME": "late"}})},
        {"method": "PATCH", "path": f"/lists/{lid}/members/{h('new@example.org')}", "operation_id": "clash",
         "body": json.dumps({"email_address": "taken@example.org"})},
    ]
    batch = sdk_client.batches.start({"operations": ops})
    emulator.control.run_batches()
    done = sdk_client.batches.status(batch["id"])
    assert (done["total_operations"], done["errored_operations"]) == (3, 2)
    rows = _results(done["response_body_url"])
    assert rows["rename"]["status_code"] == 200
    assert json.loads(rows["rename"]["response"])["id"] == h("new@example.org")
    assert rows["stale"]["status_code"] == 404
    assert json.loads(rows["clash"]["response"])["title"] == "Member Exists"
    assert sdk_client.lists.get_list_member(lid, h("new@example.org"))["merge_fields"]["FNAME"] == "Olga"


def _results(url):
    import io
    import tarfile

    import requests
    out = {}
    with tarfile.open(fileobj=io.BytesIO(requests.get(url, timeout=10).content), mode="r:gz") as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isfile() else b""
            for row in json.loads(data) if data else []:
                out[row["operation_id"]] = row
    return out
