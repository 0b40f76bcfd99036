"""Merge-field values between Odoo and Mailchimp, converted and checked by
the merge field's type (API-BEHAVIOUR.md §4.2, §4.3, §5.8).

Pure functions, no Odoo.  A value from either side is brought to one
*canonical* form, the form Mailchimp stores and answers with: comparing two
canonical values says whether the sides agree, and the canonical Odoo value
is what is sent.  Odoo values arrive in plain Python (``str``, numbers,
``datetime.date``; the models turn a many2one into its name and a selection
into its label first).

* text, phone, url, imageurl, zip: a trimmed string (a US phone, a URL and a
  ZIP code are checked as Mailchimp checks them);
* number: an ``int`` when whole, else a ``float``;
* date: ``YYYY-MM-DD`` (Mailchimp also takes the field's own
  ``date_format``, MM/DD/YYYY or DD/MM/YYYY);
* birthday: ``MM/DD`` (Mailchimp holds no year);
* address: ``{addr1, addr2, city, state, zip, country}``; street, city,
  state and ZIP are required, the country is ``US`` when missing, as
  Mailchimp does.  In an Odoo text field an address is written on one line,
  comma-separated: ``street, [line 2,] city, state, zip[, country]``; mapped
  to a partner's postal address (``PARTNER_ADDRESS``), it is the address
  itself, its parts in the partner's street, street 2, city, state, ZIP and
  country;
* dropdown, radio: one of the field's choices (matched without regard to
  case, sent as Mailchimp spells it).

``""`` is the empty value of every type: it clears a field at Mailchimp.
"""

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime

TYPES = ("text", "number", "address", "phone", "date", "url", "imageurl", "radio", "dropdown",
         "birthday", "zip")
TEXT_TYPES = frozenset({"text", "phone", "url", "imageurl", "zip"})
CHOICE_TYPES = frozenset({"dropdown", "radio"})

# Which Odoo field types a merge field of each type can be mapped to.
ODOO_TYPES = {
    "text": frozenset({"char", "text", "selection", "many2one"}),
    "phone": frozenset({"char"}),
    "url": frozenset({"char"}),
    "imageurl": frozenset({"char"}),
    "zip": frozenset({"char"}),
    "number": frozenset({"char", "integer", "float"}),
    "date": frozenset({"date", "char"}),
    "birthday": frozenset({"date", "char"}),
    "address": frozenset({"char", "text"}),
    "dropdown": frozenset({"selection", "char", "many2one"}),
    "radio": frozenset({"selection", "char", "many2one"}),
}

# Directions of a mapping
BOTH = "both"
TO_MAILCHIMP = "to_mailchimp"
TO_ODOO = "to_odoo"

ADDRESS_KEYS = ("addr1", "addr2", "city", "state", "zip", "country")
# The Odoo side of an address merge field mapped to a partner's street: the
# partner's whole postal address, as an address.
PARTNER_ADDRESS = "partner_address"
ADDRESS_REQUIRED = ("addr1", "city", "state", "zip")
DEFAULT_COUNTRY = "US"
# A birthday written into an Odoo date that had no year yet: a leap year,
# so that 02/29 is a date too.
PLACEHOLDER_YEAR = 1904

# Why a value cannot be converted (the models put these in words)
NOT_A_NUMBER = "not_a_number"
NOT_A_WHOLE_NUMBER = "not_a_whole_number"
NOT_A_DATE = "not_a_date"
NOT_A_BIRTHDAY = "not_a_birthday"
INCOMPLETE_ADDRESS = "incomplete_address"
NOT_A_PHONE = "not_a_phone"
NOT_A_URL = "not_a_url"
NOT_A_ZIP = "not_a_zip"
NOT_A_CHOICE = "not_a_choice"  # params: choices
NO_MATCH_IN_ODOO = "no_match_in_odoo"  # Mailchimp's value names no record or option in Odoo
EMAIL_TAKEN = "email_taken"  # params: email (the new address), old (the member's)

US_PHONE_RE = re.compile(r"^(\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}$")
URL_RE = re.compile(r"^(https?://)?[^\s/?#.]+(\.[^\s/?#.]+)+([/?#]\S*)?$", re.IGNORECASE)
ZIP_RE = re.compile(r"^\d{5}(-\d{4})?$")
ISO_DATE_RE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
SLASH_DATE_RE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
BIRTHDAY_RE = re.compile(r"^(\d{1,2})/(\d{1,2})$")


@dataclass(frozen=True)
class DataProblem:
    """A value that cannot go to the other side: the merge ``tag`` (empty
    for the email address), a ``code`` from the list above, the ``value``
    as text, and what a sentence needs besides (``params``)."""

    code: str
    tag: str = ""
    value: str = ""
    params: dict = field(default_factory=dict, hash=False, compare=False)


class MergeValueError(ValueError):
    """A value that does not fit its merge field's type."""

    def __init__(self, code, value, **params):
        super().__init__(code)
        self.code = code
        self.value = value
        self.params = params

    def problem(self, tag):
        return DataProblem(self.code, tag, _as_text(self.value), dict(self.params))


def _as_text(value):
    if value is None or value is False:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return address_to_text(value)
    return str(value).strip()


def is_empty(value):
    """Empty on either side: None, False, '' and an address of blanks."""
    if value is None or value is False or value == "":
        return True
    if isinstance(value, dict):
        return not any(str(v or "").strip() for v in value.values())
    return False


# --- the canonical form ----------------------------------------------------------------

def canonical(mtype, options, value, strict=True):
    """``value`` in the canonical form of a ``mtype`` merge field.

    ``strict``: raise :class:`MergeValueError` for a value Mailchimp would
    refuse (an Odoo value about to be sent).  Values read from Mailchimp
    are taken as they are (``strict=False``): only their spelling is
    normalised, never refused.
    """
    options = options or {}
    if is_empty(value):
        return ""
    if mtype == "number":
        return _number(value, strict)
    if mtype == "date":
        return _date(value, options, strict)
    if mtype == "birthday":
        return _birthday(value, strict)
    if mtype == "address":
        return _address(value, strict)
    if isinstance(value, dict):
        if strict:
            raise MergeValueError(NOT_A_CHOICE if mtype in CHOICE_TYPES else NOT_A_DATE, value)
        return _as_text(value)
    text = _as_text(value)
    if mtype in CHOICE_TYPES:
        return _choice(text, options.get("choices") or [], strict)
    if strict:
        if mtype == "phone" and (options.get("phone_format") or "").upper() == "US" and not US_PHONE_RE.match(text):
            raise MergeValueError(NOT_A_PHONE, value)
        if mtype in ("url", "imageurl") and not URL_RE.match(text):
            raise MergeValueError(NOT_A_URL, value)
        if mtype == "zip" and not ZIP_RE.match(text):
            raise MergeValueError(NOT_A_ZIP, value)
    return text


def _number(value, strict):
    if isinstance(value, bool):
        num = None
    elif isinstance(value, (int, float)):
        num = float(value)
    else:
        try:
            num = float(str(value).strip())
        except ValueError:
            num = None
    if num is None or math.isnan(num) or math.isinf(num):
        if strict:
            raise MergeValueError(NOT_A_NUMBER, value)
        return _as_text(value)
    return int(num) if num.is_integer() else num


def _date_parts(text, date_format):
    match = ISO_DATE_RE.match(text)
    if match:
        return int(match.group(1)), int(match.group(2)), int(match.group(3))
    match = SLASH_DATE_RE.match(text)
    if match:
        first, second, year = int(match.group(1)), int(match.group(2)), int(match.group(3))
        return (year, second, first) if date_format == "DD/MM/YYYY" else (year, first, second)
    return None


def _date(value, options, strict):
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = _as_text(value)
    parts = _date_parts(text, (options.get("date_format") or "MM/DD/YYYY").upper())
    try:
        return date(*parts).isoformat() if parts else _bad(NOT_A_DATE, value, strict, text)
    except ValueError:
        return _bad(NOT_A_DATE, value, strict, text)


def _birthday(value, strict):
    if isinstance(value, (date, datetime)):
        return f"{value.month:02d}/{value.day:02d}"
    text = _as_text(value)
    match = BIRTHDAY_RE.match(text)
    if match:
        month, day = int(match.group(1)), int(match.group(2))
    else:
        parts = _date_parts(text, "MM/DD/YYYY") if ISO_DATE_RE.match(text) else None
        if not parts:
            return _bad(NOT_A_BIRTHDAY, value, strict, text)
        _year, month, day = parts
    try:
        date(PLACEHOLDER_YEAR, month, day)
    except ValueError:
        return _bad(NOT_A_BIRTHDAY, value, strict, text)
    return f"{month:02d}/{day:02d}"


def _address(value, strict):
    if isinstance(value, dict):
        parts = {k: _as_text(value.get(k)) for k in ADDRESS_KEYS}
    else:
        parts = text_to_address(_as_text(value))
        if parts is None:
            return _bad(INCOMPLETE_ADDRESS, value, strict, _as_text(value))
    if not all(parts[k] for k in ADDRESS_REQUIRED):
        if strict:
            raise MergeValueError(INCOMPLETE_ADDRESS, value)
    parts["country"] = parts["country"] or DEFAULT_COUNTRY
    return parts


def _choice(text, choices, strict):
    if not choices or text in choices:
        return text
    folded = {c.casefold(): c for c in choices}
    if text.casefold() in folded:
        return folded[text.casefold()]
    return _bad(NOT_A_CHOICE, text, strict, text, choices=", ".join(choices))


def _bad(code, value, strict, fallback, **params):
    if strict:
        raise MergeValueError(code, value, **params)
    return fallback


# --- addresses as one line of text -------------------------------------------------------

def address_to_text(address):
    """An address on one line: ``street, [line 2,] city, state, zip, country``."""
    if not isinstance(address, dict):
        return _as_text(address)
    parts = [_as_text(address.get(k)) for k in ADDRESS_KEYS]
    if not parts[1]:
        del parts[1]
    return ", ".join(parts).strip(", ")


def text_to_address(text):
    """The address a line of text spells (see :func:`address_to_text`), or
    None when it has too few or too many parts.  Mailchimp's own import
    form (parts separated by two spaces) is understood too."""
    separator = "  " if "  " in text and "," not in text else ","
    parts = [p.strip() for p in text.split(separator)]
    if len(parts) == 4:  # street, city, state, zip
        parts = [parts[0], "", *parts[1:], ""]
    elif len(parts) == 5:  # street, city, state, zip, country
        parts = [parts[0], "", *parts[1:]]
    elif len(parts) != 6:
        return None
    return dict(zip(ADDRESS_KEYS, parts, strict=True))


# --- canonical values into Odoo fields -----------------------------------------------

def to_odoo(mtype, odoo_type, value, current=None):
    """The value to write into an Odoo field of type ``odoo_type`` (char,
    text, integer, float, date, or ``PARTNER_ADDRESS``: the address's parts)
    from Mailchimp's canonical ``value``.
    Selections and many2ones are looked up by the models (by name); they
    get the text.  ``current``: the Odoo field's value now (a birthday keeps
    its year).  Raises :class:`MergeValueError`."""
    if is_empty(value):
        return False
    if odoo_type in ("integer", "float"):
        number = _number(value, True)
        if odoo_type == "integer":
            if not float(number).is_integer():
                raise MergeValueError(NOT_A_WHOLE_NUMBER, value)
            return int(number)
        return float(number)
    if odoo_type == "date":
        if mtype == "birthday":
            month, day = (int(p) for p in _birthday(value, True).split("/"))
            year = current.year if isinstance(current, date) else PLACEHOLDER_YEAR
            try:
                return date(year, month, day)
            except ValueError:  # 02/29 onto a year that has none
                return date(PLACEHOLDER_YEAR, month, day)
        return date.fromisoformat(_date(value, {}, True))
    if odoo_type == PARTNER_ADDRESS:
        return _address(value, True)
    if mtype == "address" or isinstance(value, dict):
        return address_to_text(value)
    return _as_text(value)


def match_option(text, options):
    """The key of the Odoo selection option ``text`` names (by key or label,
    without regard to case), or None.  ``options``: [(key, label)]."""
    folded = (text or "").strip().casefold()
    for key, label in options:
        if str(key).casefold() == folded or str(label).casefold() == folded:
            return key
    return None
