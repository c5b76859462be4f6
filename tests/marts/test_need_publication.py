"""The need model's scores and forecast published as marts (marts/publish.py): a frame made
in Python goes out through the mart build — columns and types against the YAML, the values'
masking checked, the residents who refused automated assessment left out, one lake
transaction — and never through a build from the lake alone."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from catalog.marts import load_marts
from lakehouse.lake import current_limit, open_lake
from lakehouse.snapshots import current_snapshot
from marts import publish
from marts.build import MartMaskingError
from marts.lineage import MartError
from marts.need_model.spec import NEEDS
from marts.publish import frame_marts, publish_frame, publish_parts
from pipelines.defs.marts.assets import sql_marts
from tests.mart_street import MartStreet
from tests.streets import copy_home

CUTOFF = dt.date(2026, 11, 30)


def scores(people: list[str], explanation: str = "独居；近30天门禁出入次数下降62%") -> pl.DataFrame:
    """A scores frame as the scoring step hands it over: four needs per resident."""
    rows = [
        {
            "person_id": pid,
            "need": need,
            "need_zh": label,
            "probability": round((i * 7 + j * 3) % 100 / 100, 2),
            "model_version": "need-v3",
            "cutoff": CUTOFF,
            "explanation": explanation,
        }
        for i, pid in enumerate(people)
        for j, (need, label) in enumerate(NEEDS.items())
    ]
    return pl.DataFrame(rows).select(  # another column order than the YAML's
        "need", "person_id", "probability", "need_zh", "cutoff", "model_version", "explanation"
    )


@pytest.fixture
def copy(mart_street: MartStreet, tmp_path: Path):
    return copy_home(mart_street.settings.home, tmp_path)


@pytest.fixture
def people(mart_street: MartStreet) -> list[str]:
    with open_lake(mart_street.settings, read_only=True) as con:
        rows = con.execute(
            "SELECT person_id FROM marts.resident_profile ORDER BY person_id LIMIT 5"
        ).fetchall()
    return [r[0] for r in rows]


def test_scores_are_published_without_the_residents_who_refused(
    mart_street: MartStreet, copy, people: list[str]
) -> None:
    refused = people[1]
    with open_lake(copy) as con:
        done = publish_frame(
            con, mart_street.catalogue, "need_scores", scores(people), leave_out={refused}
        )
        table = con.execute("SELECT * FROM marts.need_scores").pl()
    assert done.left_out == len(NEEDS)
    assert done.build.rows == table.height == (len(people) - 1) * len(NEEDS)
    assert table.columns == load_marts()["need_scores"].column_names
    assert refused not in set(table["person_id"])
    assert set(table["person_id"]) == set(people) - {refused}
    assert set(table["model_version"]) == {"need-v3"} and set(table["cutoff"]) == {CUTOFF}
    assert set(table["need"]) == set(NEEDS)


@pytest.mark.parametrize(
    ("column", "planted"),
    [("explanation", "独居；联系电话13812345678"), ("person_id", "11010519491231002X")],
)
def test_a_value_without_its_rule_is_refused_before_anything_is_written(
    mart_street: MartStreet, copy, people: list[str], column: str, planted: str
) -> None:
    frame = scores(people).with_columns(
        pl.when(pl.col("need") == "home_care").then(pl.lit(planted)).otherwise(pl.col(column))
        .alias(column)
    )  # fmt: skip
    with open_lake(copy) as con:
        before = current_snapshot(con)
        with pytest.raises(MartMaskingError) as refused:
            publish_frame(con, mart_street.catalogue, "need_scores", frame)
        staged = con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()
    assert refused.value.field == column
    assert planted not in str(refused.value) and "13812345678" not in str(refused.value)
    assert staged == (0,)  # the rows handed over are not left in the connection
    with open_lake(copy, read_only=True) as con:
        assert current_snapshot(con) == before  # nothing written to the lake


def test_scores_in_parts_are_published_as_one_frame(
    mart_street: MartStreet, copy, people: list[str]
) -> None:
    """publish_parts (the scoring step's parts as they are made) publishes the rows of one
    frame, in the parts' order; each part's refused residents left out, and a value without
    its rule in a later part refused before anything is written."""
    frame = scores(people).with_columns(pl.Series("probability", [i / 100 for i in range(20)]))
    parts = [frame.slice(0, 7), frame.slice(7, 0), frame.slice(7, 13)]
    refused = people[2]
    with open_lake(copy) as con:
        whole = publish_frame(con, mart_street.catalogue, "need_scores", frame, leave_out={refused})
        one = con.execute("SELECT * FROM marts.need_scores").pl()
        done = publish_parts(
            con, mart_street.catalogue, "need_scores", iter(parts), leave_out={refused}
        )
        parted = con.execute("SELECT * FROM marts.need_scores").pl()
        before = current_snapshot(con)
        planted = frame.slice(14, 6).with_columns(
            pl.lit("联系电话13812345678").alias("explanation")
        )
        with pytest.raises(MartMaskingError):
            publish_parts(con, mart_street.catalogue, "need_scores", [parts[0], planted])
        assert current_snapshot(con) == before
    assert parted.equals(one) and one.height == (len(people) - 1) * len(NEEDS)
    assert one["probability"].to_list() == [
        p for p, pid in zip(frame["probability"], frame["person_id"], strict=True) if pid != refused
    ]
    assert done.left_out == whole.left_out == len(NEEDS) and done.build.rows == one.height


def test_a_frame_with_other_columns_is_refused(mart_street: MartStreet, copy, people) -> None:
    with open_lake(copy) as con, pytest.raises(MartError, match="probability"):
        publish_frame(con, mart_street.catalogue, "need_scores", scores(people).drop("probability"))
    with open_lake(copy) as con, pytest.raises(MartError, match="made_from"):
        publish_frame(con, mart_street.catalogue, "elderly_care", scores(people))


def test_the_grid_forecast_is_published_with_its_types_checked(
    mart_street: MartStreet, copy
) -> None:
    week = dt.date(2026, 12, 7)
    forecast = pl.DataFrame(
        {
            "grid_code": ["G01", "G01", "G02"],
            "category": ["噪音扰民", "环境卫生", "噪音扰民"],
            "week_start": [week] * 3,
            "expected_appeals": [0.4, 1.25, 0.0],
            "model_version": ["grid-v1"] * 3,
            "cutoff": [CUTOFF] * 3,
        }
    )
    with open_lake(copy) as con:
        done = publish_frame(con, mart_street.catalogue, "grid_demand_forecast", forecast)
        got = con.execute(
            "SELECT sum(expected_appeals) FROM marts.grid_demand_forecast"
        ).fetchone()[0]
        with pytest.raises(MartError, match="expected_appeals"):
            publish_frame(
                con,
                mart_street.catalogue,
                "grid_demand_forecast",
                forecast.with_columns(pl.col("expected_appeals").cast(pl.String)),
            )
    assert done.build.rows == 3 and got == pytest.approx(1.65)


def test_the_model_made_marts_are_not_built_from_the_lake_alone(mart_street) -> None:
    marts = load_marts()
    made = frame_marts(marts)
    assert {"need_scores", "grid_demand_forecast"} <= set(made)
    assert not set(made) & set(sql_marts(marts))
    assert all(n in mart_street.errors for n in made)  # the test street skipped them too


def test_parts_are_staged_within_the_publication_bound_and_spill(
    mart_street: MartStreet, copy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staged rows are held within PUBLISH_MEMORY (what does not fit spills, encrypted,
    under the lake), the lake's own limit restored after; the rows published are the
    parts' rows all the same."""
    monkeypatch.setattr(publish, "PUBLISH_MEMORY", 32 * 2**20)
    rows, n_parts = 30_000, 20  # 600,000 rows of distinct residents: ~60 MB staged
    seen: list[tuple[str, int]] = []

    def parts(con):
        for i in range(n_parts):
            first = i * rows
            ids = pl.Series([f"{first + k:020x}" for k in range(rows)])  # pseudonyms' form
            yield (
                scores(["0" * 20])
                .head(1)
                .select(pl.all().repeat_by(rows).explode())
                .with_columns(person_id=ids, probability=pl.lit(i / 100))
            )
            seen.append(
                con.execute(
                    "SELECT current_setting('memory_limit'), "
                    "(SELECT sum(temporary_storage_bytes) FROM duckdb_memory())"
                ).fetchone()
            )

    with open_lake(copy) as con:
        before = current_limit(con)
        done = publish_parts(con, mart_street.catalogue, "need_scores", parts(con))
        after = current_limit(con)
        table = con.execute(
            "SELECT probability, count(DISTINCT person_id) AS n FROM marts.need_scores "
            "GROUP BY 1 ORDER BY 1"
        ).pl()
    assert after == before != "32.0 MiB"
    assert {limit for limit, _ in seen} == {"32.0 MiB"}
    assert seen[-1][1] > 0  # the staged rows went beyond the bound: spilled
    assert done.build.rows == rows * n_parts
    assert table["n"].to_list() == [rows] * n_parts
