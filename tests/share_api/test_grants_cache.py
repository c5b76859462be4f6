"""The views kept per process: bounded by the memory they hold (tables and the pages kept
serialised), least recently used dropped first, one build a key, a revoked grant's dropped."""

from __future__ import annotations

import threading

import pyarrow as pa

from share_api.views import View, ViewCache


def table(rows: int) -> pa.Table:
    return pa.table({"v": pa.array([f"value {i:06d}" for i in range(rows)])})


def test_bounded_by_tables_and_kept_pages() -> None:
    one = table(1_000)
    cache = ViewCache(max_bytes=int(one.nbytes * 2.5))
    a = cache.get(("g1", 1), lambda: View("g1", 1, one))
    cache.get(("g2", 1), lambda: View("g2", 1, table(1_000)))
    assert cache.get(("g1", 1), lambda: None) is a  # kept, and now the most recent
    body, rows, digest = a.serialised("arrow", 0, None)  # a's page grows it past the bound
    assert rows == 1_000 and len(digest) == 64
    assert cache.get(("g2", 1), lambda: View("g2", 1, table(10))).total == 10  # g2 was dropped
    assert a.serialised("arrow", 0, None)[0] is body  # the kept bytes
    cache.forget("g1")
    assert cache.get(("g1", 1), lambda: View("g1", 1, table(5))).total == 5


def test_one_build_a_key() -> None:
    cache, built, gate = ViewCache(), [], threading.Event()

    def build() -> View:
        built.append(1)
        gate.wait(1)
        return View("g", 7, table(3))

    threads = [threading.Thread(target=cache.get, args=(("g", 7), build)) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert len(built) == 1 and cache.builds == 1


def test_pages_carry_the_snapshot_and_total() -> None:
    view = View("g", 42, table(250))
    page = view.page(200, 100)
    assert page.num_rows == 50
    assert page.schema.metadata[b"streethub.snapshot"] == b"42"
    assert page.schema.metadata[b"streethub.total"] == b"250"
    import orjson

    head = orjson.loads(view.serialised("json", 200, 100)[0])
    assert head["next_offset"] is None and head["total"] == 250 and len(head["rows"]) == 50
    assert orjson.loads(view.serialised("json", 0, 100)[0])["next_offset"] == 100
