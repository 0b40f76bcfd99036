"""Work a worker spreads over threads of its own, each on a cursor of its own."""

import threading
from contextlib import contextmanager

from odoo import api


@contextmanager
def own_cursor_env(env):
    """Yield ``env`` on a new cursor of the same registry, for a thread of
    this worker.  The cursor commits when the block ends without an error
    (as ``registry.cursor()`` does) and is closed.

    The cursor's transaction is made here, on the registry ``env`` holds:
    an Environment would ask ``Registry()`` for it, which takes the
    registries' lock, held by a server loading a database (and by Odoo's
    test runner for its whole run)."""
    registry = env.registry
    with registry.cursor() as cr:
        cr.transaction = api.Transaction(registry)
        threading.current_thread().dbname = cr.dbname  # for the log lines
        yield env(cr=cr)


def run_threads(name, count, target, *args):
    """Run ``target(*args)`` in ``count`` daemon threads named ``name-N``
    and wait for all of them.  ``target`` handles its own errors: a thread
    has nobody to raise to."""
    threads = [threading.Thread(target=target, args=args, name=f"{name}-{number}", daemon=True)
               for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def take_turns(iterable):
    """A function that gives the next item of ``iterable`` (None once none
    is left) to whichever thread calls it, one caller at a time: the
    threads of ``run_threads`` share a queue of work so."""
    items = iter(iterable)
    lock = threading.Lock()

    def take():
        with lock:
            return next(items, None)

    return take
