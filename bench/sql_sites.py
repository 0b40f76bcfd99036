"""Where the sync's time in PostgreSQL goes: run the sync benchmark with
every statement timed, and print the database seconds (wall time inside
``Cursor.execute``, the lanes' summed) of each place in the addon that
ran statements, largest first.  A place is the addon's nearest function
on the stack and the one that called it (``function:line < caller:line``):
``_write_rows:584 < _reconcile_rows:435`` is the reconcile's row write.
Statements run outside the addon's models and tools (Odoo's ORM, the
benchmark's own) count as ``other``.  Not a timed test; run it by hand,
with the benchmark's own arguments after ``--``:

    python bench/sql_sites.py [--top 40] -- [sync_bench.py arguments]

The figures cover the whole benchmark (the first sync, settling and the
incremental sync); the benchmark's own lines are printed first.  Like
the benchmark, it runs itself again with the python that runs Odoo.
"""

import argparse
import collections
import os
import runpy
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from profile_bench import add_bench_arguments, bench_arguments  # noqa: E402 - a sibling script, once HERE is on the path
# The addon's directories whose functions name a place.
PLACE_MARKS = ("mailchimp_sync/models/", "mailchimp_sync/tools/")


def place_of(frame, marks=PLACE_MARKS, depth=2):
    """The place a statement was run from: the ``depth`` nearest frames of
    the stack from ``frame`` outwards whose file is under one of ``marks``,
    as ``function:line < caller:line``; ``other`` if there is none."""
    names = []
    while frame is not None and len(names) < depth:
        filename = frame.f_code.co_filename.replace(os.sep, "/")
        if any(mark in filename for mark in marks):
            names.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        frame = frame.f_back
    return " < ".join(names) or "other"


class SiteTimes:
    """Statements and database seconds per place, safe across threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.times = collections.defaultdict(lambda: [0, 0.0])

    def add(self, place, seconds):
        with self.lock:
            entry = self.times[place]
            entry[0] += 1
            entry[1] += seconds

    def report(self, limit, out=sys.stdout):
        """Print the ``limit`` places with the most database seconds."""
        total = sum(seconds for _count, seconds in self.times.values())
        print(f"database seconds by place ({total:.2f} s in all):", file=out)
        ranked = sorted(self.times.items(), key=lambda item: -item[1][1])
        for place, (count, seconds) in ranked[:limit]:
            print(f"  {seconds:8.2f} s  {count:6d} statements  {place}", file=out)


def timed(execute, sites):
    """``Cursor.execute`` wrapped so each call's wall time goes to its place."""

    def execute_timed(cursor, *args, **kwargs):
        started = time.perf_counter()
        try:
            return execute(cursor, *args, **kwargs)
        finally:
            sites.add(place_of(sys._getframe(1)), time.perf_counter() - started)

    return execute_timed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top", type=int, default=40, help="places listed (default 40)")
    add_bench_arguments(parser)
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from odoo_env import odoo_status, reexec_with_odoo  # noqa: PLC0415 - after the path is set

    reexec_with_odoo()
    available, why = odoo_status()
    if not available:
        sys.exit(f"skipped: {why}")
    from odoo import sql_db  # noqa: PLC0415 - Odoo is importable only now

    sites = SiteTimes()
    sql_db.Cursor.execute = timed(sql_db.Cursor.execute, sites)
    sys.argv = [os.path.join(HERE, "sync_bench.py"), *bench_arguments(args)]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        sites.report(args.top)


if __name__ == "__main__":
    main()
