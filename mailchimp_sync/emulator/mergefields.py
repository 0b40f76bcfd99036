"""Merge fields: their definition (type and options) and the validation of
member values by type (API-BEHAVIOUR.md §4.2, §4.3, §5.8; the spec's
``Merge_Field`` schemas).

What is known of Mailchimp, and from where:

* ``""`` clears a field [V]; a required field left empty is "Please enter a
  value" [V]; a number field takes numbers or numeric strings, else "Please
  enter a number" [V]; an address is an object whose ``addr1``, ``city``,
  ``state`` and ``zip`` must all be filled, else "Please enter a complete
  address" [R].
* A date that does not parse is "Please enter the date" [R]; a birthday is
  ``MM/DD`` and anything else is "Please enter a month (01-12) and a day
  (01-31)" [R: mc-magento2 #987 sent YYYY-MM-DD and got that]; a dropdown or
  radio value outside its choices is "Value must be one of: a, b (not x)"
  [R: mc4wp #529, mc-magento #885].
* A value that is neither a string nor a number (``null``, ``true``, a list,
  an object for a non-address field) fails the JSON schema:
  ``merge_fields.TAG``: "Data did not match any of the schemas described in
  anyOf." [R: gibbon and mc-magento reports].

The rest is the emulator's choice, each behind a setting: which date
spellings a date field takes besides ``YYYY-MM-DD`` (its own ``date_format``)
and how it returns them (``merge_date_output``); the checks of US phones,
URLs and ZIP codes, whose error texts are not recorded
(``merge_validate_unverified``); and what ``null`` does (``merge_null``).
"""

import math
import re
from datetime import date

from .util import schema_error

TYPES = ("text", "number", "address", "phone", "date", "url", "imageurl", "radio", "dropdown",
         "birthday", "zip")
DATE_FORMATS = {"date": ("MM/DD/YYYY", "DD/MM/YYYY"), "birthday": ("MM/DD", "DD/MM")}
PHONE_FORMATS = {"us": "US", "none": "none", "international": "none"}
ADDRESS_KEYS = ("addr1", "addr2", "city", "state", "zip", "country")
ADDRESS_REQUIRED = ("addr1", "city", "state", "zip")
# the options a type carries, with the value Mailchimp gives a new field
DEFAULT_OPTIONS = {
    "text": {"size": 25},
    "address": {"default_country": 164},
    "phone": {"phone_format": "none"},
    "date": {"date_format": "MM/DD/YYYY"},
    "birthday": {"date_format": "MM/DD"},
    "dropdown": {"choices": []},
    "radio": {"choices": []},
}

ANY_OF = "Data did not match any of the schemas described in anyOf."
NEED_VALUE = "Please enter a value"
NEED_NUMBER = "Please enter a number"
NEED_ADDRESS = "Please enter a complete address"
NEED_DATE = "Please enter the date"
NEED_BIRTHDAY = "Please enter a month (01-12) and a day (01-31)"
# [U] texts: Mailchimp's wording for these is not recorded
NEED_PHONE = "Please enter a valid phone number"
NEED_URL = "Please enter a valid URL"
NEED_ZIP = "Please enter a valid zip code"

US_PHONE_RE = re.compile(r"^(\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}$")
URL_RE = re.compile(r"^(https?://)?[^\s/?#.]+(\.[^\s/?#.]+)+([/?#]\S*)?$", re.IGNORECASE)
ZIP_RE = re.compile(r"^\d{5}(-\d{4})?$")
ISO_DATE_RE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
SLASH_DATE_RE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
BIRTHDAY_RE = re.compile(r"^(\d{1,2})/(\d{1,2})$")


# --- definitions -----------------------------------------------------------

def _one_of(field, value, allowed):
    raise schema_error([{"field": field, "message": "Data presented is not one of the accepted values: "
                         + ", ".join(allowed) + "."}])


def clean_options(type_, given, current=None):
    """Options of a ``type_`` field: the defaults (or ``current``) updated with
    the valid keys of ``given``.  Keys other types use are dropped."""
    out = dict(current if current is not None else DEFAULT_OPTIONS.get(type_, {}))
    if given is None:
        return out
    if not isinstance(given, dict):
        raise schema_error([{"field": "options", "message": "Schema describes object, "
                             + type(given).__name__ + " found instead"}])
    if type_ in DATE_FORMATS and "date_format" in given:
        fmt = str(given["date_format"] or "").upper()
        if fmt not in DATE_FORMATS[type_]:
            _one_of("options.date_format", given["date_format"], DATE_FORMATS[type_])
        out["date_format"] = fmt
    if type_ == "phone" and "phone_format" in given:
        fmt = PHONE_FORMATS.get(str(given["phone_format"] or "none").lower())
        if fmt is None:
            _one_of("options.phone_format", given["phone_format"], ("US", "none"))
        out["phone_format"] = fmt
    if type_ in ("dropdown", "radio") and "choices" in given:
        choices = given["choices"]
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise schema_error([{"field": "options.choices", "message": "Schema describes array of strings"}])
        out["choices"] = list(choices)
    if type_ == "address" and "default_country" in given:
        try:
            out["default_country"] = int(given["default_country"])
        except (TypeError, ValueError):
            raise schema_error([{"field": "options.default_country",
                                 "message": "Schema describes integer"}]) from None
    if type_ == "text" and "size" in given:
        try:
            out["size"] = int(given["size"])
        except (TypeError, ValueError):
            raise schema_error([{"field": "options.size", "message": "Schema describes integer"}]) from None
    return out


def check_type(type_):
    if type_ not in TYPES:
        _one_of("type", type_, TYPES)


# --- values --------------------------------------------------------------------

def _date_parts(text, fmt):
    """(year, month, day) of a date field's value, or None."""
    m = ISO_DATE_RE.match(text)
    if m:
        return int(m.group(1)), int(m.group(2)), int(m.group(3))
    m = SLASH_DATE_RE.match(text)
    if m:
        a, b, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
        return (y, b, a) if fmt == "DD/MM/YYYY" else (y, a, b)
    return None


def _as_date(mf, value, settings):
    if not isinstance(value, str):
        return None, NEED_DATE
    fmt = mf.options.get("date_format", "MM/DD/YYYY")
    parts = _date_parts(value.strip(), fmt)
    try:
        d = date(*parts) if parts else None
    except ValueError:
        d = None
    if d is None:
        return None, NEED_DATE
    if settings["merge_date_output"] == "field":
        out = f"{d.day:02d}/{d.month:02d}/{d.year:04d}" if fmt == "DD/MM/YYYY" else \
            f"{d.month:02d}/{d.day:02d}/{d.year:04d}"
        return out, None
    return d.isoformat(), None


def _as_birthday(value):
    m = BIRTHDAY_RE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        return None, NEED_BIRTHDAY
    month, day = int(m.group(1)), int(m.group(2))
    try:
        date(2000, month, day)  # a leap year, so 02/29 is a birthday
    except ValueError:
        return None, NEED_BIRTHDAY
    return f"{month:02d}/{day:02d}", None


def _as_address(value):
    if isinstance(value, str):
        # [U] the double-space form of the import ("addr1  addr2  city  state  zip  country")
        parts = [p.strip() for p in value.split("  ")]
        if len(parts) not in (5, 6):
            return None, NEED_ADDRESS
        value = dict(zip(ADDRESS_KEYS, parts, strict=False))
    out = {}
    for k in ADDRESS_KEYS:
        v = value.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (str, int, float))):
            return None, ANY_OF
        out[k] = "" if v is None else str(v).strip()
    if not all(out[k] for k in ADDRESS_REQUIRED):
        return None, NEED_ADDRESS
    out["country"] = out["country"] or "US"
    return out, None


def _as_number(value):
    if isinstance(value, (int, float)):
        num = float(value)
    else:
        try:
            num = float(str(value).strip())
        except ValueError:
            return None, NEED_NUMBER
    if math.isnan(num) or math.isinf(num):
        return None, NEED_NUMBER
    return (int(num) if num.is_integer() else num), None


def value(mf, raw, settings):
    """Normalise one merge value for field ``mf``.

    Returns ``(value, None)`` or ``(None, message)``; a message equal to
    ``ANY_OF`` is a JSON-schema failure, any other a merge-field one.
    ``""`` always clears (§5.8).
    """
    if raw is None:
        return ("", None) if settings["merge_null"] == "clear" else (None, ANY_OF)
    if isinstance(raw, (bool, list)):
        return None, ANY_OF
    if isinstance(raw, dict) and mf.type != "address":
        return None, ANY_OF
    if raw == "":
        return "", None
    t = mf.type
    if t == "number":
        return _as_number(raw)
    if t == "address":
        return _as_address(raw)
    text = raw if isinstance(raw, str) else str(raw)
    if t == "date":
        return _as_date(mf, raw, settings)
    if t == "birthday":
        return _as_birthday(raw)
    if t in ("dropdown", "radio"):
        choices = mf.options.get("choices") or []
        if text not in choices:
            return None, f"Value must be one of: {', '.join(choices)} (not {text})"
        return text, None
    if settings["merge_validate_unverified"]:
        if t == "phone" and mf.options.get("phone_format") == "US" and not US_PHONE_RE.match(text.strip()):
            return None, NEED_PHONE
        if t in ("url", "imageurl") and not URL_RE.match(text.strip()):
            return None, NEED_URL
        if t == "zip" and not ZIP_RE.match(text.strip()):
            return None, NEED_ZIP
    return text, None
