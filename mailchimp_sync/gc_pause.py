"""Pause Python's cycle collector while a bulk step works through a chunk.

A reconcile chunk loads 5,000 rows as dicts and decides each into a few
small objects; a fetch parses 1,000 members a page.  All of them are
acyclic and freed by reference counting as the chunk ends, but while they
are alive they pass the collector's young generations, and once the
survivors reach a quarter of the older objects, Python 3.11 walks every
object of the process (Odoo's registry included).  In a 100,000-member
first sync that happened once a chunk: 6.5 s of a 29.5 s reconcile and
1.8 s of the fetch, each walk holding the GIL, so that the other lane
waited too.

The pause is counted: two lanes of one process overlap, and the
collector runs again only when the last of them is done, and only if it
ran when the first began (a profiler may have stopped it).  Cycles made
meanwhile (there are few in a chunk) are collected after the pause.
"""

import gc
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_paused = 0  # pauses under way in this process
_resume = False  # whether the collector ran when the first of them began


@contextmanager
def cycle_collector_paused():
    """Keep the cycle collector from running inside the block (and in the
    other threads of the process meanwhile); reference counting still
    frees what the block drops."""
    global _paused, _resume
    with _lock:
        if not _paused:
            _resume = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if not _paused and _resume:
                gc.enable()
