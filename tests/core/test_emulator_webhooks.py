"""List and batch webhooks: registration (validating GET, duplicates),
deliveries form-encoded as Mailchimp's, the events x sources filter, and the
delivery record -- observed through a small HTTP receiver."""

import hashlib
import json
import re
import socket

import pytest
from mailchimp_marketing.api_client import ApiClientError

ALL_EVENTS = {"subscribe": True, "unsubscribe": True, "profile": True, "cleaned": True, "upemail": True,
              "campaign": True}


def h(email):
    return hashlib.md5(email.lower().encode()).hexdigest()


@pytest.fixture
def lid(emulator):
    return emulator.control.seed([{"name": "Newsletter", "interest_categories": [
        {"title": "Topics", "type": "checkboxes", "interests": [{"name": "Events"}, {"name": "News"}]}],
        "members": [{"email_address": "anna@example.org", "merge_fields": {"FNAME": "Anna"},
                     "interests": {"Events": True, "News": True}}]}])["list_ids"][0]


def hook(sdk, lid, url, api=False, user=True, admin=True, **events):
    ev = dict(ALL_EVENTS, **events)
    return sdk.lists.create_list_webhook(lid, {"url": url, "events": ev,
                                               "sources": {"user": user, "admin": admin, "api": api}})


def posts(emulator, rx, n=None):
    emulator.control.flush_webhooks()
    if n:
        rx.wait_posts(n)
    return [dict(p["form"]) for p in rx.posts]


def test_registration_validates_with_get(sdk_client, lid, webhook_receiver):
    wh = hook(sdk_client, lid, webhook_receiver.url + "/hook/SECRET")
    assert webhook_receiver.gets[0]["headers"]["User-Agent"] == "MailChimp.com WebHook Validator"
    assert webhook_receiver.gets[0]["path"] == "/hook/SECRET"
    assert len(wh["id"]) == 10 and wh["list_id"] == lid
    assert wh["sources"] == {"user": True, "admin": True, "api": False}
    webhook_receiver.get_status = 404
    with pytest.raises(ApiClientError) as ei:
        hook(sdk_client, lid, webhook_receiver.url + "/other")
    body = json.loads(ei.value.text)
    assert ei.value.status_code == 400 and body["detail"] == (
        "We couldn't verify the URL is working. Please double check and try again. HTTP Code: 404")


def test_registration_unreachable(sdk_client, lid):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ApiClientError) as ei:
        hook(sdk_client, lid, f"http://127.0.0.1:{port}/x")
    assert "couldn't verify" in json.loads(ei.value.text)["detail"]


def test_validation_can_be_switched_off(sdk_client, lid, emulator, webhook_receiver):
    emulator.control.settings(webhook_validate_get=False)
    hook(sdk_client, lid, webhook_receiver.url + "/x")
    assert webhook_receiver.gets == []


def test_duplicate_url_refused(sdk_client, lid, webhook_receiver):
    hook(sdk_client, lid, webhook_receiver.url + "/hook?a=1")
    with pytest.raises(ApiClientError) as ei:
        hook(sdk_client, lid, webhook_receiver.url + "/hook?b=2")
    body = json.loads(ei.value.text)
    assert body["errors"][0]["message"] == "Sorry, you can't set up multiple WebHooks for one URL"


def test_webhook_crud_flags(sdk_client, lid, webhook_receiver):
    wh = sdk_client.lists.create_list_webhook(lid, {"url": webhook_receiver.url + "/a",
                                                    "events": {"subscribe": True}, "sources": {"user": True}})
    assert wh["events"] == {"subscribe": True, "unsubscribe": False, "profile": False, "cleaned": False,
                            "upemail": False, "campaign": False}
    assert wh["sources"] == {"user": True, "admin": False, "api": False}
    assert sdk_client.lists.get_list_webhooks(lid)["total_items"] == 1
    upd = sdk_client.lists.update_list_webhook(lid, wh["id"], {"sources": {"api": True}})
    assert upd["sources"] == {"user": True, "admin": False, "api": True}
    assert sdk_client.lists.get_list_webhook(lid, wh["id"])["sources"]["api"] is True
    assert sdk_client.lists.delete_list_webhook(lid, wh["id"]).status_code == 204
    assert sdk_client.lists.get_list_webhooks(lid)["webhooks"] == []


def test_user_unsubscribe_payload(sdk_client, lid, emulator, webhook_receiver):
    hook(sdk_client, lid, webhook_receiver.url + "/hook")
    member = sdk_client.lists.get_list_member(lid, h("anna@example.org"))
    emulator.control.user_unsubscribe(lid, "anna@example.org", reason="abuse", campaign_id="cb398d21d2")
    (p,) = posts(emulator, webhook_receiver, 1)
    req = webhook_receiver.posts[0]
    assert req["headers"]["User-Agent"] == "MailChimp.com"
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert "data%5Baction%5D=unsub" in req["body"]
    assert p["type"] == "unsubscribe" and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", p["fired_at"])
    assert p["data[action]"] == "unsub" and p["data[reason]"] == "abuse"
    assert p["data[campaign_id]"] == "cb398d21d2" and p["data[list_id]"] == lid
    assert p["data[id]"] == member["unique_email_id"] and p["data[web_id]"] == str(member["web_id"])
    assert p["data[email]"] == "anna@example.org" and p["data[merges][FNAME]"] == "Anna"
    assert p["data[merges][EMAIL]"] == "anna@example.org"


def test_subscribe_payload_interests_and_groupings(sdk_client, lid, emulator, webhook_receiver):
    hook(sdk_client, lid, webhook_receiver.url + "/hook")
    emulator.control.user_signup(lid, "new@example.org", merge_fields={"FNAME": "New"})
    ids = emulator.control.seed([{"id": lid}])["lists"][0]
    emulator.control.admin_update(lid, "new@example.org", interests={ids["interests"]["News"]: True})
    sub, prof = posts(emulator, webhook_receiver, 2)
    assert sub["type"] == "subscribe" and sub["data[merges][FNAME]"] == "New"
    assert sub["data[merges][INTERESTS]"] == ""
    assert prof["type"] == "profile" and prof["data[merges][INTERESTS]"] == "News"
    assert prof["data[merges][GROUPINGS][0][unique_id]"] == ids["categories"]["Topics"]
    assert prof["data[merges][GROUPINGS][0][name]"] == "Topics"
    assert prof["data[merges][GROUPINGS][0][groups]"] == "News"
    assert prof["data[merges][GROUPINGS][0][id]"].isdigit()
    d = emulator.control.deliveries()
    assert [x["source"] for x in d] == ["user", "admin"]


def test_api_source_filter_and_echo(sdk_client, lid, emulator, webhook_receiver):
    hook(sdk_client, lid, webhook_receiver.url + "/no-api")
    sdk_client.lists.set_list_member(lid, h("x@example.org"), {"email_address": "x@example.org",
                                                              "status_if_new": "subscribed"})
    assert posts(emulator, webhook_receiver) == []
    hook(sdk_client, lid, webhook_receiver.url + "/with-api", api=True)
    sdk_client.lists.set_list_member(lid, h("x@example.org"), {"merge_fields": {"FNAME": "Echo"}})
    (p,) = posts(emulator, webhook_receiver, 1)
    assert p["type"] == "profile" and p["data[merges][FNAME]"] == "Echo"
    assert webhook_receiver.posts[0]["path"] == "/with-api"


def test_event_flags_filter(sdk_client, lid, emulator, webhook_receiver):
    hook(sdk_client, lid, webhook_receiver.url + "/only-sub", unsubscribe=False)
    emulator.control.user_unsubscribe(lid, "anna@example.org")
    assert posts(emulator, webhook_receiver) == []


def test_upemail_and_api_unsubscribe(sdk_client, lid, emulator, webhook_receiver):
    hook(sdk_client, lid, webhook_receiver.url + "/hook", api=True)
    m = sdk_client.lists.set_list_member(lid, h("anna@example.org"), {"email_address": "anna2@example.org"})
    sdk_client.lists.set_list_member(lid, m["id"], {"status": "unsubscribed"})
    up, unsub = posts(emulator, webhook_receiver, 2)
    assert up == {"type": "upemail", "fired_at": up["fired_at"], "data[new_id]": m["unique_email_id"],
                  "data[new_email]": "anna2@example.org", "data[old_email]": "anna@example.org",
                  "data[list_id]": lid}
    assert unsub["type"] == "unsubscribe" and unsub["data[action]"] == "unsub"


def test_cleaned_archive_and_campaign(sdk_client, lid, emulator, webhook_receiver):
    hook(sdk_client, lid, webhook_receiver.url + "/hook", user=False, admin=False, api=False)
    emulator.control.campaign(lid, campaign_id="c1", subject="Hello")  # ignores sources
    assert [p["type"] for p in posts(emulator, webhook_receiver, 1)] == ["campaign"]
    webhook_receiver.clear()
    hook(sdk_client, lid, webhook_receiver.url + "/all", user=True, admin=True)
    emulator.control.bounce(lid, "anna@example.org", reason="hard")
    sdk_client.lists.set_list_member(lid, h("b@example.org"), {"email_address": "b@example.org",
                                                              "status_if_new": "subscribed"})
    emulator.control.admin_archive(lid, "b@example.org")
    cleaned, archived = posts(emulator, webhook_receiver, 2)
    assert cleaned["type"] == "cleaned" and cleaned["data[reason]"] == "hard"
    assert cleaned["data[email]"] == "anna@example.org"
    assert archived["type"] == "unsubscribe" and archived["data[action]"] == "delete"


def test_no_event_for_pending_create_and_tags(sdk_client, lid, emulator, webhook_receiver):
    hook(sdk_client, lid, webhook_receiver.url + "/hook", api=True)
    sdk_client.lists.set_list_member(lid, h("p@example.org"), {"email_address": "p@example.org",
                                                              "status_if_new": "pending"})
    sdk_client.lists.update_list_member_tags(lid, h("anna@example.org"),
                                             {"tags": [{"name": "t", "status": "active"}]})
    assert posts(emulator, webhook_receiver) == []
    emulator.control.confirm_pending(lid, "p@example.org")
    (p,) = posts(emulator, webhook_receiver, 1)
    assert p["type"] == "subscribe" and p["data[email]"] == "p@example.org"
    assert emulator.control.deliveries()[-1]["source"] == "user"


def test_batch_operations_fire_api_webhooks(sdk_client, lid, emulator, webhook_receiver):
    hook(sdk_client, lid, webhook_receiver.url + "/hook", api=True)
    emulator.control.settings(batch_auto_run=False)
    sdk_client.batches.start({"operations": [
        {"method": "PATCH", "path": f"/lists/{lid}/members/{h('anna@example.org')}",
         "body": json.dumps({"merge_fields": {"FNAME": "Batch"}})}]})
    emulator.control.run_batches()
    (p,) = posts(emulator, webhook_receiver, 1)
    assert p["type"] == "profile" and p["data[merges][FNAME]"] == "Batch"


def test_delivery_record_retries_and_failure(sdk_client, lid, emulator, webhook_receiver):
    emulator.control.settings(webhook_retries=2, webhook_retry_delay=0.05)
    hook(sdk_client, lid, webhook_receiver.url + "/hook")
    webhook_receiver.status = 500
    emulator.control.user_unsubscribe(lid, "anna@example.org")
    emulator.control.flush_webhooks()
    (d,) = emulator.control.deliveries()
    assert d["status"] == "failed" and len(d["attempts"]) == 3
    assert d["attempts"][0]["status_code"] == 500 and d["url"].endswith("/hook")
    assert d["data"]["type"] == "unsubscribe" and "data%5Bemail%5D" in d["body"]
    assert emulator.control.deliveries(clear=True) and emulator.control.deliveries() == []


def test_delivery_timeout(sdk_client, lid, emulator, webhook_receiver):
    emulator.control.settings(webhook_timeout=0.3, webhook_retries=0)
    hook(sdk_client, lid, webhook_receiver.url + "/slow")
    webhook_receiver.latency = 1.0
    emulator.control.user_unsubscribe(lid, "anna@example.org")
    emulator.control.flush_webhooks()
    (d,) = emulator.control.deliveries()
    assert d["status"] == "failed" and "Timeout" in d["attempts"][0]["error"]


def test_default_timeout_is_10s(emulator):
    assert emulator.control.settings()["webhook_timeout"] == 10


def test_sync_and_off_delivery(sdk_client, lid, emulator, webhook_receiver):
    hook(sdk_client, lid, webhook_receiver.url + "/hook")
    emulator.control.settings(webhook_delivery="sync")
    emulator.control.user_unsubscribe(lid, "anna@example.org")
    assert len(webhook_receiver.posts) == 1  # delivered before the call returned
    emulator.control.settings(webhook_delivery="off")
    emulator.control.bounce(lid, "anna@example.org")
    emulator.control.flush_webhooks()
    assert len(webhook_receiver.posts) == 1 and emulator.control.deliveries()[-1]["status"] == "off"


def test_batch_webhooks(sdk_client, lid, emulator, webhook_receiver):
    emulator.control.settings(batch_auto_run=False)
    bw = sdk_client.batchWebhooks.create({"url": webhook_receiver.url + "/batch"})
    assert bw["enabled"] is True and len(bw["id"]) == 10
    assert webhook_receiver.gets[0]["path"] == "/batch"
    assert sdk_client.batchWebhooks.list()["webhooks"][0]["id"] == bw["id"]
    b = sdk_client.batches.start({"operations": [{"method": "GET", "path": "/ping"}]})
    emulator.control.run_batches()
    (p,) = posts(emulator, webhook_receiver, 1)
    assert p["type"] == "batch_operation_completed" and p["data[id]"] == b["id"]
    assert p["data[status]"] == "finished"
    assert p["data[response_body_url]"] == sdk_client.batches.status(b["id"])["response_body_url"]
    assert sdk_client.batchWebhooks.update(bw["id"], {"enabled": False})["enabled"] is False
    assert sdk_client.batchWebhooks.get(bw["id"])["enabled"] is False
    assert sdk_client.batchWebhooks.remove(bw["id"]).status_code == 204


def test_batch_webhook_limit(sdk_client, emulator, webhook_receiver):
    for i in range(20):
        sdk_client.batchWebhooks.create({"url": f"{webhook_receiver.url}/b{i}"})
    with pytest.raises(ApiClientError) as ei:
        sdk_client.batchWebhooks.create({"url": f"{webhook_receiver.url}/b20"})
    assert ei.value.status_code == 400 and "20" in json.loads(ei.value.text)["detail"]
