"""Staged: every raw delivery through the catalogue's row gate.

Rows that pass are standardised, typed and written to
``staged.<dept>__<dataset>``; rows that fail go to ``quarantine.rows`` with
their source row, field, check and reason (the offending value masked); exact
copies are skipped and counted. Each staged row carries keyed digests computed
before encryption: ``_key_pid`` (its business key), ``_row_digest`` (its values) and
one person pseudonym ``_pid_<field>`` per field ``catalog.authority.pid_fields`` names
(the subject's citizen ID or mobile: the same value for the same person in every
department). A staged table from before a field had its ``_pid_`` column gains it
(``ALTER TABLE … ADD COLUMN``) and it is filled for the rows already there, their values
decrypted for the audited purpose ``master_index`` (:func:`ensure_staged_table`).
Against what is already staged, a delivery is met per the
catalogue's ``update_mode`` (``quality.keys``): the staged rows of the
delivery's keys are looked up by ``_key_pid`` (a semi-join in the lake, not the
whole table), compared digest to digest, never decrypted; a newer version
replaces the staged row (DELETE + INSERT), a snapshot withdraws the keys it no
longer carries. One transaction per delivery with its stage account (a new delivery's
landing in it too: :func:`stage_with_landing`), so per delivery:

    rows delivered = rows staged + rows quarantined (at raw and at the gate)
                     + rows skipped (exact copies, in the delivery or of a staged row)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import duckdb
import polars as pl

from catalog.authority import pid_column, pid_fields
from catalog.model import Catalogue, Dataset, FieldType, UpdateMode
from lakehouse.lake import METADATA, ensure_table, insert_frame, registered, transaction
from masking.pseudonym import normalise_expr
from pipelines.ingest.ledger import QUARANTINE_SCHEMA, Landed, now
from pipelines.ingest.prefetch import pending_of
from pipelines.ingest.raw import (
    Account,
    UnreadableDelivery,
    failed_delivery,
    insert_delivery,
    load_delivery,
    mapped_batches,
    raw_table,
)
from pipelines.killpoints import kill_point, register
from pipelines.protection import Protection
from quality.keys import ARRIVED, CURSOR, KEY_PID, ROW_DIGEST, Reconciled, reconcile
from quality.standardise import DTYPES

T = TypeVar("T")

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
        *((pid_column(f.name), "VARCHAR") for f in pid_fields(dataset)),
    ]
    for f in dataset.fields:
        sensitive = encrypted and f.level.sensitive
        cols.append((f.name, "VARCHAR" if sensitive else DUCK_TYPES[f.type]))
    return cols


def ensure_staged_table(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    dataset: Dataset,
    protection: Protection,
    encrypted: bool = True,
) -> tuple[str, int]:
    """The staged table of the dataset, created, or given the columns the catalogue added;
    an existing table's new ``_pid_`` columns filled for its rows (:func:`fill_pids`).
    Returns the table's name and the rows filled. Inside the caller's transaction or not."""
    name = raw_table(dept, dataset)
    added = add_pid_columns(con, name, dataset, encrypted)
    filled = fill_pids(con, name, dataset, protection, added) if added else 0
    return name, filled


def add_pid_columns(
    con: duckdb.DuckDBPyConnection, name: str, dataset: Dataset, encrypted: bool = True
) -> list[str]:
    """Create ``staged.<name>`` or give it the columns it lacks; the ``_pid_`` columns an
    existing table lacked (their rows are null until filled) are returned. A new table gets
    them too (``ALTER TABLE`` in the same transaction), its rows are none."""
    columns = staged_columns(dataset, encrypted)
    pids = {pid_column(f.name) for f in pid_fields(dataset)}
    # first without the _pid_ columns, so a table from before them is told apart
    ensure_table(con, "staged", name, [c for c in columns if c[0] not in pids])
    have = {d[0] for d in con.execute(f'SELECT * FROM staged."{name}" LIMIT 0').description}
    added = [(c, kind) for c, kind in columns if c in pids and c not in have]
    for column, kind in added:
        con.execute(f'ALTER TABLE staged."{name}" ADD COLUMN "{column}" {kind}')
    return [c for c, _ in added]


def staged_without_pids(con: duckdb.DuckDBPyConnection, cat: Catalogue) -> set[tuple[str, str]]:
    """(dept, dataset) of the committed staged tables lacking a ``_pid_`` column their
    dataset has now (a table from before the columns, or a field that gained a concept):
    what a run stages even with no delivery to gate, so :func:`stage_dataset` adds and fills
    them. One read of DuckLake's catalogue, not a probe per table."""
    rows = con.execute(
        f"SELECT t.table_name, c.column_name FROM {METADATA}.ducklake_column c "
        f"JOIN {METADATA}.ducklake_table t USING (table_id) "
        f"JOIN {METADATA}.ducklake_schema s USING (schema_id) "
        "WHERE s.schema_name = 'staged' AND c.parent_column IS NULL AND c.end_snapshot IS NULL "
        "AND t.end_snapshot IS NULL AND s.end_snapshot IS NULL"
    ).fetchall()
    have: dict[str, set[str]] = {}
    for table, column in rows:
        have.setdefault(table, set()).add(column)
    out = set()
    for dept, ds in cat.datasets():
        held = have.get(raw_table(dept.code, ds))
        if held is not None and any(pid_column(f.name) not in held for f in pid_fields(ds)):
            out.add((dept.code, ds.code))
    return out


def fill_pids(
    con: duckdb.DuckDBPyConnection,
    name: str,
    dataset: Dataset,
    protection: Protection,
    columns: list[str],
) -> int:
    """Compute the ``_pid_`` ``columns`` of every row of ``staged.<name>`` that has a value
    for their field: the values decrypted for ``master_index`` (audited), pseudonymised as
    at staging, written back by row (``_delivery_id``, ``_source_row``). Rows filled."""
    fields = [f for f in pid_fields(dataset) if pid_column(f.name) in columns]
    if not fields:
        return 0
    lineage = ["_delivery_id", "_source_row", KEY_PID]
    any_value = " OR ".join(f'"{f.name}" IS NOT NULL' for f in fields)
    select = ", ".join(f'"{c}"' for c in [*lineage, *(f.name for f in fields)])
    frame = con.execute(f'SELECT {select} FROM staged."{name}" WHERE {any_value}').pl()
    if frame.height == 0:
        return 0
    plain = protection.reveal(frame, dataset, "master_index")
    filled = plain.select(*lineage, *protection.person_pids(plain, dataset)).select(
        *lineage, *(pid_column(f.name) for f in fields)
    )
    del plain, frame
    view = "_stage_pids"
    sets = ", ".join(f'"{pid_column(f.name)}" = v."{pid_column(f.name)}"' for f in fields)
    match = " AND ".join(f's."{c}" IS NOT DISTINCT FROM v."{c}"' for c in lineage)
    with registered(con, view, filled.to_arrow()):
        con.execute(f'UPDATE staged."{name}" AS s SET {sets} FROM "{view}" v WHERE {match}')
    return filled.height


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


def unstaged(
    con: duckdb.DuckDBPyConnection, dept: str, dataset: str
) -> list[tuple[str, str, dt.datetime]]:
    """(delivery_id, file_name, arrived_at) of raw-loaded deliveries not yet through the gate,
    oldest first."""
    return con.execute(
        """SELECT a.delivery_id, d.file_name, d.arrived_at FROM landing.delivery_accounts a
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
    """The gate's failures as quarantine rows: values masked, keys as pseudonyms; a reason
    quoting a value of a clear column (所属社区 X is not a community of …) masked where X holds
    personal information (a ledger footer's 联系电话：139… in that column)."""
    if q.height == 0:
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    q = q.with_columns(protection.mask_series(q["reason"], "none"))
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


# key fields whose range bounds a delivery's lookup of its staged versions both ways: ordered,
# and written to text for the key's pseudonym as one value is written
_BOUNDING = (FieldType.datetime, FieldType.date, FieldType.integer)
Bound = tuple[str, str, object, object | None]  # field, DuckDB type, least, greatest (None: open)


def key_bounds(frame: pl.DataFrame, dataset: Dataset) -> list[Bound]:
    """(field, DuckDB type, least, greatest) of each key field of ``frame`` (standardised,
    plaintext) that bounds where its keys' staged versions can lie: a field stored in the
    clear (not sensitive), typed as standardised and null in no row. A staged row shares a
    row's ``_key_pid`` only when each key field's text, normalised as a pseudonym's is, is
    the same (the pseudonym is of that text: ``masking.pseudonym.key_text``, injective), so:

    - a datetime, date or integer (its text is its value) lies within the field's range in
      ``frame``;
    - a string with no PII kind (normalised by :func:`masking.pseudonym.normalise_expr`
      alone: full-width forms and U+3000 made half-width, ends trimmed) is, as stored, never
      below the least of ``frame``'s normalised values: normalising only lowers a text in
      byte order (a full-width form's UTF-8 is above every ASCII byte; the standardiser
      stores strings trimmed, so no leading space is dropped), hence greatest is None. A
      dataset's event ids that grow with time (a door's ``MJ20261120…``) prune every older
      day's file; two spellings of one value both stay in.

    DuckLake skips every data file whose statistics for the field lie outside. An event
    dataset grows by a file a delivery, and without the range each delivery read every
    file's keys (measured: 60 days of 50,000 readings, 0.2-0.3 s a delivery, 5 ms with it)."""
    out: list[Bound] = []
    for name in dataset.key:
        f = dataset.field(name)
        if f.level.sensitive or name not in frame.columns:
            continue
        values = frame[name]
        if values.is_empty() or values.dtype != DTYPES[f.type] or values.null_count():
            continue
        if f.type in _BOUNDING:
            out.append((name, DUCK_TYPES[f.type], values.min(), values.max()))
        elif f.type is FieldType.string and f.pii.value == "none":
            least = frame.select(normalise_expr(pl.col(name), None).min()).item()
            out.append((name, "VARCHAR", least, None))
    return out


def staged_versions(
    con: duckdb.DuckDBPyConnection,
    name: str,
    dataset: Dataset,
    keys: pl.Series,
    bounds: Sequence[Bound] = (),
) -> pl.DataFrame:
    """The staged rows of ``keys`` (a semi-join in the lake), with their delivery's arrival;
    ``bounds`` (:func:`key_bounds` of the rows the keys are of) keep the read to the data
    files the keys can be in."""
    cursor = f', s."{dataset.update_cursor}" AS {CURSOR}' if dataset.update_cursor else ""
    view = "_stage_keys"
    within, params = "", []
    for field, kind, least, greatest in bounds:
        within += f' AND s."{field}" >= CAST(? AS {kind})'
        params.append(least)
        if greatest is not None:
            within += f' AND s."{field}" <= CAST(? AS {kind})'
            params.append(greatest)
    with registered(con, view, pl.DataFrame({KEY_PID: keys.drop_nulls().unique()}).to_arrow()):
        return con.execute(
            f"""SELECT s.{KEY_PID}, s.{ROW_DIGEST}, s._delivery_id, s._source_row,
                       d.arrived_at AS {ARRIVED}{cursor}
                FROM staged."{name}" s
                LEFT JOIN (SELECT delivery_id, max(arrived_at) AS arrived_at
                           FROM landing.deliveries GROUP BY delivery_id) d
                  ON d.delivery_id = s._delivery_id
                WHERE s.{KEY_PID} IN (SELECT {KEY_PID} FROM "{view}"){within}""",
            params,
        ).pl()


def _no_versions(incoming: pl.DataFrame, dataset: Dataset) -> pl.DataFrame:
    """:func:`staged_versions` of a staged table known to be empty: no rows, its columns
    (the cursor typed as the delivery's, as a read is cast before it is met)."""
    schema = {
        KEY_PID: pl.String,
        ROW_DIGEST: pl.String,
        "_delivery_id": pl.String,
        "_source_row": pl.Int64,
        ARRIVED: pl.Datetime("us", "UTC"),
    }
    if dataset.update_cursor:
        schema[CURSOR] = incoming.schema[CURSOR]
    return pl.DataFrame(schema=schema)


def _arrival(con: duckdb.DuckDBPyConnection, delivery_id: str) -> dt.datetime | None:
    row = con.execute(
        "SELECT max(arrived_at) FROM landing.deliveries WHERE delivery_id = ?", [delivery_id]
    ).fetchone()
    return row[0] if row else None


def _delete_keys(con: duckdb.DuckDBPyConnection, name: str, keys: pl.Series, *, keep: bool) -> int:
    """Delete the staged rows of ``keys`` (``keep``: of every other key); rows deleted."""
    view = "_stage_delete"
    with registered(con, view, pl.DataFrame({KEY_PID: keys.drop_nulls().unique()}).to_arrow()):
        where = (
            f'{KEY_PID} IS NULL OR {KEY_PID} NOT IN (SELECT {KEY_PID} FROM "{view}")'
            if keep
            else f'{KEY_PID} IN (SELECT {KEY_PID} FROM "{view}")'
        )
        row = con.execute(f'DELETE FROM staged."{name}" WHERE {where}').fetchone()
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
    arrived_at: dt.datetime | None = None,
) -> StageAccount:
    """One raw delivery through the gate and against staged: all of it in one lake transaction
    (its reads too: the lake's snapshot and catalogue are loaded once, and the staged
    table, when a run did not make it before its steps, is created in the delivery's own
    commit). ``arrived_at``: when the delivery landed, if the caller has it
    (:func:`unstaged` does; else it is read). Deliveries read into raw by an earlier run
    (or by ``deliveries retry``) come this way; a run's new ones are read and gated in one
    transaction (:func:`load_and_stage_delivery`)."""
    with transaction(con):
        table = raw_table(dept, dataset)
        read = f'SELECT * FROM raw."{table}" WHERE _delivery_id = ? ORDER BY _source_row'
        # no local holds the frames: the ciphertext goes once decrypted, the plaintext
        # once the gate is done with it (a large delivery's memory)
        account = gate_delivery(
            con,
            dept,
            dataset,
            delivery_id,
            file_name,
            protection,
            protection.reveal_text(con.execute(read, [delivery_id]).pl(), dataset, "quality_gate"),
            arrived_at,
        )
    kill_point("staged.committed")
    return account


def gate_delivery(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    dataset: Dataset,
    delivery_id: str,
    file_name: str,
    protection: Protection,
    raw: pl.DataFrame,
    arrived_at: dt.datetime | None = None,
    *,
    staged_empty: bool = False,
    raw_quarantine: list[pl.DataFrame] | None = None,
) -> StageAccount:
    """Inside the caller's transaction: one delivery's plaintext raw rows (``raw``: lineage
    and the catalogue's fields as text, in source order) through the gate and against
    staged — the staged rows, their quarantine and the stage account inserted.
    ``staged_empty``: the caller knows the staged table holds no row (the ledger says so:
    ``pipelines.ingest.ledger.pending``), so it is not read for versions nor deleted from
    (reading an empty DuckLake table costs ~25 ms). ``raw_quarantine``: the rows the
    delivery's raw read quarantined, inserted with the gate's (one insert, not two)."""
    from quality.gate import gate

    result = gate(raw, dataset)
    kill_point("staged.gated")
    passed = result.staged.with_columns(
        protection.key_pid(result.staged, dataset).alias(KEY_PID),
        protection.row_digest(result.staged, dataset).alias(ROW_DIGEST),
        *protection.person_pids(result.staged, dataset),
    )
    name, _ = ensure_staged_table(con, dept, dataset, protection)
    incoming = passed.select(
        "_source_row",
        KEY_PID,
        ROW_DIGEST,
        *([pl.col(dataset.update_cursor).alias(CURSOR)] if dataset.update_cursor else []),
    )
    known = (
        _no_versions(incoming, dataset)
        if staged_empty
        else staged_versions(
            con, name, dataset, incoming[KEY_PID], key_bounds(result.staged, dataset)
        )
    )
    if dataset.update_cursor and known.height:
        known = known.with_columns(pl.col(CURSOR).cast(incoming.schema[CURSOR]))
    arrival = arrived_at if arrived_at is not None else _arrival(con, delivery_id)
    met: Reconciled = reconcile(incoming, known, dataset, arrival)
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
                passed.filter(pl.col("_source_row").is_in(met.skipped["_source_row"].implode()))[
                    KEY_PID
                ],
                quarantine["key_pid"].rename(KEY_PID),
            ]
        )
        keep = carried.filter(~carried.is_in(staged[KEY_PID].implode()))
    deleted = 0
    if staged_empty:  # nothing staged to replace or withdraw
        pass
    elif dataset.update_mode is UpdateMode.snapshot and rows_in:  # empty: withdraws nothing
        deleted = _delete_keys(con, name, keep, keep=True)
    elif met.replace_keys.len():
        deleted = _delete_keys(con, name, met.replace_keys, keep=False)
    repairs = tuple(result.repairs.iter_rows())
    # the gated rows' plaintext goes before the writes: only their protected copy is written
    # (at 200,000 residents the staged inserts stood on both, and were the ingest's highs)
    del result, passed, incoming
    insert_frame(con, "staged", name, staged)
    insert_frame(con, "quarantine", "rows", pl.concat([*(raw_quarantine or ()), quarantine]))
    con.execute(
        "INSERT INTO landing.stage_accounts (delivery_id, dept, dataset, stage, rows_in, "
        "rows_out, rows_quarantined, accounted_at, rows_skipped) VALUES (?,?,?,?,?,?,?,?,?)",
        [delivery_id, dept, dataset.code, "staged", rows_in, staged.height,
         n_quarantined, now(), n_skipped],
    )  # fmt: skip
    kill_point("staged.before_commit")
    account = StageAccount(
        delivery_id, rows_in, staged.height, n_quarantined, n_skipped,
        rows_replaced=replaced, rows_withdrawn=max(0, deleted - replaced),
        repairs=repairs,
    )  # fmt: skip
    assert account.balances, f"{dataset.code}: stage account of {delivery_id} does not balance"
    return account


def _plaintext(kept: list[pl.DataFrame], dataset: Dataset) -> pl.DataFrame:
    """The delivery's plaintext batches as one frame in source order (as the gate reads raw
    back: ``ORDER BY _source_row``; a delivery of no rows as raw's empty columns); the list
    emptied, so only the frame holds them."""
    if not kept:
        lineage = {"_delivery_id": pl.String, "_source_row": pl.Int64}
        return pl.DataFrame(
            schema={
                **lineage,
                "_loaded_at": pl.Datetime("us", "UTC"),
                **{f.name: pl.String for f in dataset.fields},
            }
        )
    frame = pl.concat(kept)
    kept.clear()
    return frame.sort("_source_row", maintain_order=True)


def read_and_gate(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    dataset: Dataset,
    d: Landed,
    protection: Protection,
    *,
    staged_empty: bool = False,
    progress: list[str] | None = None,
) -> tuple[Account, StageAccount]:
    """Inside the caller's transaction: one landed delivery read into raw (its batches
    encrypted and inserted while their plaintext is kept) and gated from that plaintext
    (:func:`gate_delivery`). Raises :class:`UnreadableDelivery` for a delivery that cannot
    be read, and whatever the gate raises; ``progress`` gets ``"raw"`` once raw holds the
    delivery's rows (the caller's fallback tells a failed read from a failed gate)."""
    kept: list[pl.DataFrame] = []
    raw_quarantine: list[pl.DataFrame] = []
    try:
        batches = mapped_batches(dataset, d)
        first = next(batches, None)
        kill_point("raw.parsed")
        account = insert_delivery(
            con, dept, dataset, d, batches, first, protection.protect, kept, raw_quarantine
        )
        del first, batches
        kill_point("raw.before_commit")
        if progress is not None:
            progress.append("raw")
        staged = gate_delivery(
            con,
            dept,
            dataset,
            d.delivery_id,
            d.file_name,
            protection,
            _plaintext(kept, dataset),
            d.arrived_at,
            staged_empty=staged_empty,
            raw_quarantine=raw_quarantine,
        )
    finally:
        kept.clear()  # a failed delivery's plaintext goes at once
    return account, staged


def load_and_stage_delivery(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    dataset: Dataset,
    d: Landed,
    protection: Protection,
    *,
    staged_empty: bool = False,
) -> tuple[Account, StageAccount | None]:
    """One landed delivery read into raw and through the gate in ONE lake transaction
    (:func:`read_and_gate`), rather than committed, read back and decrypted, and committed
    again.
    One commit and one load of DuckLake's catalogue a delivery, and the same rows,
    quarantine and accounts as :func:`load_delivery` then :func:`stage_delivery`.

    A delivery that cannot be read is accounted failed (no stage account). Should the gate
    raise, the transaction rolls back and the delivery is read into raw alone
    (:func:`load_delivery`, committed), then the error goes on: the gate's failure is the
    step's, as when raw and staged were two transactions."""
    progress: list[str] = []
    try:
        with transaction(con):
            account, staged = read_and_gate(
                con, dept, dataset, d, protection, staged_empty=staged_empty, progress=progress
            )
    except UnreadableDelivery as exc:
        return failed_delivery(con, dept, dataset, d, exc), None
    except Exception:
        if progress:  # the gate failed: raw as before, committed on its own
            load_delivery(con, dept, dataset, d, protection.protect)
        raise
    kill_point("raw.committed")
    kill_point("staged.committed")
    return account, staged


class Loader:
    """Each new delivery landing hands it (``pipelines.ingest.landing``'s ``load``), read
    into raw and gated inside landing's own transaction (:func:`read_and_gate`): one lake
    commit a new delivery — its ledger row, inbox record, raw and staged rows, quarantine
    and accounts — where landing, then reading and gating, made two (each commit costs
    DuckLake a snapshot, and every table read after it its statistics again).

    Should the read or the gate raise, landing rolls its transaction back, lands the
    delivery alone as before and tells the loader (:meth:`fell_back`): the delivery is then
    read the two-transaction way (:func:`load_and_stage_delivery`: an unreadable delivery
    accounted failed; a failed gate leaves raw loaded and raises), so every outcome is the
    one the separate steps gave. After such a fallback the loader reads nothing more: the
    deliveries landed after it are landed alone too and read after it, so the order of
    reading stays the order of arrival. The accounts of what was read and gated here are
    kept once committed (:meth:`committed`), in landing's order."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        dept: str,
        dataset: Dataset,
        protection: Protection,
        staged_empty: bool,
    ) -> None:
        self.con, self.dept, self.dataset, self.protection = con, dept, dataset, protection
        self.staged_empty = staged_empty  # no staged row yet: the gate reads no versions
        self.accounts: list[Account] = []
        self.staged: list[StageAccount] = []
        self.fallbacks = 0  # deliveries landed alone, to be read the two-transaction way
        self._done: tuple[Account, StageAccount] | None = None

    def __call__(self, d: Landed) -> None:
        """Inside landing's transaction: ``d`` read and gated, not committed (nothing after
        a fallback: ``d`` is read after the delivery that fell back)."""
        if self.fallbacks:
            return
        self._done = read_and_gate(
            self.con, self.dept, self.dataset, d, self.protection, staged_empty=self.staged_empty
        )

    def committed(self) -> None:
        """After landing's commit: the delivery's accounts kept."""
        if self._done is None:
            return
        account, staged = self._done
        self._done = None
        self.accounts.append(account)
        self.staged.append(staged)
        self.staged_empty = self.staged_empty and staged.rows_out == 0
        kill_point("raw.committed")
        kill_point("staged.committed")

    def fell_back(self) -> None:
        """Landing rolled the delivery's read back and landed it alone."""
        self._done = None
        self.fallbacks += 1


def _lacks_columns(con: duckdb.DuckDBPyConnection, name: str, dataset: Dataset) -> bool:
    """Whether ``staged.<name>`` exists and lacks a column of :func:`staged_columns` (one
    probe, outside a transaction: a run with nothing to gate commits nothing)."""
    try:
        have = {d[0] for d in con.execute(f'SELECT * FROM staged."{name}" LIMIT 0').description}
    except duckdb.CatalogException:
        return False
    return any(c not in have for c, _ in staged_columns(dataset))


def stage_dataset(
    con: duckdb.DuckDBPyConnection, dept: str, dataset: Dataset, protection: Protection
) -> list[StageAccount]:
    """Put every raw-loaded, not yet staged delivery of the dataset through the gate. With
    none, a staged table from before its ``_pid_`` columns still gains them (filled)."""
    return _stage_pending(con, dept, dataset, protection, unstaged(con, dept, dataset.code))


def _stage_pending(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    dataset: Dataset,
    protection: Protection,
    deliveries: list[tuple[str, str, dt.datetime]],
    probe: bool = True,
) -> list[StageAccount]:
    """The raw-loaded ``deliveries`` (:func:`unstaged`) through the gate; none (and
    ``probe``): a staged table lacking columns gains them."""
    if not deliveries and probe and _lacks_columns(con, raw_table(dept, dataset), dataset):
        with transaction(con):
            ensure_staged_table(con, dept, dataset, protection)
    return [
        stage_delivery(con, dept, dataset, delivery_id, file_name, protection, arrived_at)
        for delivery_id, file_name, arrived_at in deliveries
    ]


def load_and_stage(
    con: duckdb.DuckDBPyConnection, dept: str, dataset: Dataset, protection: Protection
) -> tuple[list[Account], list[StageAccount]]:
    """raw and staged for one dataset: the deliveries an earlier run read into raw but did
    not gate go through the gate (:func:`stage_delivery`), then every landed delivery not
    yet read is read and gated in one transaction each (:func:`load_and_stage_delivery`).
    What is pending is read in one transaction (one load of DuckLake's catalogue). Returns
    the raw accounts and the stage accounts, as :func:`load_raw` then :func:`stage_dataset`
    would."""
    accounts, staged, _ = _load_pending(con, dept, dataset, protection, probe=True)
    return accounts, staged


def _load_pending(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    dataset: Dataset,
    protection: Protection,
    *,
    probe: bool,
) -> tuple[list[Account], list[StageAccount], bool]:
    """:func:`load_and_stage`'s work, and whether the staged table still holds no row;
    ``probe``: with nothing to gate, a staged table lacking columns gains them."""
    todo = pending_of(con, dept, dataset.code)
    unread = todo.unread
    staged = _stage_pending(
        con, dept, dataset, protection, todo.ungated, probe=probe and not unread
    )
    empty = not todo.staged_any and not staged
    accounts = []
    for d in unread:
        account, stage_account = load_and_stage_delivery(
            con, dept, dataset, d, protection, staged_empty=empty
        )
        empty = empty and (stage_account is None or stage_account.rows_out == 0)
        accounts.append(account)
        if stage_account is not None:
            staged.append(stage_account)
    if probe and unread and not staged:  # nothing gated: a staged table lacking columns
        _stage_pending(con, dept, dataset, protection, [])  # gains them
    return accounts, staged, empty


def stage_with_landing(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    dataset: Dataset,
    protection: Protection,
    land_new: Callable[[Loader], T],
) -> tuple[T, list[Account], list[StageAccount]]:
    """A dataset's landing, raw and staged with one lake commit a new delivery: what an
    earlier run left (landed and not read, read and not gated) first, oldest first, as
    :func:`load_and_stage` does; then ``land_new`` lands what is new, handing each new
    delivery to a :class:`Loader` in its own transaction; then any delivery it landed alone
    (a read or gate that raised) the two-transaction way. The order of reading is the order
    of arrival throughout. Returns ``land_new``'s result and the raw and stage accounts."""
    accounts, staged, empty = _load_pending(con, dept, dataset, protection, probe=False)
    loader = Loader(con, dept, dataset, protection, staged_empty=empty)
    landed = land_new(loader)
    accounts += loader.accounts
    staged += loader.staged
    if loader.fallbacks:
        more, more_staged = load_and_stage(con, dept, dataset, protection)
        accounts += more
        staged += more_staged
    elif not staged:  # nothing gated: a staged table lacking columns gains them
        _stage_pending(con, dept, dataset, protection, [])
    return landed, accounts, staged
