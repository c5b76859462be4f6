"""Staged: every raw delivery through the catalogue's row gate.

Rows that pass are standardised, typed and written to
``staged.<dept>__<dataset>``; rows that fail go to ``quarantine.rows`` with
their source row, field, check and reason (the offending value masked); exact
copies are skipped and counted. Each staged row carries two keyed digests
computed before encryption: ``_key_pid`` (its business key) and ``_row_digest``
(its values). Against what is already staged, a delivery is met per the
catalogue's ``update_mode`` (``quality.keys``): the staged rows of the
delivery's keys are looked up by ``_key_pid`` (a semi-join in the lake, not the
whole table), compared digest to digest, never decrypted; a newer version
replaces the staged row (DELETE + INSERT), a snapshot withdraws the keys it no
longer carries. One transaction per delivery with its stage account, so per
delivery:

    rows delivered = rows staged + rows quarantined (at raw and at the gate)
                     + rows skipped (exact copies, in the delivery or of a staged row)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import polars as pl

from catalog.model import Dataset, FieldType, UpdateMode
from lakehouse.lake import ensure_table, insert_frame, transaction
from pipelines.ingest.ledger import QUARANTINE_SCHEMA, now
from pipelines.ingest.raw import raw_table
from pipelines.killpoints import kill_point, register
from pipelines.protection import Protection
from quality.keys import ARRIVED, CURSOR, KEY_PID, ROW_DIGEST, Reconciled, reconcile

register("staged.gated", "staged: the gate ran on a delivery, nothing written")
register("staged.before_commit", "staged: rows, quarantine and account inserted, not committed")
register("staged.committed", "staged: a delivery's stage transaction committed")

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
        (KEY_PID, "VARCHAR"),
        (ROW_DIGEST, "VARCHAR"),
    ]
    for f in dataset.fields:
        sensitive = encrypted and f.level.sensitive
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
    rows_skipped: int = 0
    rows_replaced: int = 0  # staged rows of earlier deliveries this one replaced
    rows_withdrawn: int = 0  # snapshot: staged rows whose key this delivery no longer has
    repairs: tuple[tuple[str, str, int], ...] = ()  # (field, kind, values) standardised

    @property
    def balances(self) -> bool:
        return self.rows_in == self.rows_out + self.rows_quarantined + self.rows_skipped


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


def _staged_versions(
    con: duckdb.DuckDBPyConnection, name: str, dataset: Dataset, keys: pl.Series
) -> pl.DataFrame:
    """The staged rows of ``keys`` (a semi-join in the lake), with their delivery's arrival."""
    cursor = f', s."{dataset.update_cursor}" AS {CURSOR}' if dataset.update_cursor else ""
    view = "_stage_keys"
    con.register(view, pl.DataFrame({KEY_PID: keys.drop_nulls().unique()}).to_arrow())
    try:
        return con.execute(
            f"""SELECT s.{KEY_PID}, s.{ROW_DIGEST}, s._delivery_id, s._source_row,
                       d.arrived_at AS {ARRIVED}{cursor}
                FROM staged."{name}" s
                LEFT JOIN (SELECT delivery_id, max(arrived_at) AS arrived_at
                           FROM landing.deliveries GROUP BY delivery_id) d
                  ON d.delivery_id = s._delivery_id
                WHERE s.{KEY_PID} IN (SELECT {KEY_PID} FROM "{view}")"""
        ).pl()
    finally:
        con.unregister(view)


def _arrival(con: duckdb.DuckDBPyConnection, delivery_id: str) -> dt.datetime | None:
    row = con.execute(
        "SELECT max(arrived_at) FROM landing.deliveries WHERE delivery_id = ?", [delivery_id]
    ).fetchone()
    return row[0] if row else None


def _delete_keys(con: duckdb.DuckDBPyConnection, name: str, keys: pl.Series, *, keep: bool) -> int:
    """Delete the staged rows of ``keys`` (``keep``: of every other key); rows deleted."""
    view = "_stage_delete"
    con.register(view, pl.DataFrame({KEY_PID: keys.drop_nulls().unique()}).to_arrow())
    try:
        where = (
            f'{KEY_PID} IS NULL OR {KEY_PID} NOT IN (SELECT {KEY_PID} FROM "{view}")'
            if keep
            else f'{KEY_PID} IN (SELECT {KEY_PID} FROM "{view}")'
        )
        row = con.execute(f'DELETE FROM staged."{name}" WHERE {where}').fetchone()
    finally:
        con.unregister(view)
    return int(row[0]) if row else 0


def _as_quarantine(outcome: pl.DataFrame, delivery_id: str) -> pl.DataFrame:
    """``quality.keys`` outcomes in the gate's quarantine shape (no cell value to show)."""
    return outcome.select(
        pl.lit(delivery_id).alias("_delivery_id"),
        "_source_row",
        "field",
        "check_name",
        "reason",
        pl.lit(None, dtype=pl.String).alias("value"),
    )


def stage_delivery(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    dataset: Dataset,
    delivery_id: str,
    file_name: str,
    protection: Protection,
) -> StageAccount:
    """One raw delivery through the gate and against staged: all of it in one lake transaction
    (its reads too: the lake's snapshot and catalogue are loaded once, and the staged
    table, when new, is created in the delivery's own commit)."""
    from quality.gate import gate

    with transaction(con):
        table = raw_table(dept, dataset)
        raw = con.execute(
            f'SELECT * FROM raw."{table}" WHERE _delivery_id = ? ORDER BY _source_row',
            [delivery_id],
        ).pl()
        raw = protection.reveal_text(raw, dataset, "quality_gate")
        result = gate(raw, dataset)
        kill_point("staged.gated")
        passed = result.staged.with_columns(
            protection.key_pid(result.staged, dataset).alias(KEY_PID),
            protection.row_digest(result.staged, dataset).alias(ROW_DIGEST),
        )
        name = ensure_staged_table(con, dept, dataset, encrypted=True)
        incoming = passed.select(
            "_source_row",
            KEY_PID,
            ROW_DIGEST,
            *([pl.col(dataset.update_cursor).alias(CURSOR)] if dataset.update_cursor else []),
        )
        known = _staged_versions(con, name, dataset, incoming[KEY_PID])
        if dataset.update_cursor and known.height:
            known = known.with_columns(pl.col(CURSOR).cast(incoming.schema[CURSOR]))
        met: Reconciled = reconcile(incoming, known, dataset, _arrival(con, delivery_id))
        gate_q = pl.concat(
            [result.quarantine, _as_quarantine(met.quarantine, delivery_id)], how="vertical_relaxed"
        )
        quarantine = _quarantine(gate_q, raw, dept, dataset, file_name, protection)
        rows_in = raw.height
        del raw  # the delivery's plaintext is not needed past here (a large delivery's memory)
        staged = passed.filter(pl.col("_source_row").is_in(met.stage.implode())).with_columns(
            pl.lit(now()).alias("_staged_at")
        )
        staged = protection.protect(staged, dataset)
        n_quarantined = quarantine["source_row"].n_unique() if quarantine.height else 0
        n_skipped = result.skipped.height + met.skipped.height
        replaced = int(known.filter(pl.col(KEY_PID).is_in(met.replace_keys.implode())).height)
        if dataset.update_mode is UpdateMode.snapshot:
            # the keys this delivery carries but did not stage anew keep their staged row
            carried = pl.concat(
                [
                    passed.filter(
                        pl.col("_source_row").is_in(met.skipped["_source_row"].implode())
                    )[KEY_PID],
                    quarantine["key_pid"].rename(KEY_PID),
                ]
            )
            keep = carried.filter(~carried.is_in(staged[KEY_PID].implode()))
        deleted = 0
        if dataset.update_mode is UpdateMode.snapshot and rows_in:  # empty: withdraws nothing
            deleted = _delete_keys(con, name, keep, keep=True)
        elif met.replace_keys.len():
            deleted = _delete_keys(con, name, met.replace_keys, keep=False)
        insert_frame(con, "staged", name, staged)
        insert_frame(con, "quarantine", "rows", quarantine)
        con.execute(
            "INSERT INTO landing.stage_accounts (delivery_id, dept, dataset, stage, rows_in, "
            "rows_out, rows_quarantined, accounted_at, rows_skipped) VALUES (?,?,?,?,?,?,?,?,?)",
            [delivery_id, dept, dataset.code, "staged", rows_in, staged.height,
             n_quarantined, now(), n_skipped],
        )  # fmt: skip
        kill_point("staged.before_commit")
    kill_point("staged.committed")
    account = StageAccount(
        delivery_id, rows_in, staged.height, n_quarantined, n_skipped,
        rows_replaced=replaced, rows_withdrawn=max(0, deleted - replaced),
        repairs=tuple(result.repairs.iter_rows()),
    )  # fmt: skip
    assert account.balances, f"{dataset.code}: stage account of {delivery_id} does not balance"
    return account


def stage_dataset(
    con: duckdb.DuckDBPyConnection, dept: str, dataset: Dataset, protection: Protection
) -> list[StageAccount]:
    """Put every raw-loaded, not yet staged delivery of the dataset through the gate."""
    return [
        stage_delivery(con, dept, dataset, delivery_id, file_name, protection)
        for delivery_id, file_name in unstaged(con, dept, dataset.code)
    ]
