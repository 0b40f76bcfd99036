"""Emulator benchmark: seed 100,000 members, then page through all of them
with the official SDK (1,000 per page, filtered by ``fields``) and print the
seed time, pages/s and members/s; then read ``--full-pages`` pages without
``fields`` (whole member objects, ``_links`` included).  Not a timed test;
run it by hand:

    python bench/emulator_bench.py [--members 100000] [--page 1000] [--full-pages 20]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mailchimp_marketing  # noqa: E402

from mailchimp_sync.emulator import EmulatorServer  # noqa: E402

FIELDS = ["members.id", "members.email_address", "members.status", "members.last_changed",
          "members.merge_fields", "total_items"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=100_000)
    p.add_argument("--page", type=int, default=1000)
    p.add_argument("--full-pages", type=int, default=20)
    args = p.parse_args()
    with EmulatorServer(port=0, settings={"archived_in_default_listing": True}) as srv:
        ctl = srv.control
        t0 = time.perf_counter()
        out = ctl.seed([{"name": "Bench", "generate_members": args.members}])
        seed_s = time.perf_counter() - t0
        lid = out["list_ids"][0]
        client = mailchimp_marketing.Client()
        client.set_config({"api_key": srv.api_key})
        client.api_client.host = srv.api_base
        t0 = time.perf_counter()
        seen, pages, offset, total = 0, 0, 0, None
        while total is None or offset < total:
            page = client.lists.get_list_members_info(lid, count=args.page, offset=offset, fields=FIELDS,
                                                      sort_field="last_changed", sort_dir="ASC")
            total = page["total_items"]
            seen += len(page["members"])
            pages += 1
            offset += args.page
        page_s = time.perf_counter() - t0
        # whole member objects: what a client reading everything pays
        t0 = time.perf_counter()
        for n in range(args.full_pages):
            client.lists.get_list_members_info(lid, count=args.page, offset=n * args.page)
        full_s = time.perf_counter() - t0
    print(f"seeded members : {args.members}")
    print(f"seed seconds   : {seed_s:.2f}")
    print(f"pages          : {pages} x {args.page} (fields={','.join(FIELDS)})")
    print(f"paging seconds : {page_s:.2f}")
    print(f"pages/s        : {pages / page_s:.1f}")
    print(f"members/s      : {seen / page_s:.0f}")
    if args.full_pages:
        print(f"full pages     : {args.full_pages} x {args.page} (no fields)")
        print(f"full pages/s   : {args.full_pages / full_s:.1f}")
    if seen != args.members:
        print(f"MISMATCH: paged {seen} members, expected {args.members}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
