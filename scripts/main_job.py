#!/usr/bin/env python3
"""The main job: a full Mailchimp sync against the bundled emulator.

No Mailchimp account is needed.  It starts the emulator with a realistic
audience (mixed statuses, interests, people also known to Odoo, a shared
email), creates an Odoo database with the addon and a mapped list, runs one
full sync, lets the emulator process the batches, settles their results,
runs a second sync, and prints a summary.  Where Odoo 18 is not importable
it checks the connection to the emulator and pages the audience through the
addon's client, and says plainly that the Odoo part was skipped.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from odoo_env import create_database, drop_database, environment, odoo_status, run_like_the_cron_runner  # noqa: E402

from mailchimp_sync.client import MailchimpClient  # noqa: E402
from mailchimp_sync.emulator import EmulatorServer  # noqa: E402

GENERATED = 2000
SHARED = 400  # generated members that Odoo also has on the list
ODOO_ONLY = 300

NAMED = [
    {"email_address": "anna@example.org", "status": "subscribed",
     "merge_fields": {"FNAME": "Anna", "LNAME": "Gebhard"}, "interests": {"Events": True}},
    {"email_address": "bob@example.org", "status": "unsubscribed"},
    {"email_address": "carl@example.org", "status": "cleaned"},
    {"email_address": "dora@example.org", "status": "pending", "merge_fields": {"FNAME": "Dora"}},
    {"email_address": "erik@example.org", "status": "subscribed", "interests": {"News": True}},
    {"email_address": "twin@example.org", "status": "subscribed"},
]


def seed(emulator):
    answer = emulator.control.seed(
        lists=[
            {
                "name": "Newsletter",
                "interest_categories": [
                    {"title": "Topics", "type": "checkboxes", "interests": [{"name": "Events"}, {"name": "News"}]}
                ],
                "members": NAMED,
                "generate_members": GENERATED,
                "status_mix": {"subscribed": 0.8, "unsubscribed": 0.1, "cleaned": 0.03, "pending": 0.04,
                               "archived": 0.03},
            }
        ]
    )
    return answer["lists"][0]


def without_odoo(emulator, mc_list, why):
    client = MailchimpClient(emulator.api_key, base_url=emulator.api_base, timeout=10)
    print(f"connection check: {client.ping()}")
    started = time.monotonic()
    statuses = {}
    for page in client.iter_member_pages(mc_list["id"], fields=["id", "email_address", "status"]):
        for member in page.members:
            statuses[member["status"]] = statuses.get(member["status"], 0) + 1
    print(f"paged {sum(statuses.values())} members in {time.monotonic() - started:.2f}s: {statuses}")
    print(f"Odoo sync SKIPPED: {why}. Install Odoo 18 beside the project to run the sync itself.")
    return 0


def setup_odoo(env, emulator, mc_list):
    lists = {name: env["mailing.list"].create({"name": name}) for name in ("Newsletter", "Events", "News")}
    contacts = []
    for i in range(SHARED):
        contacts.append({"name": f"Shared {i}", "email": f"member{i:06d}@example.net",
                         "list_ids": [(4, lists["Newsletter"].id)]})
    for i in range(ODOO_ONLY):
        lst = [(4, lists["Newsletter"].id)] + ([(4, lists["Events"].id)] if i % 3 == 0 else [])
        contacts.append({"name": f"Odoo Only {i}", "email": f"odoo{i:04d}@example.org", "list_ids": lst})
    contacts += [
        {"name": "Anna Gebhard", "email": "anna@example.org", "list_ids": [(4, lists["Newsletter"].id)]},
        {"name": "Erik", "email": "erik@example.org"},
        {"name": "Twin One", "email": "twin@example.org", "list_ids": [(4, lists["Newsletter"].id)]},
        {"name": "Twin Two", "email": "TWIN@example.org", "list_ids": [(4, lists["Newsletter"].id)]},
    ]
    env["mailing.contact"].create(contacts)
    account = env["mailchimp.account"].create(
        {"name": "Emulator (sandbox)", "api_key": emulator.api_key, "api_base_url": emulator.api_base}
    )
    audience = env["mailchimp.audience"].create(
        {
            "name": mc_list["name"],
            "account_id": account.id,
            "mailchimp_list_id": mc_list["id"],
            "mailing_list_id": lists["Newsletter"].id,
            "interest_ids": [
                (0, 0, {"name": name, "category_name": "Topics", "mailchimp_interest_id": mc_list["interests"][name],
                        "mailing_list_id": lists[name].id})
                for name in ("Events", "News")
            ],
        }
    )
    env.cr.commit()
    return audience, lists


def run_cycle(env, audience):
    started = time.monotonic()
    run = run_like_the_cron_runner(env, audience, confirm=True)
    return run, time.monotonic() - started


def print_run(label, run, seconds):
    print(f"{label}: {seconds:.1f}s  fetched {run.fetched}, contacts created {run.created}, "
          f"to add at Mailchimp {run.to_add}, to remove {run.to_remove}, Odoo changes {run.odoo_changes}, "
          f"failed {run.failed}, updates queued {run.updates_queued}, batches sent {run.batches_sent}")
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in (run.stage_timings or {}).items())
    print(f"   stage timings: {timings}")


def summary(env, emulator, audience, lists):
    cr = env.cr
    cr.execute("SELECT sync_status, count(*) FROM mailchimp_member WHERE audience_id = %s GROUP BY 1 ORDER BY 1",
               (audience.id,))
    print("cache rows by sync status:", dict(cr.fetchall()))
    subscribed_odoo = env["mailing.subscription"].search_count(
        [("list_id", "=", lists["Newsletter"].id), ("opt_out", "=", False)])
    state = emulator.control.state(audience.mailchimp_list_id, limit=100000)
    members = next(iter(state["lists"]))["members"] if isinstance(state.get("lists"), list) else None
    mc_status = {}
    for member in members or []:
        mc_status[member["status"]] = mc_status.get(member["status"], 0) + 1
    print(f"subscribed in Odoo: {subscribed_odoo}; at Mailchimp by status: {mc_status}")
    cr.execute(
        """SELECT count(*) FROM mailchimp_member
            WHERE audience_id = %s AND sync_status <> 'fail'
              AND odoo_subscribed IS DISTINCT FROM (mc_status IN ('subscribed', 'pending'))""",
        (audience.id,),
    )
    print(f"rows where the two sides disagree (excluding failed rows, which say why): {cr.fetchone()[0]}")
    fails = env["mailchimp.member"].search([("audience_id", "=", audience.id), ("sync_status", "=", "fail")])
    for row in fails[:10]:
        print(f"   failed: {row.email}: {row.sync_error}")


def main():
    emulator = EmulatorServer(port=0, settings={"batch_auto_run": False, "webhook_delivery": "off"}).start()
    try:
        mc_list = seed(emulator)
        print(f"emulator at {emulator.api_base}, audience {mc_list['id']} with {GENERATED + len(NAMED)} members")
        ok, info = odoo_status()
        if not ok:
            return without_odoo(emulator, mc_list, info)
        dbname = os.environ.get("MAILCHIMP_DEMO_DB", "mailchimp_sync_demo")
        os.makedirs(os.path.join(ROOT, ".cache"), exist_ok=True)
        print(f"creating database {dbname} with mailchimp_sync (Odoo {info}) ...", flush=True)
        create_database(dbname, os.path.join(ROOT, ".cache", "main_job_install.log"))
        with environment(dbname) as env:
            audience, lists = setup_odoo(env, emulator, mc_list)
            run, seconds = run_cycle(env, audience)
            print_run("full sync", run, seconds)
            emulator.control.run_batches()
            env["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0, limit=1000, recheck_seconds=0)
            env.cr.commit()
            batches = env["mailchimp.batch"].search([("audience_id", "=", audience.id)])
            print(f"batches settled: {len(batches.filtered(lambda b: b.result_state == 'done'))}/{len(batches)}; "
                  + "; ".join(b.result_message or "" for b in batches))
            run, seconds = run_cycle(env, audience)
            print_run("second sync", run, seconds)
            emulator.control.run_batches()
            env["mailchimp.batch"]._cron_poll_batches(min_age_minutes=0, limit=1000, recheck_seconds=0)
            run, seconds = run_cycle(env, audience)
            print_run("third sync (after the re-queued 'pending' updates settled)", run, seconds)
            summary(env, emulator, audience, lists)
        if not os.environ.get("MAILCHIMP_DEMO_KEEP"):
            drop_database(dbname)
        else:
            print(f"database {dbname} kept")
        return 0
    finally:
        emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
