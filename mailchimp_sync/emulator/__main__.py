"""``python -m mailchimp_sync.emulator --port 8055 --seed-members 1000``."""

import argparse
import json
import time

from .server import EmulatorServer


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mailchimp_sync.emulator",
                                description="Local Mailchimp Marketing API v3 emulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8055)
    p.add_argument("--seed-members", type=int, default=0,
                   help="create a list 'Newsletter' with this many synthetic members")
    p.add_argument("--api-key", default=None, help="default accepted key (<32 hex>-us<N>)")
    p.add_argument("--settings", default=None, help="JSON object of settings overrides")
    args = p.parse_args(argv)
    settings = json.loads(args.settings) if args.settings else None
    t0 = time.monotonic()
    srv = EmulatorServer(args.host, args.port, args.seed_members, settings, args.api_key).start()
    print(f"Mailchimp emulator listening on {srv.url}", flush=True)
    print(f"  api base : {srv.api_base}")
    print(f"  api key  : {srv.api_key}")
    print(f"  control  : {srv.url}/_emulator/")
    if srv.seeded_list_id:
        print(f"  list id  : {srv.seeded_list_id} ({args.seed_members} members, "
              f"seeded in {time.monotonic() - t0:.2f}s)")
    print("Ctrl-C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
