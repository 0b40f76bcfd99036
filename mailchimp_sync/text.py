"""Text from Mailchimp as PostgreSQL can store it.

Mailchimp keeps whatever Unicode a member or an integration gave it.  Two
kinds of it PostgreSQL refuses: the NUL character (in ``text`` and in
``jsonb``: "unsupported Unicode escape sequence"), and half of a UTF-16
surrogate pair, which JSON can carry as ``\\ud800`` but UTF-8 cannot.  One
such member in a page made every fetch of the audience fail at that page,
for good.  The sync leaves NULs out and replaces a half pair by U+FFFD, at
the places Mailchimp's data comes in; both sides then compare the same
text, so the difference is never sent back.
"""

import json
import re

# How JSON writes a NUL, and how every surrogate starts (either case): a
# document without either needs no walk.
_SUSPECT = re.compile(r"\\u(?:0000|[dD])")


def postgres_text(value):
    """``value`` (str) without NUL characters, its unpaired surrogates
    replaced by U+FFFD; other values unchanged."""
    if not isinstance(value, str):
        return value
    value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def postgres_value(value):
    """A decoded JSON value with :func:`postgres_text` applied to every
    string in it, keys included."""
    if isinstance(value, str):
        return postgres_text(value)
    if isinstance(value, dict):
        return {postgres_text(k): postgres_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [postgres_value(v) for v in value]
    return value


def needs_cleaning(text):
    """Whether JSON ``text`` may hold a string PostgreSQL refuses (a cheap
    search; a literal backslash or a paired surrogate also matches)."""
    return bool(_SUSPECT.search(text))


def postgres_json(value):
    """``json.dumps(value)``, as PostgreSQL's ``jsonb`` takes it."""
    text = json.dumps(value)
    if needs_cleaning(text):
        text = json.dumps(postgres_value(value))
    return text
