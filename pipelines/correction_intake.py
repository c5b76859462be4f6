"""The quality loop's intake of the share service's correction requests (校核纠错).

After the share records are copied (``pipelines.share_records``), each correction on a
department dataset is matched to its record in the staged table, and those the owner did not
reject become consumer disputes of ``quarantine.issues`` (``quality.share_corrections``);
the quality run resolves a dispute when the owner's next delivery changes the field, and its
report counts open and resolved disputes per dataset.

Finding the record: the grantee named it by a granted column's value as its data shows it
(``share_api.feedback``): for a field the grant pseudonymises that has a hub pseudonym in
staged (``_pid_<field>``: a citizen ID, a mobile), the grant shows that pseudonym re-keyed
under the grantee's own key (``share_api.views``), so the same re-keying of the staged
column finds it, with nothing decrypted; for an L1/L2 field shown in clear, the staged value
itself. The record must be one row: a value several rows share (a person's several cases)
names no one record and is not taken in (it stays with the owner as a correction).
"""

from __future__ import annotations

import duckdb
import polars as pl

from catalog.authority import pid_column, pid_fields
from catalog.model import Catalogue
from lakehouse.lake import has_table, insert_frame, registered, transaction
from masking.keys import KeyRing
from masking.pseudonym import pseudonym_key
from pipelines.ingest.raw import raw_table
from quality.corrections import ISSUE_SCHEMA
from quality.keys import KEY_PID
from quality.share_corrections import disputes_from_corrections

KEYS_SCHEMA = {"correction_id": pl.String, "dept": pl.String, "dataset": pl.String,
               "key_pid": pl.String}  # fmt: skip


def _record_values(
    con: duckdb.DuckDBPyConnection, cat: Catalogue, keyring: KeyRing, resource: str,
    column: str, grantee: str,
) -> pl.DataFrame | None:  # fmt: skip
    """``key_pid`` and ``shown`` (the column as the grantee's data shows it) of every staged
    row of ``resource``; None when the column cannot name a record here."""
    dept, ds = cat.dataset(resource)
    table = raw_table(dept.code, ds)
    if not has_table(con, "staged", table) or column not in {f.name for f in ds.fields}:
        return None
    if column in {f.name for f in pid_fields(ds)}:
        frame = con.execute(
            f'SELECT "{KEY_PID}" AS key_pid, "{pid_column(column)}" AS hub FROM staged."{table}"'
        ).pl()
        key = pseudonym_key(keyring, recipient=grantee)
        return frame.select("key_pid", key.expr(pl.col("hub").cast(pl.String)).alias("shown"))
    if ds.field(column).level.sensitive:
        return None  # held as ciphertext: a value in clear cannot have named it
    return con.execute(
        f'SELECT "{KEY_PID}" AS key_pid, CAST("{column}" AS VARCHAR) AS shown FROM staged."{table}"'
    ).pl()


def record_keys(
    con: duckdb.DuckDBPyConnection, cat: Catalogue, keyring: KeyRing, corrections: pl.DataFrame
) -> pl.DataFrame:
    """correction id → dept, dataset, key pseudonym of the one staged row it names."""
    wanted = corrections.filter(~pl.col("resource").str.starts_with("marts."))
    out = []
    groups = wanted.group_by("resource", "record_column", "requester_org")
    for (resource, column, grantee), group in groups:
        values = _record_values(con, cat, keyring, resource, column, grantee)
        if values is None:
            continue
        once = values.group_by("shown").agg(pl.col("key_pid").first(), pl.len().alias("n"))
        found = group.join(once.filter(pl.col("n") == 1), left_on="record", right_on="shown")
        dept, _, dataset = resource.partition(".")
        out.append(found.select(
            "correction_id", pl.lit(dept).alias("dept"), pl.lit(dataset).alias("dataset"),
            "key_pid",
        ))  # fmt: skip
    if not out:
        return pl.DataFrame(schema=KEYS_SCHEMA)
    return pl.concat(out).cast(KEYS_SCHEMA)


def take_in_corrections(
    con: duckdb.DuckDBPyConnection, cat: Catalogue, keyring: KeyRing, corrections: pl.DataFrame
) -> int:
    """Open the disputes the corrections make (see the module doc); how many were opened."""
    if corrections.is_empty():
        return 0
    keys = record_keys(con, cat, keyring, corrections)
    held = None
    if has_table(con, "quarantine", "issues"):
        held = con.execute("SELECT issue_id FROM quarantine.issues").pl()
    new = disputes_from_corrections(corrections, keys, held)
    if new.is_empty():
        return 0
    with transaction(con):
        if held is None:
            with registered(con, "new_issues", new.to_arrow()):
                con.execute("CREATE TABLE quarantine.issues AS SELECT * FROM new_issues")
        else:
            insert_frame(con, "quarantine", "issues", new.select(list(ISSUE_SCHEMA)))
    return new.height
