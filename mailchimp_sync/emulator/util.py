"""Small helpers shared by the emulator modules: errors, ids, times, fields."""

import hashlib
import random
import re
import string
import time
from datetime import UTC, datetime

ERR_NOT_FOUND = ("Resource Not Found", "The requested resource could not be found.")
ERR_INVALID_SCHEMA = ("The resource submitted could not be validated. "
                      "For field-specific details, see the 'errors' array.")


class ApiError(Exception):
    """A Mailchimp problem-detail error; the router turns it into a response."""

    def __init__(self, status, title, detail, errors=None, headers=None, typed=None):
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.typed = typed  # None: decided by the untyped_error_titles setting

    def body(self, settings, instance="", type_url=None):
        """Problem-detail dict for this error."""
        typed = self.typed
        if typed is None:
            typed = self.title not in settings["untyped_error_titles"]
        out = {}
        if typed:
            out["type"] = type_url or settings["error_type_url"]
        out.update(title=self.title, status=self.status, detail=self.detail, instance=instance)
        if self.errors is not None:
            out["errors"] = self.errors
        return out


def not_found():
    return ApiError(404, *ERR_NOT_FOUND)


def invalid(detail, errors=None):
    return ApiError(400, "Invalid Resource", detail, errors)


def schema_error(errors):
    return ApiError(400, "Invalid Resource", ERR_INVALID_SCHEMA, errors)


# --- ids -----------------------------------------------------------------

_rng = random.SystemRandom()


def hex_id(n=10, rng=None):
    r = rng or _rng
    return f"{r.getrandbits(4 * n):0{n}x}"


def batch_id():
    alphabet = string.ascii_lowercase + string.digits
    return "".join(_rng.choice(alphabet) for _ in range(10))


def subscriber_hash(email):
    return hashlib.md5(email.strip().lower().encode("utf-8")).hexdigest()


# --- time ----------------------------------------------------------------

class Clock:
    """"Now" for the emulator: real time, shifted or frozen by the control API."""

    def __init__(self):
        self.frozen = None
        self.offset = 0.0

    def now(self):
        """Current emulator time as whole epoch seconds (Mailchimp's resolution)."""
        base = self.frozen if self.frozen is not None else time.time() + self.offset
        return int(base)

    def set(self, now=None, advance=None, real=False):
        if real:
            self.frozen, self.offset = None, 0.0
        if now is not None:
            self.frozen = parse_iso(now)
        if advance:
            if self.frozen is not None:
                self.frozen += float(advance)
            else:
                self.offset += float(advance)


_ts_cache = {}


def iso(ts):
    """Epoch seconds -> ``YYYY-MM-DDTHH:MM:SS+00:00``; None -> ``""``."""
    if ts is None:
        return ""
    s = _ts_cache.get(ts)
    if s is None:
        s = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ts))
        if len(_ts_cache) > 200000:
            _ts_cache.clear()
        _ts_cache[ts] = s
    return s


def fired_at(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


_ISO_FIX = re.compile(r"(\.\d+)?(Z|[+-]\d\d:?\d\d)?$")


def parse_iso(value):
    """Parse any ISO-8601 timestamp (Z, millis, offsets, date only) to epoch float.

    Naive values are taken as UTC.  Raises ValueError on garbage.
    """
    if isinstance(value, (int, float)):
        return float(value)
    v = str(value).strip()
    if v.endswith(("Z", "z")):
        v = v[:-1] + "+00:00"
    v = v.replace(" ", "T", 1) if "T" not in v and len(v) > 10 else v
    m = re.match(r"^(.*[+-]\d\d)(\d\d)$", v)
    if m and "T" in v and len(v) > 19:
        v = m.group(1) + ":" + m.group(2)
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def as_bool(v):
    if isinstance(v, bool):
        return v
    if v is None:
        return False
    return str(v).strip().lower() in ("true", "1", "yes")


# --- fields / exclude_fields --------------------------------------------

def field_tree(paths):
    """``["members.email_address", "total_items"]`` -> nested dict, leaves True."""
    tree = {}
    for raw in paths:
        p = raw.strip()
        if not p:
            continue
        node = tree
        parts = p.split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is True:
                break
            if nxt is None:
                nxt = node[part] = {}
            node = nxt
        else:
            node[parts[-1]] = True
    return tree


def keep(value, tree):
    """Keep only the paths of ``tree`` in ``value`` (lists apply it per item)."""
    if tree is True:
        return value
    if isinstance(value, list):
        return [keep(v, tree) for v in value]
    if not isinstance(value, dict):
        return value
    return {k: keep(value[k], sub) for k, sub in tree.items() if k in value}


def drop(value, tree):
    """Remove the paths of ``tree`` from ``value``."""
    if isinstance(value, list):
        return [drop(v, tree) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        sub = tree.get(k)
        if sub is True:
            continue
        out[k] = drop(v, sub) if sub else v
    return out


def csv_param(query, name):
    vals = query.get(name)
    if not vals:
        return []
    out = []
    for v in vals:
        out.extend(x for x in v.split(",") if x.strip())
    return out


def project(obj, query):
    """Apply the request's ``fields`` / ``exclude_fields`` to a response dict."""
    f = csv_param(query, "fields")
    if f:
        obj = keep(obj, field_tree(f))
    x = csv_param(query, "exclude_fields")
    if x:
        obj = drop(obj, field_tree(x))
    return obj
