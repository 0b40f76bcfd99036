"""SQL helpers shared by the models' bulk statements."""

import re

_TOKEN = re.compile(r"\w+")


def int_array(ids):
    """``ids`` as one PostgreSQL array literal, for a ``%s::int[]``
    parameter.  psycopg2 adapts a list element by element (about a
    microsecond each): for the chunks of a bulk stage, several lists of
    thousands of ids each, that was a tenth of the stage's time."""
    return "{%s}" % ",".join(map(str, map(int, ids)))


def token_array(tokens):
    """Plain words (a selection's values, ``t``/``f`` for booleans) as one
    array literal, for a ``%s::varchar[]`` or ``%s::bool[]`` parameter, as
    :func:`int_array` does for ids.  Anything else (free text, which would
    need quoting) is refused: pass it as a list."""
    tokens = list(tokens)
    for token in tokens:
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise ValueError(f"not a plain word for an array literal: {token!r}")
    return "{%s}" % ",".join(tokens)
