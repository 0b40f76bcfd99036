"""The client's error mapping: every failure becomes a domain exception with
a ``kind`` and a one-sentence message; reprs, URLs and query strings stay in
the server log."""

import logging
import re
import socket
import threading

import pytest

from mailchimp_sync import exceptions as exc_mod
from mailchimp_sync.client import MailchimpClient, error_from_response
from mailchimp_sync.exceptions import (
    MailchimpAuthError,
    MailchimpError,
    MailchimpNotFoundError,
    MailchimpPermanentError,
    MailchimpRetryableError,
)

KEY = "0123456789abcdef0123456789abcdef-us9"
# What a raw requests/urllib3 message looks like: reprs, pools, encoded queries.
RAW = re.compile(r"0x[0-9a-f]{6,}|object at|HTTPConnectionPool|Max retries|\?|%[0-9A-F]{2}|<|>")


def assert_plain(error):
    """One sentence, no repr, no URL, no key."""
    message = str(error)
    assert not RAW.search(message), message
    assert KEY not in message and "0123456789abcdef" not in message
    assert "\n" not in message
    assert len(message) < 300, message
    assert message.endswith(".") or error.title, message


@pytest.fixture
def closed_port():
    """A local port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port():
    """A local port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def test_connection_refused_is_unreachable(closed_port, caplog):
    client = MailchimpClient(KEY, base_url=f"http://127.0.0.1:{closed_port}/3.0", timeout=5)
    with caplog.at_level(logging.INFO, logger="mailchimp_sync.client"):
        with pytest.raises(MailchimpRetryableError) as caught:
            client.iter_member_pages("a1b2c3d4e5", fields=["id", "email_address"]).__next__()
    error = caught.value
    assert error.kind == exc_mod.UNREACHABLE and error.retryable and error.status is None
    assert str(error) == f"Could not reach Mailchimp at 127.0.0.1:{closed_port}: Connection refused."
    assert_plain(error)
    assert error.as_text() == str(error)
    # the details (the request and urllib3's own words) are in the server log
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "get_list_members_info" in logged and "Connection refused" in logged
    assert KEY not in logged


def test_unknown_host_is_unreachable():
    client = MailchimpClient(KEY, base_url="http://mailchimp-sync-no-such-host.invalid/3.0", timeout=5)
    with pytest.raises(MailchimpRetryableError) as caught:
        client.ping()
    assert caught.value.kind == exc_mod.UNREACHABLE
    assert str(caught.value).startswith("Could not reach Mailchimp at mailchimp-sync-no-such-host.invalid")
    assert_plain(caught.value)


def test_silent_host_is_a_timeout(silent_port):
    client = MailchimpClient(KEY, base_url=f"http://127.0.0.1:{silent_port}/3.0", timeout=0.5)
    with pytest.raises(MailchimpRetryableError) as caught:
        client.get_lists()
    error = caught.value
    assert error.kind == exc_mod.TIMEOUT and error.retryable and error.status is None
    assert str(error) == f"Mailchimp at 127.0.0.1:{silent_port} did not answer within 0.5 seconds."
    assert_plain(error)


def test_wrong_key_is_auth(emulator):
    client = MailchimpClient(KEY, base_url=emulator.api_base)
    with pytest.raises(MailchimpAuthError) as caught:
        client.ping()
    error = caught.value
    assert error.kind == exc_mod.AUTH and not error.retryable and error.status == 401
    assert error.title == "API Key Invalid"
    assert str(error).startswith("Mailchimp answered 401: API Key Invalid")
    assert_plain(error)


def test_missing_key_is_auth():
    with pytest.raises(MailchimpAuthError) as caught:
        MailchimpClient("")
    assert caught.value.kind == exc_mod.AUTH
    assert_plain(caught.value)


def test_unknown_list_is_not_found(emulator):
    client = MailchimpClient(emulator.api_key, base_url=emulator.api_base)
    with pytest.raises(MailchimpNotFoundError) as caught:
        client.get_list("0000000000")
    error = caught.value
    assert error.kind == exc_mod.NOT_FOUND and not error.retryable and error.status == 404
    assert error.title == "Resource Not Found"
    assert_plain(error)


@pytest.mark.parametrize("fault, status", [("429_json", 429), ("429_empty", 429), ("403_empty", 403)])
def test_throttling_is_rate_limited(emulator, fault, status):
    client = MailchimpClient(emulator.api_key, base_url=emulator.api_base)
    emulator.control.faults(rules=[{"kind": fault, "count": 1}])
    with pytest.raises(MailchimpRetryableError) as caught:
        client.ping()
    error = caught.value
    assert error.kind == exc_mod.RATE_LIMITED and error.retryable and error.status == status
    assert_plain(error)
    # Only the documented wording names the connection limit; a bare answer might be anything.
    assert error.too_many_connections == (fault == "429_json")


def test_a_full_batch_queue_is_not_the_connection_limit(emulator):
    client = MailchimpClient(emulator.api_key, base_url=emulator.api_base)
    emulator.control.settings(max_pending_batches=1)
    client.start_batch([{"method": "GET", "path": "/ping"}])
    with pytest.raises(MailchimpRetryableError) as caught:
        client.start_batch([{"method": "GET", "path": "/ping"}])
    error = caught.value
    assert error.kind == exc_mod.RATE_LIMITED and error.status == 429
    assert not error.too_many_connections


@pytest.mark.parametrize("fault, status", [("500", 500), ("503", 503)])
def test_server_fault_is_server_error(emulator, fault, status):
    client = MailchimpClient(emulator.api_key, base_url=emulator.api_base)
    emulator.control.faults(rules=[{"kind": fault, "count": 1}])
    with pytest.raises(MailchimpRetryableError) as caught:
        client.get_lists()
    error = caught.value
    assert error.kind == exc_mod.SERVER_ERROR and error.retryable and error.status == status
    assert_plain(error)


def test_bad_request_keeps_title_and_detail(emulator):
    client = MailchimpClient(emulator.api_key, base_url=emulator.api_base)
    list_id = emulator.control.seed(lists=[{"name": "Small"}])["lists"][0]["id"]
    with pytest.raises(MailchimpPermanentError) as caught:
        client.create_webhook(list_id, {"url": "not a url at all"})
    error = caught.value
    assert type(error) is MailchimpPermanentError
    assert error.kind == exc_mod.INVALID and not error.retryable and error.status == 400
    assert error.title and error.detail
    assert str(error) == f"Mailchimp answered 400: {error.title}: {error.detail}"
    assert_plain(error)


def test_sdk_argument_check_is_invalid(emulator):
    client = MailchimpClient(emulator.api_key, base_url=emulator.api_base)
    with pytest.raises(MailchimpPermanentError) as caught:
        next(client.iter_member_pages("a1b2c3d4e5", count=5000))
    assert caught.value.kind == exc_mod.INVALID


def test_error_from_response_without_body():
    error = error_from_response(502, "<html><body>Bad gateway</body></html>")
    assert error.kind == exc_mod.SERVER_ERROR and error.retryable
    assert str(error) == "Mailchimp answered 502 without details."
    assert error_from_response(422, "").kind == exc_mod.INVALID


def test_kinds_are_known():
    assert MailchimpError("x").kind == exc_mod.INVALID
    assert MailchimpRetryableError("x").kind == exc_mod.SERVER_ERROR
    with pytest.raises(ValueError):
        MailchimpError("x", kind="nonsense")
    assert set(exc_mod.KINDS) == {
        "unreachable", "timeout", "auth", "not_found", "rate_limited", "server_error", "invalid", "unexpected"
    }


def test_an_undocumented_member_status_is_a_permanent_unexpected_answer():
    from mailchimp_sync.exceptions import MailchimpUnexpectedAnswer
    from mailchimp_sync.members import check_statuses

    check_statuses([{"status": s, "email_address": "a@example.org"} for s in
                    ("subscribed", "pending", "unsubscribed", "cleaned", "transactional", "archived")])
    with pytest.raises(MailchimpUnexpectedAnswer) as raised:
        check_statuses([{"status": "subscribed", "email_address": "a@example.org"},
                        {"status": "zombie", "email_address": " zed@example.org "}])
    error = raised.value
    assert (error.email, error.value, error.kind, error.retryable) == ("zed@example.org", "zombie", "unexpected", False)
    assert "zombie" in str(error)
