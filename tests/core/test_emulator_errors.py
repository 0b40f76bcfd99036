"""Auth and error format: problem+json, titles, the SDK's view of them."""

import json

import pytest
import requests
from mailchimp_marketing import Client
from mailchimp_marketing.api_client import ApiClientError


def client_with(emulator, key):
    c = Client()
    c.set_config({"api_key": key})
    c.api_client.host = emulator.api_base
    return c


def test_wrong_key_401(emulator):
    c = client_with(emulator, "0123456789abcdef0123456789abcdef-us9")
    with pytest.raises(ApiClientError) as ei:
        c.ping.get()
    body = json.loads(ei.value.text)
    assert ei.value.status_code == 401 and body["title"] == "API Key Invalid"


def test_added_key_accepted(emulator):
    key = "0123456789abcdef0123456789abcdef-us9"
    emulator.control.add_api_key(key)
    assert client_with(emulator, key).ping.get()["health_status"] == "Everything's Chimpy!"


def test_missing_key_and_bearer(emulator):
    r = requests.get(f"{emulator.api_base}/ping", timeout=10)
    assert r.status_code == 401 and r.json()["title"] == "API Key Missing"
    r = requests.get(f"{emulator.api_base}/ping", timeout=10,
                     headers={"Authorization": f"Bearer {emulator.api_key}"})
    assert r.status_code == 200
    r = requests.get(f"{emulator.api_base}/ping", timeout=10, auth=("whoever", emulator.api_key))
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["X-Request-Id"]


def test_oauth_client(emulator):
    c = Client()
    c.set_config({"access_token": emulator.api_key, "server": "us1"})
    c.api_client.host = emulator.api_base
    assert c.ping.get()["health_status"]


def test_problem_detail_format(emulator, sdk_client):
    r = requests.get(f"{emulator.api_base}/lists/nope", auth=("u", emulator.api_key), timeout=10)
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/problem+json; charset=utf-8"
    assert "describedBy" in r.headers["Link"]
    body = r.json()
    assert body == {"type": "https://mailchimp.com/developer/marketing/docs/errors/",
                    "title": "Resource Not Found", "status": 404,
                    "detail": "The requested resource could not be found.",
                    "instance": r.headers["X-Request-Id"]}
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.get_list("nope")
    assert isinstance(ei.value.text, str)  # the SDK does not parse problem+json


def test_unknown_path_and_method(emulator):
    auth = ("u", emulator.api_key)
    assert requests.get(f"{emulator.api_base}/nothing/here", auth=auth, timeout=10).status_code == 404
    r = requests.put(f"{emulator.api_base}/ping", auth=auth, timeout=10, data="{}")
    assert r.status_code == 405 and r.json()["title"] == "Method Not Allowed" and r.headers["Allow"] == "GET"


def test_json_parse_error(emulator):
    lid = emulator.control.seed([{"name": "L"}])["list_ids"][0]
    r = requests.post(f"{emulator.api_base}/lists/{lid}/members", auth=("u", emulator.api_key),
                      data="{not json", timeout=10)
    assert r.status_code == 400 and r.json()["title"] == "JSON Parse Error"


def test_null_body_tolerated(emulator):
    seeded = emulator.control.seed([{"name": "L", "members": [{"email_address": "n@example.org"}]}])
    lid = seeded["list_ids"][0]
    r = requests.post(f"{emulator.api_base}/lists/{lid}/members/n%40example.org/actions/delete-permanent",
                      auth=("u", emulator.api_key), data="null", timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 204 and r.content == b""


def test_wrong_datacenter(emulator):
    emulator.control.settings(datacenter="us21")
    r = requests.get(f"{emulator.api_base}/ping", auth=("u", emulator.api_key), timeout=10)
    assert r.status_code == 403 and r.json()["title"] == "Wrong Datacenter"


def test_untyped_titles_setting(emulator, sdk_client):
    emulator.control.settings(untyped_error_titles=[])
    seeded = emulator.control.seed([{"name": "L", "members": [{"email_address": "x@example.org"}]}])
    lid = seeded["list_ids"][0]
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.add_list_member(lid, {"email_address": "x@example.org", "status": "subscribed"})
    assert json.loads(ei.value.text)["type"].startswith("https://mailchimp.com/")
