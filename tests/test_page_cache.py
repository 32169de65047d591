"""Rendered pages: bounded in bytes, and one version per query (the newest)."""

from __future__ import annotations

from routing_points.server.pages import Page, PageCache


def page(size: int) -> Page:
    return Page(b"x" * size, 1, None)


def test_a_newer_version_replaces_the_older_page_of_the_same_query() -> None:
    cache = PageCache(max_bytes=1_000)
    cache.put((1, 1, None, 0), page(100))
    cache.put((1, 1, 101, 0), page(100))  # another query of the same version stays
    cache.put((1, 2, None, 0), page(100))
    assert cache.get((1, 1, None, 0)) is None
    assert cache.get((1, 2, None, 0)) is not None
    assert cache.get((1, 1, 101, 0)) is not None
    assert len(cache) == 2


def test_a_render_of_an_older_version_that_ends_last_is_not_kept() -> None:
    cache = PageCache(max_bytes=1_000)
    newer = page(100)
    cache.put((1, 3, None, 0), newer)
    cache.put((1, 2, None, 0), page(100))
    assert cache.get((1, 2, None, 0)) is None
    assert cache.get((1, 3, None, 0)) is newer


def test_the_least_recently_used_pages_go_first_over_the_bound() -> None:
    cache = PageCache(max_bytes=250)
    for operation in (1, 2, 3):
        cache.put((operation, 1, None, 0), page(100))
    assert cache.get((1, 1, None, 0)) is None  # evicted: 300 bytes > 250
    cache.get((2, 1, None, 0))  # 2 is now more recent than 3
    cache.put((4, 1, None, 0), page(100))
    assert cache.get((3, 1, None, 0)) is None
    assert cache.get((2, 1, None, 0)) is not None
    assert cache.get((4, 1, None, 0)) is not None
    cache.put((5, 1, None, 0), page(300))  # bigger than the whole cache: never kept
    assert cache.get((5, 1, None, 0)) is None
