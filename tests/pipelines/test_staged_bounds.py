"""A delivery's lookup of its staged versions reads only the data files its keys can be in.

A dataset keyed by a time (a sensor's readings: device and time) grows by a data file a
delivery; the staged rows of a delivery's keys can only lie where the key's time field lies
within the delivery's range (``pipelines.ingest.staged.key_bounds``), so the lookup
(``staged_versions``) gives DuckLake that range and it skips the other files. Shown here on
a staged table of one file a day: the lookup finds exactly what the unbounded one finds
(the newest day's keys, an old day's keys re-sent), and with the older days' files deleted
from disk it still answers for the newest day's keys, where the unbounded lookup must open
them and fails. A dataset keyed by a text (event ids numbered by day) is bounded from below
by the least of the delivery's ids as normalised for their pseudonym: every spelling of an
id staged earlier is still found (a full-width one sorts above its ASCII text), and the
older days' files lying wholly below are skipped.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from bench.staged_lookup import keyed_dataset
from catalog.identifiers import FULL_TO_HALF
from catalog.model import Dataset, FieldType
from catalog.settings import Settings
from lakehouse.lake import insert_frame, open_lake, transaction
from masking.keys import KeyRing
from pipelines.ingest.ledger import ensure_ledger
from pipelines.ingest.staged import ensure_staged_table, key_bounds, staged_versions
from pipelines.protection import Protection, key_pids
from quality.keys import KEY_PID, ROW_DIGEST
from quality.standardise import DTYPES
from tests.streets import copy_home

DAYS, PER_DAY = 4, 50
FIRST = dt.datetime(2026, 11, 1)


def shipped(kind: str) -> tuple[str, Dataset, str]:
    """(dept, dataset, key field) of a shipped dataset keyed by a datetime (``time``) or a
    text (``text``) in the clear, found as the staged-lookup bench finds it."""
    found = keyed_dataset(kind)
    assert found is not None, f"no dataset of the shipped catalogue is keyed by a clear {kind}"
    return found


def day_rows(ds: Dataset, field: str, day: int) -> pl.DataFrame:
    """A day's staged rows: the key's time field within the day, a key pseudonym each (the
    first and last of the day spanning the whole range of pseudonyms, so that no file is
    skipped for its pseudonyms' range alone)."""
    start = FIRST + dt.timedelta(days=day)
    keys = [f"{day:02d}{i:018x}" for i in range(PER_DAY)]
    keys[0], keys[-1] = f"0{day}".ljust(20, "0"), f"f{day}".ljust(20, "f")
    return pl.DataFrame(
        {
            KEY_PID: keys,
            ROW_DIGEST: [f"d{day}-{i}" for i in range(PER_DAY)],
            "_delivery_id": [f"delivery-{day}"] * PER_DAY,
            "_source_row": list(range(PER_DAY)),
            field: [start + dt.timedelta(minutes=i) for i in range(PER_DAY)],
        },
        schema_overrides={field: DTYPES[FieldType.datetime]},
    )


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str, Dataset, str]:
    """A lake whose staged table of the timed dataset holds one data file a day."""
    settings = Settings(home=tmp_path_factory.mktemp("bounds") / "home").ensure_dirs()
    dept, ds, field = shipped("time")
    with open_lake(settings) as con:
        ensure_ledger(con)
        name, _ = ensure_staged_table(con, dept, ds, Protection.from_settings(settings))
        for day in range(DAYS):
            with transaction(con):  # a delivery's commit: a file of its own
                insert_frame(con, "staged", name, day_rows(ds, field, day))
    return settings, name, ds, field


def lookup(con, name: str, ds: Dataset, rows: pl.DataFrame, bounded: bool) -> pl.DataFrame:
    bounds = key_bounds(rows, ds) if bounded else []
    return staged_versions(con, name, ds, rows[KEY_PID], bounds).sort(KEY_PID)


def test_bounds_are_the_clear_ordered_key_fields_and_need_every_value() -> None:
    _, ds, field = shipped("time")
    rows = pl.concat([day_rows(ds, field, 2), day_rows(ds, field, 0)])
    assert key_bounds(rows, ds) == [
        (field, "TIMESTAMP", FIRST, FIRST + dt.timedelta(days=2, minutes=PER_DAY - 1))
    ]
    # a null value, a value typed otherwise than standardised, no row, the field absent:
    # the key's staged rows could lie anywhere, so no bound
    with_null = rows.with_columns(pl.when(pl.col("_source_row") == 3).then(pl.col(field)))
    as_text = rows.with_columns(pl.col(field).cast(pl.String))
    for frame in (with_null, as_text, rows.clear(), rows.drop(field)):
        assert key_bounds(frame, ds) == []
    # a string key field bounds from below only (its values are normalised before their
    # pseudonym): the tests of text keys below
    assert all(ds.field(f).type is not FieldType.string for f, *_ in key_bounds(rows, ds))


def test_a_bounded_lookup_finds_what_the_whole_table_holds(staged) -> None:
    settings, name, ds, field = staged
    newest = day_rows(ds, field, DAYS - 1)
    resent = day_rows(ds, field, 1).head(5)  # an old day's rows delivered again
    unknown = newest.with_columns(pl.col(KEY_PID).str.replace("^.", "9"))  # keys never staged
    staged_keys = set(pl.concat([day_rows(ds, field, d) for d in range(DAYS)])[KEY_PID])
    with open_lake(settings, read_only=True) as con:
        for rows in (newest, resent, pl.concat([newest, resent]), unknown):
            found = lookup(con, name, ds, rows, bounded=True)
            assert found.equals(lookup(con, name, ds, rows, bounded=False))
            assert found[KEY_PID].to_list() == sorted(set(rows[KEY_PID]) & staged_keys)
        assert lookup(con, name, ds, resent, bounded=True)["_delivery_id"].unique().to_list() == [
            "delivery-1"
        ]


def test_the_older_days_files_are_not_opened(staged, tmp_path: Path) -> None:
    settings, name, ds, field = staged
    copy = copy_home(settings.home_abs, tmp_path)
    with open_lake(copy, read_only=True) as con:
        files = con.execute(
            f"SELECT data_file FROM ducklake_list_files('lake', '{name}', schema => 'staged')"
        ).fetchall()
        by_day = {}
        for (path,) in files:
            day = con.execute(f"SELECT min(\"{field}\") FROM read_parquet('{path}')").fetchone()[0]
            by_day[(day - FIRST).days] = Path(path)
    assert sorted(by_day) == list(range(DAYS)), "one data file a day"
    for day in range(DAYS - 1):
        by_day[day].unlink()
    newest = day_rows(ds, field, DAYS - 1)
    with open_lake(copy, read_only=True) as con:
        found = lookup(con, name, ds, newest, bounded=True)
        assert found[KEY_PID].to_list() == sorted(newest[KEY_PID])
        with pytest.raises(duckdb.Error):  # the unbounded lookup opens every day's file
            lookup(con, name, ds, newest, bounded=False)
    shutil.rmtree(copy.home_abs)


# -- keys of text: event ids that grow with time ----------------------------------------------


_TO_FULL = str.maketrans({half: full for full, half in FULL_TO_HALF.items()})


def fullwidth(text: str) -> str:
    """``text`` spelled in full-width forms (what the pseudonym's half-width undoes)."""
    return text.translate(_TO_FULL)


def event_rows(ds: Dataset, field: str, ring: KeyRing, day: int, ids: list[str]) -> pl.DataFrame:
    """Staged rows of a day's events: the ids as stored, their key pseudonyms as staging
    computes them (of the normalised text: a full-width spelling shares its pseudonym)."""
    frame = pl.DataFrame({field: ids})
    return frame.with_columns(
        key_pids(frame, ds, ring).alias(KEY_PID),
        pl.lit(f"digest-{day}").alias(ROW_DIGEST),
        pl.lit(f"delivery-{day}").alias("_delivery_id"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_source_row"),
    )


def day_ids(day: int) -> list[str]:
    return [f"MJ202611{day + 1:02d}{i:07d}" for i in range(PER_DAY)]


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory):
    """A lake whose staged events hold one data file a day; day 1's first id was stored in
    its full-width spelling, day 2's last with a trailing space (an older export's)."""
    settings = Settings(home=tmp_path_factory.mktemp("text_bounds") / "home").ensure_dirs()
    dept, ds, field = shipped("text")
    protection = Protection.from_settings(settings)
    stored = {d: day_ids(d) for d in range(DAYS)}
    stored[1][0] = fullwidth(stored[1][0])
    stored[2][-1] += " "
    with open_lake(settings) as con:
        ensure_ledger(con)
        name, _ = ensure_staged_table(con, dept, ds, protection)
        for day in range(DAYS):
            with transaction(con):
                rows = event_rows(ds, field, protection.keyring, day, stored[day])
                insert_frame(con, "staged", name, rows)
    return settings, name, ds, field, protection.keyring


def test_a_text_key_bounds_from_below_by_its_normalised_least() -> None:
    _, ds, field = shipped("text")
    spelled = fullwidth("MJ202611010000001")
    rows = pl.DataFrame({field: ["MJ202611020000003", spelled, "MJ202611030000000"]})
    # the least as normalised (the full-width spelling is its ASCII text), no upper bound
    assert key_bounds(rows, ds) == [(field, "VARCHAR", "MJ202611010000001", None)]
    for frame in (rows.clear(), rows.with_columns(pl.lit(None, pl.String).alias(field))):
        assert key_bounds(frame, ds) == []


def test_a_text_keyed_lookup_finds_every_spelling_and_skips_older_days(events, tmp_path) -> None:
    settings, name, ds, field, ring = events
    delivered = {d: event_rows(ds, field, ring, d, day_ids(d)) for d in range(DAYS)}
    newest = delivered[DAYS - 1]
    # ids staged in another spelling delivered again
    resent = pl.concat([delivered[1].head(2), delivered[2].tail(2)])
    # day 0's id delivered again in its full-width spelling: found under its ASCII one
    spelled = event_rows(ds, field, ring, 0, [fullwidth(day_ids(0)[5])])
    with open_lake(settings, read_only=True) as con:
        for rows in (newest, resent, pl.concat([newest, resent]), spelled):
            found = lookup(con, name, ds, rows, bounded=True)
            assert found.equals(lookup(con, name, ds, rows, bounded=False))
            assert found[KEY_PID].to_list() == sorted(set(rows[KEY_PID]))
        stored = con.execute(f'SELECT "{field}" FROM staged."{name}"').pl()[field]
    assert stored.str.contains("Ｍ").sum() == 1 and stored.str.ends_with(" ").sum() == 1
    # the older days' files whose every id lies below the newest day's deleted: its ids still
    # found, the whole table not. Day 1's file stays: its full-width id sorts above them all
    # (it may be any day's id spelled so), so the bound cannot rule that file out
    copy = copy_home(settings.home_abs, tmp_path)
    least = day_ids(DAYS - 1)[0]
    with open_lake(copy, read_only=True) as con:
        files = con.execute(
            f"SELECT data_file FROM ducklake_list_files('lake', '{name}', schema => 'staged')"
        ).fetchall()
        below = []
        for (path,) in files:
            top = con.execute(f"SELECT max(\"{field}\") FROM read_parquet('{path}')").fetchone()
            if top[0] < least:
                below.append(Path(path))
        assert (len(files), len(below)) == (DAYS, DAYS - 2)  # days 0 and 2
        for path in below:
            path.unlink()
        found = lookup(con, name, ds, newest, bounded=True)
        assert found[KEY_PID].to_list() == sorted(newest[KEY_PID])
        with pytest.raises(duckdb.Error):
            lookup(con, name, ds, newest, bounded=False)
    shutil.rmtree(copy.home_abs)
