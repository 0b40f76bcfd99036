"""Profile a stage of the sync benchmark with py-spy, and print where its
threads spent their time: the functions most often on top of the stack
(self) and the addon's functions most often anywhere in it (inclusive),
as shares of the samples whose stack holds ``--marker`` (a function name;
the reconcile's lanes by default).  Samples are taken while the threads
run or wait for PostgreSQL (``Cursor.execute`` on top is time spent in
the database).  Not a timed test; run it by hand, with the benchmark's
own arguments after ``--``:

    python bench/profile_bench.py [--marker _run_lane] [--rate 50] [--top 25] \\
        [--raw FILE] -- [sync_bench.py arguments, e.g. --members 1000000 ...]

``--raw FILE`` reads a profile already recorded (py-spy's raw format)
instead of running the benchmark: compare one at a million with one at
100,000.  Like the benchmark, it runs itself again with the python that
runs Odoo; py-spy must be installed beside that python (``python -m pip
install py-spy``) and be allowed to read the process (root, or ptrace
allowed).
"""

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ADDON_MARK = "mailchimp_sync/"


def summarize(lines, marker):
    """From py-spy's raw lines (``frame;frame;...;frame count``, outermost
    first), the samples whose stack holds a frame naming ``marker``:
    (their total, Counter of the top frames, Counter of every frame once
    per sample)."""
    total, top, anywhere = 0, collections.Counter(), collections.Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if not any(marker in frame for frame in frames):
            continue
        count = int(count)
        total += count
        top[frames[-1]] += count
        for frame in set(frames):
            anywhere[frame] += count
    return total, top, anywhere


def report(total, top, anywhere, marker, limit, out=sys.stdout):
    """Print the summary: shares of the marked samples."""
    if not total:
        print(f"no sample holds {marker!r}: was the stage run, and is the marker a function of it?", file=out)
        return
    print(f"{total} samples hold {marker!r}", file=out)
    print("on top of the stack (self):", file=out)
    for frame, count in top.most_common(limit):
        print(f"  {100 * count / total:5.1f} %  {frame}", file=out)
    print("the addon's functions anywhere in the stack (inclusive):", file=out)
    ours = [(frame, count) for frame, count in anywhere.most_common() if ADDON_MARK in frame]
    for frame, count in ours[:limit]:
        print(f"  {100 * count / total:5.1f} %  {frame}", file=out)


def add_bench_arguments(parser):
    """The benchmark's own arguments, after ``--`` (see bench_arguments)."""
    parser.add_argument("bench_args", nargs=argparse.REMAINDER,
                        help="after --: the arguments of bench/sync_bench.py")


def bench_arguments(args):
    """The arguments given after ``--``, for bench/sync_bench.py."""
    return args.bench_args[1:] if args.bench_args[:1] == ["--"] else args.bench_args


def py_spy():
    """The py-spy beside this python, or on the PATH; None if neither."""
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.path.exists(beside) else shutil.which("py-spy")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--marker", default="_run_lane",
                        help="a function whose samples are counted (default: the reconcile's lanes)")
    parser.add_argument("--rate", type=int, default=50, help="samples per second (default 50)")
    parser.add_argument("--top", type=int, default=25, help="lines of each list (default 25)")
    parser.add_argument("--raw", help="a profile recorded before (py-spy's raw format), instead of a run")
    add_bench_arguments(parser)
    args = parser.parse_args()
    raw = args.raw
    if not raw:
        # As the benchmark does, with the python that runs Odoo (where
        # py-spy is installed beside it), so the profiled process is the
        # benchmark itself, not a python that starts it again.
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        from odoo_env import reexec_with_odoo  # noqa: PLC0415 - not needed to read a profile

        reexec_with_odoo()
        spy = py_spy()
        if not spy:
            sys.exit(f"py-spy is not installed: {sys.executable} -m pip install py-spy")
        bench_args = bench_arguments(args)
        raw = os.path.join(tempfile.mkdtemp(prefix="mailchimp-profile-"), "profile.txt")
        # --threads keeps the lanes (threads of the benchmark) apart;
        # --idle counts the samples of a thread waiting for PostgreSQL.
        command = [spy, "record", "-r", str(args.rate), "-f", "raw", "-o", raw, "--threads", "--idle",
                   "--", sys.executable, os.path.join(HERE, "sync_bench.py"), *bench_args]
        result = subprocess.run(command, cwd=ROOT, check=False)
        if result.returncode:
            sys.exit(f"the profiled benchmark failed (exit {result.returncode}); the profile, if any: {raw}")
        print(f"profile: {raw}")
    with open(raw, encoding="utf-8") as handle:
        report(*summarize(handle, args.marker), marker=args.marker, limit=args.top)


if __name__ == "__main__":
    main()
