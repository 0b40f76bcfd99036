"""Batch operations (§7): queue, one-at-a-time worker, results archive.

Each operation is run through ``Api.dispatch`` -- the same router, handlers
and member logic as a direct HTTP call, with source ``api`` -- and its status
code and response body are captured as Mailchimp's result rows are.
"""

import hashlib
import hmac
import io
import json
import os
import tarfile
import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit

from . import links
from .util import ApiError, batch_id, hex_id, iso, schema_error

PUBLIC_KEYS = ("id", "status", "total_operations", "finished_operations", "errored_operations",
               "submitted_at", "completed_at", "response_body_url")


class BatchRunner:
    """Owns the batch queue of the account and the background worker."""

    def __init__(self, api):
        self.api = api
        self.store = api.store
        self.secret = os.urandom(16)
        self.archives = {}              # batch id -> (bytes, expires epoch)
        self.run_lock = threading.Lock()  # one batch at a time per account (§7.2)
        self.wake = threading.Event()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="emulator-batches", daemon=True)
        self.thread.start()

    # -- API side (store.lock held) --
    def create(self, req, body):
        if isinstance(body, list):
            raise schema_error([{"field": "", "message": "Schema describes object, array found instead"}])
        if not isinstance(body, dict) or not isinstance(body.get("operations"), list):
            raise schema_error([{"field": "", "message": "Required fields were not provided: operations"}])
        errors = []
        for n, op in enumerate(body["operations"]):
            if not isinstance(op, dict):
                errors.append({"field": f"operations.item:{n}", "message": "Schema describes object"})
                continue
            if str(op.get("method", "")).upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                errors.append({"field": f"operations.item:{n}.method",
                               "message": "Data presented is not one of the accepted values: "
                                          "GET, POST, PUT, PATCH, DELETE."})
            if not op.get("path"):
                errors.append({"field": f"operations.item:{n}.path",
                               "message": "Required fields were not provided: path"})
            if op.get("body") is not None and not isinstance(op["body"], str):
                errors.append({"field": f"operations.item:{n}.body",
                               "message": "Schema describes string, object found instead"})
        if errors:
            raise schema_error(errors)
        s = self.store.settings
        pending = sum(1 for b in self.store.batches.values() if b["status"] == "pending")
        pending += self.api.dispatcher.undelivered_batch_count()
        if pending >= int(s["max_pending_batches"]):
            raise ApiError(429, "Too Many Requests",
                           f"You have exceeded the limit of {s['max_pending_batches']} pending batches.")
        b = {"id": batch_id(), "status": "pending", "total_operations": 0, "finished_operations": 0,
             "errored_operations": 0, "submitted_at": iso(self.store.clock.now()), "completed_at": "",
             "response_body_url": "", "_ops": body["operations"], "_queued": time.monotonic(),
             "_cancelled": False}
        self.store.batches[b["id"]] = b
        self.wake.set()
        return self.to_json(b)

    def to_json(self, b):
        out = {k: b[k] for k in PUBLIC_KEYS}
        out["_links"] = links.batch_links(self.store.link_base, b["id"])
        return out

    def delete(self, bid):
        b = self.store.batches.pop(bid)
        b["_cancelled"] = True
        self.archives.pop(bid, None)

    # -- processing --
    def _next(self, ignore_delay):
        delay = float(self.store.settings["batch_delay"])
        with self.store.lock:
            for b in self.store.batches.values():
                if b["status"] == "pending" and (ignore_delay or time.monotonic() - b["_queued"] >= delay):
                    return b
        return None

    def _run(self):
        while not self.stopped:
            self.wake.wait(0.05)
            self.wake.clear()
            if self.stopped or not self.store.settings["batch_auto_run"]:
                continue
            with self.run_lock:
                b = self._next(False)
                if b is not None:
                    self._process(b)
                    self.wake.set()

    def run_all(self):
        """Finish every pending batch now (control API ``run-batches``)."""
        done = []
        with self.run_lock:
            while True:
                b = self._next(True)
                if b is None:
                    return done
                self._process(b)
                done.append(b["id"])

    def _process(self, b):
        s = self.store.settings
        ops = b["_ops"]
        with self.store.lock:
            b["status"] = "started"
            b["total_operations"] = len(ops)
        if float(s["batch_started_seconds"]) > 0:
            time.sleep(float(s["batch_started_seconds"]))
        results = []
        for op in ops:
            if b["_cancelled"]:
                return
            method = str(op.get("method", "GET")).upper()
            path, _, qs = str(op["path"]).partition("?")
            query = parse_qs(qs, keep_blank_values=True)
            for k, v in (op.get("params") or {}).items():
                vals = v if isinstance(v, list) else [v]
                query[k] = [",".join(map(str, vals)) if isinstance(v, list) else
                            ("true" if v is True else "false" if v is False else str(v))]
            if not path.startswith("/"):
                path = "/" + path
            if path.startswith("/3.0/"):
                path = path[4:]
            resp = self.api.dispatch(method, path, query, op.get("body"), source="api", in_batch=True)
            text = (json.dumps(resp.body, separators=(",", ":")) if resp.body is not None
                    else s["batch_204_response"])
            results.append({"status_code": resp.status, "operation_id": op.get("operation_id"),
                            "response": text})
            with self.store.lock:
                b["finished_operations"] += 1
                if resp.status >= 400:
                    b["errored_operations"] += 1
        data = self._archive(b["id"], results)
        expires = self.store.clock.now() + int(s["results_expiry_seconds"])
        with self.store.lock:
            if b["_cancelled"]:
                return
            self.archives[b["id"]] = (data, expires)
            b["status"] = "finished"
            b["completed_at"] = iso(self.store.clock.now())
            b["response_body_url"] = self.signed_url(b["id"], expires)
            records = self.api.dispatcher.queue_batch(self.to_json(b))
        self.api.dispatcher.settle(records)

    # -- archive --
    def _archive(self, bid, results):
        s = self.store.settings
        prefix = s["batch_result_dir"] or ""
        nfiles = max(1, int(s["batch_result_files"]))
        size = max(1, -(-len(results) // nfiles))
        chunks = [results[i * size:(i + 1) * size] for i in range(nfiles)]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            if prefix.endswith("/"):
                info = tarfile.TarInfo(prefix.rstrip("/") or ".")
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            files = [b""] + [json.dumps(c).encode() if c else b"" for c in chunks]
            for data in files:
                info = tarfile.TarInfo(f"{prefix}{hex_id(32)}.json")
                info.size = len(data)
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def _signature(self, bid, expires):
        return hmac.new(self.secret, f"{bid}:{expires}".encode(), hashlib.sha1).hexdigest()

    def signed_url(self, bid, expires):
        q = urlencode({"AWSAccessKeyId": "EMULATOR", "Expires": expires,
                       "Signature": self._signature(bid, expires)})
        return f"{self.store.base_url}/_batch-results/{bid}.tar.gz?{q}"

    def serve(self, path, query, headers):
        """S3-like GET of an archive: returns (status, content_type, bytes)."""
        def s3_error(status, code, msg):
            return status, "application/xml", (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}'
                                               f'</Code><Message>{msg}</Message></Error>').encode()
        name = urlsplit(path).path.rsplit("/", 1)[-1]
        bid = name.removesuffix(".tar.gz")
        if headers.get("Authorization") and self.store.settings["batch_results_require_no_auth"]:
            return s3_error(403, "AccessDenied", "Only one auth mechanism allowed; only the X-Amz-Algorithm "
                            "query parameter, Signature query string parameter or the Authorization "
                            "header should be specified")
        try:
            expires = int(query.get("Expires", ["0"])[0])
        except ValueError:
            expires = 0
        sig = query.get("Signature", [""])[0]
        if not hmac.compare_digest(sig, self._signature(bid, expires)):
            return s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not "
                            "match the signature you provided.")
        if self.store.clock.now() > expires:
            return s3_error(403, "AccessDenied", "Request has expired")
        entry = self.archives.get(bid)
        if entry is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return 200, "application/x-gzip", entry[0]

    def clear(self):
        self.archives.clear()

    def stop(self):
        self.stopped = True
        self.wake.set()
