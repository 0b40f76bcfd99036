"""The control API (/_emulator/...), the command line, and scale."""

import hashlib
import subprocess
import sys
import time

import mailchimp_marketing
import pytest
import requests

from mailchimp_sync.emulator import EmulatorControl, EmulatorControlError, EmulatorServer


def h(email):
    return hashlib.md5(email.lower().encode()).hexdigest()


def test_reset_clears_data_and_settings(emulator, sdk_client):
    ctl = emulator.control
    ctl.seed([{"name": "A"}])
    ctl.settings(since_inclusive=True)
    ctl.reset()
    assert sdk_client.lists.get_all_lists()["total_items"] == 0
    assert ctl.settings()["since_inclusive"] is False
    ctl.reset(settings={"max_connections": 3})
    assert ctl.settings()["max_connections"] == 3


def test_unknown_setting_refused(emulator):
    with pytest.raises(EmulatorControlError) as ei:
        emulator.control.settings(no_such_setting=1)
    assert ei.value.status == 400


def test_index_lists_endpoints(emulator):
    out = requests.get(emulator.url + "/_emulator/", timeout=10).json()
    assert out["api_key"] == emulator.api_key and any("seed" in e for e in out["endpoints"])


def test_state_dump_has_hidden_fields(emulator):
    ctl = emulator.control
    lid = ctl.seed([{"name": "A", "members": [{"email_address": "a@example.org"}]}])["list_ids"][0]
    ctl.user_unsubscribe(lid, "a@example.org")
    st = ctl.state(lid)
    (m,) = st["lists"][0]["members"]
    assert m["compliance_locked"] is True and m["unsubscribe_origin"] == "user"
    assert st["settings"]["webhook_timeout"] == 10 and emulator.api_key in st["api_keys"]


def test_admin_update_member(emulator, sdk_client):
    ctl = emulator.control
    lid = ctl.seed([{"name": "A", "members": [{"email_address": "a@example.org"}]}])["list_ids"][0]
    ctl.admin_update(lid, "a@example.org", merge_fields={"FNAME": "Admin"}, status="unsubscribed")
    m = sdk_client.lists.get_list_member(lid, h("a@example.org"))
    assert m["merge_fields"]["FNAME"] == "Admin" and m["status"] == "unsubscribed"
    assert ctl.member(lid, "a@example.org")["unsubscribe_origin"] == "admin"
    # an admin unsubscribe does not lock: the API may resubscribe
    assert sdk_client.lists.update_list_member(lid, h("a@example.org"),
                                               {"status": "subscribed"})["status"] == "subscribed"
    ctl.admin_archive(lid, "a@example.org")
    assert sdk_client.lists.get_list_member(lid, h("a@example.org"))["status"] == "archived"


def test_clock(emulator):
    ctl = emulator.control
    assert ctl.clock(now="2022-02-23T16:25:56.999Z")["now"] == "2022-02-23T16:25:56+00:00"
    assert ctl.clock(advance=4)["now"] == "2022-02-23T16:26:00+00:00"
    assert ctl.clock(real=True)["frozen"] is False


def test_control_client_against_any_url(emulator):
    ctl = EmulatorControl(emulator.url)
    assert ctl.seed([{"name": "X", "generate_members": 5}])["lists"][0]["member_count"] == 5


def test_generate_members_status_mix(emulator, sdk_client):
    lid = emulator.control.seed([{"name": "G", "generate_members": 200,
                                  "status_mix": {"subscribed": 1, "pending": 1}}])["list_ids"][0]
    sub = sdk_client.lists.get_list_members_info(lid, status="subscribed", count=1)["total_items"]
    pen = sdk_client.lists.get_list_members_info(lid, status="pending", count=1)["total_items"]
    assert sub + pen == 200 and 50 < sub < 150


def test_server_context_manager_and_seed_members():
    with EmulatorServer(port=0, seed_members=30) as srv:
        c = mailchimp_marketing.Client()
        c.set_config({"api_key": srv.api_key})
        c.api_client.host = srv.api_base
        info = c.lists.get_list_members_info(srv.seeded_list_id, count=1000,
                                             fields=["members.status", "total_items"])
        assert info["total_items"] == len(info["members"]) > 0
        assert srv.api_base == srv.url + "/3.0"


def test_command_line():
    proc = subprocess.Popen([sys.executable, "-m", "mailchimp_sync.emulator", "--port", "0",
                             "--seed-members", "100"], stdout=subprocess.PIPE, text=True)
    try:
        lines = {}
        for _ in range(5):
            line = proc.stdout.readline()
            if ":" in line:
                k, _, v = line.partition(":")
                lines[k.strip()] = v.strip()
        key, base = lines["api key"], lines["api base"]
        assert len(key.split("-")[0]) == 32 and key.endswith("-us1")
        c = mailchimp_marketing.Client()
        c.set_config({"api_key": key})
        c.api_client.host = base
        lid = lines["list id"].split()[0]
        assert c.lists.get_list(lid)["name"] == "Newsletter"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_scale_100k_members(emulator, sdk_client):
    t0 = time.perf_counter()
    lid = emulator.control.seed([{"name": "Big", "generate_members": 100_000}])["list_ids"][0]
    seed_s = time.perf_counter() - t0
    emulator.control.settings(archived_in_default_listing=True)
    t0 = time.perf_counter()
    seen = 0
    for offset in range(0, 100_000, 1000):
        page = sdk_client.lists.get_list_members_info(
            lid, count=1000, offset=offset,
            fields=["members.email_address", "members.status", "members.last_changed", "total_items"])
        seen += len(page["members"])
    page_s = time.perf_counter() - t0
    assert seen == page["total_items"] == 100_000
    assert seed_s < 10 and page_s < 30, (seed_s, page_s)
