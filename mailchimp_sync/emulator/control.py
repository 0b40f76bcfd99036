"""``EmulatorControl``: a thin ``requests`` client for the ``/_emulator/`` API.

Used by the tests, the demo and the Odoo tests to arrange state and to
simulate what people and admins do in Mailchimp; it never touches the
emulator's internals, only its HTTP control endpoints.
"""

import requests


class EmulatorControlError(RuntimeError):
    """A control call failed; ``status`` and ``body`` carry the answer."""

    def __init__(self, status, body):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class EmulatorControl:
    """Client for the control API of an emulator at ``url`` (no ``/3.0``)."""

    def __init__(self, url, timeout=60):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method, name, json=None, params=None):
        r = requests.request(method, f"{self.url}/_emulator/{name}", json=json, params=params,
                             timeout=self.timeout)
        try:
            body = r.json()
        except ValueError:
            body = r.text
        if not r.ok:
            raise EmulatorControlError(r.status_code, body)
        return body

    # -- setup --
    def reset(self, settings=None):
        """Forget everything; start over with default settings updated by ``settings``."""
        return self._call("POST", "reset", {"settings": settings or {}})

    def settings(self, **kw):
        """Change settings (names as in settings.DEFAULTS); returns all of them."""
        return self._call("POST" if kw else "GET", "settings", kw or None)

    def add_api_key(self, key):
        """Make ``key`` (``<32 hex>-us<N>``) a known, accepted API key."""
        return self._call("POST", "api-keys", {"key": key})

    def seed(self, lists):
        """Create lists, merge fields, interests and members; returns their ids.

        Answer: ``{"list_ids": [...], "lists": [{"id", "name", "merge_fields": {tag: id},
        "categories": {title: id}, "interests": {name: id}, "member_count"}]}``.
        """
        return self._call("POST", "seed", {"lists": lists})

    # -- inspection --
    def state(self, list_id=None, limit=10000):
        """Dump lists, members (with hidden fields), batches, webhooks, settings."""
        params = {"limit": limit}
        if list_id:
            params["list_id"] = list_id
        return self._call("GET", "state", params=params)

    def member(self, list_id, email):
        """One member including ``compliance_locked`` and ``unsubscribe_origin``."""
        return self._call("GET", "member", params={"list_id": list_id, "email": email})

    def stats(self):
        return self._call("GET", "stats")

    # -- simulated people and admins (fire webhooks with source user/admin) --
    def user_unsubscribe(self, list_id, email, reason="manual", campaign_id=None):
        return self._call("POST", "events/user-unsubscribe", {"list_id": list_id, "email": email,
                                                              "reason": reason, "campaign_id": campaign_id})

    def bounce(self, list_id, email, reason="hard", campaign_id=None):
        return self._call("POST", "events/bounce", {"list_id": list_id, "email": email, "reason": reason,
                                                    "campaign_id": campaign_id})

    def confirm_pending(self, list_id, email):
        return self._call("POST", "events/confirm-pending", {"list_id": list_id, "email": email})

    def user_signup(self, list_id, email, merge_fields=None):
        return self._call("POST", "events/user-signup", {"list_id": list_id, "email": email,
                                                         "merge_fields": merge_fields or {}})

    def admin_update(self, list_id, email, **fields):
        return self._call("POST", "events/admin-update", {"list_id": list_id, "email": email,
                                                          "fields": fields})

    def admin_archive(self, list_id, email):
        return self._call("POST", "events/admin-archive", {"list_id": list_id, "email": email})

    def campaign(self, list_id, campaign_id=None, subject="", status="sent"):
        return self._call("POST", "events/campaign", {"list_id": list_id, "campaign_id": campaign_id,
                                                      "subject": subject, "status": status})

    def fault_report(self):
        """Current fault configuration and every fault injected so far."""
        return self._call("GET", "faults")

    # -- time, batches, webhooks, faults --
    def run_batches(self):
        """Finish every pending batch now; returns ``{"finished": [ids]}``."""
        return self._call("POST", "run-batches")

    def flush_webhooks(self, timeout=60):
        """Deliver all queued webhooks (retries too) and wait for them."""
        return self._call("POST", "flush-webhooks", {"timeout": timeout})

    def deliveries(self, clear=False):
        """Every webhook delivery recorded: url, body, data, status, attempts."""
        return self._call("GET", "deliveries", params={"clear": "true" if clear else "false"})["deliveries"]

    def clock(self, now=None, advance=None, real=False):
        """Freeze "now" at ``now`` (ISO), move it by ``advance`` seconds, or go back to real time."""
        body = {}
        if now is not None:
            body["now"] = now
        if advance is not None:
            body["advance"] = advance
        if real:
            body["real"] = True
        return self._call("POST" if body else "GET", "clock", body or None)

    def faults(self, rules=None, rate=0.0, kinds=None, seed=None, delay=5.0, append=False):
        """Configure fault injection.

        ``rules``: ``[{"method": "GET", "path": "^/lists/.*/members$", "kind": "429_json",
        "count": 2, "delay": 3}]`` -- the next ``count`` matching API requests get ``kind``
        (429_json, 429_empty, 403_empty, 500, 503, timeout; and, for a path matching
        ``/_batch-results/``, truncated: half the archive, sent as if whole).  ``rate``/``kinds``/``seed``:
        a random share of all API requests.  ``faults()`` with no argument clears them.
        """
        return self._call("POST", "faults", {"rules": rules or [], "rate": rate, "kinds": kinds,
                                             "seed": seed, "delay": delay, "append": append})
