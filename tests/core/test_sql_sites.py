"""bench/sql_sites.py: each statement's time goes to the addon's place
that ran it (its nearest function and that one's caller)."""

import importlib.util
import io
import sys
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "sql_sites", Path(__file__).resolve().parents[2] / "bench" / "sql_sites.py")
sql_sites = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(sql_sites)

MARK = (Path(__file__).resolve().parent.as_posix() + "/",)


def _inner():
    return sql_sites.place_of(sys._getframe(0), marks=MARK)


def _outer():
    return _inner()


def test_place_names_the_nearest_marked_function_and_its_caller():
    place = _outer()
    inner, outer = place.split(" < ")
    assert inner.startswith("_inner:")
    assert outer.startswith("_outer:")


def test_place_is_other_outside_the_marked_files():
    assert sql_sites.place_of(sys._getframe(0), marks=("no/such/dir/",)) == "other"


class FakeCursor:
    def execute(self, query, params=None):
        if query == "fail":
            raise RuntimeError("refused")
        return query


def test_timed_execute_counts_each_call_and_its_failures_at_their_place():
    sites = sql_sites.SiteTimes()
    execute = sql_sites.timed(FakeCursor.execute, sites)
    cursor = FakeCursor()
    assert execute(cursor, "SELECT 1") == "SELECT 1"
    try:
        execute(cursor, "fail")
    except RuntimeError:
        pass
    else:
        raise AssertionError("the failure must reach the caller")
    # called from here, outside the addon's models and tools
    assert dict(sites.times) == {"other": [2, sites.times["other"][1]]}
    assert sites.times["other"][1] >= 0.0


def test_report_ranks_places_by_seconds():
    sites = sql_sites.SiteTimes()
    sites.add("small:1", 0.5)
    sites.add("large:2 < caller:3", 2.0)
    sites.add("large:2 < caller:3", 1.0)
    out = io.StringIO()
    sites.report(10, out=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "database seconds by place (3.50 s in all):"
    assert "large:2 < caller:3" in lines[1] and "2 statements" in lines[1] and "3.00 s" in lines[1]
    assert "small:1" in lines[2]
