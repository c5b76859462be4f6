"""No feature peeks past its cut-off: the features computed on the need street's whole lake
equal those computed on a copy where every record dated after the cut-off was removed (the
lake as it stood then) — and a feature query deliberately reading 30 days past the cut-off,
run through the same check, is caught."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest

from catalog.model import Catalogue, FieldType
from curated.golden import as_of_field, staged_table
from lakehouse.lake import has_table, open_lake, transaction
from marts.need_model.features import features, read_feature_sql
from pipelines.protection import Protection
from tests.need_street import NeedStreet
from tests.streets import copy_home

LEAK = ('CAST(e."at" AS DATE) <= $cutoff', 'CAST(e."at" AS DATE) <= $cutoff + INTERVAL 30 DAY')


def truncate(con: duckdb.DuckDBPyConnection, catalogue: Catalogue, cutoff: dt.date) -> None:
    """Remove from the lake every record dated after ``cutoff``: staged rows by their dating
    field (the golden records' rule, ``as_of_field``), attribute history runs begun after it
    (and the runs they ended made current again), events after it."""
    with transaction(con):
        for dept, ds in catalogue.datasets():
            field = as_of_field(ds)
            table = staged_table(dept.code, ds)
            if field is None or not has_table(con, "staged", f"{dept.code}__{ds.code}"):
                continue
            kind = ds.field(field).type
            day = f'CAST("{field}" AS DATE)' if kind is FieldType.datetime else f'"{field}"'
            con.execute(f"DELETE FROM {table} WHERE {day} > ?", [cutoff])
        con.execute("DELETE FROM curated.person_attribute_history WHERE valid_from > ?", [cutoff])
        con.execute(
            "UPDATE curated.person_attribute_history SET valid_to = NULL WHERE valid_to > ?",
            [cutoff],
        )
        con.execute(
            'DELETE FROM curated.event WHERE coalesce(day, CAST("at" AS DATE)) > ?', [cutoff]
        )


def peeking_columns(whole: pl.DataFrame, then: pl.DataFrame) -> list[str]:
    """The feature columns whose values differ between the two frames (rows by key)."""
    if whole.height != then.height or not whole["person_id"].equals(then["person_id"]):
        return ["person_id"]
    return [c for c in whole.columns if not whole[c].equals(then[c], check_names=True)]


@pytest.fixture(scope="module")
def truncated(need_street: NeedStreet, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the need street truncated at its middle cut-off: (cut-off, settings)."""
    cutoff = need_street.cutoffs[len(need_street.cutoffs) // 2]
    settings = copy_home(need_street.home, Path(tmp_path_factory.mktemp("truncated")))
    with open_lake(settings) as con:
        truncate(con, need_street.catalogue, cutoff)
    return cutoff, settings


def features_on(settings, cutoff: dt.date, sql: str | None = None) -> pl.DataFrame:
    protection = Protection.from_settings(settings, actor="test:leakage")
    with open_lake(settings, read_only=True) as con:
        return features(con, protection, cutoff, sql=sql)


def test_truncation_removed_records_after_the_cutoff(need_street: NeedStreet, truncated):
    cutoff, settings = truncated
    sql = 'SELECT count(*) FROM curated.event WHERE CAST("at" AS DATE) > ?'
    assert need_street.query(sql, [cutoff]).item() > 0
    with open_lake(settings, read_only=True) as con:
        assert con.execute(sql, [cutoff]).fetchone()[0] == 0


def test_no_feature_reads_after_its_cutoff(need_street: NeedStreet, truncated):
    cutoff, settings = truncated
    whole = need_street.features.filter(pl.col("cutoff") == cutoff)
    assert whole.height > 500
    assert peeking_columns(whole, features_on(settings, cutoff)) == []
    # and the stored features are those computed now on the whole lake
    assert peeking_columns(whole, features_on(need_street.settings, cutoff)) == []


def test_a_planted_leak_is_caught(need_street: NeedStreet, truncated):
    """The appeal counts read 30 days past the cut-off: the check names them (and the count
    against the grid cell's, computed from them)."""
    cutoff, settings = truncated
    honest = read_feature_sql()
    assert honest.count(LEAK[0]) == 1
    leaky = honest.replace(*LEAK)
    whole = features_on(need_street.settings, cutoff, leaky)
    then = features_on(settings, cutoff, leaky)
    assert set(peeking_columns(whole, then)) == {
        "appeals_90d",
        "appeals_365d",
        "appeals_90d_vs_grid",
    }


def test_a_record_loaded_after_the_cutoff_is_not_known_at_it(need_street: NeedStreet, tmp_path):
    """A health check dated before a cut-off but delivered after it (a later load than the
    dataset's first) is not read at that cut-off; at a cut-off after its load it is."""
    settings = copy_home(need_street.home, tmp_path)
    past, today = need_street.cutoffs[len(need_street.cutoffs) // 2], dt.datetime.now(dt.UTC).date()
    # scored at both cut-offs (pseudonyms differ from build to build: the first by id alone
    # may be someone not yet, or no longer, in the scored population)
    scored = set(features_on(need_street.settings, past)["person_id"].to_list()) & set(
        features_on(need_street.settings, today)["person_id"].to_list()
    )
    with open_lake(settings) as con:
        candidates = con.execute(  # residents without a check in the 5 days up to `past`
            "SELECT m.person_id, min(m.key_pid) FROM curated.person_mentions AS m "
            "JOIN staged.wjw__elderly_health_checks AS s ON s._key_pid = m.key_pid "
            "WHERE m.dept = 'wjw' AND m.dataset = 'elderly_health_checks' GROUP BY ALL "
            "HAVING NOT bool_or(s.check_date BETWEEN ? AND ?) ORDER BY 1",
            [past - dt.timedelta(days=5), past],
        ).fetchall()
        person, key = next((p, k) for p, k in candidates if p in scored)
        with transaction(con):
            # the day of the load itself (a test that began before midnight UTC and loads
            # after it would otherwise load after the end of its `today`)
            loaded = con.execute("SELECT now()").fetchone()[0]
            today = loaded.astimezone(dt.UTC).date()
            con.execute(
                "INSERT INTO staged.wjw__elderly_health_checks (_key_pid, _loaded_at, check_date) "
                "VALUES (?, ?, ?), (?, ?, ?)",
                [
                    key,
                    loaded,
                    past - dt.timedelta(days=3),
                    key,
                    loaded,
                    today - dt.timedelta(days=2),
                ],
            )
    mine = pl.col("person_id") == person
    whole = features_on(need_street.settings, past).filter(mine)
    late = features_on(settings, past).filter(mine)
    assert whole.height == 1 and peeking_columns(whole, late) == []
    assert features_on(settings, today).filter(mine)["days_since_health_check"].item() == 2
    # read without the load-time rule, the late record shows at the past cut-off
    checks = "known_records('wjw', 'elderly_health_checks', $known_by)"
    unruly = read_feature_sql().replace(checks, "linked_records('wjw', 'elderly_health_checks')")
    assert unruly.count("linked_records") == 1
    peeked = features_on(settings, past, unruly).filter(mine)
    assert peeked["days_since_health_check"].item() == 3
