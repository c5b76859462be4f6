"""The lake against the simulator's ground truth (simulated streets only).

:func:`evaluate_against_truth` reads the lake for ``quality.evaluation`` — one part of
one staged table at a time (:func:`staged_parts`), the quarantine, the deliveries — and
judges only the datasets whose rows changed since the last evaluation: each dataset's
figures are kept in ``state/truth_evaluation.json`` with a digest of what they were
judged on (its staged rows' identities and row digests, its quarantined rows, the
delivered files judged, the simulator's manifest). A run after one department's daily
delivery judges that dataset again and takes the others' figures as they were, which
are the figures a full evaluation gives (every figure is a count over one dataset's
rows). The file holds counts and letter-only digests, never a value.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import duckdb
import polars as pl

from catalog.model import Catalogue, Dataset
from catalog.settings import Settings
from lakehouse.lake import open_lake, tables_in, transaction
from pipelines.ingest.raw import raw_table
from pipelines.memory import trim_heap
from pipelines.protection import KEY_PID, Protection
from pipelines.quality_state import digest
from quality.evaluation import (
    LINK_TRUTH,
    MANIFEST_FILE,
    Evaluation,
    StagedPart,
    evaluate_lake,
    evaluate_links,
    matched_files,
    read_manifest,
)
from quality.keys import ROW_DIGEST

CACHE_FILE = "truth_evaluation.json"
# bump when quality.evaluation computes a figure differently: every dataset is judged again
CACHE_VERSION = "2026-11-30.1"


def staged_columns(con: duckdb.DuckDBPyConnection, cat: Catalogue) -> dict[str, list[str]]:
    """``dept.dataset`` → the columns of its staged table, for the datasets that have one
    (one probe a table, shared by the readers and the digests)."""
    tables = {t for _, t in tables_in(con, "staged")}
    out = {}
    for dept, ds in cat.datasets():
        table = raw_table(dept.code, ds)
        if table in tables:
            probe = con.execute(f'SELECT * FROM staged."{table}" LIMIT 0')
            out[f"{dept.code}.{ds.code}"] = [d[0] for d in probe.description]
    return out


def staged_parts(
    con: duckdb.DuckDBPyConnection,
    cat: Catalogue,
    protection: Protection,
    columns: dict[str, list[str]] | None = None,
) -> dict[tuple[str, str], StagedPart]:
    """Each staged table, keyed ``(dept, dataset)``, as the truth evaluation reads it: the
    rows of some deliveries and a range of source rows, the columns asked for, revealed
    (a whole table at a time was its peak: 1.7 million IoT readings at 200,000 residents).
    ``columns``: :func:`staged_columns`, when the caller has them."""
    columns = staged_columns(con, cat) if columns is None else columns

    def reader(table: str, ds: Dataset, has_pid: bool) -> StagedPart:
        def part(columns: list[str], ids: list[str], lo: int | None, hi: int | None):
            trim_heap()  # the last part's pages back to the system before this one
            names = ["_delivery_id", "_source_row", *([KEY_PID] if has_pid else []), *columns]
            where, args = [f"_delivery_id IN ({', '.join('?' for _ in ids) or 'NULL'})"], [*ids]
            for test, bound in (("_source_row >= ?", lo), ("_source_row < ?", hi)):
                if bound is not None:
                    where.append(test)
                    args.append(bound)
            select = ", ".join(f'"{c}"' for c in names)
            sql = f'SELECT {select} FROM staged."{table}" WHERE {" AND ".join(where)}'
            frame = con.execute(sql, args).pl()
            return protection.reveal(frame, ds, "quality_scores").drop(KEY_PID, strict=False)

        return part

    return {
        (dept.code, ds.code): reader(
            raw_table(dept.code, ds), ds, KEY_PID in columns[f"{dept.code}.{ds.code}"]
        )
        for dept, ds in cat.datasets()
        if f"{dept.code}.{ds.code}" in columns
    }


# the master index's mention tables, by the entity they link (see quality.evaluation)
MENTIONS = {"person": "person_mentions", "house": "house_mentions"}
CURATED = "curated"


class StagedKeys(Mapping[tuple[str, str], pl.DataFrame]):
    """Each staged table's ``_key_pid, _delivery_id, _source_row`` keyed ``(dept,
    dataset)``, read when asked for (the link evaluation asks only for the datasets whose
    truth names an entity: never the sensor readings)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, cat: Catalogue, tables: set[str]):
        self.con = con
        self.tables = {
            (d.code, ds.code): raw_table(d.code, ds)
            for d, ds in cat.datasets()
            if raw_table(d.code, ds) in tables
        }

    def __getitem__(self, ref: tuple[str, str]) -> pl.DataFrame:
        trim_heap()  # the last dataset's pages back to the system before this one
        sql = f'SELECT {KEY_PID}, _delivery_id, _source_row FROM staged."{self.tables[ref]}"'
        return self.con.execute(sql).pl()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.tables)

    def __len__(self) -> int:
        return len(self.tables)


class LakeMentions:
    """A curated mention table (:data:`MENTIONS`) as the link evaluation asks for it, a
    dataset at a time (``quality.evaluation.Mentions``): a table of up to
    :data:`MENTIONS_AT_ONCE` rows is read in one query (a query a dataset cost more than
    the table's memory), a larger one a dataset at a time (the person table was 1.1
    million rows at 200,000 residents)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str, cluster: str) -> None:
        self.con, self.table, self.cluster = con, table, cluster
        self.whole: dict[tuple[str, str], pl.DataFrame] | None = None

    def named(self) -> set[tuple[str, str]]:
        rows = self.con.execute(
            f"SELECT dept, dataset, count(*) FROM {CURATED}.{self.table} GROUP BY ALL"
        ).fetchall()
        if sum(n for *_, n in rows) <= MENTIONS_AT_ONCE:
            frame = self.con.execute(
                f"SELECT dept, dataset, key_pid, {self.cluster} FROM {CURATED}.{self.table}"
            ).pl()
            self.whole = frame.partition_by(["dept", "dataset"], as_dict=True)  # type: ignore[assignment]
        return {(d, c) for d, c, _ in rows}

    def of(self, dept: str, dataset: str) -> pl.DataFrame:
        if self.whole is not None:
            empty = pl.DataFrame(schema={"key_pid": pl.String, self.cluster: pl.String})
            return self.whole.get((dept, dataset), empty)
        return self.con.execute(
            f"SELECT key_pid, {self.cluster} FROM {CURATED}.{self.table} "
            "WHERE dept = ? AND dataset = ?",
            [dept, dataset],
        ).pl()


MENTIONS_AT_ONCE = 200_000  # rows of a mention table read in one query


def link_mentions(con: duckdb.DuckDBPyConnection) -> dict[str, LakeMentions]:
    """Entity → its curated mention table (``dept, dataset, key_pid`` and the cluster
    column), for the tables the lake holds (none before the master index is built)."""
    present = {t for _, t in tables_in(con, CURATED)}
    return {
        entity: LakeMentions(con, table, LINK_TRUTH[entity][1])
        for entity, table in MENTIONS.items()
        if table in present
    }


def judged_digests(
    con: duckdb.DuckDBPyConnection,
    cat: Catalogue,
    files: dict[str, str],
    manifest: str,
    columns: dict[str, list[str]],
) -> dict[str, str]:
    """``dept.dataset`` → a digest of what its figures are judged on: the identities and
    row digests of its staged rows (a superseded, deleted or re-staged row changes it; a
    re-encryption does not), its quarantined rows, the delivered files judged, the
    manifest. Order-free sums of DuckDB's row hashes: one pass over three narrow columns.
    ``columns``: :func:`staged_columns`."""
    quarantined = {
        f"{d}.{c}": f"{n}:{h}"
        for d, c, n, h in con.execute(
            "SELECT dept, dataset, count(*), sum(hash(delivery_id, source_row, stage, field, "
            "check_name))::VARCHAR FROM quarantine.rows GROUP BY ALL"
        ).fetchall()
    }
    delivered: dict[str, list[str]] = {}
    for delivery_id, dept, code in con.execute(
        "SELECT delivery_id, dept, dataset FROM landing.deliveries"
    ).fetchall():
        if delivery_id in files:
            delivered.setdefault(f"{dept}.{code}", []).append(f"{delivery_id}={files[delivery_id]}")
    # every staged table's count and sum in one statement (a statement a table cost 1.5-4x
    # the CPU at 1,000 residents: each statement's own overhead, 31 of them)
    refs, sums = [], []
    for dept, ds in cat.datasets():
        ref = f"{dept.code}.{ds.code}"
        if ref in columns:
            digested = [ROW_DIGEST] if ROW_DIGEST in columns[ref] else []
            row = ", ".join(["_delivery_id", "_source_row", *digested])
            refs.append(ref)
            sums.append(
                f"SELECT ? AS ref, count(*) AS n, sum(hash({row}))::VARCHAR AS h "
                f'FROM staged."{raw_table(dept.code, ds)}"'
            )
    staged = {}
    if sums:
        rows = con.execute(" UNION ALL ".join(sums), refs).fetchall()
        staged = {ref: f"{n}:{h}" for ref, n, h in rows}
    out = {}
    for dept, ds in cat.datasets():
        ref = f"{dept.code}.{ds.code}"
        parts = [CACHE_VERSION, manifest, staged.get(ref, "none"), quarantined.get(ref, "0")]
        out[ref] = digest("|".join([*parts, *sorted(delivered.get(ref, []))]))
    return out


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cached.get("datasets", {}) if isinstance(cached, dict) else {}


def _write_cache(path: Path, digests: dict[str, str], figures: dict[str, dict]) -> None:
    kept = {ref: {"digest": digests[ref], "figures": f} for ref, f in figures.items()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"datasets": kept}, sort_keys=True), encoding="utf-8")
    tmp.replace(path)  # whole or not at all: a killed run leaves the last one


def evaluate_against_truth(
    settings: Settings, cat: Catalogue, actor: str | None = None
) -> Evaluation | None:
    """The lake against the simulator's ground truth, for the landed deliveries its manifest
    lists (None without a simulator: nothing is read then); datasets whose judged rows are
    unchanged since the last evaluation keep its figures."""
    manifest = read_manifest(settings.sim_dir_abs)
    if manifest is None:
        return None
    manifest_digest = digest((settings.sim_dir_abs / MANIFEST_FILE).read_text(encoding="utf-8"))
    protection = (
        Protection.from_settings(settings, actor) if actor else Protection.from_settings(settings)
    )
    cache = settings.state_dir / CACHE_FILE
    # one read transaction: every query of the evaluation (about five a dataset) reads the
    # same snapshot, and DuckLake loads its catalogue once, not once a query (autocommit)
    with open_lake(settings, read_only=True) as con, transaction(con):
        # only the columns the figures use (which row of which delivery), not the masked
        # values and reasons
        quarantine = con.execute(
            "SELECT dept, dataset, delivery_id, source_row FROM quarantine.rows"
        ).pl()
        deliveries = con.execute(
            "SELECT delivery_id, dept, dataset, sha256, source FROM landing.deliveries"
        ).pl()
        columns = staged_columns(con, cat)
        files = matched_files(manifest, deliveries)
        digests = judged_digests(con, cat, files, manifest_digest, columns)
        known = {
            ref: entry["figures"]
            for ref, entry in _read_cache(cache).items()
            if digests.get(ref) == entry.get("digest")
        }
        # one part of one staged table at a time: the rows and columns being judged
        staged = staged_parts(con, cat, protection, columns)
        disagreements = None
        if ("quarantine", "disagreements") in tables_in(con, "quarantine"):
            disagreements = con.execute(
                "SELECT dept, dataset, delivery_id, source_row, field FROM quarantine.disagreements"
            ).pl()
        # staged reads the lake as it is used: evaluate while the lake is open
        evaluation = evaluate_lake(
            settings.sim_dir_abs, cat, staged, quarantine, deliveries, disagreements, known
        )
        mentions = link_mentions(con)
        if evaluation is not None and mentions:
            keys = StagedKeys(con, cat, {t for _, t in tables_in(con, "staged")})
            links = evaluate_links(settings.sim_dir_abs, cat, deliveries, keys, mentions)
            evaluation.judge_links(links or {})
    if evaluation is not None:
        _write_cache(cache, digests, evaluation.datasets)
    return evaluation
