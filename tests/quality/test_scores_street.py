"""A small simulated street turned into staged-like frames, shared by the quality tests.

``street()`` simulates once per session (cached); ``staged_frames`` builds the frames the
pipelines hand to ``quality`` from the ground truth (field names, FieldType dtypes, lineage
columns) and puts the delivered ``wrong_value`` defects back in.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import lru_cache
from pathlib import Path

import polars as pl

from catalog.loader import get_catalogue
from catalog.model import Catalogue, Dataset, FieldType
from departments.simulate import sim_dir_for
from quality.evaluation import policy_truth
from tests.scratch import scratch_dir

LOADED_AT = dt.datetime(2026, 11, 20, 18, 0, tzinfo=dt.UTC)
START = dt.date(2026, 11, 20)


@lru_cache(maxsize=4)
def street(residents: int = 1500, seed: int = 11) -> Path:
    from departments.simulate import simulate

    home = scratch_dir("quality-street-") / "home"
    simulate(home, residents=residents, seed=seed, days=1, start=START)
    return home


def _cast(col: str, ftype: FieldType) -> pl.Expr:
    c = pl.col(col).cast(pl.String)
    if ftype in (FieldType.string, FieldType.text):
        return c
    if ftype is FieldType.integer:
        return c.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
    if ftype is FieldType.decimal:
        return c.cast(pl.Float64, strict=False)
    if ftype is FieldType.boolean:
        return c.str.to_lowercase().is_in(["true", "1", "是", "yes"])
    if ftype is FieldType.date:
        return c.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    # datetimes: 'YYYY-MM-DD HH:MM:SS' or ISO with +08:00 (IoT): keep the wall clock
    return (
        c.str.slice(0, 19).str.replace("T", " ").str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False)
    )


def delivery_id(dept: str, dataset: str, file: str) -> str:
    return f"{dept}.{dataset}.{file}"


def to_staged(ds: Dataset, dept: str, clean: pl.DataFrame) -> pl.DataFrame:
    """Truth columns (named by source) → staged columns (named and typed per the catalogue)."""
    return clean.select(
        pl.format("{}.{}.{}", pl.lit(dept), pl.lit(ds.code), pl.col("_file")).alias("_delivery_id"),
        pl.col("_source_row").cast(pl.Int64),
        pl.lit(LOADED_AT, dtype=pl.Datetime("us", "UTC")).alias("_loaded_at"),
        *[_cast(f.source_name, f.type).alias(f.name) for f in ds.fields],
    )


def defects(home: Path, dept: str, ds: Dataset, kind: str) -> pl.DataFrame:
    """Defects of one kind with the catalogue field name and the delivery id."""
    path = sim_dir_for(home) / "truth" / dept / ds.code / "defects.parquet"
    names = {f.source_name: f.name for f in ds.fields}
    d = pl.read_parquet(path).filter(pl.col("kind") == kind)
    return d.with_columns(
        pl.col("field").replace_strict(names, default=None).alias("field_name"),
        pl.format("{}.{}.{}", pl.lit(dept), pl.lit(ds.code), pl.col("_file")).alias("delivery_id"),
    )


def staged_frames(
    home: Path, catalogue: Catalogue | None = None, *, wrong_values: bool = True
) -> dict[tuple[str, str], pl.DataFrame]:
    catalogue = catalogue or get_catalogue()
    out = {}
    for dept, ds in catalogue.datasets():
        path = sim_dir_for(home) / "truth" / dept.code / ds.code / "clean.parquet"
        if not path.exists():
            continue
        clean = pl.read_parquet(path)
        # a value the catalogue's rule stages differently from the lost truth (a month-only
        # date as the 1st, an unknown 1900-01-01 as null) is here as the rule stages it
        # (a required value the rule would leave empty keeps its truth: the gate quarantines
        # that row, and these frames stand for a clean street)
        all_defects = pl.read_parquet(path.with_name("defects.parquet"))
        clean = clean.with_columns(pl.col("_source_row").cast(pl.Int64))
        required = [f.source_name for f in ds.fields if f.required and f.source_name in clean]
        truth = clean.select(
            "_file", "_source_row", *[pl.col(c).alias(f"{c}__truth") for c in required]
        )
        clean = (
            policy_truth(clean, all_defects)
            .join(truth, on=["_file", "_source_row"], how="left")
            .with_columns(pl.coalesce(c, f"{c}__truth").alias(c) for c in required)
            .drop(f"{c}__truth" for c in required)
        )
        if wrong_values:
            wrong = defects(home, dept.code, ds, "wrong_value")
            for src in wrong["field"].unique().to_list():
                w = wrong.filter(pl.col("field") == src).select(
                    "_file", "_source_row", pl.col("delivered").alias("_wrong")
                )
                clean = (
                    clean.join(w, on=["_file", "_source_row"], how="left")
                    .with_columns(pl.coalesce("_wrong", pl.col(src).cast(pl.String)).alias(src))
                    .drop("_wrong")
                )
        out[(dept.code, ds.code)] = to_staged(ds, dept.code, clean)
    return out


def manifest(home: Path) -> dict:
    return json.loads((sim_dir_for(home) / "manifest.json").read_text(encoding="utf-8"))


def deliveries_and_accounts(home: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Delivery and account frames as the ledger has them (every read row loaded)."""
    deliveries, accounts = [], []
    for dept, datasets in manifest(home)["departments"].items():
        for code, entry in datasets.items():
            for file, rows in entry["rows"].items():
                did = delivery_id(dept, code, file)
                deliveries.append(
                    {
                        "delivery_id": did,
                        "dept": dept,
                        "dataset": code,
                        "file_name": file,
                        "arrived_at": LOADED_AT - dt.timedelta(minutes=5),
                        "size_bytes": 1000,
                    }
                )
                records = entry["records"][file]
                accounts.append(
                    {
                        "delivery_id": did,
                        "dept": dept,
                        "dataset": code,
                        "status": "loaded",
                        "reason": None,
                        "rows_read": rows,
                        "rows_loaded": records,
                        "rows_quarantined": rows - records,
                        "accounted_at": LOADED_AT,
                    }
                )
    return pl.DataFrame(deliveries), pl.DataFrame(accounts)


EMPTY_QUARANTINE = pl.DataFrame(
    schema={
        "dept": pl.String,
        "dataset": pl.String,
        "delivery_id": pl.String,
        "file_name": pl.String,
        "source_row": pl.Int64,
        "stage": pl.String,
        "field": pl.String,
        "check_name": pl.String,
        "reason": pl.String,
        "value_masked": pl.String,
        "quarantined_at": pl.Datetime("us", "UTC"),
    }
)


def test_staged_frames_are_what_the_gate_stages() -> None:
    """The scores tests take these frames for the staged zone: the production row gate, run
    on the same street's deliveries, stages the same columns and dtypes, and every row it
    stages is here with the same values (the frames also hold, by their truth, the rows
    the gate quarantines)."""
    from test_gate_street import read_raw

    from quality.gate import gate

    home = street()
    frames = staged_frames(home)
    cat = get_catalogue()
    assert set(frames) == {(dept.code, ds.code) for dept, ds in cat.datasets()}
    key = ["_delivery_id", "_source_row"]
    for dept, ds in cat.datasets():
        delivered = read_raw(home, dept.code, ds, manifest(home))
        staged = gate(pl.concat(delivered.values(), how="vertical"), ds).staged
        mine = frames[(dept.code, ds.code)]
        assert staged.schema == mine.schema, ds.code
        assert staged.height > 0, ds.code
        assert staged.join(mine, on=key, how="anti").height == 0, ds.code
        both = staged.join(mine, on=key, suffix="_helper")
        differ = {
            f.name: n
            for f in ds.fields
            if (n := both.filter(pl.col(f.name).ne_missing(pl.col(f"{f.name}_helper"))).height)
        }
        assert differ == {}, ds.code
