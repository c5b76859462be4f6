"""The re-collection table's last step (``curated.recollection._grouped``: the counts per
dataset and person summed per row of the table, keyed by numbers) against the query it
replaced (the four names of a row in the grouping key), on generated counts: several
datasets and fields per row, unlinked records, values never readable."""

from __future__ import annotations

import random

import duckdb
import polars as pl
import pytest

from curated import recollection
from curated.recollection import COUNTS, PART, _grouped

OLD = (
    "SELECT {g}, dept = authority_dept AS is_authority, "
    "count(*) FILTER (WHERE per_dataset) AS datasets, "
    "CAST(sum(n) FILTER (WHERE per_dataset) AS BIGINT) AS rows_collected, "
    "count(person_id) FILTER (WHERE NOT per_dataset) AS persons_collected, "
    "CAST(sum(nr) FILTER (WHERE per_dataset) AS BIGINT) AS rows_readable, "
    "count(person_id) FILTER (WHERE NOT per_dataset AND nr > 0) AS persons_readable "
    "FROM (SELECT {g}, person_id, sum(n) AS n, sum(nr) AS nr, "
    "GROUPING(person_id) = 1 AS per_dataset "
    "FROM {counts} JOIN _streethub_parts USING (part) "
    "GROUP BY GROUPING SETS (({g}, person_id), ({g}, dataset))) "
    "GROUP BY {g} ORDER BY concept, dept"
)


def _parts() -> pl.DataFrame:
    rows = []
    for dept in ("aaa", "bbb", "ccc"):
        for ds in ("one", "two", "three"):
            for concept in ("person.name", "person.mobile", "person.address"):
                if (len(dept) + len(ds) + len(concept)) % 4:  # not every dataset holds each
                    rows.append((concept, dept, f"{dept}_{ds}", "aaa", "aaa_one"))
    rows.append(("person.name", "bbb", "bbb_one", "aaa", "aaa_one"))  # a second field
    frame = pl.DataFrame(rows, schema=dict.fromkeys(PART, pl.String), orient="row")
    return frame.with_row_index("part").cast({"part": pl.Int32})


def test_grouped_equals_the_query_it_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    _streethub_parts = _parts()
    persons = [f"p{i:03d}" for i in range(60)]
    rows = []
    for part in range(_streethub_parts.height):
        for person in [*rng.sample(persons, rng.randint(0, 40)), None]:
            n = rng.randint(1, 3)
            rows.append((part, person, n, rng.choice([0, 0, n, 1])))
    con = duckdb.connect()
    con.execute(
        f"CREATE TEMP TABLE {COUNTS} (part INTEGER, person_id VARCHAR, n BIGINT, nr BIGINT)"
    )
    con.executemany(f"INSERT INTO {COUNTS} VALUES (?, ?, ?, ?)", rows)
    group = "concept, dept, authority_dept, authority_dataset"
    old = con.execute(OLD.format(g=group, counts=COUNTS)).pl()
    new = _grouped(con, _streethub_parts).select(old.columns).cast(old.schema)
    assert old.height > 5 and old["persons_collected"].sum() > 0
    assert (old["datasets"] > 1).any() and (
        old["persons_readable"] < old["persons_collected"]
    ).any()
    assert new.equals(old)
    # a row or two of the table grouped at a time (a row's counts are never cut)
    monkeypatch.setattr(recollection, "GROUP_ROWS", 50)
    assert _grouped(con, _streethub_parts).select(old.columns).cast(old.schema).equals(old)
    con.execute(f"DELETE FROM {COUNTS}")  # nothing counted: no rows
    assert _grouped(con, _streethub_parts).height == 0
