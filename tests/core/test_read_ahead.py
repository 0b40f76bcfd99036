"""read_ahead: the next page is read while the caller works on this one,
and a caller that stops on its budget wastes no read."""

import threading

import pytest

from mailchimp_sync.read_ahead import read_ahead


class Source:
    """An iterable that records its reads, the threads doing them and how
    many ran at once."""

    def __init__(self, n, fail_at=None):
        self.n, self.fail_at = n, fail_at
        self.reads, self.threads = [], set()
        self.running = self.most_at_once = 0
        self.lock = threading.Lock()
        self.read_started = {i: threading.Event() for i in range(n)}

    def __iter__(self):
        for i in range(self.n):
            with self.lock:
                self.running += 1
                self.most_at_once = max(self.most_at_once, self.running)
            self.read_started[i].set()
            self.threads.add(threading.current_thread().name)
            self.reads.append(i)
            with self.lock:
                self.running -= 1
            if i == self.fail_at:
                raise RuntimeError(f"page {i} failed")
            yield i


def test_yields_every_item_in_order_and_reads_the_next_one_meanwhile():
    source = Source(5)
    seen = []
    for item in read_ahead(source):
        if item + 1 < source.n:
            # While the caller still works on this item, the next read starts.
            assert source.read_started[item + 1].wait(5), f"item {item + 1} was not read ahead"
        seen.append(item)
    assert seen == [0, 1, 2, 3, 4]
    assert source.most_at_once == 1
    assert any(name.startswith("mailchimp-read-ahead") for name in source.threads)


def test_no_read_ahead_when_the_caller_says_it_stops():
    source = Source(10)
    seen = []
    for item in read_ahead(source, ahead=lambda: len(seen) < 2):
        seen.append(item)
        if len(seen) == 3:
            break
    assert seen == [0, 1, 2]
    # Items 0-2 were asked for; 1 and 2 were read ahead; nothing after 2.
    assert source.reads == [0, 1, 2]


def test_a_caller_that_stops_early_leaves_no_thread_behind():
    source = Source(10)
    pages = read_ahead(source)
    assert next(pages) == 0
    pages.close()
    assert source.reads == [0, 1]
    assert not [t for t in threading.enumerate() if t.name.startswith("mailchimp-read-ahead")]


def test_an_error_reaches_the_caller_at_the_item_that_failed():
    source = Source(5, fail_at=2)
    seen = []
    with pytest.raises(RuntimeError, match="page 2 failed"):
        for item in read_ahead(source):
            seen.append(item)
    assert seen == [0, 1]


def test_an_empty_source_yields_nothing():
    assert list(read_ahead(iter(()))) == []
