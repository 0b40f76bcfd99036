"""Batch operations out, batch results in.

Operations carry ``operation_id = "odoo_update_<id>"`` so every result
settles exactly the update it came from.  Mailchimp's result archive is a
gzipped tar of JSON arrays (several files, some possibly empty, names maybe
prefixed with ``./``); each result's ``response`` is itself a JSON string.
"""

import json
import re
import tarfile
import tempfile
import zlib
from dataclasses import dataclass

from . import reasons
from .client import subscriber_hash
from .exceptions import MailchimpRetryableError
from .reasons import Reason
from .text import needs_cleaning, postgres_text, postgres_value

MAX_OPERATIONS = 1000
OPERATION_PREFIX = "odoo_update_"
_OPERATION_RE = re.compile(r"^odoo_update_(\d+)$")
COMPLIANCE_TITLE = "Member In Compliance State"


def operation_id(update_id):
    return f"{OPERATION_PREFIX}{update_id}"


def update_id_from_operation(op_id):
    """The update id an operation id names, or None for foreign operations."""
    match = _OPERATION_RE.match(op_id or "")
    return int(match.group(1)) if match else None


def build_operation(update_id, list_id, kind, payload, member_email, known_at_mailchimp, fields=None):
    """One Batch API operation for a queued update.

    * a member update of a member Mailchimp does not know yet → ``POST
      /lists/{id}/members`` (the payload carries email_address and status);
    * of a known member → ``PUT /lists/{id}/members/{hash}`` with the
      member's email (a PUT to a known hash never creates a stray member);
    * tags → ``POST /lists/{id}/members/{hash}/tags``.

    Bodies are JSON strings, as the Batch API wants.  A member update's
    ``payload`` may come as that string already (its JSON text, with the
    member's ``email_address`` in it): a sender reading a thousand of them
    from the database spent more time decoding and encoding them again
    than on the rest of the batch.  ``fields`` (a list of member fields, as
    the fetch asks for) trims the member an operation answers with to what
    settling reads: a whole member, with its links and statistics, is
    several times larger, and a batch's thousand of them are downloaded
    and parsed once more when it is settled.
    """
    member_hash = subscriber_hash(member_email)
    if kind == "tags":
        return {
            "method": "POST",
            "path": f"/lists/{list_id}/members/{member_hash}/tags",
            "operation_id": operation_id(update_id),
            "body": json.dumps({"tags": payload.get("tags", []), "is_syncing": True}),
        }
    # The payload's own address (a rename) wins over the member's.
    body = payload if isinstance(payload, str) else json.dumps({"email_address": member_email, **payload})
    if known_at_mailchimp:
        method, path = "PUT", f"/lists/{list_id}/members/{member_hash}"
    else:
        method, path = "POST", f"/lists/{list_id}/members"
    params = {"skip_merge_validation": "true"}
    if fields:
        params["fields"] = ",".join(fields)
    return {
        "method": method,
        "path": path,
        "operation_id": operation_id(update_id),
        "params": params,
        "body": body,
    }


@dataclass
class OperationResult:
    """The outcome of one operation of a finished batch."""

    update_id: int | None
    status_code: int
    body: dict | None
    title: str | None = None
    detail: str | None = None
    # The body as JSON text, as Mailchimp sent it, or cleaned (text.py)
    # where PostgreSQL would refuse it (None: no JSON object):
    # settling hands it to the database as it came.
    raw: str | None = None

    @property
    def ok(self):
        return 200 <= self.status_code < 300

    @property
    def is_compliance_state(self):
        return self.status_code == 400 and self.title == COMPLIANCE_TITLE

    def error_reason(self):
        """Why this operation failed, as a :class:`~.reasons.Reason` the Odoo
        side puts in words (with what to do next).  Mailchimp's titles are
        stable identifiers; its details are English prose, read only where
        one title covers several cases (Invalid Resource)."""
        title, detail = self.title or "", self.detail or ""
        errors = (self.body or {}).get("errors") if isinstance(self.body, dict) else None
        if self.status_code == 400 and title == COMPLIANCE_TITLE:
            return Reason(reasons.COMPLIANCE_STATE)
        if self.status_code == 400 and title == "Member Exists":
            return Reason(reasons.MEMBER_EXISTS)
        if self.status_code == 400 and title == "Forgotten Email Not Subscribed":
            return Reason(reasons.FORGOTTEN)
        if self.status_code == 400 and title == "Invalid Resource":
            lowered = detail.lower()
            if "fake or invalid" in lowered or "valid email address" in lowered:
                return Reason(reasons.INVALID_EMAIL)
            if '"cleaned."' in lowered or "status is cleaned" in lowered:
                return Reason(reasons.CLEANED_AT_MAILCHIMP)
            fields = [e for e in errors or () if isinstance(e, dict) and str(e.get("field") or "").strip()]
            if "merge fields" in lowered or any(str(e["field"]).startswith("merge_fields") for e in fields):
                return Reason(reasons.INVALID_MERGE_FIELDS, {"fields": "; ".join(
                    f"{str(e['field']).removeprefix('merge_fields.')}: {e.get('message') or '-'}" for e in fields
                ) or detail})
        if self.status_code == 404:
            return Reason(reasons.MEMBER_NOT_FOUND)
        if self.status_code == 429 or self.status_code >= 500:
            return Reason(reasons.TEMPORARY, {"status": self.status_code})
        return Reason(reasons.REFUSED, {"status": self.status_code, "title": title, "detail": detail})


def parse_result(item):
    """One entry of a results file → :class:`OperationResult`."""
    status = int(item.get("status_code") or 0)
    raw = item.get("response")
    body = text = None
    if isinstance(raw, str) and raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"detail": postgres_text(raw[:1000])}
        else:
            if needs_cleaning(raw):
                # The answer's text goes to PostgreSQL as JSON (text.py).
                body = postgres_value(body)
                raw = json.dumps(body)
            text = raw if isinstance(body, dict) else None
    elif isinstance(raw, dict):
        body = postgres_value(raw)
        text = json.dumps(body)
    title = detail = None
    if status >= 300 and isinstance(body, dict):
        title, detail = body.get("title"), body.get("detail")
    return OperationResult(update_id_from_operation(item.get("operation_id")), status, body, title, detail, text)


def iter_results_archive(fileobj):
    """Yield :class:`OperationResult` for every operation in a results archive.

    Reads every regular file of the tar, whatever its name or folder, skips
    empty ones, and raises ValueError on a file that is not a JSON array.
    """
    with tarfile.open(fileobj=fileobj, mode="r:*") as archive:
        for entry in archive:
            if not entry.isfile():
                continue
            handle = archive.extractfile(entry)
            data = handle.read() if handle else b""
            if not data.strip():
                continue
            try:
                items = json.loads(data)
            except ValueError as exc:
                raise ValueError(f"{entry.name} in the batch results is not JSON: {exc}") from None
            if isinstance(items, dict):
                items = [items]
            for item in items:
                yield parse_result(item)


def read_results(client, url):
    """{update id: :class:`OperationResult`} of the results archive at
    ``url`` (none without one); results of foreign operations are left out."""
    results = {}
    if url:
        with tempfile.SpooledTemporaryFile(max_size=16 << 20) as tmp:
            client.download(url, tmp)
            try:
                for result in iter_results_archive(tmp):
                    if result.update_id is not None:
                        results[result.update_id] = result
            except (tarfile.TarError, EOFError, zlib.error, ValueError) as exc:
                # Cut short or garbled on the way (the download looked
                # whole): an error like Mailchimp's own, so that this batch
                # waits for the next reading and the others settle.
                raise MailchimpRetryableError(
                    f"Mailchimp's batch results could not be read ({exc}); they are read again later.",
                    title="Unreadable Results",
                ) from None
    return results


def read_batch(client, batch_id):
    """(the batch as ``GET /batches/{id}`` reports it, its results as
    ``read_results`` gives them once it is finished, else None).  The
    results archive is read from the URL that answer gives, never from one
    a webhook gave."""
    info = client.get_batch(batch_id)
    if info.get("status") != "finished":
        return info, None
    return info, read_results(client, info.get("response_body_url"))
