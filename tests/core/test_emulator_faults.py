"""Fault injection and throttling, seen through the SDK the way the addon sees them."""

import json
import threading
import time

import pytest
import requests
from mailchimp_marketing import Client
from mailchimp_marketing.api_client import ApiClientError


@pytest.fixture
def lid(emulator):
    return emulator.control.seed([{"name": "L", "generate_members": 20}])["list_ids"][0]


def test_scripted_429_json_then_ok(sdk_client, emulator, lid):
    emulator.control.faults(rules=[{"method": "GET", "path": r"^/lists/[^/]+/members$", "kind": "429_json",
                                    "count": 2}])
    for _ in range(2):
        with pytest.raises(ApiClientError) as ei:
            sdk_client.lists.get_list_members_info(lid)
        assert ei.value.status_code == 429
        assert json.loads(ei.value.text)["title"] == "Too Many Requests"
    assert sdk_client.ping.get()  # other paths untouched
    assert sdk_client.lists.get_list_members_info(lid)["total_items"] >= 1
    assert [f["kind"] for f in emulator.control.fault_report()["injected"]] == [
        "429_json", "429_json"]


@pytest.mark.parametrize("kind,status", [("429_empty", 429), ("403_empty", 403)])
def test_empty_body_errors_return_a_response(sdk_client, emulator, kind, status):
    emulator.control.faults(rules=[{"path": "^/ping$", "kind": kind}])
    r = sdk_client.ping.get()  # no exception: the SDK hands back the raw Response
    assert isinstance(r, requests.Response) and r.status_code == status and r.text == ""


@pytest.mark.parametrize("kind,status,title", [("500", 500, "Internal Server Error"),
                                               ("503", 503, "Service Unavailable")])
def test_server_errors(sdk_client, emulator, kind, status, title):
    emulator.control.faults(rules=[{"path": "^/ping$", "kind": kind}])
    with pytest.raises(ApiClientError) as ei:
        sdk_client.ping.get()
    assert ei.value.status_code == status and json.loads(ei.value.text)["title"] == title


def test_timeout_past_client_timeout(emulator):
    c = Client()
    c.set_config({"api_key": emulator.api_key, "timeout": 0.3})
    c.api_client.host = emulator.api_base
    emulator.control.faults(rules=[{"path": "^/ping$", "kind": "timeout", "delay": 1.0}])
    with pytest.raises(ApiClientError) as ei:
        c.ping.get()
    assert ei.value.status_code is None  # network-level: the SDK wraps the requests exception


def test_random_share_is_seeded(sdk_client, emulator):
    def run():
        emulator.control.faults(rate=0.5, kinds=["500", "429_empty"], seed=7)
        out = []
        for _ in range(30):
            try:
                r = sdk_client.ping.get()
                out.append(r.status_code if isinstance(r, requests.Response) else 200)
            except ApiClientError as e:
                out.append(e.status_code)
        return out
    first, second = run(), run()
    assert first == second and {200, 500, 429} <= set(first)
    emulator.control.faults()
    assert sdk_client.ping.get()["health_status"]


def test_more_than_10_connections_get_429(emulator):
    end = time.monotonic() + 5  # a timed-out request of an earlier test may still hold a slot
    while emulator.control.stats()["inflight_total"] and time.monotonic() < end:
        time.sleep(0.05)
    emulator.control.faults(rules=[{"path": "^/ping$", "kind": "timeout", "delay": 1.5, "count": 10}])
    results = []

    def call():
        r = requests.get(f"{emulator.api_base}/ping", auth=("u", emulator.api_key), timeout=10)
        results.append(r.status_code)
    threads = [threading.Thread(target=call) for _ in range(10)]
    for t in threads:
        t.start()
    end = time.monotonic() + 5
    while emulator.control.stats()["inflight_total"] < 10 and time.monotonic() < end:
        time.sleep(0.02)
    r = requests.get(f"{emulator.api_base}/ping", auth=("u", emulator.api_key), timeout=10)
    assert r.status_code == 429
    assert r.json()["detail"] == "You have exceeded the limit of 10 simultaneous connections."
    for t in threads:
        t.join()
    assert results == [200] * 10
    # another key has its own budget; the limit itself is a setting
    assert emulator.control.stats()["throttled"] == 1
    assert requests.get(f"{emulator.api_base}/ping", auth=("u", emulator.api_key), timeout=10).ok
