"""Read the next page from Mailchimp while the current one is written.

A fetch alternates between waiting for Mailchimp (a page of members) and
waiting for PostgreSQL (merging the page into the cache).  Done one after
the other, each side idles while the other works; with the next read under
way in a background thread, they overlap (a 100,000-member fetch took
11.1 to 12.0 s instead of 14.6 s).  The batch poller does the same with
the next batch's status and results while the one before settles (93
batches: about 0.7 s less of 12.5 s).  The background thread runs the
HTTP client (and parses what it read) only, one call at a time; it never
touches the database cursor or the ORM.

Tried and not kept: deciding a reconcile chunk in a background thread
while the previous chunk's rows were written.  The decisions are Python,
like most of the main thread's work between statements, so the two threads
took turns with the GIL and the stage was no faster (47 to 49 s against
47 s).
"""

from concurrent.futures import ThreadPoolExecutor

_END = object()


def read_ahead(iterable, ahead=None):
    """Yield the items of ``iterable``, each next item being read in a
    background thread while the caller works on the current one.

    ``ahead()`` is asked before each read ahead: when it says no (the
    caller expects to stop after this item, say), the next item is read
    only if the caller asks for it, as a plain loop would, so that a
    caller that stops wastes no read.  An error raised by the iterable
    reaches the caller when it asks for the item that failed.  The
    iterable is never advanced by two threads at once."""
    items = iter(iterable)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailchimp-read-ahead") as pool:
        pending = None
        while True:
            item = pending.result() if pending is not None else next(items, _END)
            pending = None
            if item is _END:
                return
            if ahead is None or ahead():
                pending = pool.submit(next, items, _END)
            try:
                yield item
            except GeneratorExit:
                # The caller stopped: the read under way finishes (its
                # client has a timeout) before the thread is let go.
                if pending is not None:
                    pending.cancel()
                raise
