"""The local copy on its own: what it keeps, and what makes it forget."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from graph.cache.entry import Entry
from graph.cache.local_copy import LocalCopy

AT = datetime(2026, 11, 20, 12, tzinfo=UTC)


def entry(token: str, payload: bytes = b"[]") -> Entry:
    return Entry(token, AT, AT, payload)


def test_nothing_is_kept_unless_live() -> None:
    copy = LocalCopy()
    copy.keep(copy.epoch, "t", "k", "f", entry("t"))
    assert copy.get("k", "f") is None


def test_a_store_read_is_kept_while_live_and_forgotten_after() -> None:
    copy = LocalCopy()
    with copy.live(5.0):
        copy.keep(copy.epoch, "t", "k", "f", entry("t"))
        assert copy.get("k", "f") == entry("t")
    assert copy.get("k", "f") is None


def test_a_read_that_overlapped_an_invalidation_is_not_kept() -> None:
    copy = LocalCopy()
    with copy.live(5.0):
        epoch = copy.epoch
        copy.invalidate()
        copy.keep(epoch, "t", "k", "f", entry("t"))
        assert copy.get("k", "f") is None


def test_a_new_token_drops_the_entries_of_the_old_one() -> None:
    copy = LocalCopy()
    with copy.live(5.0):
        copy.keep(copy.epoch, "old", "k", "a", entry("old"))
        copy.keep(copy.epoch, "new", "k", "b", entry("new"))
        assert copy.get("k", "a") is None
        assert copy.get("k", "b") == entry("new")


def test_the_copy_is_trusted_only_for_its_seconds_after_a_store_read() -> None:
    copy = LocalCopy()
    with copy.live(0.05):
        copy.keep(copy.epoch, "t", "k", "f", entry("t"))
        assert copy.get("k", "f") is not None
        time.sleep(0.06)
        assert copy.get("k", "f") is None
        # A store read (even one that found nothing) trusts it again.
        copy.keep(copy.epoch, "t", "k", "other", None)
        assert copy.get("k", "f") is not None
