"""Fixtures for the core tests: a running Mailchimp emulator, an SDK client
bound to it, and a small HTTP receiver for the webhooks it sends.

The emulator runs once per session; ``emulator`` resets it (data, settings,
faults, clock, deliveries) before each test.  Tests drive it only from
outside: the official SDK, ``requests`` and the control API.
"""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import mailchimp_marketing
import pytest

from mailchimp_sync.emulator import EmulatorServer


@pytest.fixture(scope="session")
def emulator_server():
    srv = EmulatorServer(host="127.0.0.1", port=0).start()
    yield srv
    srv.stop()


@pytest.fixture
def emulator(emulator_server):
    """The session emulator, reset to defaults; yields the EmulatorServer."""
    emulator_server.control.reset()
    yield emulator_server


@pytest.fixture
def sdk_client(emulator):
    """``mailchimp_marketing.Client`` pointed at the emulator with its default key."""
    client = mailchimp_marketing.Client()
    client.set_config({"api_key": emulator.api_key})
    client.api_client.host = emulator.api_base
    return client


class _Receiver:
    """What the webhook receiver saw, and how it answers."""

    def __init__(self):
        self.requests = []
        self.status = 200
        self.get_status = None  # None: same as status
        self.latency = 0.0
        self.cond = threading.Condition()

    @property
    def gets(self):
        return [r for r in self.requests if r["method"] == "GET"]

    @property
    def posts(self):
        return [r for r in self.requests if r["method"] == "POST"]

    def wait_posts(self, n, timeout=5.0):
        """Wait until at least ``n`` POSTs arrived; returns them."""
        end = time.monotonic() + timeout
        with self.cond:
            while len(self.posts) < n and time.monotonic() < end:
                self.cond.wait(0.05)
        return self.posts

    def clear(self):
        with self.cond:
            self.requests.clear()


@pytest.fixture
def webhook_receiver():
    """A stdlib HTTP server on a free port recording GETs and POSTs.

    ``rx.url`` is its base URL (any path is accepted); set ``rx.status``,
    ``rx.get_status`` or ``rx.latency`` to change how it answers.  Each recorded
    request has method, path, query, headers, body (str) and form (list of pairs).
    """
    rx = _Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _record(self, method):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            url = urlsplit(self.path)
            # record first, so a caller that saw the answer always finds the request
            with rx.cond:
                rx.requests.append({"method": method, "path": url.path, "query": url.query,
                                    "headers": dict(self.headers), "body": body,
                                    "form": parse_qsl(body, keep_blank_values=True)})
                rx.cond.notify_all()
            if rx.latency:
                time.sleep(rx.latency)
            status = rx.get_status if (method == "GET" and rx.get_status is not None) else rx.status
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass

        def do_GET(self):
            self._record("GET")

        def do_POST(self):
            self._record("POST")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    rx.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield rx
    httpd.shutdown()
    httpd.server_close()
