"""What the last quality scorecard read, so that the next scores only what changed since.

``marts.quality_state`` (one row per dataset scored) records the lake's snapshot when the
scorecard started, a digest of each dataset's rows in the quarantine, the delivery
accounts and the deliveries, its weight (staged rows), and a digest of the catalogue and
the scoring version. :func:`previous_scorecard` reads it back with the last scorecard's
rows and names the datasets to score again: those whose staged table a later snapshot
changed (DuckLake's own record of each snapshot's changes), whose digest differs, or
whose authority or person register changed (``quality.scores.rescored``). :func:`kept`
gives a dataset nothing changed for its rows of the last scorecard, with timeliness and
freshness judged again. No usable state (first run, another catalogue or scoring
version, an expired snapshot): None, and every dataset is scored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import duckdb
import polars as pl

from catalog.model import Catalogue
from lakehouse.lake import ALIAS, METADATA, tables_in
from pipelines.ingest.raw import raw_table

Key = tuple[str, str]
# bump when a score, an expectation or a disagreement is computed differently: the next
# scorecard then scores every dataset again instead of keeping the last one's rows
SCORING_VERSION = "2026-11-30.1"
STATE_TABLE = "quality_state"  # in marts
# the ledger and quarantine tables whose rows of a dataset feed its scores
DIGESTED = ("quarantine.rows", "landing.delivery_accounts", "landing.deliveries")


@dataclass
class Previous:
    """What the last scorecard wrote, kept for the datasets nothing changed for."""

    scorecard: pl.DataFrame
    expectations: pl.DataFrame
    disagreements: pl.DataFrame
    weights: dict[Key, int]


@dataclass
class ReadState:
    """What this scorecard reads: the lake's snapshot at its start, each dataset's digest
    of its quarantine/accounts/deliveries rows, the catalogue-and-version digest."""

    snapshot: int | None
    digests: dict[Key, str]
    version: str


def digest(text: str) -> str:
    """A short digest of ``text`` in letters only: no run of digits in the lake that a leak
    scan would have to tell from a phone or an ID number."""
    hexed = hashlib.sha256(text.encode()).hexdigest()[:32]
    return hexed.translate(str.maketrans("0123456789", "ghijklmnop"))


def scoring_version(cat: Catalogue) -> str:
    text = json.dumps(cat.as_dict(), sort_keys=True, default=str) + SCORING_VERSION
    return digest(text + pl.__version__)


def read_state(con: duckdb.DuckDBPyConnection, cat: Catalogue) -> ReadState:
    snapshot = con.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()
    digests: dict[Key, list[str]] = {}
    for table in DIGESTED:  # every row of the dataset, whatever its columns: order-free
        rows = con.execute(
            f"SELECT dept, dataset, count(*), sum(hash(t)::HUGEINT) FROM {table} t GROUP BY ALL"
        ).fetchall()
        for dept, dataset, n, total in rows:
            digests.setdefault((dept, dataset), []).append(f"{table}:{n}:{total}")
    return ReadState(
        snapshot=int(snapshot[0]) if snapshot else None,
        digests={k: digest("|".join(sorted(v))) for k, v in digests.items()},
        version=scoring_version(cat),
    )


def touched_staged(con: duckdb.DuckDBPyConnection, cat: Catalogue, since: int) -> set[Key] | None:
    """Datasets whose staged table any snapshot after ``since`` changed (created, inserted
    into, deleted from, compacted, altered, dropped: any change that names its id or its
    name), or None when ``since`` is no longer on record (expired: changes unknown)."""
    if not con.execute(
        f"SELECT count(*) FROM {ALIAS}.snapshots() WHERE snapshot_id = ?", [since]
    ).fetchone()[0]:
        return None
    named: set[str] = set()
    for (changes,) in con.execute(
        f"SELECT changes FROM {ALIAS}.snapshots() WHERE snapshot_id > ?", [since]
    ).fetchall():
        for values in (changes or {}).values():
            named |= {str(v) for v in values or []}
    if not named:
        return set()
    ids = dict(
        con.execute(
            f"SELECT t.table_name, t.table_id FROM {METADATA}.ducklake_table t "
            f"JOIN {METADATA}.ducklake_schema s USING (schema_id) "
            "WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL "
            "AND s.schema_name = 'staged'"
        ).fetchall()
    )
    out: set[Key] = set()
    for dept, ds in cat.datasets():
        name = raw_table(dept.code, ds)
        if f"staged.{name}" in named or (name in ids and str(ids[name]) in named):
            out.add((dept.code, ds.code))
    return out


def previous_scorecard(
    con: duckdb.DuckDBPyConnection,
    cat: Catalogue,
    read: ReadState,
    tables: set[tuple[str, str]] | None = None,
) -> tuple[Previous, set[Key]] | None:
    """The last scorecard's rows and the datasets to score again, or None (score all).
    ``tables``: the lake's (zone, table) as the caller read them (``tables_in``), so the
    catalogue is not read again for them."""
    tables = tables_in(con) if tables is None else tables
    marts = {t for z, t in tables if z == "marts"}
    if STATE_TABLE not in marts or "quality_scorecard" not in marts:
        return None
    state = con.execute(f"SELECT * FROM marts.{STATE_TABLE}").pl()
    if state.is_empty() or state["version"].n_unique() != 1 or state["version"][0] != read.version:
        return None
    since, computed_at = state["snapshot_id"][0], state["computed_at"][0]
    scorecard = con.execute("SELECT * FROM marts.quality_scorecard").pl()
    if since is None or scorecard.is_empty() or scorecard["computed_at"].max() != computed_at:
        return None  # the scorecard on record is not the one the state describes
    touched = touched_staged(con, cat, int(since))
    if touched is None:
        return None
    expectations = pl.DataFrame()
    if "quality_expectations" in marts:
        expectations = con.execute(
            "SELECT * FROM marts.quality_expectations WHERE run_at = ?", [computed_at]
        ).pl()
    disagreements = pl.DataFrame()
    if ("quarantine", "disagreements") in tables:
        disagreements = con.execute("SELECT * FROM quarantine.disagreements").pl()
    before = {(r["dept"], r["dataset"]): r for r in state.iter_rows(named=True)}
    changed = {
        k
        for k in read.digests.keys() | before.keys()
        if read.digests.get(k) != (before[k]["inputs_digest"] if k in before else None)
    }
    scored = set(scorecard.filter(pl.col("dataset") != "*").select("dept", "dataset").iter_rows())
    from quality.scores import rescored

    keys = {(d.code, ds.code) for d, ds in cat.datasets()}
    rescore = rescored(cat, touched, changed, also=keys - (scored & before.keys()))
    previous = Previous(
        scorecard=scorecard,
        expectations=expectations,
        disagreements=disagreements,
        weights={k: int(r["weight"]) for k, r in before.items()},
    )
    return previous, rescore


@dataclass
class Kept:
    rows: list[dict]
    weight: int
    disagreements: pl.DataFrame
    expectations: pl.DataFrame | None


def kept(
    cat: Catalogue, key: Key, previous: Previous, deliveries: pl.DataFrame, now: dt.datetime
) -> Kept:
    """A dataset nothing changed for: its rows of the last scorecard, timeliness and
    freshness judged again at ``now``."""
    from quality.expectations import refresh_expectations
    from quality.scores import DIMENSIONS, timeliness_row

    _, ds = cat.dataset(f"{key[0]}.{key[1]}")
    mine = (pl.col("dept") == key[0]) & (pl.col("dataset") == key[1])
    old = {
        r["dimension"]: r
        for r in previous.scorecard.filter(mine).drop("computed_at").iter_rows(named=True)
    }
    old["timeliness"] = timeliness_row(cat, key, deliveries, now)
    expectations = None
    if previous.expectations.height:
        before = previous.expectations.filter(mine)
        if before.height:
            newest = deliveries.filter(mine)["arrived_at"].max() if deliveries.height else None
            expectations = refresh_expectations(before, ds, newest_delivery_at=newest, now=now)
    disagreements = (
        previous.disagreements.filter(mine) if previous.disagreements.height else pl.DataFrame()
    )
    return Kept(
        rows=[old[d] for d in DIMENSIONS if d in old],
        weight=previous.weights.get(key, 0),
        disagreements=disagreements,
        expectations=expectations,
    )


def state_frame(
    read: ReadState | None, weights: dict[Key, int], now: dt.datetime
) -> pl.DataFrame | None:
    """marts.quality_state for this scorecard (None: its reads were not recorded)."""
    if read is None:
        return None
    return pl.DataFrame(
        {
            "dept": [k[0] for k in weights],
            "dataset": [k[1] for k in weights],
            "weight": [int(w) for w in weights.values()],
            "inputs_digest": [read.digests.get(k) for k in weights],
            "snapshot_id": [read.snapshot] * len(weights),
            "version": [read.version] * len(weights),
            "computed_at": [now] * len(weights),
        },
        schema={
            "dept": pl.String,
            "dataset": pl.String,
            "weight": pl.Int64,
            "inputs_digest": pl.String,
            "snapshot_id": pl.Int64,
            "version": pl.String,
            "computed_at": pl.Datetime("us", "UTC"),
        },
    )
