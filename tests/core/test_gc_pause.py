"""cycle_collector_paused: counted across threads, and the collector's
state before the first pause is what the last one leaves."""

import gc
import threading
import weakref

import pytest

from mailchimp_sync.gc_pause import cycle_collector_paused


@pytest.fixture(autouse=True)
def collector_restored():
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_runs_again_once_the_block_is_left():
    gc.enable()
    with cycle_collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_collector_runs_again_after_an_error_in_the_block():
    gc.enable()
    with pytest.raises(ValueError), cycle_collector_paused():
        raise ValueError("chunk failed")
    assert gc.isenabled()


def test_a_collector_stopped_before_stays_stopped():
    gc.disable()
    with cycle_collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_two_threads_overlapping_resume_the_collector_when_the_last_leaves():
    gc.enable()
    inside = threading.Barrier(2)
    first_left = threading.Event()
    seen = {}

    def first():
        with cycle_collector_paused():
            inside.wait(timeout=5)
        first_left.set()

    def second():
        with cycle_collector_paused():
            inside.wait(timeout=5)
            first_left.wait(timeout=5)
            # The first lane left while this one still works: no collection.
            seen["after_first_left"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert seen == {"after_first_left": False}
    assert gc.isenabled()


def test_nothing_reachable_only_through_a_cycle_is_lost_for_good():
    gc.enable()

    class Node:
        pass

    with cycle_collector_paused():
        node = Node()
        node.self = node
        collected = []
        ref = weakref.ref(node, lambda _r: collected.append(True))
        del node
        assert ref() is not None  # a cycle waits for the collector
    gc.collect()
    assert collected == [True]
