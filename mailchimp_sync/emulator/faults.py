"""Fault injection (§6.3): scripted and random faults, and the connection limit.

Two forms, both settable through ``/_emulator/faults``:

* rules -- "the next N requests matching METHOD + path regex get kind K";
* random -- a share ``rate`` of all API requests get one of ``kinds``,
  drawn from a seeded RNG so a failing test can be replayed.

Kinds: ``429_json``, ``429_empty``, ``403_empty``, ``500``, ``503``,
``timeout`` (sleep ``delay`` seconds, then answer normally -- long after a
client with a shorter timeout gave up) and, for batch results downloads
only (rules whose path matches ``/_batch-results/``), ``truncated``: the
first half of the archive, sent as if whole (random faults never touch
downloads).
"""

import random
import re
import threading

KINDS = ("429_json", "429_empty", "403_empty", "500", "503", "timeout", "truncated")


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.configure()

    def configure(self, rules=None, rate=0.0, kinds=None, seed=None, delay=5.0, append=False):
        """Replace (or extend, with ``append``) the fault configuration."""
        with self.lock:
            new_rules = []
            for r in rules or []:
                kind = r.get("kind", "500")
                if kind not in KINDS:
                    raise ValueError(f"unknown fault kind {kind!r}; one of {KINDS}")
                new_rules.append({"method": (r.get("method") or "*").upper(),
                                  "path": re.compile(r.get("path") or ".*"),
                                  "path_src": r.get("path") or ".*",
                                  "kind": kind, "remaining": int(r.get("count", 1)),
                                  "delay": float(r.get("delay", delay))})
            for k in kinds or []:
                if k not in KINDS:
                    raise ValueError(f"unknown fault kind {k!r}; one of {KINDS}")
            self.rules = (self.rules + new_rules) if append and hasattr(self, "rules") else new_rules
            self.rate = float(rate or 0.0)
            self.kinds = list(kinds or ["500"])
            self.rng = random.Random(seed)
            self.delay = float(delay)
            if not append or not hasattr(self, "injected"):
                self.injected = []

    def pick(self, method, path, rules_only=False):
        """The fault for this request, as (kind, delay), or None;
        ``rules_only``: never a random one."""
        with self.lock:
            for r in self.rules:
                if r["remaining"] <= 0:
                    continue
                if r["method"] not in ("*", method):
                    continue
                if not r["path"].search(path):
                    continue
                r["remaining"] -= 1
                self.injected.append({"method": method, "path": path, "kind": r["kind"]})
                return r["kind"], r["delay"]
            if self.rate > 0 and not rules_only and self.rng.random() < self.rate:
                kind = self.rng.choice(self.kinds)
                self.injected.append({"method": method, "path": path, "kind": kind})
                return kind, self.delay
        return None

    def dump(self):
        with self.lock:
            return {"rules": [{"method": r["method"], "path": r["path_src"], "kind": r["kind"],
                               "remaining": r["remaining"], "delay": r["delay"]} for r in self.rules],
                    "rate": self.rate, "kinds": self.kinds, "delay": self.delay,
                    "injected": list(self.injected)}
