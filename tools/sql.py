"""SQL helpers shared by the models' bulk statements."""


def int_array(ids):
    """``ids`` as one PostgreSQL array literal, for a ``%s::int[]``
    parameter.  psycopg2 adapts a list element by element (about a
    microsecond each): for the chunks of a bulk stage, several lists of
    thousands of ids each, that was a tenth of the stage's time."""
    return "{%s}" % ",".join(map(str, map(int, ids)))

