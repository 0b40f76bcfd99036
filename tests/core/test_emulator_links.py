"""Issue 9's emulator defect: a list's ``stats.last_sub_date`` /
``last_unsub_date`` follow the last subscribe and unsubscribe, and every
resource and collection carries Mailchimp's ``_links`` with absolute hrefs
on the emulator's base URL, which a client can follow."""

import hashlib
import json

import pytest
import requests


def h(email):
    return hashlib.md5(email.lower().encode()).hexdigest()


def rels(obj):
    return [link["rel"] for link in obj["_links"]]


def link(obj, rel):
    found = [x for x in obj["_links"] if x["rel"] == rel]
    assert len(found) == 1, (rel, rels(obj))
    return found[0]


def follow(emulator, obj, rel):
    """GET a link's href as a client would; returns the JSON answer."""
    lk = link(obj, rel)
    assert lk["method"] == "GET"
    assert lk["href"].startswith(emulator.api_base + "/"), lk["href"]
    r = requests.get(lk["href"], auth=("user", emulator.api_key), timeout=10)
    assert r.status_code == 200, (lk["href"], r.text)
    return r.json()


@pytest.fixture
def seeded(emulator):
    out = emulator.control.seed([{
        "name": "Newsletter",
        "interest_categories": [{"title": "Topics", "type": "checkboxes", "interests": [{"name": "Events"}]}],
        "members": [{"email_address": "anna@example.org", "tags": ["odoo"]}],
    }])
    return out["lists"][0]


# --- stats.last_sub_date / last_unsub_date -----------------------------------------

def test_last_sub_and_unsub_dates_follow_the_last_change(sdk_client, emulator):
    ctl = emulator.control
    lid = ctl.seed([{"name": "Plain"}])["list_ids"][0]
    stats = sdk_client.lists.get_list(lid)["stats"]
    assert stats["last_sub_date"] == "" and stats["last_unsub_date"] == ""

    ctl.clock(now="2024-05-01T09:00:00Z")
    sdk_client.lists.set_list_member(lid, h("a@example.org"), {"email_address": "a@example.org",
                                                              "status_if_new": "subscribed"})
    stats = sdk_client.lists.get_list(lid)["stats"]
    assert stats["last_sub_date"] == "2024-05-01T09:00:00+00:00" and stats["last_unsub_date"] == ""

    ctl.clock(advance=60)  # created pending: nobody subscribed yet
    sdk_client.lists.add_list_member(lid, {"email_address": "p@example.org", "status": "pending"})
    assert sdk_client.lists.get_list(lid)["stats"]["last_sub_date"] == "2024-05-01T09:00:00+00:00"

    ctl.clock(advance=60)  # API unsubscribe
    sdk_client.lists.update_list_member(lid, h("a@example.org"), {"status": "unsubscribed"})
    stats = sdk_client.lists.get_list(lid)["stats"]
    assert stats["last_unsub_date"] == "2024-05-01T09:02:00+00:00"
    assert stats["last_sub_date"] == "2024-05-01T09:00:00+00:00"

    ctl.clock(advance=60)  # the person confirms the pending opt-in
    ctl.confirm_pending(lid, "p@example.org")
    assert sdk_client.lists.get_list(lid)["stats"]["last_sub_date"] == "2024-05-01T09:03:00+00:00"

    ctl.clock(advance=60)  # the person clicks an unsubscribe link
    ctl.user_unsubscribe(lid, "p@example.org")
    stats = sdk_client.lists.get_list(lid)["stats"]
    assert stats["last_unsub_date"] == "2024-05-01T09:04:00+00:00"

    ctl.clock(advance=60)  # archiving is not unsubscribing
    sdk_client.lists.delete_list_member(lid, h("a@example.org"))
    assert sdk_client.lists.get_list(lid)["stats"]["last_unsub_date"] == "2024-05-01T09:04:00+00:00"

    ctl.clock(advance=60)  # re-subscribe inside a batch
    ctl.settings(batch_auto_run=False)
    sdk_client.batches.start({"operations": [{
        "method": "PUT", "path": f"/lists/{lid}/members/{h('a@example.org')}",
        "body": json.dumps({"status": "subscribed"})}]})
    ctl.run_batches()
    all_lists = sdk_client.lists.get_all_lists()["lists"]
    assert all_lists[0]["stats"]["last_sub_date"] == "2024-05-01T09:06:00+00:00"


def test_seeded_members_set_the_dates(emulator, sdk_client):
    ctl = emulator.control
    ctl.clock(now="2024-06-01T00:00:00Z")
    lid = ctl.seed([{"name": "Seeded", "members": [
        {"email_address": "s@example.org", "last_changed": "2024-03-01T10:00:00Z"},
        {"email_address": "u@example.org", "status": "unsubscribed", "last_changed": "2024-04-01T10:00:00Z"},
    ]}])["list_ids"][0]
    stats = sdk_client.lists.get_list(lid)["stats"]
    assert stats["last_sub_date"] == "2024-03-01T10:00:00+00:00"
    assert stats["last_unsub_date"] == "2024-04-01T10:00:00+00:00"
    gen = ctl.seed([{"name": "Generated", "generate_members": 50,
                     "status_mix": {"subscribed": 0.5, "unsubscribed": 0.5}}])["list_ids"][0]
    stats = sdk_client.lists.get_list(gen)["stats"]
    assert stats["last_sub_date"].startswith("2024-05-31T23:59:")
    assert stats["last_unsub_date"].startswith("2024-05-31T23:59:")


# --- _links ------------------------------------------------------------------------

def test_list_links(sdk_client, emulator, seeded):
    lst = sdk_client.lists.get_list(seeded["id"])
    assert rels(lst)[:5] == ["self", "parent", "update", "batch-sub-unsub-members", "delete"]
    assert {"members", "merge-fields", "interest-categories", "webhooks"} <= set(rels(lst))
    assert link(lst, "self")["href"] == f"{emulator.api_base}/lists/{seeded['id']}"
    assert link(lst, "self")["targetSchema"].endswith("/schema/3.0/Definitions/Lists/Response.json")
    assert link(lst, "update")["method"] == "PATCH" and link(lst, "delete")["method"] == "DELETE"
    assert follow(emulator, lst, "self")["id"] == seeded["id"]
    assert follow(emulator, lst, "parent")["lists"][0]["id"] == seeded["id"]
    assert follow(emulator, lst, "members")["total_items"] == 1
    assert follow(emulator, lst, "merge-fields")["list_id"] == seeded["id"]
    coll = sdk_client.lists.get_all_lists()
    assert rels(coll) == ["self", "parent", "create"]
    assert link(coll, "self")["href"] == f"{emulator.api_base}/lists"
    assert link(coll, "create")["method"] == "POST"


def test_member_links(sdk_client, emulator, seeded):
    lid = seeded["id"]
    m = sdk_client.lists.get_list_member(lid, h("anna@example.org"))
    assert rels(m) == ["self", "parent", "update", "upsert", "delete", "activity", "goals", "notes",
                       "delete_permanent"]
    href = f"{emulator.api_base}/lists/{lid}/members/{m['id']}"
    assert link(m, "self")["href"] == href
    assert link(m, "upsert") == {"rel": "upsert", "href": href, "method": "PUT",
                                 "targetSchema": f"{emulator.url}/schema/3.0/Definitions/Lists/Members/Response.json",
                                 "schema": f"{emulator.url}/schema/3.0/Definitions/Lists/Members/PUT.json"}
    assert link(m, "delete_permanent")["href"] == href + "/actions/delete-permanent"
    assert follow(emulator, m, "self")["email_address"] == "anna@example.org"
    page = follow(emulator, m, "parent")
    assert page["members"][0]["_links"] == m["_links"]
    assert rels(page) == ["self", "parent", "create"]
    assert follow(emulator, page, "parent")["id"] == lid
    # the answer of a write carries them too
    put = sdk_client.lists.set_list_member(lid, h("bob@example.org"), {"email_address": "bob@example.org",
                                                                      "status_if_new": "subscribed"})
    assert link(put, "self")["href"].endswith("/members/" + h("bob@example.org"))
    # asked-for fields only: no links unless named
    only = sdk_client.lists.get_list_members_info(lid, fields=["members.email_address", "total_items"])
    assert "_links" not in only and "_links" not in only["members"][0]
    named = sdk_client.lists.get_list_members_info(lid, fields=["members._links"])
    assert set(named) == {"members"} and rels(named["members"][0])[0] == "self"
    tags = sdk_client.lists.get_list_member_tags(lid, m["id"])
    assert link(tags, "self")["href"] == href + "/tags"
    assert follow(emulator, tags, "parent")["id"] == m["id"]


def test_member_links_follow_an_email_change(sdk_client, seeded):
    lid = seeded["id"]
    m = sdk_client.lists.update_list_member(lid, h("anna@example.org"), {"email_address": "anne@example.org"})
    assert link(m, "self")["href"].endswith("/members/" + h("anne@example.org"))


def test_merge_field_category_interest_links(sdk_client, emulator, seeded):
    lid, base = seeded["id"], f"{emulator.api_base}/lists/{seeded['id']}"
    mfs = sdk_client.lists.get_list_merge_fields(lid)
    assert link(mfs, "self")["href"] == base + "/merge-fields"
    assert link(mfs, "parent")["href"] == base
    fname = mfs["merge_fields"][0]
    assert rels(fname) == ["self", "parent", "update", "delete"]
    assert link(fname, "self")["href"] == f"{base}/merge-fields/{fname['merge_id']}"
    assert follow(emulator, fname, "self")["tag"] == fname["tag"]

    cats = sdk_client.lists.get_list_interest_categories(lid)
    assert link(cats, "self")["href"] == base + "/interest-categories"
    cat = cats["categories"][0]
    assert rels(cat) == ["self", "parent", "update", "delete", "interests"]
    interests = follow(emulator, cat, "interests")
    assert rels(interests) == ["self", "parent", "create"]
    assert follow(emulator, interests, "parent")["id"] == cat["id"]
    it = interests["interests"][0]
    assert link(it, "self")["href"] == f"{base}/interest-categories/{cat['id']}/interests/{it['id']}"
    assert follow(emulator, it, "self")["name"] == "Events"
    assert follow(emulator, it, "parent")["total_items"] == 1


def test_webhook_links(sdk_client, emulator, seeded, webhook_receiver):
    lid = seeded["id"]
    wh = sdk_client.lists.create_list_webhook(lid, {"url": webhook_receiver.url + "/hook",
                                                    "events": {"subscribe": True}, "sources": {"user": True}})
    assert rels(wh) == ["self", "parent", "update", "delete"]
    assert follow(emulator, wh, "self")["id"] == wh["id"]
    coll = sdk_client.lists.get_list_webhooks(lid)
    assert link(coll, "self")["href"] == f"{emulator.api_base}/lists/{lid}/webhooks"
    assert coll["webhooks"][0]["_links"] == wh["_links"]
    bw = sdk_client.batchWebhooks.create({"url": webhook_receiver.url + "/batch"})
    assert link(bw, "self")["href"] == f"{emulator.api_base}/batch-webhooks/{bw['id']}"
    assert follow(emulator, bw, "parent")["webhooks"][0]["id"] == bw["id"]


def test_batch_links_and_links_inside_batch_results(sdk_client, emulator, seeded):
    import io
    import tarfile

    lid = seeded["id"]
    emulator.control.settings(batch_auto_run=False)
    batch = sdk_client.batches.start({"operations": [
        {"method": "GET", "path": f"/lists/{lid}/members/{h('anna@example.org')}", "operation_id": "one"}]})
    assert rels(batch) == ["parent", "self", "delete"]
    assert link(batch, "self")["href"] == f"{emulator.api_base}/batches/{batch['id']}"
    emulator.control.run_batches()
    done = follow(emulator, batch, "self")
    assert done["status"] == "finished"
    assert link(sdk_client.batches.list(), "self")["href"] == f"{emulator.api_base}/batches"
    archive = requests.get(done["response_body_url"], timeout=10)
    rows = []
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isfile() else b""
            if data:
                rows += json.loads(data)
    body = json.loads(rows[0]["response"])
    assert link(body, "self")["href"] == f"{emulator.api_base}/lists/{lid}/members/{h('anna@example.org')}"


def test_links_can_be_switched_off(sdk_client, emulator, seeded):
    emulator.control.settings(resource_links=False)
    lid = seeded["id"]
    page = sdk_client.lists.get_list_members_info(lid)
    assert page["_links"] == [] and page["members"][0]["_links"] == []
    assert sdk_client.lists.get_list(lid)["_links"] == []
    assert sdk_client.lists.get_list_merge_fields(lid)["merge_fields"][0]["_links"] == []
