#!/usr/bin/env python3
"""Benchmark of the sync against the emulator (issue 4); prints figures.

100,000 Mailchimp members and 100,000 Odoo contacts (half of them shared,
mixed statuses, two interests).  Prints: the initial full sync's wall time
up to all batches submitted; an incremental sync after 1,000 changes on
each side; SQL statements per member; Mailchimp requests; peak memory; and
a floor measured in the same run (paging every member from the emulator
plus one bulk insert of them into PostgreSQL), with the sync's time as a
ratio of it; and how busy the machine's cores were during the floor and
the initial sync (from /proc/stat).  Not a timed test: it measures and
prints.

    python3 bench/sync_bench.py [--members 100000] [--odoo 100000] [--shared 50000]
"""

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, ROOT)

from odoo_env import (  # noqa: E402
    create_database,
    drop_database,
    environment,
    odoo_status,
    reexec_with_odoo,
    run_like_the_cron_runner,
)

if __name__ == "__main__":
    # Before the core's imports: python3 on a fresh checkout may lack them.
    reexec_with_odoo()

from mailchimp_sync.client import MailchimpClient, subscriber_hash  # noqa: E402
from mailchimp_sync.emulator import EmulatorControl  # noqa: E402
from mailchimp_sync.members import FETCH_FIELDS  # noqa: E402


def reset_peak_rss():
    """Restart the kernel's high-water mark of this process (Linux), so the
    peak we print belongs to the sync, not to loading or seeding."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def rss_mb(field="VmHWM"):
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_cpu():
    """(seconds the machine's cores were busy, seconds the hypervisor took
    from them) since boot, from /proc/stat: all processes, Odoo,
    PostgreSQL and the emulator alike; None where there is none."""
    try:
        with open("/proc/stat") as handle:
            ticks = [int(v) for v in handle.readline().split()[1:]] + [0] * 8
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal: busy is user to
    # system, irq and softirq; steal is time another guest had the core
    hertz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks[:3]) + ticks[5] + ticks[6]) / hertz, ticks[7] / hertz


@contextmanager
def cpu_watch():
    """Watch the block: the yielded dict gets ``seconds`` (wall time) and,
    where /proc/stat tells, ``busy`` and ``stolen`` core-seconds."""
    watched = {}
    before, started = machine_cpu(), time.monotonic()
    try:
        yield watched
    finally:
        after = machine_cpu()
        watched["seconds"] = time.monotonic() - started
        if before and after:
            watched["busy"], watched["stolen"] = after[0] - before[0], after[1] - before[1]


def cpu_line(label, watched):
    """How busy the cores were during a :func:`cpu_watch`: with every core
    busy, or time stolen, a run's time says more about the machine than
    about the work."""
    if "busy" not in watched or watched["seconds"] <= 0:
        return
    busy, seconds = watched["busy"], watched["seconds"]
    print(f"   cpu during {label}: {busy:.1f} core-seconds over {seconds:.1f} s, "
          f"{busy / seconds:.2f} of {os.cpu_count() or 1} cores busy, "
          f"{watched['stolen']:.1f} s stolen by the hypervisor")


def wait_for_vacuum(label):
    """Wait for a VACUUM the cycle's last step left running in the
    background (the sync does not wait for it), so that the next figure is
    not taken beside it; say how long it ran on."""
    import threading

    from odoo.addons.mailchimp_sync.models.mailchimp_sync import VACUUM_THREAD_NAME

    started = time.monotonic()
    threads = [t for t in threading.enumerate() if t.name == VACUUM_THREAD_NAME]
    for thread in threads:
        thread.join()
    if threads:
        print(f"   vacuum after {label}: ran on in the background {time.monotonic() - started:.1f} s more")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_emulator(run_batches=False, max_pending=None):
    port = free_port()
    settings = {"batch_auto_run": run_batches, "webhook_delivery": "off"}
    if max_pending:
        settings["max_pending_batches"] = max_pending
    settings = json.dumps(settings)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailchimp_sync.emulator", "--port", str(port), "--settings", settings],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    # Running a million members' batches in one control call takes minutes.
    ctl = EmulatorControl(url, timeout=3600)
    for _ in range(100):
        try:
            ctl.stats()
            break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    key = None
    for line in proc.stdout:
        if "-us" in line and ("key" in line.lower()):
            key = line.split()[-1]
            break
    return proc, url, ctl, key


EXTRA_MERGE_FIELDS = [
    # (Mailchimp merge field, the mailing.contact field it maps to)
    ({"tag": "COMPANY", "name": "Company", "type": "text"}, "company_name"),
    ({"tag": "COUNTRY", "name": "Country", "type": "text"}, "country_id"),
]


def seed_mailchimp(ctl, members, merge_fields=0):
    answer = ctl.seed(lists=[{
        "name": "Bench",
        "add_merge_fields": [spec for spec, _field in EXTRA_MERGE_FIELDS[:merge_fields]],
        "interest_categories": [{"title": "Topics", "type": "checkboxes",
                                 "interests": [{"name": "Events"}, {"name": "News"}]}],
        "generate_members": members,
        "status_mix": {"subscribed": 0.8, "unsubscribed": 0.1, "cleaned": 0.03, "pending": 0.04, "archived": 0.03},
    }])
    return answer["lists"][0]


def seed_odoo(env, lists, n_odoo, n_shared):
    """Contacts in bulk SQL (setting up is not what we measure): the first
    ``n_shared`` use the emulator's generated addresses, the rest are
    Odoo-only; 90% subscribed, a third on each interest list."""
    cr = env.cr
    cr.execute(
        """
        INSERT INTO mailing_contact (name, email, email_normalized, message_bounce, create_date, write_date)
        SELECT 'Contact ' || i,
               CASE WHEN i < %(shared)s THEN 'member' || lpad(i::text, 6, '0') || '@example.net'
                    ELSE 'odoo' || i || '@example.org' END,
               CASE WHEN i < %(shared)s THEN 'member' || lpad(i::text, 6, '0') || '@example.net'
                    ELSE 'odoo' || i || '@example.org' END,
               0, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
          FROM generate_series(0, %(n)s - 1) AS i
        """,
        {"n": n_odoo, "shared": n_shared},
    )
    cr.execute(
        """
        INSERT INTO mailing_subscription (contact_id, list_id, opt_out, create_date)
        SELECT id, %(news)s, id %% 10 = 0, now() AT TIME ZONE 'UTC' FROM mailing_contact;
        INSERT INTO mailing_subscription (contact_id, list_id, opt_out)
        SELECT id, %(events)s, FALSE FROM mailing_contact WHERE id %% 3 = 0;
        INSERT INTO mailing_subscription (contact_id, list_id, opt_out)
        SELECT id, %(topics)s, FALSE FROM mailing_contact WHERE id %% 3 = 1;
        """,
        {"news": lists["Newsletter"].id, "events": lists["Events"].id, "topics": lists["News"].id},
    )


def timed_cycle(env, audience, ctl):
    from odoo import sql_db

    requests0 = ctl.stats()["requests"]
    sql0 = sql_db.sql_counter
    started = time.monotonic()
    run = run_like_the_cron_runner(env, audience, confirm=True)
    seconds = time.monotonic() - started
    return run, seconds, sql_db.sql_counter - sql0, ctl.stats()["requests"] - requests0


def settle(env, ctl):
    """(seconds the emulator took to run the batches, seconds we took to read
    and settle their results)."""
    started = time.monotonic()
    ctl.run_batches()
    ran = time.monotonic() - started
    started = time.monotonic()
    Batch = env["mailchimp.batch"]
    while Batch.search_count([("result_state", "!=", "done"), ("mailchimp_batch_id", "!=", False)]):
        Batch._cron_poll_batches(min_age_minutes=0, limit=10, recheck_seconds=0)
        env.cr.commit()
    return ran, time.monotonic() - started


def mailchimp_changes(client, list_id, n, offset=0):
    """n changes at Mailchimp: unsubscribe some, rename others (one batch)."""
    ops = []
    for j in range(n):
        i = j + offset
        email = f"member{50000 + i:06d}@example.net" if i % 2 else f"member{i:06d}@example.net"
        body = {"status": "unsubscribed"} if i % 2 else {"merge_fields": {"FNAME": f"Renamed{i}"}}
        ops.append({"method": "PATCH", "path": f"/lists/{list_id}/members/{subscriber_hash(email)}",
                    "body": json.dumps(body)})
    client.start_batch(ops)


def odoo_changes(env, lists, n, tag="new"):
    """n changes in Odoo: opt out half, add the other half to the list."""
    cr = env.cr
    cr.execute(
        """UPDATE mailing_subscription SET opt_out = TRUE
            WHERE id IN (SELECT id FROM mailing_subscription WHERE list_id = %s AND NOT opt_out
                          ORDER BY id LIMIT %s)""",
        (lists["Newsletter"].id, n // 2),
    )
    env["mailing.contact"].create([
        {"name": f"New {i}", "email": f"{tag}{i}@example.org", "list_ids": [(4, lists["Newsletter"].id)]}
        for i in range(n - n // 2)
    ])
    env.flush_all()
    cr.commit()


def floor(dbname, key, url, list_id):
    """Page every member with the sync's fields and insert them all in one
    statement: what any sync must at least do.  Runs in a forked child, so
    its list of every member stays out of the sync's memory figures."""
    import multiprocessing

    import psycopg2

    def work(queue):
        client = MailchimpClient(key, base_url=f"{url}/3.0", timeout=60)
        started = time.monotonic()
        rows = []
        for page in client.iter_member_pages(list_id, fields=FETCH_FIELDS):
            rows.extend(page.members)
        paged = time.monotonic() - started
        with psycopg2.connect(dbname=dbname) as conn, conn.cursor() as cr:
            cr.execute("CREATE TEMP TABLE floor_members (id varchar, email varchar, status varchar, data jsonb)")
            # In slices of 100,000: one JSON document holds at most 256 MB.
            for start in range(0, len(rows), 100000):
                cr.execute(
                    """INSERT INTO floor_members SELECT x->>'id', x->>'email_address', x->>'status', x
                         FROM jsonb_array_elements(%s::jsonb) AS x""",
                    (json.dumps(rows[start:start + 100000]),),
                )
        queue.put((time.monotonic() - started, paged, len(rows)))

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=work, args=(queue,))
    child.start()
    # A child that fails prints its traceback and exits: stop, don't wait.
    while queue.empty():
        child.join(timeout=1)
        if child.exitcode is not None and queue.empty():
            raise RuntimeError(f"the floor's child process failed (exit code {child.exitcode})")
    result = queue.get()
    child.join()
    return result


def report(label, run, seconds, sql, requests, members):
    print(f"{label}: {seconds:.1f} s | fetched {run.fetched}, reconciled {run.reconciled}, "
          f"created {run.created}, to add {run.to_add}, "
          f"to remove {run.to_remove}, Odoo changes {run.odoo_changes}, updates queued {run.updates_queued}, "
          f"batches {run.batches_sent} | {sql} SQL statements ({sql / max(members, 1):.4f}/member) | "
          f"{requests} Mailchimp requests")
    print("   stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(
        (run.stage_timings or {}).items(), key=lambda kv: -kv[1])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100000)
    parser.add_argument("--odoo", type=int, default=100000)
    parser.add_argument("--shared", type=int, default=50000)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--db", default="mailchimp_sync_bench")
    parser.add_argument("--baseline-initial", type=float, default=None,
                        help="seconds of the initial sync of a 100k run, to print this run's time as a ratio of it")
    parser.add_argument("--merge-fields", type=int, default=0, choices=(0, 1, 2),
                        help="extra merge fields mapped besides FNAME/LNAME (company, country)")
    parser.add_argument("--lanes", type=int, default=None,
                        help="reconcile lanes (the system parameter mailchimp_sync.reconcile_lanes; "
                             "default: the addon's, 2); 1 reconciles in the step's own transaction")
    parser.add_argument("--mailchimp-runs-batches", action="store_true",
                        help="the emulator works through batches while the sync runs, as Mailchimp does, "
                             "and holds at most 500 pending ones, as Mailchimp does (by default it holds "
                             "every batch of the run until the sync is over)")
    args = parser.parse_args()
    ok, info = odoo_status()
    if not ok:
        print(f"benchmark SKIPPED: {info}")
        return 0
    # Unless it runs them during the sync, the emulator holds every batch
    # of the run until the sync is over, as in a 100,000-member run, so
    # that a larger run is timed under the same conditions: the sync does
    # not wait for the emulator's work (Mailchimp's, on Mailchimp's
    # servers), nor share the machine's two cores with it.
    max_pending = None if args.mailchimp_runs_batches else max(500, (args.members + args.odoo) // 1000 + 100)
    proc, url, ctl, key = start_emulator(args.mailchimp_runs_batches, max_pending)
    try:
        t0 = time.monotonic()
        mc_list = seed_mailchimp(ctl, args.members, args.merge_fields)
        print(f"emulator: {args.members} members seeded in {time.monotonic() - t0:.1f} s")
        create_database(args.db, os.path.join(ROOT, ".cache", "bench_install.log"))
        with environment(args.db) as env:
            client = MailchimpClient(key, base_url=f"{url}/3.0", timeout=60)
            lists = {n: env["mailing.list"].create({"name": n}) for n in ("Newsletter", "Events", "News")}
            seed_odoo(env, lists, args.odoo, args.shared)
            account = env["mailchimp.account"].create({"name": "bench", "api_key": key, "api_base_url": f"{url}/3.0"})
            audience = env["mailchimp.audience"].create({
                "name": "Bench", "account_id": account.id, "mailchimp_list_id": mc_list["id"],
                "mailing_list_id": lists["Newsletter"].id,
                "interest_ids": [(0, 0, {"name": n, "mailchimp_interest_id": mc_list["interests"][n],
                                         "mailing_list_id": lists[n].id}) for n in ("Events", "News")],
            })
            for spec, field_name in EXTRA_MERGE_FIELDS[:args.merge_fields]:
                env["mailchimp.merge.field"].create({
                    "audience_id": audience.id, "tag": spec["tag"], "name": spec["name"], "field_type": "text",
                    "odoo_field_id": env["ir.model.fields"]._get("mailing.contact", field_name).id,
                })
                if field_name == "company_name":
                    env.cr.execute("UPDATE mailing_contact SET company_name = 'Company ' || mod(id, 97)")
            if args.lanes:
                env["ir.config_parameter"].set_param("mailchimp_sync.reconcile_lanes", str(args.lanes))
            env.cr.commit()
            print(f"odoo: {args.odoo} contacts ({args.shared} shared) in database {args.db}"
                  + f", {env['mailchimp.reconcile']._lanes()} reconcile lane(s)"
                  + (f", {args.merge_fields} extra merge field(s) mapped" if args.merge_fields else "")
                  + (", the emulator runs batches during the sync" if args.mailchimp_runs_batches
                     else f", the emulator holds up to {max_pending} pending batches (Mailchimp: 500)"
                     if max_pending > 500 else ""))

            with cpu_watch() as floor_cpu:  # the child's start and end included
                floor_s, paged_s, n = floor(args.db, key, url, mc_list["id"])
            print(f"floor: paging {n} members {paged_s:.1f} s + one bulk insert = {floor_s:.1f} s")
            cpu_line("the floor", floor_cpu)
            base_rss = rss_mb("VmRSS")
            reset_peak_rss()
            # The initial push happens "3 hours ago" at Mailchimp (the
            # emulator's clock runs behind for it), so that the incremental
            # sync below sees what an hourly sync sees: new changes, not the
            # echo of the push still inside the fetch overlap.
            ctl.clock(now=(datetime.now(timezone.utc) - timedelta(hours=3)).replace(microsecond=0).isoformat())

            with cpu_watch() as initial_cpu:
                run, seconds, sql, requests = timed_cycle(env, audience, ctl)
            initial = {"seconds": seconds, "sql": sql, "rss": rss_mb(), "floor": floor_s}
            env.cr.execute("SELECT count(*) FROM mailchimp_member")
            rows = env.cr.fetchone()[0]
            report("initial full sync (to all batches submitted)", run, seconds, sql, requests, rows)
            # The pages the fetch read: after the first of a listing, each
            # re-reads the last members of the one before (PAGE_OVERLAP).
            pages = run.fetch_pages
            print(f"   requests = {pages} member pages + {run.batches_sent} batches + "
                  f"{requests - pages - run.batches_sent} other | initial sync / floor = {seconds / floor_s:.1f}")
            print(f"   peak RSS during the sync {rss_mb():.0f} MB (before it: {base_rss:.0f} MB), "
                  f"{rows} cache rows")
            cpu_line("the initial sync", initial_cpu)
            wait_for_vacuum("the initial sync")
            ran, settled = settle(env, ctl)
            print(f"batches: the emulator ran {run.batches_sent} batches in {ran:.1f} s; "
                  f"reading and settling their results took {settled:.1f} s")
            wait_for_vacuum("settling")
            reset_peak_rss()

            ctl.clock(real=True)
            mailchimp_changes(client, mc_list["id"], args.changes)
            ctl.run_batches()
            odoo_changes(env, lists, args.changes)
            reset_peak_rss()
            run, seconds, sql, requests = timed_cycle(env, audience, ctl)
            report(f"incremental sync after {args.changes} changes on each side", run, seconds, sql,
                   requests, 2 * args.changes)
            print(f"   peak RSS during the incremental sync {rss_mb():.0f} MB")
            wait_for_vacuum("the incremental sync")
            # One line with the ratios the targets are stated in (issue 13).
            baseline = (f" | initial / baseline {initial['seconds'] / args.baseline_initial:.1f} (target <= 11)"
                        if args.baseline_initial else "")
            print(f"summary: initial / floor {initial['seconds'] / initial['floor']:.1f} (target <= 5) | "
                  f"incremental {seconds:.1f} s (target <= 2) | settling {settled:.1f} s (target <= 10) | "
                  f"SQL per member {initial['sql'] / max(rows, 1):.4f} (target <= 0.02) | "
                  f"peak RSS {max(initial['rss'], rss_mb()):.0f} MB (target <= 300){baseline}")

        if not os.environ.get("BENCH_KEEP_DB"):
            drop_database(args.db)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
