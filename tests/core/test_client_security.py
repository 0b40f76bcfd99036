"""Where batch results are downloaded from: only Mailchimp's own hosts (or
the sandbox the account points at), no redirect elsewhere, a size cap.

Real HTTP throughout: a small "sandbox" server that serves, redirects or
streams as a test asks, and a "listener" on another port standing for an
internal address that must never be contacted."""

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mailchimp_sync.client import (
    MailchimpClient,
    download_url_problem,
    is_allowed_download_url,
)
from mailchimp_sync.exceptions import MailchimpPermanentError

KEY = "0123456789abcdef0123456789abcdef-us21"


class _Server:
    """A stdlib HTTP server recording every request; ``routes`` maps a path
    to (status, headers, body, chunked)."""

    def __init__(self):
        self.requests = []
        self.routes = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append({"path": self.path, "headers": dict(self.headers)})
                status, headers, body, chunked = server.routes.get(
                    self.path.split("?")[0], (404, {}, b"not found", False)
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for start in range(0, len(body), 512):
                        part = body[start:start + 512]
                        self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sandbox():
    srv = _Server()
    yield srv
    srv.stop()


@pytest.fixture
def listener():
    srv = _Server()
    yield srv
    srv.stop()


def client_for(sandbox, **kw):
    return MailchimpClient(KEY, base_url=f"{sandbox.url}/3.0", timeout=5, **kw)


@pytest.mark.parametrize(
    "url",
    [
        "https://mailchimp-api-batch.s3.amazonaws.com/a3bb03520b-response.tar.gz?AWSAccessKeyId=A&Expires=1&Signature=S",
        "https://mailchimp-api-batch.s3.us-west-2.amazonaws.com/a3bb03520b-response.tar.gz",
        "https://mailchimp-api-batch.s3-us-west-2.amazonaws.com/a3bb03520b-response.tar.gz",
        "https://s3.amazonaws.com/mailchimp-api-batch/a3bb03520b-response.tar.gz",
        "https://us21.api.mailchimp.com/3.0/batches/x",
        "https://MAILCHIMP-API-BATCH.S3.AMAZONAWS.COM:443/x.tar.gz",
    ],
)
def test_mailchimp_hosts_are_allowed(url):
    assert download_url_problem(url) is None
    assert is_allowed_download_url(url, "http://127.0.0.1:8055/3.0")


@pytest.mark.parametrize(
    "url",
    [
        "http://mailchimp-api-batch.s3.amazonaws.com/x.tar.gz",  # not https
        "https://someone-else.s3.amazonaws.com/x.tar.gz",  # another bucket
        "https://s3.amazonaws.com/someone-else/x.tar.gz",
        "https://s3.amazonaws.com/mailchimp-api-batch-evil/x.tar.gz",
        "https://mailchimp.com.evil.example/x",
        "https://evilmailchimp.com/x",
        "https://user:pw@us21.api.mailchimp.com/x",
        "https://us21.api.mailchimp.com:8443/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8069/web/database/manager",
        "file:///etc/passwd",
        "",
        None,
        "https://[::1/x",
    ],
)
def test_other_hosts_are_refused(url):
    assert download_url_problem(url)
    assert not is_allowed_download_url(url)


def test_sandbox_allows_its_own_host_and_port_only():
    base = "http://127.0.0.1:8055/3.0"
    assert is_allowed_download_url("http://127.0.0.1:8055/_batch-results/b1.tar.gz?Expires=9", base)
    for url in (
        "http://127.0.0.1:8069/web",  # same host, another port: another service
        "http://localhost:8055/_batch-results/b1.tar.gz",
        "http://10.0.0.1:8055/x",
    ):
        assert not is_allowed_download_url(url, base), url
    assert not is_allowed_download_url("http://127.0.0.1:8055/x")  # no sandbox: refused
    assert "not a Mailchimp host" in download_url_problem("https://example.org/x")


def test_download_from_the_sandbox(sandbox):
    sandbox.routes["/results.tar.gz"] = (200, {}, b"archive", False)
    out = client_for(sandbox).download(f"{sandbox.url}/results.tar.gz?Expires=9", io.BytesIO())
    assert out.read() == b"archive"
    assert "Authorization" not in sandbox.requests[0]["headers"]


def test_refused_url_is_never_contacted(sandbox, listener):
    with pytest.raises(MailchimpPermanentError) as caught:
        client_for(sandbox).download(f"{listener.url}/internal", io.BytesIO())
    assert not caught.value.retryable
    assert "not a Mailchimp host" in str(caught.value) or "https" in str(caught.value)
    assert listener.requests == []


def test_redirect_elsewhere_is_not_followed(sandbox, listener):
    sandbox.routes["/results.tar.gz"] = (302, {"Location": f"{listener.url}/internal"}, b"", False)
    with pytest.raises(MailchimpPermanentError) as caught:
        client_for(sandbox).download(f"{sandbox.url}/results.tar.gz", io.BytesIO())
    assert "Batch results not downloaded" in str(caught.value)
    assert listener.requests == [], "the redirect target was contacted"
    assert len(sandbox.requests) == 1


def test_redirect_on_the_same_host_is_followed_a_few_times(sandbox):
    sandbox.routes["/a"] = (307, {"Location": "/b"}, b"", False)
    sandbox.routes["/b"] = (200, {}, b"moved", False)
    assert client_for(sandbox).download(f"{sandbox.url}/a", io.BytesIO()).read() == b"moved"
    sandbox.routes["/loop"] = (302, {"Location": "/loop"}, b"", False)
    with pytest.raises(MailchimpPermanentError, match="too many redirects"):
        client_for(sandbox).download(f"{sandbox.url}/loop", io.BytesIO())


@pytest.mark.parametrize("chunked", [False, True])
def test_size_is_capped(sandbox, chunked):
    sandbox.routes["/big.tar.gz"] = (200, {}, b"x" * 5000, chunked)
    out = io.BytesIO()
    with pytest.raises(MailchimpPermanentError) as caught:
        client_for(sandbox, max_download_size=2000).download(f"{sandbox.url}/big.tar.gz", out)
    assert "larger than 2000 bytes" in str(caught.value)
    assert not caught.value.retryable
    assert len(out.getvalue()) <= 2000
    # Within the cap it downloads.
    out = client_for(sandbox, max_download_size=5000).download(f"{sandbox.url}/big.tar.gz", io.BytesIO())
    assert len(out.read()) == 5000


def test_default_cap_is_200_mb(sandbox):
    assert client_for(sandbox).max_download_size == 200 * 1024 * 1024


def test_real_batch_results_from_the_emulator(emulator):
    """The emulator's results URL (its own host) passes the check."""
    lid = emulator.control.seed([{"name": "Newsletter"}])["list_ids"][0]
    client = MailchimpClient(emulator.api_key, base_url=emulator.api_base, timeout=5)
    batch = client.start_batch([{"method": "GET", "path": f"/lists/{lid}", "operation_id": "op-1"}])
    emulator.control.run_batches()
    url = client.get_batch(batch["id"])["response_body_url"]
    assert url.startswith(emulator.api_base.rsplit("/3.0", 1)[0])
    assert client.download(url, io.BytesIO()).read()[:2] == b"\x1f\x8b"  # gzip
