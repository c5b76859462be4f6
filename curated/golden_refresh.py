"""Golden records kept up to date (增量更新): after a delivery or a change of the master
index, only the persons whose golden inputs changed are rebuilt (:mod:`curated.golden`).

:func:`affected_persons` names the persons a change can touch (the staged rows that
differ since the last build, the mentions the index moved); :func:`refresh_golden` reads
their records once — one query and one audited decryption per dataset they have records
in: the current rows and, for an authoritative dataset, every version the lake still
holds — compares each person's ``sources_digest`` (the staged rows it is built from,
with their row digests) with the stored one, and replaces the records of those whose
digest differs. The result equals a full rebuild (:func:`curated.golden.build_golden`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import duckdb
import polars as pl

from catalog.model import Catalogue
from curated.golden import (
    CHECK_COLUMNS,
    CHECK_SCHEMA,
    CHECKS,
    HISTORY,
    MENTIONS,
    PERSON,
    PERSON_ID,
    PURPOSE,
    ZONE,
    Plan,
    Revealer,
    build_golden,
    check_records,
    count_conflicts,
    held_plans,
    inserted_rows,
    live_plans,
    observations,
    picked_columns,
    require_mentions,
    reveal_history_rows,
    scope_frame,
    scoped_mentions,
    snapshot_span,
    sources_digests,
    staged_table,
    write_golden,
)
from lakehouse.lake import has_table, insert_frame, registered, transaction
from quality.keys import KEY_PID, ROW_DIGEST

_MINE = "_golden_refresh_mentions"  # registered: the mentions of the persons in scope
_CURRENT = "_current"  # a read row is the record's current version


def _at(table: str, snapshot: int) -> str:
    return f"{table} AT (VERSION => {int(snapshot)})"


Key = tuple[str, str]  # (dept, dataset)
ANY: Key = ("", "")  # a person whatever of whose inputs may have changed


def affected_persons(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    changed: set[Key],
    since: int,
    moved: Mapping[str, set[Key]],
    *,
    orphans: bool = True,
) -> dict[str, set[Key]] | None:
    """The persons whose golden inputs may have changed, each with the datasets where
    they did: those of the staged rows (key pseudonym, row digest) of the ``changed``
    datasets that differ between snapshot ``since`` and now, the ``moved`` ones (of every
    mention the index wrote or removed, before and after, with the mention's dataset), and
    with ``orphans`` every stored person without a mention any more (:data:`ANY`; not
    needed when ``moved`` covers every change of the index since the golden records were
    last written: a person losing its last mention is among them). None when the lake
    cannot say (a table missing at the snapshot): digest all."""
    mentions = f"{ZONE}.{MENTIONS}"
    parts: list[str] = []
    params: list[str] = []
    for plan in live_plans(con, catalogue):
        if (plan.dept, plan.dataset.code) not in changed:
            continue
        table, rows = staged_table(plan.dept, plan.dataset), f"{KEY_PID}, {ROW_DIGEST}"
        differ = (
            f"(SELECT {rows} FROM {_at(table, since)} EXCEPT SELECT {rows} FROM {table}) "
            f"UNION ALL (SELECT {rows} FROM {table} EXCEPT SELECT {rows} FROM {_at(table, since)})"
        )
        parts.append(
            f"SELECT m.{PERSON_ID}, m.dept, m.dataset FROM {mentions} m "
            f"JOIN ({differ}) x ON x.{KEY_PID} = m.key_pid WHERE m.dept = ? AND m.dataset = ?"
        )
        params += [plan.dept, plan.dataset.code]
    if orphans and has_table(con, ZONE, PERSON):
        parts.append(
            f"SELECT {PERSON_ID}, '{ANY[0]}' AS dept, '{ANY[1]}' AS dataset FROM {ZONE}.{PERSON} "
            f"WHERE {PERSON_ID} NOT IN "
            f"(SELECT {PERSON_ID} FROM {mentions} WHERE {PERSON_ID} IS NOT NULL)"
        )
    out: dict[str, set[Key]] = {str(p): set(ds) for p, ds in moved.items() if p is not None}
    if not parts:
        return out
    sql = (
        f"SELECT DISTINCT {PERSON_ID}, dept, dataset FROM ({' UNION ALL '.join(parts)}) "
        f"WHERE {PERSON_ID} IS NOT NULL"
    )
    try:
        rows = con.execute(sql, params).fetchall()
    except duckdb.Error:  # a table created after the snapshot: the lake cannot say
        return None
    for person, dept, dataset in rows:
        out.setdefault(str(person), set()).add((str(dept), str(dataset)))
    return out


def _read(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    protection: Revealer,
    span: tuple[int, int] | None,
) -> pl.DataFrame:
    """The plan's staged rows of the persons in scope (registered :data:`_MINE`), decrypted
    once: the current rows (``_current``, with their row digests) and, for an
    authoritative dataset, every version the lake holds (as
    :func:`curated.golden._read_plan` reads them; a version equal to the current row
    comes twice, which changes no history)."""
    fields = list(dict.fromkeys([*plan.attribute_fields, *plan.check_fields]))
    picked = f"{picked_columns(plan, fields)}, {ROW_DIGEST}"
    key = [plan.dept, plan.dataset.code]
    mine = f" WHERE {KEY_PID} IN (SELECT key_pid FROM {_MINE} WHERE dept = ? AND dataset = ?)"
    rows = f"SELECT {picked}, true AS {_CURRENT} FROM {staged_table(plan.dept, plan.dataset)}{mine}"
    params = key
    if plan.attributes and span is not None:
        rows += f" UNION ALL SELECT {picked}, false FROM {inserted_rows(plan, span)}{mine}"
        params = key + key
    sql = (
        f"SELECT m.{PERSON_ID}, s.{KEY_PID}, s.{ROW_DIGEST}, s._loaded_at AS known_at, s.as_of, "
        + ", ".join(f's."{f}"' for f in fields)
        + f", s.{_CURRENT} FROM ({rows}) s JOIN {_MINE} m ON m.key_pid = s.{KEY_PID} "
        f"AND m.dept = ? AND m.dataset = ? WHERE m.{PERSON_ID} IS NOT NULL"
    )
    frame = con.execute(sql, [*params, *key]).pl()
    return protection.reveal(frame, plan.dataset, PURPOSE) if frame.height else frame


def _digests(mine: pl.DataFrame, reads: list[tuple[Plan, pl.DataFrame]]) -> pl.DataFrame:
    """person_id → ``sources_digest`` of every person with a mention in ``mine``, as
    :func:`curated.golden.sources_digests` computes it (SHA-256 of the sorted
    ``dept.dataset:key_pid:row_digest`` of its current records, comma-joined)."""
    parts = [
        frame.filter(pl.col(_CURRENT)).select(
            PERSON_ID,
            pl.concat_str(
                [
                    pl.lit(f"{plan.dept}.{plan.dataset.code}:"),
                    pl.col(KEY_PID),
                    pl.lit(":"),
                    pl.col(ROW_DIGEST).fill_null(""),
                ]
            ).alias("part"),
        )
        for plan, frame in reads
        if frame.height
    ]
    schema = {PERSON_ID: pl.String, "part": pl.String}
    joined = (
        pl.concat([pl.DataFrame(schema=schema), *parts])
        .group_by(PERSON_ID)
        .agg(pl.col("part").sort().str.join(","))
    )
    persons = mine.select(PERSON_ID).drop_nulls().unique()
    rows = persons.join(joined, on=PERSON_ID, how="left").with_columns(pl.col("part").fill_null(""))
    digest = [hashlib.sha256(p.encode()).hexdigest() for p in rows["part"].to_list()]
    return rows.select(PERSON_ID, pl.Series("sources_digest", digest, dtype=pl.String))


def _stored_digests(con: duckdb.DuckDBPyConnection, scope: pl.DataFrame) -> pl.DataFrame:
    with registered(con, _MINE + "_scope", scope.to_arrow()):
        return con.execute(
            f"SELECT {PERSON_ID}, sources_digest FROM {ZONE}.{PERSON} "
            f"SEMI JOIN {_MINE}_scope USING ({PERSON_ID})"
        ).pl()


def _differing(now: pl.DataFrame, before: pl.DataFrame) -> set[str]:
    both = now.join(before, on=PERSON_ID, how="full", coalesce=True, suffix="_before")
    changed = both.filter(pl.col("sources_digest").ne_missing(pl.col("sources_digest_before")))
    return set(changed[PERSON_ID].to_list())


@dataclass(frozen=True)
class Refreshed:
    """The persons :func:`refresh` rebuilt, and those whose checks and digest only it
    rewrote (their golden values stand)."""

    rebuilt: set[str]
    rechecked: set[str]


def refresh_golden(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection: Revealer,
    candidates: Iterable[str] | Mapping[str, set[Key]] | None = None,
) -> set[str]:
    """:func:`refresh`: the persons whose records it rewrote."""
    out = refresh(con, catalogue, protection, candidates)
    return out.rebuilt | out.rechecked


def refresh(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection: Revealer,
    candidates: Iterable[str] | Mapping[str, set[Key]] | None = None,
) -> Refreshed:
    """Rebuild only the persons whose golden inputs changed.

    A person is rebuilt when its ``sources_digest`` (the staged rows its mentions point at,
    with their row digests) differs from the one stored: a new or changed record of it, a
    record withdrawn, a mention moved to or from it by a merge or split, a new person, or
    one left without mentions. Without a stored person table it is a full build.
    ``candidates`` (:func:`affected_persons`): only these persons can have changed (None:
    every person's digest is computed in the lake first, without reading a value). With
    the datasets where each changed, a stored person whose changes are all in datasets
    that are not authoritative for an attribute keeps its attribute history as it is: only
    its records' checks there and its digest are rewritten (:func:`_recheck`)."""
    require_mentions(con)
    if not has_table(con, ZONE, PERSON):
        build_golden(con, catalogue, protection)
        return Refreshed(set(sources_digests(con, catalogue)[PERSON_ID].to_list()), set())
    if candidates is None:
        stored = con.execute(f"SELECT {PERSON_ID}, sources_digest FROM {ZONE}.{PERSON}").pl()
        candidates = _differing(sources_digests(con, catalogue), stored)
    rechecked: set[str] = set()
    if isinstance(candidates, Mapping):
        plans = live_plans(con, catalogue)
        history = {(p.dept, p.dataset.code) for p in plans if p.attributes}
        only_checks = {p for p, ds in candidates.items() if ANY not in ds and not ds & history}
        rechecked, rest = _recheck(con, catalogue, protection, candidates, only_checks, plans)
        candidates = (set(candidates) - only_checks) | rest
    return Refreshed(_rebuild(con, catalogue, protection, candidates), rechecked)


def _rebuild(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection: Revealer,
    candidates: Iterable[str],
) -> set[str]:
    """Rebuild the records of the ``candidates`` whose digest changed; those persons."""
    scope = scope_frame(candidates)
    if scope.height == 0:
        return set()
    mine = scoped_mentions(con, scope)
    # one snapshot read for every query, the writes after them
    with transaction(con), registered(con, _MINE, mine.to_arrow()):
        span = snapshot_span(con)
        reads = [
            (p, _read(con, p, protection, span))
            for p in held_plans(live_plans(con, catalogue), mine)
        ]
        persons = _differing(_digests(mine, reads), _stored_digests(con, scope))
        if not persons:
            return persons
        rebuilt = scope_frame(persons)
        ours = pl.col(PERSON_ID).is_in(rebuilt[PERSON_ID].implode())
        observed = [
            o
            for plan, frame in reads
            if plan.attributes and frame.height
            for o in observations(frame.filter(ours), plan)
        ]
        checks = [
            (plan, frame.filter(ours & pl.col(_CURRENT)))
            for plan, frame in reads
            if plan.checks and frame.height
        ]
        digests = _digests(mine.filter(ours), reads)
        write_golden(con, catalogue, protection, rebuilt, observed, checks, digests)
    return persons


def _recheck(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection: Revealer,
    candidates: Mapping[str, set[Key]],
    persons: set[str],
    plans: list[Plan],
) -> tuple[set[str], set[str]]:
    """For ``persons`` whose changes are all in datasets authoritative for no attribute
    (their history and golden values stand): their checks of the records of those
    datasets against their golden values, and their digest, rewritten. Returns (the
    persons rewritten, the persons to rebuild instead: no stored record, or no mention
    left)."""
    if not persons:
        return set(), set()
    scope = scope_frame(persons)
    mine = scoped_mentions(con, scope)
    now = sources_digests(con, catalogue, scoped=mine)
    before = _stored_digests(con, scope)
    differ = _differing(now, before)
    rest = differ - set(before[PERSON_ID]) | differ - set(now[PERSON_ID])
    persons = differ - rest
    if not persons:
        return set(), rest
    datasets = set().union(*(candidates[p] for p in persons))
    checked = [p for p in plans if p.checks and (p.dept, p.dataset.code) in datasets]
    rechecked = scope_frame(persons)
    with (
        transaction(con),  # the views joined to it, let go after it (lakehouse.lake.registered)
        registered(con, _MINE, mine.join(rechecked, on=PERSON_ID, how="semi").to_arrow()),
        registered(con, _MINE + "_scope", rechecked.to_arrow()),
    ):
        concepts = sorted({cmp.concept for plan in checked for cmp in plan.checks})
        golden = reveal_history_rows(  # the current values the checks compare with
            con.execute(
                f"SELECT * FROM {ZONE}.{HISTORY} SEMI JOIN {_MINE}_scope "
                f"USING ({PERSON_ID}) WHERE valid_to IS NULL AND list_contains(?, concept)",
                [concepts],
            ).pl(),
            protection,
        )
        frames = [(p, _read(con, p, protection, None)) for p in checked]
        rows = pl.concat(
            [
                check_records(cmp, frame, golden)
                for plan, frame in frames
                if frame.height
                for cmp in plan.checks
            ]
            or [pl.DataFrame(schema=dict(CHECK_SCHEMA))]
        )
        for plan in checked:
            con.execute(
                f"DELETE FROM {ZONE}.{CHECKS} WHERE dept = ? AND dataset = ? AND "
                f"{PERSON_ID} IN (SELECT {PERSON_ID} FROM {_MINE}_scope)",
                [plan.dept, plan.dataset.code],
            )
        insert_frame(con, ZONE, CHECKS, rows.select([c for c, _ in CHECK_COLUMNS]))
        digests = now.join(rechecked, on=PERSON_ID, how="semi")
        with registered(con, _MINE + "_digests", digests.to_arrow()):
            con.execute(
                f"UPDATE {ZONE}.{PERSON} AS p SET sources_digest = d.sources_digest "
                f"FROM {_MINE}_digests d WHERE p.{PERSON_ID} = d.{PERSON_ID}"
            )
        count_conflicts(con, catalogue)
    return persons, rest


__all__ = ["ANY", "Refreshed", "affected_persons", "refresh", "refresh_golden"]
