"""The simulator's truth behind what a mart counts: each staged record of a dataset joined
to its clean row (``<sim>/truth/<dept>/<dataset>/``), by the delivered file and source row
as the row gate's figures are (``quality.evaluation.matched_files``).

A mart test computes its figures from these truth rows (the values the department meant to
deliver, before any dirt) for exactly the records the lake staged, so a record the gate
quarantined is left out on both sides; that every record the lake lacks was spoilt beyond
repair is checked apart (:func:`assert_staged_as_delivered`). Boundary cases a simulated
street may happen not to hold are planted in a copy of it (:func:`built_with_events`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from catalog.model import Catalogue, Dataset
from curated.events import event_datasets
from curated.houses import concept_field, staged_name
from lakehouse.lake import open_lake
from marts.build import build_mart
from pipelines.protection import Protection
from quality.evaluation import matched_files, read_manifest
from tests.streets import copy_home

TRUTH = "truth"


def clean_rows(sim_dir: Path, dept: str, code: str) -> pl.DataFrame:
    """The simulator's clean rows of one dataset (every record it delivered, undirtied)."""
    return pl.read_parquet(Path(sim_dir) / TRUTH / dept / code / "clean.parquet")


def header(ds: Dataset, name: str) -> str:
    """The column a catalogue field has in the delivery (and in the truth): its raw header."""
    field = ds.field(name)
    return field.source or field.name


def concept_column(rows: pl.DataFrame, ds: Dataset, concept: str) -> pl.Series:
    """The truth's column of the dataset's field carrying ``concept``."""
    return rows[header(ds, concept_field(ds, concept))]


def events_with(cat: Catalogue, concept: str) -> list[tuple[str, Dataset]]:
    """(dept, dataset) of the event datasets with a field of ``concept``."""
    return [(d, ds) for d, ds in event_datasets(cat) if concept_field(ds, concept)]


def staged_truth(
    con: duckdb.DuckDBPyConnection, sim_dir: Path, dept: str, ds: Dataset
) -> pl.DataFrame:
    """``key_pid`` and the clean row of every staged record of ``dept.ds`` the simulator
    delivered (its truth columns as the department's raw headers)."""
    manifest = read_manifest(sim_dir)
    assert manifest is not None, "no simulator manifest"
    deliveries = con.execute(
        "SELECT delivery_id, dept, dataset, sha256, source FROM landing.deliveries "
        "WHERE dept = ? AND dataset = ?",
        [dept, ds.code],
    ).pl()
    files = matched_files(manifest, deliveries)
    rows = con.execute(
        f"SELECT _key_pid AS key_pid, _delivery_id, _source_row "
        f'FROM staged."{staged_name(dept, ds)}"'
    ).pl()
    located = rows.filter(pl.col("_delivery_id").is_in(list(files))).with_columns(
        pl.col("_delivery_id").replace_strict(files, default=None).alias("_file")
    )
    clean = clean_rows(sim_dir, dept, ds.code)
    return located.join(clean, on=["_file", "_source_row"], how="inner").drop("_delivery_id")


def coverage(con: duckdb.DuckDBPyConnection, sim_dir: Path, dept: str, ds: Dataset) -> float:
    """Share of the truth's records (distinct business keys) the lake staged."""
    staged = staged_truth(con, sim_dir, dept, ds)
    clean = clean_rows(sim_dir, dept, ds.code)
    return staged["_key"].n_unique() / clean["_key"].n_unique()


def unexplained_losses(
    con: duckdb.DuckDBPyConnection, sim_dir: Path, dept: str, ds: Dataset
) -> pl.DataFrame:
    """The truth's records (``_file, _source_row, _key``) the lake did not stage although the
    simulator spoilt none of their cells beyond repair (no unrecoverable defect in
    ``defects.parquet``): a record lost for no reason. Should be none."""
    staged = staged_truth(con, sim_dir, dept, ds).select("_key")
    defects = pl.read_parquet(Path(sim_dir) / TRUTH / dept / ds.code / "defects.parquet")
    spoilt = defects.filter(~pl.col("recoverable")).select("_file", "_source_row").unique()
    lost = clean_rows(sim_dir, dept, ds.code).join(staged, on="_key", how="anti")
    return lost.join(spoilt, on=["_file", "_source_row"], how="anti").select(
        "_file", "_source_row", "_key"
    )


def assert_staged_as_delivered(
    con: duckdb.DuckDBPyConnection, sim_dir: Path, datasets: list[tuple[str, Dataset]]
) -> None:
    """Each dataset a mart counts: what the lake lacks of the truth, the gate refused for a
    cell spoilt beyond repair, and that is a small part of it."""
    for dept, ds in datasets:
        share = coverage(con, sim_dir, dept, ds)
        print(f"{dept}.{ds.code}: {share:.1%} of the truth's records staged")
        assert unexplained_losses(con, sim_dir, dept, ds).height == 0, (dept, ds.code)
        assert share >= 0.8, (dept, ds.code)


def mart_and_truth(
    street, name: str, concept: str, true_rows: Callable[..., pl.DataFrame]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``marts.<name>`` of the session's street (``mart_street``, tests/mart_street.py) and
    ``true_rows(con, sim_dir, catalogue)``: the truth of the records it counts, the event
    datasets with a field of ``concept`` (checked staged as delivered)."""
    cat = street.catalogue
    mart = street.table(name)
    with open_lake(street.settings, read_only=True) as con:
        truth = true_rows(con, street.sim_dir, cat)
        assert_staged_as_delivered(con, street.sim_dir, events_with(cat, concept))
    return mart, truth


def nearest_cell(lon: pl.Series, lat: pl.Series, cells: pl.DataFrame) -> pl.Series:
    """The code of the grid cell whose centre is nearest each point on the ground (a degree
    of longitude is cos(latitude) of a degree of latitude); ``cells``: ``code, lon, lat`` of
    the truth's cell centres. The grid is regular, so the nearest centre is the cell the
    point lies in. Null where a coordinate is."""
    x = lon.cast(pl.Float64).to_numpy()[:, None]
    y = lat.cast(pl.Float64).to_numpy()[:, None]
    cx = cells["lon"].cast(pl.Float64).to_numpy()[None, :]
    cy = cells["lat"].cast(pl.Float64).to_numpy()[None, :]
    scale = np.cos(np.radians(np.mean(cy)))
    dist = ((x - cx) * scale) ** 2 + (y - cy) ** 2
    known = ~(np.isnan(x[:, 0]) | np.isnan(y[:, 0]))
    best = np.where(known, np.argmin(np.nan_to_num(dist, nan=np.inf), axis=1), -1)
    codes = cells["code"].to_list()
    return pl.Series([codes[i] if i >= 0 else None for i in best], dtype=pl.String)


def when(values: pl.Series) -> pl.Series:
    """The truth's timestamps (text ``YYYY-MM-DD HH:MM:SS``) as datetimes; blank → null."""
    return values.str.strip_chars().str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False)


def assert_figures(
    mart: pl.DataFrame, truth: pl.DataFrame, key: list[str], places: dict[str, int]
) -> None:
    """The mart's rows are the truth's: the same columns in the same order, the same keys,
    every other column equal — exactly, or for a column of ``places`` within the rounding
    the mart publishes it with (``places`` decimals; both null where the truth has no
    value)."""
    assert mart.columns == truth.columns
    assert mart.select(key).is_unique().all()
    assert sorted(mart.select(key).rows(), key=str) == sorted(truth.select(key).rows(), key=str)
    joined = mart.join(truth, on=key, how="inner", suffix="_truth", nulls_equal=True)
    for column in truth.columns:
        if column in key:
            continue
        got, want = joined[column], joined[f"{column}_truth"]
        assert (got.is_null() == want.is_null()).all(), column
        if column in places:
            gap = (got.cast(pl.Float64) - want.cast(pl.Float64)).abs().drop_nulls()
            assert gap.max() is None or gap.max() <= 0.5 * 10 ** -places[column] + 1e-9, column
        else:
            assert got.eq_missing(want.cast(got.dtype)).all(), column


def built_with_events(street, tmp_path: Path, name: str, events: list[dict]) -> pl.DataFrame:
    """``marts.<name>`` built (``marts.build.build_mart``) on a copy of the session's street
    whose ``curated.event`` also holds the planted ``events`` (columns they leave out null):
    a boundary case the simulated street may happen not to hold."""
    settings = copy_home(street.home, tmp_path)
    planted = pl.DataFrame(events)
    columns = ", ".join(f'"{c}"' for c in planted.columns)
    with open_lake(settings) as con:
        con.register("planted", planted.to_arrow())
        con.execute(f"INSERT INTO curated.event ({columns}) SELECT {columns} FROM planted")
        con.unregister("planted")
        protection = Protection.from_settings(settings, actor="test:marts")
        build_mart(con, street.catalogue, street.marts, name, protection)
        return con.execute(f'SELECT * FROM marts."{name}"').pl()
