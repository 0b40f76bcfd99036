"""Webhook bodies → events: real captures (API-BEHAVIOUR.md §8.3), and
every odd body raising WebhookError and nothing else."""

import random
from datetime import datetime
from urllib.parse import parse_qsl, urlencode

import pytest

from mailchimp_sync.client import subscriber_hash
from mailchimp_sync.webhooks import (
    MEMBER_WEBHOOK_EVENTS,
    MEMBER_WEBHOOK_SOURCES,
    WebhookError,
    batch_webhook_url,
    classify_webhooks,
    member_webhook_body,
    member_webhook_problems,
    member_webhook_url,
    parse_batch_event,
    parse_form,
    parse_member_event,
)

SUBSCRIBE = (
    "type=subscribe&fired_at=2021-06-11+08%3A54%3A35&data%5Bid%5D=b9a27e5b65"
    "&data%5Bemail%5D=anna%40example.org&data%5Bemail_type%5D=html&data%5Bip_opt%5D=89.233.242.116"
    "&data%5Bweb_id%5D=513850286&data%5Blist_id%5D=cba9436ff6"
    "&data%5Bmerges%5D%5BEMAIL%5D=anna%40example.org&data%5Bmerges%5D%5BFNAME%5D=Anna"
    "&data%5Bmerges%5D%5BLNAME%5D=Gebhard&data%5Bmerges%5D%5BADDRESS%5D=&data%5Bmerges%5D%5BPHONE%5D="
    "&data%5Bmerges%5D%5BINTERESTS%5D=Group+A%2C+Group+B"
    "&data%5Bmerges%5D%5BGROUPINGS%5D%5B0%5D%5Bid%5D=78830"
    "&data%5Bmerges%5D%5BGROUPINGS%5D%5B0%5D%5Bunique_id%5D=8c7db2a675"
    "&data%5Bmerges%5D%5BGROUPINGS%5D%5B0%5D%5Bname%5D=Donors"
    "&data%5Bmerges%5D%5BGROUPINGS%5D%5B0%5D%5Bgroups%5D=Group+A%2C+Group+B"
)


def pairs(body):
    return parse_qsl(body, keep_blank_values=True)


def test_parse_form_nests_brackets():
    form = parse_form(pairs(SUBSCRIBE))
    assert form["type"] == "subscribe"
    assert form["data"]["merges"]["FNAME"] == "Anna"
    assert form["data"]["merges"]["ADDRESS"] == ""
    assert form["data"]["merges"]["GROUPINGS"]["0"]["unique_id"] == "8c7db2a675"
    assert parse_form([("a[]", "1"), ("a[]", "2")]) == {"a": {"0": "1", "1": "2"}}
    nested = parse_form([("data[merges][ADDRESS][city]", "Bern")])
    assert nested["data"]["merges"]["ADDRESS"] == {"city": "Bern"}


def test_subscribe_capture():
    event = parse_member_event(pairs(SUBSCRIBE))
    assert event.type == "subscribe"
    assert event.list_id == "cba9436ff6"
    assert event.email == "anna@example.org"
    assert event.subscriber_hash == subscriber_hash("anna@example.org")
    assert (event.first_name, event.last_name) == ("Anna", "Gebhard")
    assert event.fired_at == datetime(2021, 6, 11, 8, 54, 35)


def test_unsubscribe_upemail_cleaned_campaign():
    unsub = parse_member_event([
        ("type", "unsubscribe"), ("fired_at", "2014-10-22 13:10:40"), ("data[action]", "unsub"),
        ("data[reason]", "manual"), ("data[id]", "94826aa750"), ("data[email]", "Josh@Example.org"),
        ("data[list_id]", "f1243a3b12"), ("data[campaign_id]", "cb398d21d2"),
    ])
    assert (unsub.type, unsub.action, unsub.reason) == ("unsubscribe", "unsub", "manual")
    assert unsub.subscriber_hash == subscriber_hash("josh@example.org")
    up = parse_member_event([
        ("type", "upemail"), ("fired_at", "2017-04-23 08:08:31"), ("data[new_id]", "50696b797a"),
        ("data[new_email]", "new@example.org"), ("data[old_email]", "old@example.org"),
        ("data[list_id]", "93ab23d636"),
    ])
    assert (up.email, up.old_email, up.new_id) == ("new@example.org", "old@example.org", "50696b797a")
    cleaned = parse_member_event([
        ("type", "cleaned"), ("fired_at", "2009-03-26 22:01:00"), ("data[list_id]", "a6b5da1054"),
        ("data[campaign_id]", "4fjk2ma9xd"), ("data[reason]", "hard"), ("data[email]", "x@example.org"),
    ])
    assert (cleaned.type, cleaned.reason, cleaned.email) == ("cleaned", "hard", "x@example.org")
    campaign = parse_member_event([
        ("type", "campaign"), ("data[id]", "abc"), ("data[subject]", "Hi"), ("data[status]", "sent"),
        ("data[reason]", ""), ("data[list_id]", "a6b5da1054"),
    ])
    assert campaign.is_campaign and campaign.email is None


def test_odd_fired_at_is_tolerated():
    event = parse_member_event([("type", "profile"), ("fired_at", "yesterday"),
                                ("data[email]", "a@b.org"), ("data[list_id]", "abc")])
    assert event.fired_at is None


def test_batch_event():
    body = ("type=batch_operation_completed&fired_at=2017-02-10+14%3A44%3A14&data%5Bid%5D=a3bb03520b"
            "&data%5Bstatus%5D=finished&data%5Bresponse_body_url%5D=https%3A%2F%2Fevil.example%2Fx")
    event = parse_batch_event(pairs(body))
    assert (event.batch_id, event.status) == ("a3bb03520b", "finished")
    assert not hasattr(event, "response_body_url")


@pytest.mark.parametrize(
    "body",
    [
        [],
        [("type", "subscribe")],
        [("type", "nonsense"), ("data[email]", "a@b.org"), ("data[list_id]", "abc")],
        [("type", "subscribe"), ("data[email]", "not an email"), ("data[list_id]", "abc")],
        [("type", "subscribe"), ("data[email]", "a@b.org")],
        [("type", "subscribe"), ("data[email]", "a@b.org"), ("data[list_id]", "../../etc")],
        [("type", "subscribe"), ("data", "x"), ("data[email]", "a@b.org")],
        [("type", "subscribe"), ("data[email]", "a@b.org"), ("data", "x")],
        [("type", "subscribe"), ("data[email][x]", "a@b.org"), ("data[list_id]", "abc")],
        [("type[]", "subscribe")],
        [("type", "subscribe"), ("data[merges", "x")],
        [("type", "subscribe"), ("data]email[", "x")],
        [("type", "subscribe"), ("a[b][c][d][e][f][g]", "x")],
        [("type", "upemail"), ("data[new_email]", "n@b.org"), ("data[list_id]", "abc")],
        [("type", "subscribe"), ("data[email]", "a@b.org"), ("data[list_id]", "abc"), ("data[merges]", "x")],
        [("type", "subscribe"), ("x", "y" * 20000)],
        [(str(i), "x") for i in range(600)],
        [("type", 5)],
        ["abc"],
    ],
)
def test_malformed_member_bodies(body):
    with pytest.raises(WebhookError):
        parse_member_event(body)


@pytest.mark.parametrize(
    "body",
    [
        [],
        [("type", "batch_operation_completed")],
        [("type", "subscribe"), ("data[id]", "a3bb03520b")],
        [("type", "batch_operation_completed"), ("data[id]", "a3bb'; DROP")],
        [("type", "batch_operation_completed"), ("data[id][x]", "a")],
    ],
)
def test_malformed_batch_bodies(body):
    with pytest.raises(WebhookError):
        parse_batch_event(body)


def test_fuzz_only_webhook_error():
    """Random bodies never raise anything but WebhookError."""
    rng = random.Random(42)
    alphabet = "type=data[]email@list_id&%=\x00é[]]][[ subscribe upemail a.b"
    keys = ["type", "data[email]", "data[list_id]", "data[new_email]", "data[old_email]",
            "data[merges][FNAME]", "data", "data[]", "[x]", "data[merges][GROUPINGS][0][name]", "data[id]"]
    for _ in range(3000):
        body = []
        for _n in range(rng.randint(0, 8)):
            key = rng.choice(keys) if rng.random() < 0.7 else "".join(rng.choice(alphabet) for _ in range(5))
            value = rng.choice(["subscribe", "upemail", "campaign", "a@b.org", "abc123", "", "x" * 3,
                                "batch_operation_completed"])
            body.append((key, value))
        for parse in (parse_member_event, parse_batch_event):
            try:
                parse(body)
            except WebhookError:
                pass
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        try:
            parse_member_event(parse_qsl(raw, keep_blank_values=True))
        except WebhookError:
            pass


def test_registration_definitions():
    url = member_webhook_url("https://odoo.example.com/", "s3cret")
    assert url == "https://odoo.example.com/mailchimp/webhook/s3cret"
    assert batch_webhook_url("https://odoo.example.com", "s3cret") == \
        "https://odoo.example.com/mailchimp/batch-webhook/s3cret"
    body = member_webhook_body(url)
    assert body["sources"] == {"user": True, "admin": True, "api": False}
    assert set(body["events"]) == set(MEMBER_WEBHOOK_EVENTS) and not body["events"]["campaign"]
    good = {"url": url, "events": dict(MEMBER_WEBHOOK_EVENTS), "sources": dict(MEMBER_WEBHOOK_SOURCES)}
    assert member_webhook_problems(good) == []
    bad = dict(good, sources={"user": True, "admin": True, "api": True})
    assert member_webhook_problems(bad) == ["source api should be off"]
    old = {"url": "https://odoo.example.com/mailchimp/webhook/old", "id": "o"}
    other = {"url": "https://zapier.example.com/hook", "id": "z"}
    batch = {"url": "https://odoo.example.com/mailchimp/batch-webhook/s3cret", "id": "b"}
    exact, stale = classify_webhooks([other, old, good, batch], url)
    assert exact is good and stale == [old]
    exact, stale = classify_webhooks([other], url)
    assert exact is None and stale == []
    assert urlencode({"u": url})  # plain text, nothing else in it
