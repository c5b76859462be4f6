"""The curated zone as the curated/* assets build it (``pipelines.curated_run``): in full the
first time, nothing when no staged table changed, only the changed datasets after a new
delivery — and that incremental build equals a full rebuild of the same lake."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from bench.incremental import next_day_delivery
from catalog.loader import load_catalogue
from catalog.settings import Settings
from catalog.street import get_street
from lakehouse.lake import open_lake, tables_in
from lakehouse.snapshots import list_snapshots
from masking.crypto import CIPHERTEXT
from pipelines.curated_run import ZONE, build_curated, curated_summary, last_build
from pipelines.ingest import ingest_dataset
from pipelines.ingest.staged import stage_dataset
from pipelines.protection import Protection
from tests.streets import FAST, copy_home

# stamped with the time of the build that wrote the row, not derived from the data
BUILD_TIMES = {"linked_at", "queued_at", "built_at"}


@pytest.fixture(scope="module")
def street(staged_street: Settings) -> Path:
    """The session's staged street (each test changes a copy)."""
    return staged_street.home


def curated_tables(con) -> dict[str, pl.DataFrame]:
    """Every curated table but the build state, its build-time columns dropped, its rows
    in a canonical order (nested values compared as text)."""
    out = {}
    for _, table in sorted(tables_in(con, ZONE)):
        if table == "build_state":
            continue
        frame = con.execute(f'SELECT * FROM {ZONE}."{table}"').pl()
        frame = frame.drop([c for c in frame.columns if c in BUILD_TIMES])
        # ciphertext takes a new nonce each time it is written: compared by where a value is
        # (the parts' own tests compare their decrypted values with a full rebuild)
        text = [c for c, t in frame.schema.items() if t == pl.String]
        frame = frame.with_columns(
            pl.when(pl.col(c).str.contains(CIPHERTEXT))
            .then(pl.lit("<sealed>"))
            .otherwise(c)
            .alias(c)
            for c in text
        )
        nested = [c for c, t in frame.schema.items() if t.is_nested()]
        frame = frame.with_columns(
            pl.col(c).map_elements(str, return_dtype=pl.String) for c in nested
        )
        out[table] = frame.sort(frame.columns, nulls_last=True)
    return out


def test_full_then_nothing_then_only_what_changed_equal_to_a_rebuild(street, tmp_path):
    settings = copy_home(street, tmp_path)
    cat = load_catalogue()
    place = get_street()
    protection = Protection.from_settings(settings)
    with open_lake(settings) as con:
        assert last_build(con) is None and curated_summary(con) is None
        before = list_snapshots(con)[-1]
        first = build_curated(con, cat, protection, place)
        assert first.full and not first.skipped
        # a first build's tables are made in one commit before its parts: one new schema
        # version of the lake (each reloaded whole by the next statement), not one a part
        made = [s for s in list_snapshots(con) if s.snapshot_id > before.snapshot_id]
        assert len(made) > 5 and {s.schema_version for s in made} == {before.schema_version + 1}
        persons = first.counts["persons"]
        assert persons["exact"] > 0 and persons["persons"] > 0
        assert first.counts["households"]["households"] > 0
        summary = curated_summary(con)
        assert summary["persons"] == persons["persons"] and summary["last_build"] == "full"
        # nothing staged changed: nothing is done, nothing written
        tables = curated_tables(con)
        again = build_curated(con, cat, protection, place)
        assert again.skipped and again.counts == {}
        assert curated_tables(con).keys() == tables.keys()
    # one department's next daily delivery, landed and gated: the day's export again, with
    # one new record (its first row under a new number: a case about a known person)
    dept, dataset, path = next_day_delivery(settings)
    encoding = "utf-8-sig" if path.read_bytes().startswith(b"\xef\xbb\xbf") else "utf-8"
    lines = path.read_text(encoding=encoding).splitlines()
    number, rest = lines[1].split(",", 1)
    path.write_text("\r\n".join([*lines, f"{number}N,{rest}"]) + "\r\n", encoding=encoding)
    _, ds = cat.dataset(f"{dept}.{dataset}")
    with open_lake(settings) as con:
        ingest_dataset(con, settings, dept, ds, policy=FAST)
        accounts = stage_dataset(con, dept, ds, protection)
        assert sum(a.rows_out for a in accounts) >= 1  # the new record at least
        update = build_curated(con, cat, protection, place)
        assert not update.full and update.changed == {(dept, dataset)}
        assert curated_summary(con)["last_build"] == "incremental"
        incremental = curated_tables(con)
        rebuilt = build_curated(con, cat, protection, place, full=True)
        assert rebuilt.full
        full = curated_tables(con)
    assert incremental.keys() == full.keys()
    for table, frame in full.items():
        mine = incremental[table]
        differ = [c for c in frame.columns if not mine[c].equals(frame[c])]
        assert not differ, f"curated.{table} differs from a full rebuild in {differ}"
