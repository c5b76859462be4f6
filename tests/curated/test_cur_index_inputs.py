"""The master index's inputs computed where they no longer hold every mention in polars:
the fallback watch values in DuckDB (``index_delta.watch_sql``) and the fallback inputs'
digest hashed a slice at a time (``persons.inputs_digest``) equal the polars and
whole-list computations they replace, on generated mentions with nulls and shared values."""

from __future__ import annotations

import hashlib
import random

import duckdb
import polars as pl
import pytest

from curated import index_delta, persons
from curated.linkage import BLOCKING
from curated.persons import inputs_digest


def keyed(seed: int, n: int = 3_000) -> pl.DataFrame:
    """Mention rows with their unit: a tenth without a citizen pseudonym (the fallback),
    few distinct values per column so that persons share them, a fifth of them null."""
    rng = random.Random(seed)

    def pick(prefix: str, k: int, nulls: float = 0.2) -> list[str | None]:
        return [None if rng.random() < nulls else f"{prefix}{rng.randrange(k)}" for _ in range(n)]

    return pl.DataFrame(
        {
            "dept": pick("d", 3, 0),
            "dataset": pick("s", 4, 0),
            "key_pid": [f"k{i}" for i in range(n)],
            "citizen_pid": pick("c", 800, 0.1),
            "mobile_pid": pick("m", 900),
            "name_pid": pick("名", 700),
            "birth_pid": pick("b", 500),
            "house_id": pick("h", 400, 0.5),
        }
    )


def reference_watch(keyed: pl.DataFrame) -> pl.DataFrame:
    """The polars computation as it was (``index_delta.watch_values``)."""
    fallback = keyed.filter(pl.col("citizen_pid").is_null())
    shares = pl.any_horizontal(
        [pl.col(c).is_in(fallback[c].drop_nulls().unique().implode()) for c in BLOCKING]
    )
    held = pl.concat([fallback, keyed.filter(pl.col("citizen_pid").is_not_null() & shares)])
    parts = [fallback.select(col=pl.lit(f"share:{c}"), value=pl.col(c)) for c in BLOCKING]
    parts += [held.select(col=pl.lit(f"tf:{c}"), value=pl.col(c)) for c in index_delta.TF_KEYS]
    return pl.concat(parts).drop_nulls().unique().sort("col", "value")


@pytest.mark.parametrize("seed", [1, 2])
def test_watch_values_in_duckdb_equal_the_polars_ones(seed: int):
    _streethub_keyed = keyed(seed)
    want = reference_watch(_streethub_keyed)
    with duckdb.connect() as con:
        con.execute("CREATE TABLE k AS SELECT * FROM _streethub_keyed")
        con.execute("CREATE TABLE f AS SELECT * FROM k WHERE citizen_pid IS NULL")
        got = con.execute(index_delta.watch_sql("k", "f")).pl()
    assert want.height > 1_000
    assert set(want["col"]) == {f"share:{c}" for c in BLOCKING} | {
        f"tf:{c}" for c in index_delta.TF_KEYS
    }
    assert got.equals(want)


def reference_digest(scale: int, *frames: pl.DataFrame) -> str:
    """The digest as it was computed: every row in one sorted Python list."""
    h = hashlib.sha256(f"{scale}".encode())
    for frame in frames:
        cols = sorted(frame.columns)
        rows = frame.select(
            pl.concat_str(
                [pl.col(c).cast(pl.String).fill_null("\x00") for c in cols], separator="\x1f"
            )
        ).to_series()
        h.update("\x1e".join(cols).encode())
        h.update("\x1e".join(sorted(rows.to_list())).encode())
    return h.hexdigest()


def test_inputs_digest_in_slices_equals_the_whole_list(monkeypatch):
    frame = keyed(3).with_columns(tf=pl.col("key_pid").str.len_chars() / 7)
    other = keyed(4, 500).with_columns(
        pl.col("name_pid").str.replace("名", "ä"), tf=pl.lit(0.25)
    )  # text beyond ASCII sorts by code point in both
    want = reference_digest(1024, frame, other)
    monkeypatch.setattr(persons, "DIGEST_ROWS", 7)
    assert inputs_digest(1024, frame, other) == want
    monkeypatch.setattr(persons, "DIGEST_ROWS", 1_000_000)
    assert inputs_digest(1024, frame, other) == want
    assert inputs_digest(2048, frame, other) != want
    assert inputs_digest(1024, frame.slice(1), other) != want


@pytest.mark.parametrize("prefix", [1, 3, 32])
def test_inputs_digest_by_prefix_slices_equals_the_sorted_list(monkeypatch, prefix: int):
    """Rows placed in slices by their texts' first characters, then sorted within: the same
    order as sorting every row's text, where texts share prefixes (m1 / m12), one column's
    text begins another's, texts are empty, hold a character below the separator or are
    null (``\\x00``), and where every row shares one prefix (one slice)."""
    rng = random.Random(prefix)
    odd = ["", "\x01", "a\x1fb", "a", "ab", "名", None]
    texts = pl.DataFrame(
        {
            "a": [rng.choice(odd) for _ in range(2_000)],
            "b": [rng.choice(odd) for _ in range(2_000)],
            "c": [f"m{rng.randrange(50)}" for _ in range(2_000)],
        }
    )
    frames = [
        keyed(5),
        texts,
        texts.select("c"),
        texts.with_columns(a=pl.lit("same")),
        texts.head(0),
    ]
    monkeypatch.setattr(persons, "DIGEST_PREFIX", prefix)
    for rows in (7, 1_000_000):
        monkeypatch.setattr(persons, "DIGEST_ROWS", rows)
        for frame in frames:
            assert inputs_digest(10, frame) == reference_digest(10, frame)
