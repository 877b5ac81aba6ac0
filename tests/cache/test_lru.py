"""BoundedLRU: the count and byte bounds, least recently used out first."""

from __future__ import annotations

from graph.cache.lru import BoundedLRU


def test_the_least_recently_used_goes_first_within_the_count() -> None:
    lru: BoundedLRU[str, int] = BoundedLRU(max_entries=2, max_bytes=100)
    lru.put("a", 1, 10)
    lru.put("b", 2, 10)
    assert lru.get("a") == 1  # now b is the least recently used
    lru.put("c", 3, 10)
    assert list(lru) == ["a", "c"] and lru.bytes == 20


def test_bytes_are_bounded_and_a_value_over_the_whole_bound_is_not_kept() -> None:
    lru: BoundedLRU[str, int] = BoundedLRU(max_entries=10, max_bytes=25)
    lru.put("a", 1, 10)
    lru.put("b", 2, 10)
    lru.put("c", 3, 10)
    assert list(lru) == ["b", "c"] and lru.bytes == 20
    assert not lru.put("b", 4, 26)
    assert list(lru) == ["c"] and lru.bytes == 10  # what "b" held is gone, nothing else
    assert lru.pop("c") == 3 and lru.bytes == 0 and len(lru) == 0
