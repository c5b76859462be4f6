"""What a delivery changes in the master resident index's inputs (增量链接).

An incremental index update (:func:`curated.persons.link_persons` with ``changed`` and
``before``) re-reads the changed datasets' mentions; whether it must run the whole linking
again depends on what changed. The fallback (Splink) result is a function of its inputs
(:func:`curated.persons.inputs_digest`: the street's scale, the fallback mentions, their
candidate persons' records and the term frequencies of their values). A change of the
mentions (the rows of ``curated.person_keys`` with the unit their address names) leaves
those inputs as they were when every changed row (as it was and as it is):

- has a citizen-ID pseudonym (no fallback mention appeared, went or changed);
- shares no blocking value (mobile, name, birth date, unit) with a fallback mention (no
  candidate record appeared or went);
- holds no term-frequency value (name, mobile, unit) that a fallback mention or a
  candidate record holds (no frequency the fallback reads moved);

and the number of persons known by ID rounds to the same scale. Then the stored fallback
result stands for every mention, the unchanged datasets' links stand, and only the
changed datasets' mentions (and the mentions that anchor manual actions) are linked and
replayed: the result equals a full rebuild. Otherwise the whole index is linked again.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import duckdb
import polars as pl

from curated.linkage import BLOCKING, TF_COLUMNS
from curated.mentions import KEY_COLUMNS, MENTION_SCHEMA
from lakehouse.lake import has_table, registered

ZONE = "curated"
KEYS_TABLE = "person_keys"
HOUSE_MENTIONS = "house_mentions"
FALLBACK_TABLE = "person_fallback"
WATCH_TABLE = "person_fallback_watch"  # the values the stored fallback result rests on
WATCH_COLUMNS = [("col", "VARCHAR"), ("value", "VARCHAR")]
SCOPE = "_index_scope"  # registered: the (dept, dataset) being re-linked
DELTA = "_index_delta"  # registered: the mention rows that changed
KEYED = {**MENTION_SCHEMA, "house_id": pl.String}
# the term-frequency columns by the key they count (``name`` counts by its pseudonym)
TF_KEYS = tuple("name_pid" if c == "name" else c for c in TF_COLUMNS)


def _at(table: str, snapshot: int | None) -> str:
    """``table`` (at ``snapshot``: a subquery, DuckDB's parser takes no alias after AT)."""
    if snapshot is None:
        return table
    return f"(SELECT * FROM {table} AT (VERSION => {int(snapshot)}))"


def house_of_mentions(snapshot: int | None = None, scoped: bool = False) -> str:
    """SQL: (dept, dataset, key_pid, house_id) — the smallest unit a record's address
    names (``curated.house_mentions``), the fallback's ``house_id``; ``scoped``: only the
    datasets of the registered scope."""
    scope = f" SEMI JOIN {SCOPE} USING (dept, dataset)" if scoped else ""
    return (
        "SELECT dept, dataset, key_pid, min(house_id) AS house_id FROM "
        f"{_at(f'{ZONE}.{HOUSE_MENTIONS}', snapshot)} h{scope} WHERE house_id IS NOT NULL "
        "GROUP BY ALL"
    )


def _keyed_sql(snapshot: int | None, scoped: bool) -> str:
    """The mention rows (``person_keys``) with the smallest unit their record names (the
    fallback's ``house_id``), at ``snapshot`` (None: now); ``scoped``: only the datasets
    of the registered scope."""
    cols = ", ".join(f"k.{c}" for c in MENTION_SCHEMA)
    keys = _at(f"{ZONE}.{KEYS_TABLE}", snapshot)
    scope = f" SEMI JOIN {SCOPE} USING (dept, dataset)" if scoped else ""
    return (
        f"SELECT {cols}, h.house_id FROM {keys} k{scope} "
        f"LEFT JOIN ({house_of_mentions(snapshot, scoped)}) h USING (dept, dataset, key_pid)"
    )


def keyed_sql() -> str:
    """SQL: every mention row (``person_keys``) with the smallest unit its record names."""
    return _keyed_sql(None, scoped=False)


def keyed_rows(
    con: duckdb.DuckDBPyConnection, changed: set[tuple[str, str]], snapshot: int | None = None
) -> pl.DataFrame | None:
    """The mention rows of the ``changed`` datasets with their units, at ``snapshot`` (None:
    now); None when the lake cannot say (a table missing then: link everything). Read
    ``snapshot``'s outside a transaction (a failed read would abort it)."""
    if snapshot is None and not has_table(con, ZONE, HOUSE_MENTIONS):
        return None
    scope = pl.DataFrame(sorted(changed), schema=["dept", "dataset"], orient="row")
    try:
        with registered(con, SCOPE, scope.to_arrow()):
            return con.execute(_keyed_sql(snapshot, scoped=True)).pl().cast(KEYED)
    except duckdb.Error:
        return None


def persons_known(con: duckdb.DuckDBPyConnection) -> int:
    """Persons known by ID now (distinct citizen pseudonyms of the mentions)."""
    row = con.execute(f"SELECT count(DISTINCT citizen_pid) FROM {ZONE}.{KEYS_TABLE}").fetchone()
    return int(row[0]) if row else 0


def scale_of(persons: int) -> int:
    """The persons known by ID to the nearest power of two (the fallback's prior and
    frequency denominator: the model's prior is one over it)."""
    return 2 ** round(math.log2(max(persons, 1)))


def changed_rows(old: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """The rows in one of ``old`` / ``new`` and not the other (whole rows compared), with
    ``sign`` -1 (gone) or +1 (come)."""
    on = list(KEYED)
    return pl.concat(
        [
            old.join(new, on=on, how="anti", nulls_equal=True).with_columns(sign=pl.lit(-1)),
            new.join(old, on=on, how="anti", nulls_equal=True).with_columns(sign=pl.lit(1)),
        ]
    )


def _flips(group: list[str], where: str, flip: str = "(n > 0) <> (n - net > 0)") -> str:
    """SQL: the groups of ``group`` columns of the changed rows (filtered by ``where``)
    whose presence among the persons' rows flipped (``flip``; ``n``: rows now, ``net``:
    rows the change added): held now and not before (n - net rows), or the reverse."""
    on = " AND ".join(f"k.{c} IS NOT DISTINCT FROM t.{c}" for c in group)
    cols = ", ".join(group)
    return (
        f"SELECT count(*) FROM (SELECT t.net, count(k.citizen_pid) AS n FROM "
        f"(SELECT {cols}, sum(sign) AS net FROM {DELTA} WHERE {where} GROUP BY ALL) t "
        f"LEFT JOIN k ON k.citizen_pid = t.citizen_pid AND {on} GROUP BY ALL) "
        f"WHERE {flip}"
    )


def watch_sql(keyed: str, fallback: str) -> str:
    """SQL of (col, value): what a change must not touch for the fallback's result to stand
    — each blocking value of a fallback mention (``share:<column>``), each term-frequency
    value a fallback mention or a candidate record holds (``tf:<column>``), in order.
    ``keyed``: a table of every mention row with its unit (:func:`keyed_sql`);
    ``fallback``: its rows without a citizen pseudonym."""
    shares = " OR ".join(f"{c} IN (SELECT {c} FROM f WHERE {c} IS NOT NULL)" for c in BLOCKING)
    parts = [f"SELECT 'share:{c}' AS col, {c} AS value FROM f" for c in BLOCKING]
    parts += [f"SELECT 'tf:{c}', {c} FROM held" for c in TF_KEYS]
    return (
        f"WITH f AS (SELECT * FROM {fallback}), "
        f"held AS (SELECT * FROM f UNION ALL SELECT * FROM {keyed} "
        f"WHERE citizen_pid IS NOT NULL AND ({shares})) "
        f"SELECT DISTINCT col, value FROM ({' UNION ALL '.join(parts)}) "
        "WHERE value IS NOT NULL ORDER BY col, value"
    )


def write_watch(con: duckdb.DuckDBPyConnection, keyed: str, fallback: str) -> None:
    """Keep :func:`watch_sql` of the index as linked now (inside its transaction)."""
    con.execute(f"DELETE FROM {ZONE}.{WATCH_TABLE}")
    con.execute(f"INSERT INTO {ZONE}.{WATCH_TABLE} (col, value) {watch_sql(keyed, fallback)}")


def _counts(shared: str, held: Callable[[str], str]) -> str:
    """SQL (over the persons' rows ``k`` and the changed rows): how many candidate
    records (``shared``: a changed row shares a blocking value with a fallback mention)
    and term-frequency holders (``held(column)``: the value is one the fallback reads)
    appeared or went — the touches — then the persons known by ID who came (held now, not
    before) and went."""
    checks = [_flips(["citizen_pid", *BLOCKING], shared)]
    checks += [_flips(["citizen_pid", c], held(c)) for c in TF_KEYS]
    came = _flips(["citizen_pid"], "TRUE", "n > 0 AND n - net <= 0")
    went = _flips(["citizen_pid"], "TRUE", "n <= 0 AND n - net > 0")
    return f"SELECT {' + '.join(f'({c})' for c in checks)}, ({came}), ({went})"


def _watched_sql() -> str:
    """:func:`_counts` against the kept watch values, over the rows of the changed rows'
    persons only."""
    mine = (
        f"SELECT * FROM {ZONE}.{KEYS_TABLE} WHERE citizen_pid IN (SELECT citizen_pid FROM {DELTA})"
    )
    rows = (
        f"SELECT k.*, h.house_id FROM ({mine}) k LEFT JOIN (SELECT dept, dataset, key_pid, "
        f"min(house_id) AS house_id FROM {ZONE}.{HOUSE_MENTIONS} SEMI JOIN ({mine}) "
        "USING (dept, dataset, key_pid) WHERE house_id IS NOT NULL GROUP BY ALL) h "
        "USING (dept, dataset, key_pid)"
    )
    watch = f"SELECT value FROM {ZONE}.{WATCH_TABLE} WHERE col = "
    shared = " OR ".join(f"{c} IN ({watch}'share:{c}')" for c in BLOCKING)
    return f"WITH k AS MATERIALIZED ({rows}) " + _counts(
        shared, lambda c: f"{c} IN ({watch}'tf:{c}')"
    )


def _computed_sql() -> str:
    """:func:`_counts` against the fallback's inputs computed from every mention row."""
    shares = " OR ".join(f"{c} IN (SELECT {c} FROM f)" for c in BLOCKING)
    return (
        f"WITH k AS ({keyed_sql()}), "
        "f AS (SELECT * FROM k WHERE citizen_pid IS NULL), "
        f"p AS (SELECT * FROM k WHERE citizen_pid IS NOT NULL AND ({shares})) "
    ) + _counts(shares, lambda c: f"{c} IN (SELECT {c} FROM f UNION ALL SELECT {c} FROM p)")


def fallback_untouched(con: duckdb.DuckDBPyConnection, delta: pl.DataFrame) -> bool:
    """Whether the changed mention rows ``delta`` (:func:`changed_rows`; the index's
    tables as they are now) leave every fallback input as it was: no fallback mention
    among them; no candidate record (a person's distinct blocking values sharing one with
    a fallback mention) appearing or going; no person starting or ceasing to hold a
    term-frequency value a fallback mention or a candidate record holds; the same scale.
    Read against the kept watch values when the index has them."""
    if delta.height == 0:
        return True
    if delta["citizen_pid"].null_count():
        return False
    sql = _watched_sql() if has_table(con, ZONE, WATCH_TABLE) else _computed_sql()
    with registered(con, DELTA, delta.to_arrow()):
        touched, came, went = con.execute(sql).fetchone()
    if touched:
        return False
    if came == went == 0:
        return True
    now = persons_known(con)
    return scale_of(now) == scale_of(now - came + went)


def auto_links_of(
    con: duckdb.DuckDBPyConnection, mentions: pl.DataFrame, link_schema: dict
) -> pl.DataFrame | None:
    """The automatic links of ``mentions`` (dept, dataset, key_pid) while the stored
    fallback result stands: exact on the citizen pseudonym, else the stored fallback link;
    None when a fallback mention has no stored link (link everything)."""
    with registered(con, DELTA, mentions.select(KEY_COLUMNS).unique().to_arrow()):
        links = con.execute(
            "SELECT k.dept, k.dataset, k.key_pid, coalesce(k.citizen_pid, f.person_id) "
            "AS person_id, CASE WHEN k.citizen_pid IS NOT NULL THEN 'exact' ELSE f.method END "
            "AS method, CASE WHEN k.citizen_pid IS NULL THEN f.match_probability END "
            f"AS match_probability FROM {ZONE}.{KEYS_TABLE} k "
            f"SEMI JOIN {DELTA} USING (dept, dataset, key_pid) "
            f"LEFT JOIN {ZONE}.{FALLBACK_TABLE} f USING (dept, dataset, key_pid)"
        ).pl()
    if links["person_id"].null_count():
        return None
    return links.cast(link_schema)
