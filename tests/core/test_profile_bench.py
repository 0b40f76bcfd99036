"""bench/profile_bench.py's summary of a py-spy profile: only the samples
whose stack holds the marker count, each frame once per sample."""

import importlib.util
import io
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "profile_bench", Path(__file__).resolve().parents[2] / "bench" / "profile_bench.py")
profile_bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(profile_bench)

RAW = [
    "main (x.py:1);_run_lane (mailchimp_sync/models/r.py:2);load (mailchimp_sync/models/r.py:3);execute (sql.py:4) 3\n",
    "main (x.py:1);_run_lane (mailchimp_sync/models/r.py:2);decide (mailchimp_sync/r.py:5) 2\n",
    "main (x.py:1);fetch (mailchimp_sync/models/f.py:6) 7\n",
    "main (x.py:1);_run_lane (mailchimp_sync/models/r.py:2);f (a.py:1);f (a.py:1) 1\n",
    "\n",
]


def test_only_the_marked_samples_count():
    total, top, anywhere = profile_bench.summarize(RAW, "_run_lane")
    assert total == 6
    assert top["execute (sql.py:4)"] == 3
    assert top["decide (mailchimp_sync/r.py:5)"] == 2
    assert "fetch (mailchimp_sync/models/f.py:6)" not in anywhere
    # a frame twice in one stack (recursion) counts once for that sample
    assert anywhere["f (a.py:1)"] == 1
    assert anywhere["_run_lane (mailchimp_sync/models/r.py:2)"] == 6


def test_report_gives_shares_and_only_the_addons_inclusive_frames():
    out = io.StringIO()
    profile_bench.report(*profile_bench.summarize(RAW, "_run_lane"), marker="_run_lane", limit=10, out=out)
    text = out.getvalue()
    assert "6 samples hold '_run_lane'" in text
    assert " 50.0 %  execute (sql.py:4)" in text
    inclusive = text.split("inclusive):")[1]
    assert "load (mailchimp_sync/models/r.py:3)" in inclusive
    assert "main (x.py:1)" not in inclusive


def test_report_says_when_no_sample_holds_the_marker():
    out = io.StringIO()
    profile_bench.report(*profile_bench.summarize(RAW, "_no_such"), marker="_no_such", limit=5, out=out)
    assert "no sample holds '_no_such'" in out.getvalue()
