"""Webhooks the emulator sends: payloads (§8.3), the source filter (§8.4),
URL validation (§8.1) and delivery with a record of every attempt (§8.2).

Payloads are built when the change happens, from the member as it is then,
so a later change cannot leak into an earlier event.
"""

import threading
import time
from urllib.parse import urlencode

import requests

from .util import fired_at, iso

POST_HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "MailChimp.com"}
VALIDATOR_UA = "MailChimp.com WebHook Validator"


def _merge_pairs(store, lst, m):
    pairs = [("data[merges][EMAIL]", m.email)]
    for mf in lst.merge_fields.values():
        v = m.merge.get(mf.tag, "")
        if isinstance(v, dict):
            for k, sub in v.items():
                pairs.append((f"data[merges][{mf.tag}][{k}]", str(sub)))
        else:
            pairs.append((f"data[merges][{mf.tag}]", "" if v is None else str(v)))
    if lst.categories:
        names = [it.name for cat in lst.categories.values() for it in cat.interests.values()
                 if it.id in m.interests]
        pairs.append(("data[merges][INTERESTS]", ", ".join(names)))
        for n, cat in enumerate(lst.categories.values()):
            p = f"data[merges][GROUPINGS][{n}]"
            pairs += [(p + "[id]", str(cat.legacy_id)), (p + "[unique_id]", cat.id),
                      (p + "[name]", cat.title),
                      (p + "[groups]", ", ".join(it.name for it in cat.interests.values()
                                                 if it.id in m.interests))]
    return pairs


def build_event(store, lst, type_, m, source, extra):
    """One list event with its form pairs, ready to be matched against webhooks."""
    now = store.clock.now()
    pairs = [("type", type_), ("fired_at", fired_at(now))]
    if type_ == "upemail":
        pairs += [("data[new_id]", m.unique_email_id), ("data[new_email]", m.email),
                  ("data[old_email]", extra["old_email"]), ("data[list_id]", lst.id)]
    elif type_ == "cleaned":
        pairs.append(("data[list_id]", lst.id))
        if extra.get("campaign_id"):
            pairs.append(("data[campaign_id]", extra["campaign_id"]))
        pairs += [("data[reason]", extra.get("reason", "hard")), ("data[email]", m.email)]
    elif type_ == "campaign":
        pairs += [("data[id]", extra["id"]), ("data[subject]", extra.get("subject", "")),
                  ("data[status]", extra.get("status", "sent")), ("data[reason]", ""),
                  ("data[list_id]", lst.id)]
    else:
        if type_ == "unsubscribe":
            pairs += [("data[action]", extra.get("action", "unsub")),
                      ("data[reason]", extra.get("reason", "manual"))]
        pairs += [("data[id]", m.unique_email_id), ("data[email]", m.email),
                  ("data[email_type]", m.email_type), ("data[ip_opt]", m.ip_opt)]
        if m.ip_signup:
            pairs.append(("data[ip_signup]", m.ip_signup))
        pairs.append(("data[web_id]", str(m.web_id)))
        if type_ == "unsubscribe" and extra.get("campaign_id"):
            pairs.append(("data[campaign_id]", extra["campaign_id"]))
        pairs += _merge_pairs(store, lst, m)
        pairs.append(("data[list_id]", lst.id))
    return {"list_id": lst.id, "type": type_, "source": source, "pairs": pairs}


def validate_url(url, timeout):
    """The registration GET (§8.1).  Returns the HTTP status, or 0 if unreachable."""
    try:
        r = requests.get(url, headers={"User-Agent": VALIDATOR_UA}, timeout=timeout)
        return r.status_code
    except requests.RequestException:
        return 0


class Dispatcher:
    """Queue, deliver and record webhook POSTs (list and batch webhooks)."""

    def __init__(self, store):
        self.store = store
        self.cond = threading.Condition()
        self.records = []       # every delivery ever queued since the last clear
        self.pending = []       # records waiting for an attempt
        self.sending = 0
        self.next_id = 1
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="emulator-webhooks", daemon=True)
        self.thread.start()

    # -- queueing (called with store.lock held) --
    def queue_events(self, events):
        """Match list events against each list's webhooks; returns the new records."""
        out = []
        for ev in events:
            lst = self.store.lists.get(ev["list_id"])
            if lst is None:
                continue
            for wh in lst.webhooks.values():
                if not wh.events.get(ev["type"]):
                    continue
                if ev["type"] != "campaign" and not wh.sources.get(ev["source"]):
                    continue  # campaign events ignore the source filter (§8.4)
                out.append(self._record("list", wh.id, lst.id, wh.url, ev["type"], ev["source"],
                                        ev["pairs"]))
        return out

    def queue_batch(self, batch_json):
        out = []
        s = self.store.settings
        for bw in self.store.batch_webhooks.values():
            if not bw["enabled"]:
                continue
            pairs = [("type", s["batch_webhook_type"]), ("fired_at", fired_at(self.store.clock.now()))]
            for k in ("id", "status", "total_operations", "finished_operations", "errored_operations",
                      "submitted_at", "completed_at", "response_body_url"):
                pairs.append((f"data[{k}]", str(batch_json[k])))
            out.append(self._record("batch", bw["id"], None, bw["url"], s["batch_webhook_type"],
                                    "api", pairs))
        return out

    def _record(self, kind, wid, list_id, url, type_, source, pairs):
        mode = self.store.settings["webhook_delivery"]
        with self.cond:
            rec = {"id": self.next_id, "kind": kind, "webhook_id": wid, "list_id": list_id,
                   "url": url, "type": type_, "source": source, "body": urlencode(pairs),
                   "data": dict(pairs), "status": "off" if mode == "off" else "pending",
                   "attempts": [], "response_status": None,
                   "created_at": iso(self.store.clock.now()),
                   "_due": time.monotonic() + float(self.store.settings["webhook_delay"] or 0)}
            self.next_id += 1
            self.records.append(rec)
            if mode != "off":
                self.pending.append(rec)
        return rec

    def settle(self, records):
        """After the lock is released: deliver now in 'sync' mode, else wake the worker."""
        if not records:
            return
        if self.store.settings["webhook_delivery"] == "sync":
            for rec in records:
                with self.cond:
                    if rec not in self.pending:
                        continue
                    self.pending.remove(rec)
                    self.sending += 1
                self._attempt(rec)
        with self.cond:
            self.cond.notify_all()

    def undelivered_batch_count(self):
        with self.cond:
            return sum(1 for r in self.pending if r["kind"] == "batch")

    # -- delivery --
    def _attempt(self, rec):
        s = self.store.settings
        t0 = time.monotonic()
        att = {"at": iso(self.store.clock.now()), "status_code": None, "error": None}
        try:
            r = requests.post(rec["url"], data=rec["body"], headers=POST_HEADERS,
                              timeout=float(s["webhook_timeout"]))
            att["status_code"] = r.status_code
            att["response"] = r.text[:500]
            ok = 200 <= r.status_code < 300
        except requests.RequestException as e:
            att["error"] = f"{type(e).__name__}: {e}"
            ok = False
        att["elapsed"] = round(time.monotonic() - t0, 3)
        with self.cond:
            rec["attempts"].append(att)
            rec["response_status"] = att["status_code"]
            self.sending -= 1
            if ok:
                rec["status"] = "delivered"
            elif rec not in self.records:
                rec["status"] = "failed"  # cleared by a reset meanwhile: do not leak into the next test
            elif len(rec["attempts"]) <= int(s["webhook_retries"]):
                rec["status"] = "pending"
                backoff = float(s["webhook_retry_delay"]) * 2 ** (len(rec["attempts"]) - 1)
                rec["_due"] = time.monotonic() + backoff
                self.pending.append(rec)
            else:
                rec["status"] = "failed"
            self.cond.notify_all()

    def _take(self, force):
        now = time.monotonic()
        for rec in self.pending:
            if force or rec["_due"] <= now:
                self.pending.remove(rec)
                self.sending += 1
                return rec
        return None

    def _run(self):
        while True:
            with self.cond:
                rec = None
                while not self.stopped:
                    rec = self._take(False)
                    if rec:
                        break
                    wait = min((r["_due"] for r in self.pending), default=None)
                    self.cond.wait(None if wait is None else max(0.01, wait - time.monotonic()))
                if self.stopped:
                    return
            self._attempt(rec)

    def flush(self, timeout=60):
        """Deliver everything queued now (retries included) and wait for in-flight ones."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.cond:
                rec = self._take(True)
                if rec is None:
                    if self.sending == 0:
                        return True
                    self.cond.wait(0.05)
                    continue
            self._attempt(rec)
        return False

    def dump(self, clear=False):
        with self.cond:
            out = [{k: v for k, v in r.items() if not k.startswith("_")} for r in self.records]
            if clear:
                self.records = [r for r in self.records if r["status"] in ("pending",)]
            return out

    def clear(self):
        with self.cond:
            self.records = []
            self.pending = []

    def stop(self):
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
