"""Work a worker spreads over threads of its own, each on a cursor of its own."""

import logging
import queue
import threading
from contextlib import contextmanager

from odoo import api

_logger = logging.getLogger(__name__)


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


class CommitLanes:
    """Items worked on ``count`` threads, each on a cursor of its own that
    commits after each item, while the caller goes on; results come back
    in the order the items were given.

    ``work(env, item)`` runs on the lane's environment; an error in
    ``conflicts`` (a concurrent writer, a deadlock) rolls the item back and
    runs it again on a fresh transaction, up to ``retries`` times.
    ``setup(env)`` and ``teardown(env)`` run once on each lane's cursor,
    as it starts and before it goes back to the pool (outside any
    item's transaction: session settings, say).  Once an
    item failed, the items given after it are not worked on (they come
    back failed with the same error): the caller stops at the first failure
    anyway, and what the lanes committed before it stays.  Use as a
    context manager: leaving it stops the lanes and waits for them."""

    def __init__(self, env, name, count, work, conflicts=(), retries=2, setup=None, teardown=None):
        self._work, self._conflicts, self._retries = work, tuple(conflicts), retries
        self._setup, self._teardown = setup, teardown
        # At most one item waiting per lane: the caller, which reads them,
        # is held back instead of piling them up in memory.
        self._inbox = queue.Queue(maxsize=count)
        self._done = {}  # position -> (True, result) or (False, error)
        self._changed = threading.Condition()
        self._given = self._taken = 0
        self._error = None
        self._threads = [threading.Thread(target=self._lane, args=(env,), name=f"{name}-{number}", daemon=True)
                         for number in range(count)]
        for thread in self._threads:
            thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def give(self, item):
        """Hand ``item`` to the next free lane (waits while every lane has one waiting)."""
        self._inbox.put((self._given, item))
        self._given += 1

    def results(self, wait=False):
        """The results of the items done, in the order given, up to the first
        item not done yet (``wait``: every item given).  A failed item
        raises its error here."""
        while self._taken < self._given:
            with self._changed:
                while self._taken not in self._done:
                    if not wait:
                        return
                    self._changed.wait()
                ok, value = self._done.pop(self._taken)
            self._taken += 1
            if not ok:
                raise value
            yield value

    def close(self):
        """Stop the lanes once they are through with what they were given,
        and wait for them."""
        for _thread in self._threads:
            self._inbox.put(None)
        for thread in self._threads:
            thread.join()

    def _lane(self, env):
        # Every item a lane takes is answered, whatever fails: the caller
        # waits for each one.  A lane whose connection cannot be opened (a
        # full pool, the server gone) answers its items with that error.
        served = False
        try:
            with own_cursor_env(env) as lane_env:
                self._serve(lane_env)
                served = True
        except Exception as exc:  # noqa: BLE001 - handed to the caller with the items it is given
            _logger.warning("A lane of %s lost its connection: %s", threading.current_thread().name, exc)
            self._fail(exc)
            if not served:
                self._serve(None)

    def _fail(self, error):
        """The first error stands for every item not worked on yet."""
        with self._changed:
            self._error = self._error or error

    def _serve(self, env):
        """Work the items given to this lane until told to stop; without
        ``env`` (no connection: the error is already recorded) or once an
        item failed, answer each with the error.  Never raises."""
        ready = env is not None
        if ready and self._setup:
            try:
                self._setup(env)
                env.cr.commit()  # pylint: disable=invalid-commit
            except Exception as exc:  # noqa: BLE001 - each item fails with it
                self._rollback(env)
                self._fail(exc)
                ready = False
        while (entry := self._inbox.get()) is not None:
            position, item = entry
            outcome = (False, self._error) if self._error else self._run(env, item)
            if not outcome[0]:
                self._fail(outcome[1])
            with self._changed:
                self._done[position] = outcome
                self._changed.notify_all()
        if ready and self._teardown:
            try:
                self._teardown(env)
            except Exception:  # noqa: BLE001 - the connection goes back to the pool, or is dropped
                _logger.warning("A lane of %s could not reset its connection", threading.current_thread().name,
                                exc_info=True)

    def _run(self, env, item):
        attempt = 0
        while True:
            try:
                result = self._work(env, item)
                env.cr.commit()  # pylint: disable=invalid-commit
                return True, result
            except self._conflicts as exc:
                self._rollback(env)
                attempt += 1
                if attempt > self._retries:
                    return False, exc
            except Exception as exc:  # noqa: BLE001 - handed to the caller, which raises it
                self._rollback(env)
                return False, exc

    @staticmethod
    def _rollback(env):
        try:
            env.cr.rollback()
        except Exception:  # noqa: BLE001 - a connection lost has nothing left to roll back
            _logger.info("A lane's rollback failed (its connection is gone)", exc_info=True)
