"""The one class through which every call to Mailchimp goes.

Built on the official ``mailchimp-marketing`` SDK (3.0.x) for the Marketing
API and on ``requests`` for downloading batch result archives.  The SDK's
quirks (see shared/mailchimp/API-BEHAVIOUR.md §1) are absorbed here:

* the only host override that works is ``api_client.host``;
* error bodies come as ``application/problem+json`` so ``ApiClientError.text``
  is a raw JSON string;
* an error with an empty body raises nothing: the SDK returns the bare
  ``requests.Response`` (also what every 204 returns);
* ``fields`` must be lists, or the SDK splits strings into characters;
* a network error or timeout is an ``ApiClientError`` with no status.
"""

import hashlib
import json
import logging
import re
from urllib.parse import urljoin, urlsplit

import mailchimp_marketing
import requests
from mailchimp_marketing.api_client import ApiClientError

from .exceptions import (
    RATE_LIMITED,
    TIMEOUT,
    UNREACHABLE,
    MailchimpAuthError,
    MailchimpError,
    MailchimpNotFoundError,
    MailchimpPermanentError,
    MailchimpRetryableError,
)
from .text import postgres_value

_logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30
MAX_PAGE_SIZE = 1000
_KEY_RE = re.compile(r"^[0-9a-f]{32}-us\d+$")

# Batch results archives: the biggest one to accept, and how many redirects
# to follow (each hop is checked like the first URL).
DEFAULT_MAX_DOWNLOAD_SIZE = 200 * 1024 * 1024
MAX_DOWNLOAD_REDIRECTS = 3
# Mailchimp's own hosts, and the S3 bucket its batch results are served
# from (API-BEHAVIOUR.md §7.3: https://mailchimp-api-batch.s3.amazonaws.com/…),
# virtual-hosted (bucket in the host, any region) or path-style.
RESULTS_BUCKET = "mailchimp-api-batch"
_MAILCHIMP_HOST_RE = re.compile(r"^(?:[a-z0-9-]+\.)*mailchimp\.com$")
_S3_HOST_RE = re.compile(r"^(?:(?P<bucket>[a-z0-9-]+)\.)?s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com$")


def subscriber_hash(email):
    """Mailchimp's member id: md5 of the lowercased, stripped email."""
    return hashlib.md5((email or "").strip().lower().encode("utf-8")).hexdigest()


def data_center_from_key(api_key):
    """Return the data centre ('us21') of an API key, or '' if it has none."""
    if api_key and api_key.count("-") == 1:
        return api_key.rsplit("-", 1)[1]
    return ""


def is_valid_api_key(api_key):
    """True for keys of the form '<32 hex>-us<N>'."""
    return bool(api_key and _KEY_RE.match(api_key))


def download_url_problem(url, base_url=None):
    """Why ``url`` may not be downloaded, or ``None`` when it may.

    A results archive is fetched only from Mailchimp itself: an https URL on
    a ``*.mailchimp.com`` host or in Mailchimp's S3 results bucket, on the
    default port.  An account pointed at a sandbox (``base_url`` set) may
    also fetch from that sandbox's own host and port, whatever the scheme.
    Anything else (another host, credentials in the URL, a non-http scheme)
    is refused, so a batch answer can never make the server fetch an
    internal address.
    """
    try:
        parts = urlsplit(url or "")
        host, port = _host_and_port(parts)
    except ValueError:
        return "the results address is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "the results address is not an http(s) URL"
    if parts.username or parts.password:
        return "the results address carries credentials"
    if base_url:
        try:
            base_host, base_port = _host_and_port(urlsplit(base_url))
        except ValueError:
            base_host, base_port = "", None
        if base_host and (host, port) == (base_host, base_port):
            return None
    if parts.scheme != "https" or port != 443:
        return f"the results address {host} is not served over https"
    if _MAILCHIMP_HOST_RE.match(host):
        return None
    s3 = _S3_HOST_RE.match(host)
    if s3:
        bucket = s3.group("bucket") or parts.path.lstrip("/").split("/", 1)[0]
        if bucket == RESULTS_BUCKET:
            return None
    return f"the results address {host} is not a Mailchimp host"


def _host_and_port(parts):
    """(lowercased host, port) of a split URL, the scheme's port if none is given."""
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.hostname or "").lower(), parts.port or default


def is_allowed_download_url(url, base_url=None):
    """True when :func:`download_url_problem` finds nothing wrong with ``url``."""
    return download_url_problem(url, base_url) is None


def _problem(text):
    """Parse a problem-detail body; tolerate HTML, empty and odd bodies."""
    if isinstance(text, dict):
        return text
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8", "replace")
    if isinstance(text, str) and text.strip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return postgres_value(data) if isinstance(data, dict) else {}
    return {}


def error_from_response(status, body):
    """Map an HTTP status and its body to the matching domain exception."""
    problem = _problem(body)
    title = problem.get("title")
    detail = problem.get("detail")
    errors = problem.get("errors") if isinstance(problem.get("errors"), list) else []
    summary = ": ".join(p for p in (title, detail) if p)
    message = f"Mailchimp answered {status}: {summary}" if summary else f"Mailchimp answered {status} without details."
    if status in (403, 429) and not problem:
        # At very high volume Mailchimp throttles with an empty 403/429.
        return MailchimpRetryableError(message, status, title, detail, errors, kind=RATE_LIMITED)
    if status == 429:
        return MailchimpRetryableError(message, status, title, detail, errors, kind=RATE_LIMITED)
    if status >= 500:
        return MailchimpRetryableError(message, status, title, detail, errors)
    if status in (401, 403):
        return MailchimpAuthError(message, status, title, detail, errors)
    if status == 404:
        return MailchimpNotFoundError(message, status, title or "Resource Not Found", detail, errors)
    return MailchimpPermanentError(message, status, title, detail, errors)


def _os_reason(exc):
    """The operating system's reason behind a ``requests``/``urllib3``
    failure ('Connection refused', 'Name or service not known'), or ''.

    Their own messages embed object reprs and the full request URL; the
    socket-level error at the bottom of the chain is what a person can use.
    """
    seen, stack = set(), [exc]
    while stack:
        err = stack.pop()
        if not isinstance(err, BaseException) or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError) and isinstance(err.strerror, str) and err.strerror:
            return err.strerror
        stack.extend((err.__cause__, err.__context__, getattr(err, "reason", None)))
        stack.extend(arg for arg in err.args if isinstance(arg, BaseException))
    return ""


def error_from_network(exc, timeout=None, what="Mailchimp"):
    """Map a ``requests`` exception (no HTTP answer at all) to a retryable
    domain exception whose message names the host and the reason, and no
    more: the full exception goes to the server log."""
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None) or ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host and parts.port:
        host = f"{host}:{parts.port}"
    where = f"{what} at {host}" if host else what
    seconds = ""
    if isinstance(timeout, (int, float)):
        seconds = f" within {timeout:g} second{'' if timeout == 1 else 's'}"
    if isinstance(exc, requests.ConnectTimeout):
        message, kind = f"Could not connect to {where}{seconds}.", TIMEOUT
    elif isinstance(exc, requests.Timeout):
        message, kind = f"{where} did not answer{seconds}.", TIMEOUT
    else:
        reason = _os_reason(exc)
        message = f"Could not reach {where}: {reason}." if reason else f"Could not reach {where}."
        kind = UNREACHABLE
    return MailchimpRetryableError(message, kind=kind)


class MemberPage:
    """One page of members: what it holds and where the next one starts."""

    __slots__ = ("members", "offset", "next_offset", "total_items")

    def __init__(self, members, offset, next_offset, total_items):
        self.members = members
        self.offset = offset
        self.next_offset = next_offset
        self.total_items = total_items

    @property
    def is_last(self):
        return not self.members or self.next_offset >= self.total_items


class MailchimpClient:
    """Every Mailchimp call of the addon, with explicit timeouts and errors
    mapped to :mod:`mailchimp_sync.exceptions`.

    :param api_key: '<32 hex>-us<N>'.
    :param base_url: API root to use instead of Mailchimp's, e.g. an
        emulator's ``http://127.0.0.1:8055/3.0``.
    :param timeout: seconds for each request (the SDK's default is 120).
    :param max_download_size: bytes; a batch results archive larger than
        this is refused (:meth:`download`).
    """

    def __init__(self, api_key, base_url=None, timeout=DEFAULT_TIMEOUT,
                 max_download_size=DEFAULT_MAX_DOWNLOAD_SIZE):
        if not api_key:
            raise MailchimpAuthError("No Mailchimp API key is configured.", 401, "API Key Missing")
        self.timeout = timeout
        self.max_download_size = max_download_size or DEFAULT_MAX_DOWNLOAD_SIZE
        self.base_url = base_url.rstrip("/") if base_url else None
        self._sdk = mailchimp_marketing.Client()
        self._sdk.set_config({"api_key": api_key, "timeout": timeout})
        if self.base_url:
            # set_config() never touches host, so this survives it.
            self._sdk.api_client.host = self.base_url

    def __repr__(self):
        # Never show the key.
        return f"<MailchimpClient {self.base_url or self.data_center}>"

    @property
    def data_center(self):
        return self._sdk.api_client.server

    # -- plumbing ---------------------------------------------------------

    def _call(self, method, *args, **kwargs):
        """Call an SDK method; its answer's text as PostgreSQL stores it
        (``text.postgres_value``), Mailchimp's errors as domain exceptions."""
        return postgres_value(self._answer(method, *args, **kwargs))

    def _answer(self, method, *args, **kwargs):
        """``_call`` without the walk through the answer's text."""
        operation = getattr(method, "__name__", "request")
        try:
            result = method(*args, **kwargs)
        except ApiClientError as exc:
            if exc.status_code is None:
                # The SDK wraps the requests exception itself in ``text``.
                raise self._network_error(operation, exc.text) from None
            _logger.info("Mailchimp %s answered %s: %.1000s", operation, exc.status_code, exc.text)
            raise error_from_response(exc.status_code, exc.text) from None
        except requests.RequestException as exc:
            raise self._network_error(operation, exc) from None
        except ValueError as exc:
            # The SDK validates some arguments itself (count > 1000, ...).
            raise MailchimpPermanentError(f"Invalid request: {exc}") from None
        if isinstance(result, requests.Response):
            if not result.ok:
                _logger.info("Mailchimp %s answered %s: %.1000s", operation, result.status_code, result.text)
                raise error_from_response(result.status_code, result.text)
            return None  # 204 No Content
        return result

    def _network_error(self, operation, exc, what="Mailchimp"):
        """Log the full network failure (INFO: the caller decides how bad
        it is) and return the domain exception with a plain message."""
        _logger.info("Mailchimp %s got no answer: %s: %s", operation, type(exc).__name__, exc)
        if not isinstance(exc, requests.RequestException):
            return MailchimpRetryableError(f"Could not reach {what}.", kind=UNREACHABLE)
        return error_from_network(exc, self.timeout, what)

    # -- account and lists -------------------------------------------------

    def ping(self):
        """Check the key; return Mailchimp's health message."""
        return self._call(self._sdk.ping.get).get("health_status", "")

    def get_lists(self):
        """All audiences of the account (they are few; paged anyway)."""
        return list(self._paged(self._sdk.lists.get_all_lists, "lists"))

    def get_list(self, list_id):
        return self._call(self._sdk.lists.get_list, list_id)

    def get_merge_fields(self, list_id):
        return list(self._paged(self._sdk.lists.get_list_merge_fields, "merge_fields", list_id))

    def get_interest_categories(self, list_id):
        return list(
            self._paged(self._sdk.lists.get_list_interest_categories, "categories", list_id)
        )

    def get_interests(self, list_id, category_id):
        return list(
            self._paged(
                self._sdk.lists.list_interest_category_interests,
                "interests",
                list_id,
                category_id,
            )
        )

    def get_all_interests(self, list_id):
        """Every interest of the audience, each with its category's title."""
        result = []
        for category in self.get_interest_categories(list_id):
            result.extend(
                dict(interest, category_title=category.get("title", ""))
                for interest in self.get_interests(list_id, category["id"])
            )
        return result

    def _paged(self, method, key, *args, count=MAX_PAGE_SIZE):
        offset = 0
        while True:
            page = self._call(method, *args, count=count, offset=offset)
            items = page.get(key) or []
            yield from items
            offset += len(items)
            if not items or offset >= page.get("total_items", 0):
                return

    # -- members -----------------------------------------------------------

    def iter_member_pages(
        self,
        list_id,
        fields=None,
        since_last_changed=None,
        status=None,
        offset=0,
        count=MAX_PAGE_SIZE,
        overlap=0,
    ):
        """Yield :class:`MemberPage` objects, one request each, in
        ``last_changed`` order, starting at ``offset``.

        Only one page is held at a time, so an audience of any size streams.
        ``overlap`` re-reads that many members of the previous page: members
        that change while we page move to the end of the ordering, which
        shifts the others left; reading a little behind the offset (and
        checking we see the last member again) keeps us from skipping anyone.
        Callers de-duplicate by subscriber hash.
        """
        request_fields = None
        if fields:
            request_fields = [f"members.{f}" for f in fields] + ["total_items"]
        last_id = None
        while True:
            start = max(0, offset - overlap) if last_id else offset
            kwargs = {"count": count, "offset": start, "sort_field": "last_changed", "sort_dir": "ASC"}
            if request_fields:
                kwargs["fields"] = request_fields
            if since_last_changed:
                kwargs["since_last_changed"] = since_last_changed
            if status:
                kwargs["status"] = status
            # A page is cleaned where it is written, as one JSON document: a
            # search of its text there costs less than a walk of every value.
            data = self._answer(self._sdk.lists.get_list_members_info, list_id, **kwargs)
            members = data.get("members") or []
            total = data.get("total_items", 0)
            if last_id and overlap and members:
                head = [m.get("id") or subscriber_hash(m.get("email_address")) for m in members[:overlap]]
                if last_id not in head:
                    # More members moved than the overlap covers: go back
                    # a full page rather than skip someone.
                    _logger.info("Member listing shifted during paging; re-reading a page")
                    offset = max(0, offset - count)
                    last_id = None
                    continue
            next_offset = start + len(members)
            page = MemberPage(members, offset, max(next_offset, offset), total)
            yield page
            if page.is_last:
                return
            offset = page.next_offset
            last = members[-1]
            last_id = last.get("id") or subscriber_hash(last.get("email_address"))

    def get_member(self, list_id, email_or_hash):
        """One member (archived ones included), or raise MailchimpNotFoundError."""
        key = email_or_hash
        if not re.fullmatch(r"[0-9a-f]{32}", email_or_hash or ""):
            key = subscriber_hash(email_or_hash)
        return self._call(self._sdk.lists.get_list_member, list_id, key)

    def set_member(self, list_id, email, body):
        """Add or update one member (PUT); single-row paths only."""
        return self._call(
            self._sdk.lists.set_list_member, list_id, subscriber_hash(email), body,
            skip_merge_validation=True,
        )

    # -- batches -----------------------------------------------------------

    def start_batch(self, operations):
        """Submit operations ({method, path, body(str), operation_id}) as one batch."""
        return self._call(self._sdk.batches.start, {"operations": operations})

    def get_batch(self, batch_id):
        return self._call(self._sdk.batches.status, batch_id)

    def list_batches(self):
        """Every batch Mailchimp still knows (all pages, unlike the reference)."""
        return list(self._paged(self._sdk.batches.list, "batches"))

    def delete_batch(self, batch_id):
        return self._call(self._sdk.batches.delete_request, batch_id)

    def download(self, url, fileobj, chunk_size=1 << 16):
        """Stream ``url`` (a batch result archive) into ``fileobj``.

        Plain ``requests`` without Mailchimp credentials: the URL is
        pre-signed, and S3 refuses a request that also carries an
        Authorization header.

        Only Mailchimp's hosts (or this client's sandbox) are contacted
        (:func:`download_url_problem`); redirects are followed by hand, each
        hop checked the same way; more than ``max_download_size`` bytes
        stops the download.  A refused address or an archive too large is a
        :class:`MailchimpPermanentError`: trying again cannot help.
        """
        received = 0
        try:
            for _hop in range(MAX_DOWNLOAD_REDIRECTS + 1):
                self._check_download_url(url)
                with requests.get(url, stream=True, timeout=self.timeout, allow_redirects=False) as resp:
                    if resp.is_redirect:
                        url = urljoin(url, resp.headers.get("Location", ""))
                        continue
                    if not resp.ok:
                        raise error_from_response(resp.status_code, resp.text[:2000])
                    length = resp.headers.get("Content-Length", "")
                    if length.isdigit() and int(length) > self.max_download_size:
                        raise self._too_large()
                    for chunk in resp.iter_content(chunk_size):
                        received += len(chunk)
                        if received > self.max_download_size:
                            raise self._too_large()
                        fileobj.write(chunk)
                    break
            else:
                raise MailchimpPermanentError(
                    "Batch results not downloaded: too many redirects.", title="Download Refused"
                )
        except requests.RequestException as exc:
            raise self._network_error("download", exc, "Mailchimp's batch results") from None
        fileobj.seek(0)
        return fileobj

    def _check_download_url(self, url):
        problem = download_url_problem(url, self.base_url)
        if problem:
            raise MailchimpPermanentError(
                f"Batch results not downloaded: {problem}.", title="Download Refused", detail=problem
            )

    def _too_large(self):
        limit = self.max_download_size // (1024 * 1024) or self.max_download_size
        unit = "MB" if self.max_download_size >= 1024 * 1024 else "bytes"
        return MailchimpPermanentError(
            f"Batch results not downloaded: the archive is larger than {limit} {unit}.",
            title="Results Too Large",
        )

    # -- webhooks ----------------------------------------------------------

    def list_webhooks(self, list_id):
        return self._call(self._sdk.lists.get_list_webhooks, list_id).get("webhooks", [])

    def create_webhook(self, list_id, body):
        return self._call(self._sdk.lists.create_list_webhook, list_id, body)

    def update_webhook(self, list_id, webhook_id, body):
        return self._call(self._sdk.lists.update_list_webhook, list_id, webhook_id, body)

    def delete_webhook(self, list_id, webhook_id):
        return self._call(self._sdk.lists.delete_list_webhook, list_id, webhook_id)

    def list_batch_webhooks(self):
        return list(self._paged(self._sdk.batchWebhooks.list, "webhooks"))

    def create_batch_webhook(self, url):
        return self._call(self._sdk.batchWebhooks.create, {"url": url, "enabled": True})

    def update_batch_webhook(self, webhook_id, body):
        return self._call(self._sdk.batchWebhooks.update, webhook_id, body)

    def delete_batch_webhook(self, webhook_id):
        return self._call(self._sdk.batchWebhooks.remove, webhook_id)


__all__ = [
    "MailchimpClient",
    "MailchimpError",
    "MemberPage",
    "data_center_from_key",
    "download_url_problem",
    "error_from_network",
    "error_from_response",
    "is_allowed_download_url",
    "is_valid_api_key",
    "subscriber_hash",
]
