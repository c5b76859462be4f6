"""Staged: every raw delivery through the catalogue's row gate.

Rows that pass are standardised, typed and written to
``staged.<dept>__<dataset>``; rows that fail go to ``quarantine.rows`` with
their source row, field, check and reason (the offending value masked). One
transaction per delivery with its stage account, so per delivery:

    rows delivered = rows staged + rows quarantined (at raw and at the gate)
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from catalog.model import Dataset, FieldType
from lakehouse.lake import ensure_table, insert_frame
from pipelines.ingest.ledger import QUARANTINE_SCHEMA, now
from pipelines.ingest.raw import raw_table
from pipelines.protection import Protection

DUCK_TYPES = {
    FieldType.string: "VARCHAR",
    FieldType.text: "VARCHAR",
    FieldType.integer: "BIGINT",
    FieldType.decimal: "DOUBLE",
    FieldType.boolean: "BOOLEAN",
    FieldType.date: "DATE",
    FieldType.datetime: "TIMESTAMP",
}


def staged_columns(dataset: Dataset, encrypted: bool = True) -> list[tuple[str, str]]:
    """(name, DuckDB type) of the staged table; sensitive columns hold ciphertext text."""
    cols = [
        ("_delivery_id", "VARCHAR"),
        ("_source_row", "BIGINT"),
        ("_loaded_at", "TIMESTAMPTZ"),
        ("_staged_at", "TIMESTAMPTZ"),
        ("_key_pid", "VARCHAR"),
    ]
    for f in dataset.fields:
        sensitive = encrypted and f.level.rank >= 3
        cols.append((f.name, "VARCHAR" if sensitive else DUCK_TYPES[f.type]))
    return cols


def ensure_staged_table(
    con: duckdb.DuckDBPyConnection, dept: str, dataset: Dataset, encrypted: bool
) -> str:
    name = raw_table(dept, dataset)
    ensure_table(con, "staged", name, staged_columns(dataset, encrypted))
    return name


@dataclass(frozen=True)
class StageAccount:
    delivery_id: str
    rows_in: int
    rows_out: int
    rows_quarantined: int

    @property
    def balances(self) -> bool:
        return self.rows_in == self.rows_out + self.rows_quarantined


def unstaged(con: duckdb.DuckDBPyConnection, dept: str, dataset: str) -> list[tuple[str, str]]:
    """(delivery_id, file_name) of raw-loaded deliveries not yet through the gate."""
    return con.execute(
        """SELECT a.delivery_id, d.file_name FROM landing.delivery_accounts a
           JOIN landing.deliveries d USING (delivery_id)
           WHERE a.dept=? AND a.dataset=? AND a.status='loaded' AND NOT EXISTS (
               SELECT 1 FROM landing.stage_accounts s
               WHERE s.delivery_id = a.delivery_id AND s.stage = 'staged')
           ORDER BY d.arrived_at, d.file_name""",
        [dept, dataset],
    ).fetchall()


def _quarantine(
    q: pl.DataFrame,
    raw: pl.DataFrame,
    dept: str,
    dataset: Dataset,
    file_name: str,
    protection: Protection,
) -> pl.DataFrame:
    """The gate's failures as quarantine rows: values masked, keys as pseudonyms."""
    if q.height == 0:
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    pii = {f.name: f.pii.value for f in dataset.fields}
    # mask each field's offending values with that field's display mask, a batch per field
    q = pl.concat(
        [
            g.with_columns(protection.mask_series(g["value"], pii.get(fld or "", "none")))
            for (fld,), g in q.with_row_index("_i").group_by("field", maintain_order=True)
        ]
    ).sort("_i")
    rows = raw.filter(pl.col("_source_row").is_in(q["_source_row"].unique().implode()))
    keys = rows.select("_source_row", protection.key_pid(rows, dataset))
    q = q.join(keys, on="_source_row", how="left")
    return q.select(
        pl.lit(dept).alias("dept"),
        pl.lit(dataset.code).alias("dataset"),
        pl.col("_delivery_id").alias("delivery_id"),
        pl.lit(file_name).alias("file_name"),
        pl.col("_source_row").alias("source_row"),
        pl.lit("staged").alias("stage"),
        "field",
        "check_name",
        "reason",
        pl.col("value").alias("value_masked"),
        "key_pid",
        pl.lit(now()).alias("quarantined_at"),
    ).cast(QUARANTINE_SCHEMA)


def stage_delivery(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    dataset: Dataset,
    delivery_id: str,
    file_name: str,
    protection: Protection,
) -> StageAccount:
    """One raw delivery through the gate: staged rows, quarantine and account in one commit."""
    from quality.gate import gate

    table = raw_table(dept, dataset)
    raw = con.execute(
        f'SELECT * FROM raw."{table}" WHERE _delivery_id = ? ORDER BY _source_row', [delivery_id]
    ).pl()
    raw = protection.reveal_text(raw, dataset, "quality_gate")
    result = gate(raw, dataset)
    staged = result.staged.with_columns(
        pl.lit(now()).alias("_staged_at"),
        protection.key_pid(result.staged, dataset).alias("_key_pid"),
    )
    staged = protection.protect(staged, dataset)
    quarantine = _quarantine(result.quarantine, raw, dept, dataset, file_name, protection)
    n_quarantined = quarantine["source_row"].n_unique() if quarantine.height else 0
    name = ensure_staged_table(con, dept, dataset, encrypted=True)
    con.execute("BEGIN TRANSACTION")
    try:
        insert_frame(con, "staged", name, staged)
        insert_frame(con, "quarantine", "rows", quarantine)
        con.execute(
            "INSERT INTO landing.stage_accounts (delivery_id, dept, dataset, stage, rows_in, "
            "rows_out, rows_quarantined, accounted_at, rows_skipped) VALUES (?,?,?,?,?,?,?,?,?)",
            [delivery_id, dept, dataset.code, "staged", raw.height, staged.height,
             n_quarantined, now(), 0],
        )  # fmt: skip
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return StageAccount(delivery_id, raw.height, staged.height, n_quarantined)


def stage_dataset(
    con: duckdb.DuckDBPyConnection, dept: str, dataset: Dataset, protection: Protection
) -> list[StageAccount]:
    """Put every raw-loaded, not yet staged delivery of the dataset through the gate."""
    return [
        stage_delivery(con, dept, dataset, delivery_id, file_name, protection)
        for delivery_id, file_name in unstaged(con, dept, dataset.code)
    ]
