"""SQL helpers shared by the models' bulk statements."""


def int_array(ids):
    """``ids`` as one PostgreSQL array literal, for a ``%s::int[]``
    parameter.  psycopg2 adapts a list element by element (about a
    microsecond each): for the chunks of a bulk stage, several lists of
    thousands of ids each, that was a tenth of the stage's time."""
    return "{%s}" % ",".join(map(str, map(int, ids)))


def row_trigger_sql(name, table, when, body):
    """SQL (re)creating the row trigger ``name`` on ``table``, fired
    ``when`` (``"AFTER DELETE"``, ``"BEFORE INSERT OR UPDATE OF active"``),
    which runs the PL/pgSQL ``body`` in a function of the same name (the
    uninstall hook drops both by that name)."""
    return f"""
        CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$
        BEGIN
        {body}
        END $$ LANGUAGE plpgsql;
        DROP TRIGGER IF EXISTS {name} ON {table};
        CREATE TRIGGER {name} {when} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}();
    """
