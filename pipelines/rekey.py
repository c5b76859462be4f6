"""``streethub keys rekey --suite intl|gm``: change the deployment's cipher suite.

Everything the suite protects in the lake is rewritten under the new suite with new data
key versions, then the ring records the suite:

- ``raw.<table>``: every sensitive value decrypted (purpose ``rekey``, audited) and
  encrypted again under the new suite (its AAD keeps the row's delivery id and source row);
- ``staged.<table>``: the same, and every row's key pseudonym (``_key_pid``), person
  pseudonyms (``_pid_<field>``, a table from before them gains the columns) and row
  digest (``_row_digest``) recomputed with the new suite's HMAC under a new pseudonym key
  version; values are bound to the new key pseudonym. The old digest is recomputed first
  and must equal the stored one (the revealed row is the row that was staged), else the
  table is left as it was;
- ``quarantine.rows``: the key pseudonym of each quarantined record, recomputed from its
  raw row; ``quarantine.issues``: each issue's key pseudonym, mapped old → new;
- ``curated.link_actions`` (a data officer's merges and splits): first every action gets
  its anchor mentions (``curated.persons.anchor_actions``), then each mention key it names
  (moved, detached, anchoring a person) is mapped old → new with its dataset. Person ids
  change with the pseudonym key; the next curated build replays each action on the persons
  its anchor mentions are then linked to, so the decisions hold;
- landed and archived files: written again under the new suite and a new ``landing`` key
  version (``pipelines.ingest.landing.reencrypt_landed``), once the ring records the suite.

One transaction per dataset: its raw and staged tables and its quarantine and issue rows
are rewritten together (each table of the dataset either wholly re-keyed or untouched),
a batch of whole deliveries at a time inside it (about :data:`BATCH_ROWS` rows)
so memory stays bounded. A dataset committed is recorded in
``landing.rekey_progress`` in that same transaction. The re-key to do (target suite, new
key versions) is written to ``state/rekey.json`` before the first dataset: while it is
there the pipelines refuse to run (``Protection.from_settings``: half the lake would
pseudonymise under one suite and half under the other) and every value still reads (each
ciphertext names its suite and key version). Running the command again finishes an
interrupted re-key; only then does the ring make the new suite and versions current.

Audited: a record when it starts, one per dataset (tables, rows), one when it is done.
Also rewrites ``e<v>:`` values (before rows were bound) with the row's identity, so a
re-key to the same suite is the way to bind an old lake's values to their rows.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from catalog.loader import load_catalogue
from catalog.model import Dataset
from catalog.settings import Settings
from curated.persons import anchor_actions
from curated.review import ANCHORS
from lakehouse.lake import ensure_table, has_table, insert_frame, open_lake, registered, transaction
from masking.audit import AuditLog
from masking.cells import open_cells, seal_cells, sealed
from masking.crypto import KEY_PURPOSE, protect_frame, reveal_frame
from masking.errors import MaskingError
from masking.keys import KeyRing, is_pseudonym_purpose
from masking.pseudonym import row_digests
from masking.suite import get_suite
from pipelines.connectors.landed import PURPOSE as LANDING_PURPOSE
from pipelines.ingest.landing import reencrypt_landed
from pipelines.ingest.ledger import now
from pipelines.ingest.raw import raw_table
from pipelines.ingest.staged import add_pid_columns
from pipelines.protection import is_raw, key_pids, person_pids, row_identity
from quality.keys import KEY_PID, ROW_DIGEST

PURPOSE = "rekey"
PENDING_FILE = "rekey.json"
PROGRESS = ("landing", "rekey_progress")
LINK_ACTIONS = ("curated", "link_actions")


class RekeyError(MaskingError):
    """A re-key cannot start or cannot go on (the lake keeps its last committed dataset)."""


@dataclass(frozen=True)
class Target:
    """The re-key under way: its id, the suite it moves to, the new key versions."""

    rekey_id: str
    suite: str
    from_suite: str
    versions: dict[str, int]

    def to_json(self) -> dict:
        return {"rekey_id": self.rekey_id, "suite": self.suite, "from_suite": self.from_suite,
                "versions": self.versions}  # fmt: skip


@dataclass
class RekeyReport:
    suite: str
    from_suite: str
    datasets: dict[str, dict[str, int]] = field(default_factory=dict)  # ref → table → rows
    already_done: list[str] = field(default_factory=list)  # committed by an earlier attempt
    landed_files: int = 0  # landed and archived files written again under the new suite
    landed_failed: list[str] = field(default_factory=list)  # files that did not decrypt


def pending_path(settings: Settings) -> Path:
    return settings.state_dir / PENDING_FILE


def pending(settings: Settings) -> Target | None:
    """The unfinished re-key of this home, if any."""
    try:
        data = json.loads(pending_path(settings).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise RekeyError(f"{PENDING_FILE} in the state folder cannot be read") from None
    return Target(data["rekey_id"], data["suite"], data["from_suite"],
                  {k: int(v) for k, v in data["versions"].items()})  # fmt: skip


def refuse_if_pending(settings: Settings) -> None:
    """Raise when a re-key is unfinished: nothing may write pseudonyms or ciphertexts."""
    target = pending(settings)
    if target is not None:
        raise RekeyError(
            f"a re-key to the {target.suite} suite is unfinished; the lake still reads, but "
            f"nothing may write until it is done: `streethub keys rekey --suite {target.suite}`"
        )


def _write_pending(settings: Settings, target: Target) -> None:
    path = pending_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(target.to_json(), indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _start(settings: Settings, ring: KeyRing, suite: str) -> Target:
    """The pending re-key to ``suite``, or a new one with new key versions."""
    suite = str(get_suite(suite).name)
    target = pending(settings)
    if target is not None:
        if target.suite != suite:
            raise RekeyError(
                f"a re-key to the {target.suite} suite is unfinished: finish it first "
                f"(`streethub keys rekey --suite {target.suite}`)"
            )
        return target
    purposes = [KEY_PURPOSE] + [p for p in ring.purposes() if is_pseudonym_purpose(p)]
    if "pseudonym" not in purposes:
        purposes.append("pseudonym")
    if LANDING_PURPOSE in ring.purposes():
        purposes.append(LANDING_PURPOSE)
    versions = {p: ring.add_version(p).version for p in purposes}
    target = Target(secrets.token_hex(8), suite, str(ring.suite.name), versions)
    _write_pending(settings, target)
    return target


def _done(con: duckdb.DuckDBPyConnection, rekey_id: str) -> set[str]:
    if not has_table(con, *PROGRESS):
        return set()
    rows = con.execute(
        f"SELECT dataset FROM {PROGRESS[0]}.{PROGRESS[1]} WHERE rekey_id = ?", [rekey_id]
    ).fetchall()
    return {r[0] for r in rows}


# rows of a table re-keyed at once: whole deliveries, consecutive in their sorted order, at
# least one. A year of daily deliveries is thousands of them; each pass of one cost a read,
# a delete and an insert on the lake (each listing the table's files in DuckLake's
# catalogue: 42 % of a re-key's samples, 2026-12-07) and left a Parquet file of its own
BATCH_ROWS = 50_000


@dataclass(frozen=True)
class DeliveryBatch:
    """Consecutive deliveries of one table, re-keyed together: those from ``first`` to
    ``last`` in sorted order (None: no delivery named), rows without a delivery id too when
    ``unnamed``; ``whole``: every row of the table."""

    first: str | None
    last: str | None
    unnamed: bool
    whole: bool

    def where(self) -> tuple[str, list[str]]:
        """The batch's rows as a WHERE clause and its parameters ("" for the whole table)."""
        if self.whole:
            return "", []
        parts: list[str] = []
        params: list[str] = []
        if self.first is not None:
            parts.append("_delivery_id BETWEEN ? AND ?")
            params = [self.first, self.last]
        if self.unnamed:
            parts.append("_delivery_id IS NULL")
        return f"WHERE {' OR '.join(parts)}", params

    def holds(self, delivery: pl.Expr) -> pl.Expr:
        """Whether a delivery id (not null) lies in the batch."""
        if self.first is None:
            return pl.lit(False)
        return delivery.is_between(pl.lit(self.first), pl.lit(self.last))


def delivery_batches(con: duckdb.DuckDBPyConnection, zone: str, table: str) -> list[DeliveryBatch]:
    """The table's deliveries in batches of about :data:`BATCH_ROWS` rows (one statement)."""
    counts = con.execute(
        f'SELECT _delivery_id, count(*) FROM {zone}."{table}" GROUP BY 1 ORDER BY 1 NULLS FIRST'
    ).fetchall()
    groups: list[list[str | None]] = []
    held = 0  # rows of the last group
    for delivery, rows in counts:
        if not groups or held + rows > BATCH_ROWS:
            groups.append([])
            held = 0
        groups[-1].append(delivery)
        held += rows
    out = []
    for group in groups:
        named = [d for d in group if d is not None]
        out.append(
            DeliveryBatch(
                first=named[0] if named else None,
                last=named[-1] if named else None,
                unnamed=len(named) < len(group),
                whole=len(groups) == 1,
            )
        )
    return out


def _read(con, zone: str, table: str, batch: DeliveryBatch) -> pl.DataFrame:
    where, params = batch.where()
    return con.execute(
        f'SELECT * FROM {zone}."{table}" {where} ORDER BY _delivery_id NULLS FIRST, _source_row',
        params,
    ).pl()


def _replace(con, zone: str, table: str, batch: DeliveryBatch, frame: pl.DataFrame) -> None:
    where, params = batch.where()
    con.execute(f'DELETE FROM {zone}."{table}" {where}', params)
    insert_frame(con, zone, table, frame)


def _quarantined(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every quarantined record with a key pseudonym (one read for the whole re-key: each
    dataset's records change only in its own transaction)."""
    if not has_table(con, "quarantine", "rows"):
        names = ("dept", "dataset", "delivery_id", "source_row", "key_pid")
        return pl.DataFrame(schema=dict.fromkeys(names, pl.String) | {"source_row": pl.Int64})
    return con.execute(
        "SELECT DISTINCT dept, dataset, delivery_id, CAST(source_row AS BIGINT) AS source_row,"
        " key_pid FROM quarantine.rows WHERE key_pid IS NOT NULL AND delivery_id IS NOT NULL"
    ).pl()


def _named(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str, str]]:
    """Which datasets the issues and the link actions name: ``("issues", dept, dataset)`` and
    ``(prefix, dept, dataset)`` for each mention key column of the link actions (one read for
    the whole re-key; the re-key changes their key pseudonyms only). A dataset none names is
    not updated: on a street whose officers have merged nothing, an UPDATE per dataset and
    mention column of the empty link actions took 63 % of a re-key's samples (DuckLake
    reading the table's statistics anew each time; 2026-12-07)."""
    parts = []
    if has_table(con, "quarantine", "issues"):
        parts.append("SELECT DISTINCT 'issues', dept, dataset FROM quarantine.issues")
    if has_table(con, *LINK_ACTIONS):
        table = ".".join(LINK_ACTIONS)
        parts += [
            f"SELECT DISTINCT '{prefix}', {prefix}dept, {prefix}dataset FROM {table} "
            f"WHERE {prefix}key_pid IS NOT NULL"
            for prefix in ("", *(p for _, p in ANCHORS))
        ]
    if not parts:
        return set()
    return {tuple(row) for row in con.execute(" UNION ALL ".join(parts)).fetchall()}


class _Dataset:
    """One dataset's re-key inside its transaction."""

    def __init__(self, con, ring: KeyRing, audit: AuditLog, actor: str, dept: str,
                 ds: Dataset, target: Target, quarantined: pl.DataFrame,
                 named: set[tuple[str, str, str]]) -> None:  # fmt: skip
        self.con, self.ring, self.audit, self.actor = con, ring, audit, actor
        self.dept, self.ds, self.target = dept, ds, target
        self.pid_map: list[pl.DataFrame] = []  # old key_pid → new key_pid
        # the dataset's quarantined records with a key pseudonym, and their new pseudonyms
        self.held = quarantined.filter(
            (pl.col("dept") == dept) & (pl.col("dataset") == ds.code)
        ).select("delivery_id", "source_row", "key_pid")
        self.quarantine_pairs: list[pl.DataFrame] = []
        self.named = {prefix for prefix, d, code in named if (d, code) == (dept, ds.code)}
        self.new = {"suite": target.suite, "version": target.versions["pseudonym"]}

    def _reveal(self, frame: pl.DataFrame, *, text: bool) -> pl.DataFrame:
        rows = row_identity(frame, self.ds)
        if is_raw(frame):  # the cells a delivery put personal values in (masking.cells)
            frame = open_cells(
                frame, self.ds, self.ring, PURPOSE, self.actor, self.audit, rows=rows
            )
        return reveal_frame(
            frame, self.ds, self.ring, PURPOSE, self.actor, self.audit,
            rows=rows, restore_types=not text,
        )  # fmt: skip

    def _protect(self, frame: pl.DataFrame) -> pl.DataFrame:
        rows, key = row_identity(frame, self.ds), self.target.versions[KEY_PURPOSE]
        out = protect_frame(frame, self.ds, self.ring, rows=rows, suite=self.target.suite,
                            version=key)  # fmt: skip
        if is_raw(frame):
            out = seal_cells(out, self.ds, self.ring, rows=rows, suite=self.target.suite,
                             version=key)  # fmt: skip
        return out

    def raw(self, table: str) -> int:
        """Re-encrypt the raw table; the quarantined records' key pseudonyms from it."""
        sensitive = any(f.level.sensitive for f in self.ds.fields)  # else: only sealed cells
        n = 0
        for batch in delivery_batches(self.con, "raw", table):
            frame = _read(self.con, "raw", table, batch)
            plain = self._reveal(frame, text=True)
            self._quarantine_pids(batch, plain)
            if sensitive or sealed(frame, self.ds):
                _replace(self.con, "raw", table, batch, self._protect(plain))
                n += frame.height
        self._update_quarantine()
        return n

    def _quarantine_pids(self, batch: DeliveryBatch, plain: pl.DataFrame) -> None:
        """The new key pseudonyms of the batch's quarantined records, from their raw rows."""
        held = self.held.filter(batch.holds(pl.col("delivery_id")))
        if held.is_empty():
            return
        rows = plain.join(
            held.select(
                pl.col("delivery_id").alias("_delivery_id"),
                pl.col("source_row").cast(plain.schema["_source_row"]).alias("_source_row"),
            ).unique(),
            on=["_delivery_id", "_source_row"],
            how="semi",
        )
        fresh = rows.select(
            pl.col("_delivery_id").alias("delivery_id"),
            pl.col("_source_row").cast(pl.Int64).alias("source_row"),
            key_pids(rows, self.ds, self.ring, **self.new).alias("new_pid"),
        )
        self.quarantine_pairs.append(held.join(fresh, on=["delivery_id", "source_row"]))

    def _update_quarantine(self) -> None:
        """The dataset's quarantined records given their new key pseudonyms (one UPDATE)."""
        if not self.quarantine_pairs:
            return
        pairs = pl.concat(self.quarantine_pairs)
        self.pid_map.append(
            pairs.select(pl.col("key_pid").alias("old"), pl.col("new_pid").alias("new"))
        )
        view = "_rekey_quarantine"
        with registered(self.con, view, pairs.to_arrow()):
            self.con.execute(
                f'UPDATE quarantine.rows SET key_pid = v.new_pid FROM "{view}" v '
                "WHERE rows.dept = ? AND rows.dataset = ? AND rows.delivery_id = v.delivery_id "
                "AND rows.source_row = v.source_row AND rows.key_pid IS NOT NULL",
                [self.dept, self.ds.code],
            )

    def staged(self, table: str) -> int:
        """Re-encrypt the staged table with new key and person pseudonyms and row digests."""
        add_pid_columns(self.con, table, self.ds)  # every row's are computed below
        fields = [f.name for f in self.ds.fields]
        old_key = {"suite": self.ring.suite, "version": self.ring.current("pseudonym").version}
        n = 0
        for batch in delivery_batches(self.con, "staged", table):
            frame = _read(self.con, "staged", table, batch)
            plain = self._reveal(frame, text=False)
            present = [f for f in fields if f in plain.columns]
            old = row_digests(plain, present, self.ring, **old_key)
            if not old.equals(frame[ROW_DIGEST].cast(pl.String), check_names=False):
                raise RekeyError(
                    "a revealed row does not give back its stored row digest; the table "
                    "is left as it was",
                    dataset=self.ds.code,
                    file=f"staged.{table}",
                )
            rekeyed = plain.with_columns(
                key_pids(plain, self.ds, self.ring, **self.new).alias(KEY_PID),
                row_digests(plain, present, self.ring, **self.new).alias(ROW_DIGEST),
                *person_pids(plain, self.ds, self.ring, **self.new),
            )
            self.pid_map.append(
                pl.DataFrame({"old": frame[KEY_PID], "new": rekeyed[KEY_PID]}).drop_nulls()
            )
            _replace(self.con, "staged", table, batch, self._protect(rekeyed))
            n += frame.height
        return n

    def issues(self) -> int:
        """Map the dataset's issues' key pseudonyms old → new."""
        if not self.pid_map or "issues" not in self.named:
            return 0
        pairs = pl.concat(self.pid_map).unique("old", keep="first")
        view = "_rekey_issues"
        with registered(self.con, view, pairs.to_arrow()):
            row = self.con.execute(
                f'UPDATE quarantine.issues SET key_pid = v.new FROM "{view}" v '
                "WHERE issues.dept = ? AND issues.dataset = ? AND issues.key_pid = v.old",
                [self.dept, self.ds.code],
            ).fetchone()
        return int(row[0]) if row else 0

    def link_actions(self) -> int:
        """Map the mention keys the dataset's link actions name old → new."""
        prefixes = [p for p in ("", *(p for _, p in ANCHORS)) if p in self.named]
        if not self.pid_map or not prefixes:
            return 0
        pairs = pl.concat(self.pid_map).unique("old", keep="first")
        view, table, n = "_rekey_link_actions", ".".join(LINK_ACTIONS), 0
        with registered(self.con, view, pairs.to_arrow()):
            for prefix in prefixes:
                row = self.con.execute(
                    f'UPDATE {table} SET {prefix}key_pid = v.new FROM "{view}" v '
                    f"WHERE {LINK_ACTIONS[1]}.{prefix}dept = ? "
                    f"AND {LINK_ACTIONS[1]}.{prefix}dataset = ? "
                    f"AND {LINK_ACTIONS[1]}.{prefix}key_pid = v.old",
                    [self.dept, self.ds.code],
                ).fetchone()
                n += int(row[0]) if row else 0
        return n


def rekey(
    settings: Settings,
    suite: str,
    actor: str,
    *,
    step: Callable[[str], None] | None = None,
) -> RekeyReport:
    """Re-key the lake to ``suite`` (see the module docstring); ``step(dataset)`` is called
    after each dataset's commit (tests interrupt there)."""
    step = step or (lambda ref: None)
    cat = load_catalogue(settings.catalog_dir)
    ring = KeyRing.from_settings(settings, enforce_suite=False)  # whatever its suite
    audit = AuditLog.from_settings(settings, ring)
    target = _start(settings, ring, suite)
    report = RekeyReport(target.suite, target.from_suite)
    audit.append("keys.rekey.start", actor, rekey_id=target.rekey_id,
                 from_suite=target.from_suite, to_suite=target.suite)  # fmt: skip
    with open_lake(settings) as con:
        ensure_table(con, *PROGRESS, [("rekey_id", "VARCHAR"), ("dataset", "VARCHAR"),
                                      ("rows", "BIGINT"), ("done_at", "TIMESTAMPTZ")])  # fmt: skip
        done = _done(con, target.rekey_id)
        anchor_actions(con, ring)  # before any mention key changes
        quarantined, named = _quarantined(con), _named(con)
        for dept, ds in cat.datasets():
            ref = f"{dept.code}.{ds.code}"
            if ref in done:
                report.already_done.append(ref)
                continue
            table = raw_table(dept.code, ds)
            counts: dict[str, int] = {}
            with transaction(con):
                work = _Dataset(con, ring, audit, actor, dept.code, ds, target, quarantined, named)
                if has_table(con, "raw", table):
                    counts[f"raw.{table}"] = work.raw(table)
                if has_table(con, "staged", table):
                    counts[f"staged.{table}"] = work.staged(table)
                counts["quarantine.issues"] = work.issues()
                counts[".".join(LINK_ACTIONS)] = work.link_actions()
                con.execute(
                    f"INSERT INTO {PROGRESS[0]}.{PROGRESS[1]} VALUES (?, ?, ?, ?)",
                    [target.rekey_id, ref, sum(counts.values()), now()],
                )
            report.datasets[ref] = counts
            audit.append("keys.rekey.dataset", actor, rekey_id=target.rekey_id,
                         dataset=ref, rows=sum(counts.values()))  # fmt: skip
            step(ref)
        ring.change_suite(target.suite, current=target.versions)
        # landed files last, under the ring as it now stands (the lake's writer lock held)
        landed = reencrypt_landed(settings.model_copy(update={"cipher_suite": target.suite}))
        report.landed_files, report.landed_failed = landed.files, landed.failed
    pending_path(settings).unlink()
    audit.append("keys.rekey.done", actor, rekey_id=target.rekey_id, to_suite=target.suite,
                 datasets=len(report.datasets) + len(report.already_done),
                 landed_files=report.landed_files)  # fmt: skip
    return report


def rekey_command(settings: Settings, suite: str, actor: str) -> RekeyReport:
    """``streethub keys rekey``: run it and print what was re-keyed (exit 1 on an error,
    whose text names the dataset and table, never a value)."""
    import typer

    from catalog.errors import StreethubError
    from pipelines.cli_common import console, err

    try:
        report = rekey(settings, suite, actor)
    except StreethubError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    for ref, counts in report.datasets.items():
        tables = ", ".join(f"{t} {n:,}" for t, n in counts.items() if n)
        console.print(f"{ref}: {tables or 'nothing stored yet'}")
    if report.already_done:
        console.print(f"{len(report.already_done)} datasets re-keyed by the interrupted run")
    console.print(f"landed files written again under {report.suite}: {report.landed_files:,}")
    for name in report.landed_failed:
        err.print(f"[red]{name}: does not decrypt, left as it is[/red]", highlight=False)
    console.print(
        f"the lake is re-keyed from {report.from_suite} to {report.suite}; the key ring "
        f"records {report.suite}: set STREETHUB_CIPHER_SUITE={report.suite} (or unset it)"
    )
    return report
