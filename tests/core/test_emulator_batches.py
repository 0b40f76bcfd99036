"""Batches: operations with string bodies, the lifecycle, the results archive
(downloaded with plain requests, no auth), listing, delete, the 500 limit."""

import hashlib
import io
import json
import tarfile
import time

import pytest
import requests
from mailchimp_marketing.api_client import ApiClientError


def h(email):
    return hashlib.md5(email.lower().encode()).hexdigest()


@pytest.fixture
def lid(emulator):
    return emulator.control.seed([{"name": "Newsletter", "members": [
        {"email_address": "locked@example.org", "status": "unsubscribed", "unsubscribe_origin": "user"}]}]
    )["list_ids"][0]


def ops_for(lid):
    return [
        {"method": "PUT", "path": f"/lists/{lid}/members/{h('jane@example.org')}", "operation_id": "odoo-1",
         "body": json.dumps({"email_address": "jane@example.org", "status_if_new": "subscribed",
                             "merge_fields": {"FNAME": "Jane"}})},
        {"method": "PUT", "path": f"/lists/{lid}/members/{h('locked@example.org')}", "operation_id": "odoo-2",
         "body": json.dumps({"email_address": "locked@example.org", "status": "subscribed"})},
        {"method": "GET", "path": f"/lists/{lid}/members", "params": {"count": 1000, "offset": 0},
         "operation_id": "page-0"},
        {"method": "POST", "path": f"/lists/{lid}/members/{h('jane@example.org')}/tags",
         "body": json.dumps({"tags": [{"name": "odoo", "status": "active"}]})},
    ]


def read_archive(url):
    r = requests.get(url, timeout=10)
    assert r.status_code == 200
    rows, names, empty = [], [], 0
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            names.append(member.name)
            data = tar.extractfile(member).read()
            if not data.strip():
                empty += 1
                continue
            rows += json.loads(data)
    return rows, names, empty


def test_batch_roundtrip(sdk_client, emulator, lid):
    emulator.control.settings(batch_auto_run=False)
    b = sdk_client.batches.start({"operations": ops_for(lid)})
    assert b["status"] == "pending" and b["total_operations"] == 0
    assert b["completed_at"] == "" and b["response_body_url"] == "" and len(b["id"]) == 10
    assert emulator.control.run_batches()["finished"] == [b["id"]]
    done = sdk_client.batches.status(b["id"])
    assert done["status"] == "finished" and done["total_operations"] == 4
    assert done["finished_operations"] == 4 and done["errored_operations"] == 1
    assert done["completed_at"].endswith("+00:00")
    assert done["response_body_url"].startswith(emulator.url + "/_batch-results/")
    rows, names, empty = read_archive(done["response_body_url"])
    assert empty >= 1 and len(names) >= 3 and all(n.startswith("./") for n in names)
    by_op = {r["operation_id"]: r for r in rows}
    assert by_op["odoo-1"]["status_code"] == 200
    assert json.loads(by_op["odoo-1"]["response"])["merge_fields"]["FNAME"] == "Jane"
    locked = json.loads(by_op["odoo-2"]["response"])
    assert by_op["odoo-2"]["status_code"] == 400 and locked["title"] == "Member In Compliance State"
    assert json.loads(by_op["page-0"]["response"])["total_items"] == 2
    tag_row = by_op[None]
    assert tag_row["status_code"] == 204 and tag_row["response"] == ""
    # same member logic as a direct call: the batch really changed the member
    m = sdk_client.lists.get_list_member(lid, h("jane@example.org"))
    assert [t["name"] for t in m["tags"]] == ["odoo"]


def test_batch_lifecycle_auto(sdk_client, emulator, lid):
    emulator.control.settings(batch_delay=0.3, batch_started_seconds=0.4)
    b = sdk_client.batches.start({"operations": ops_for(lid)[:1]})
    seen = []
    end = time.monotonic() + 10
    while time.monotonic() < end:
        st = sdk_client.batches.status(b["id"])["status"]
        if not seen or seen[-1] != st:
            seen.append(st)
        if st == "finished":
            break
        time.sleep(0.05)
    assert seen == ["pending", "started", "finished"]


def test_archive_refuses_auth_and_expires(sdk_client, emulator, lid):
    emulator.control.settings(batch_auto_run=False, results_expiry_seconds=600)
    b = sdk_client.batches.start({"operations": ops_for(lid)[:1]})
    emulator.control.run_batches()
    url = sdk_client.batches.status(b["id"])["response_body_url"]
    r = requests.get(url, auth=("u", emulator.api_key), timeout=10)
    assert r.status_code == 403
    assert requests.get(url.replace("Signature=", "Signature=0"), timeout=10).status_code == 403
    assert requests.get(url, timeout=10).status_code == 200
    emulator.control.clock(advance=601)
    assert requests.get(url, timeout=10).status_code == 403


def test_result_files_setting(sdk_client, emulator, lid):
    emulator.control.settings(batch_auto_run=False, batch_result_files=3, batch_result_dir="results/")
    b = sdk_client.batches.start({"operations": ops_for(lid)})
    emulator.control.run_batches()
    rows, names, empty = read_archive(sdk_client.batches.status(b["id"])["response_body_url"])
    assert len(rows) == 4 and len(names) == 4 and empty >= 1
    assert all(n.startswith("results/") for n in names)


def test_batch_list_and_delete(sdk_client, emulator, lid):
    emulator.control.settings(batch_auto_run=False)
    ids = [sdk_client.batches.start({"operations": ops_for(lid)[:1]})["id"] for _ in range(3)]
    page = sdk_client.batches.list(count=2, offset=0)
    assert page["total_items"] == 3 and len(page["batches"]) == 2
    r = sdk_client.batches.delete_request(ids[0])
    assert r.status_code == 204
    with pytest.raises(ApiClientError) as ei:
        sdk_client.batches.status(ids[0])
    assert ei.value.status_code == 404
    assert sdk_client.batches.list()["total_items"] == 2


def test_batch_body_must_be_object(emulator, lid):
    r = requests.post(f"{emulator.api_base}/batches", auth=("u", emulator.api_key), timeout=10,
                      data=json.dumps([{"method": "GET", "path": "/ping"}]))
    assert r.status_code == 400 and "array found instead" in r.text


def test_pending_batch_limit(sdk_client, emulator, lid):
    emulator.control.settings(batch_auto_run=False, max_pending_batches=3)
    for _ in range(3):
        sdk_client.batches.start({"operations": []})
    with pytest.raises(ApiClientError) as ei:
        sdk_client.batches.start({"operations": []})
    assert ei.value.status_code == 429 and json.loads(ei.value.text)["title"] == "Too Many Requests"
    emulator.control.run_batches()
    assert sdk_client.batches.start({"operations": []})["status"] == "pending"


def test_batch_limit_default_is_500(sdk_client, emulator):
    emulator.control.settings(batch_auto_run=False)
    for _ in range(500):
        requests.post(f"{emulator.api_base}/batches", auth=("u", emulator.api_key), timeout=10,
                      data='{"operations": []}').raise_for_status()
    r = requests.post(f"{emulator.api_base}/batches", auth=("u", emulator.api_key), timeout=10,
                      data='{"operations": []}')
    assert r.status_code == 429


def test_read_batch_gives_results_once_finished(emulator, lid):
    """read_batch: the status alone until the batch is finished, then its
    results by update id from the archive the status names; operations the
    sync did not send (no update id) are left out."""
    from mailchimp_sync.batches import operation_id, read_batch
    from mailchimp_sync.client import MailchimpClient

    emulator.control.settings(batch_auto_run=False)
    client = MailchimpClient(emulator.api_key, base_url=emulator.api_base, timeout=5)
    ops = [
        {"method": "PUT", "path": f"/lists/{lid}/members/{h('jane@example.org')}", "operation_id": operation_id(7),
         "body": json.dumps({"email_address": "jane@example.org", "status_if_new": "subscribed"})},
        {"method": "PUT", "path": f"/lists/{lid}/members/{h('locked@example.org')}", "operation_id": operation_id(8),
         "body": json.dumps({"email_address": "locked@example.org", "status": "subscribed"})},
        {"method": "GET", "path": f"/lists/{lid}", "operation_id": "someone-else-1"},
    ]
    batch = client.start_batch(ops)
    info, results = read_batch(client, batch["id"])
    assert info["status"] == "pending" and results is None
    emulator.control.run_batches()
    info, results = read_batch(client, batch["id"])
    assert info["status"] == "finished"
    assert sorted(results) == [7, 8]
    assert results[7].ok and results[7].body["status"] == "subscribed"
    assert not results[8].ok and results[8].status_code == 400


def test_an_archive_cut_short_is_a_retryable_error_and_reads_whole_later(emulator, lid):
    """A results archive that arrives cut short (the download looked whole)
    is an error like Mailchimp's own, retryable, with a sentence; the next
    reading gets the whole archive."""
    from mailchimp_sync.batches import operation_id, read_batch
    from mailchimp_sync.client import MailchimpClient
    from mailchimp_sync.exceptions import MailchimpRetryableError

    emulator.control.settings(batch_auto_run=False)
    client = MailchimpClient(emulator.api_key, base_url=emulator.api_base, timeout=5)
    batch = client.start_batch([
        {"method": "PUT", "path": f"/lists/{lid}/members/{h(f'cut{i}@example.org')}", "operation_id": operation_id(i),
         "body": json.dumps({"email_address": f"cut{i}@example.org", "status_if_new": "subscribed"})}
        for i in range(1, 201)])
    emulator.control.run_batches()
    emulator.control.faults(rules=[{"method": "GET", "path": "^/_batch-results/", "kind": "truncated"}])
    with pytest.raises(MailchimpRetryableError, match="batch results could not be read") as caught:
        read_batch(client, batch["id"])
    assert caught.value.retryable
    assert [f["kind"] for f in emulator.control.fault_report()["injected"]] == ["truncated"]
    _info, results = read_batch(client, batch["id"])
    assert sorted(results) == list(range(1, 201))


def test_random_faults_leave_downloads_alone(emulator, lid):
    from mailchimp_sync.batches import read_results
    from mailchimp_sync.client import MailchimpClient

    emulator.control.settings(batch_auto_run=False)
    client = MailchimpClient(emulator.api_key, base_url=emulator.api_base, timeout=5)
    batch = client.start_batch([{"method": "GET", "path": f"/lists/{lid}", "operation_id": "someone-else-1"}])
    emulator.control.run_batches()
    url = client.get_batch(batch["id"])["response_body_url"]
    emulator.control.faults(rate=1.0, kinds=["500"], seed=1)
    assert read_results(client, url) == {}, "read whole, every other request failing"
