"""The change feed between a grant's table versions: the start version's files as adds,
then a version's inserted and deleted rows as cdf files (``_change_type``) — applied to the
start's rows they give the end's; kept and reused; none for a version made only by an
opt-out, whose person's rows leave the old cdf files too (privacy first); 400s."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lakehouse.lake import open_lake
from share_api import consent
from share_api.sharing import changes, files, versions
from share_api.sharing.errors import SharingError
from tests.share_api.test_sharing_versions import KIND, a_resident, commit, make_grant

TABLE = 'staged."wjw__chronic_followups"'


def rows_of(service, found: list[files.SharedFile]) -> Counter:
    """The rows of some files as a multiset of tuples (``_change_type`` apart)."""
    held: Counter = Counter()
    for f in found:
        table = files.read_table(service, f)
        names = [n for n in table.column_names if n != changes.CHANGE_TYPE]
        held.update(zip(*(table[n].to_pylist() for n in names), strict=True))
    return held


def split(service, lines) -> tuple[Counter, Counter]:
    """The inserted and deleted rows of a feed's cdf lines."""
    inserted: Counter = Counter()
    deleted: Counter = Counter()
    for kind, f, _ in lines:
        if kind != "cdf":
            continue
        table = files.read_table(service, f)
        for change in (changes.INSERT, changes.DELETE):
            picked = table.filter(pc.equal(table[changes.CHANGE_TYPE], change))
            got = rows_of_table(picked.drop_columns([changes.CHANGE_TYPE]))
            (inserted if change == changes.INSERT else deleted).update(got)
    return inserted, deleted


def rows_of_table(table: pa.Table) -> Counter:
    return Counter(zip(*(c.to_pylist() for c in table.columns), strict=True))


def count(service, where: str) -> int:
    with open_lake(service.settings, read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {TABLE} WHERE {where}").fetchone()[0]


def test_diff_keeps_multiplicity_and_nulls() -> None:
    schema = pa.schema([("id", pa.string()), ("n", pa.int32()), ("d", pa.date32())])
    day = dt.date(2024, 1, 1)
    before = pa.Table.from_pylist(
        [{"id": "a", "n": 1, "d": day}, {"id": "a", "n": 1, "d": day}, {"id": "b", "n": None,
         "d": None}, {"id": "c", "n": 3, "d": day}], schema=schema)  # fmt: skip
    after = pa.Table.from_pylist(
        [{"id": "a", "n": 1, "d": day}, {"id": "b", "n": None, "d": None},
         {"id": "c", "n": 4, "d": day}, {"id": "d", "n": None, "d": day}], schema=schema)  # fmt: skip
    out = changes.diff(before, after)
    assert out.schema.names == ["id", "n", "d", "_change_type"]
    assert out.schema.field("n").type == pa.int32()
    got = sorted((r["id"], r["n"], r["_change_type"]) for r in out.to_pylist())
    assert got == [("a", 1, "delete"), ("c", 3, "delete"), ("c", 4, "insert"),
                   ("d", None, "insert")]  # fmt: skip
    assert changes.diff(after, after).num_rows == 0
    with pytest.raises(SharingError) as err:
        changes.diff(before.drop_columns(["n"]), after)
    assert err.value.status == 400


def test_the_feed_turns_the_start_version_into_the_end(service, monkeypatch) -> None:
    grant = make_grant(service)
    v0 = versions.current_version(service, grant, KIND)
    deleted_in_lake = count(service, "rowid % 40 = 0")
    commit(service, f"DELETE FROM {TABLE} WHERE rowid % 40 = 0")
    commit(service, f"UPDATE {TABLE} SET followup_id = followup_id || '-x' WHERE rowid % 41 = 1")
    v1 = versions.current_version(service, grant, KIND)
    assert v1.version == 1
    lines = changes.change_lines(service, grant, v0, v1, KIND)
    adds = [f for kind, f, _ in lines if kind == "add"]
    assert adds == files.files_of(service, grant, v0, KIND)
    assert [(v.version, f.kind, f.version) for kind, f, v in lines if kind == "cdf"] == [
        (1, "cdf", 1)
    ]
    inserted, deleted = split(service, lines)
    start, end = rows_of(service, adds), rows_of(service, files.files_of(service, grant, v1, KIND))
    assert start - deleted + inserted == end and not (deleted - start)
    updated = sum(inserted.values())
    assert updated > 0 and sum(deleted.values()) == deleted_in_lake + updated
    # asked again: the same files, nothing written
    writes = []
    real = files.write_file
    monkeypatch.setattr(changes, "write_file", lambda *a, **k: writes.append(1) or real(*a, **k))
    assert changes.change_lines(service, grant, v0, v1, KIND) == lines
    assert writes == []
    # from version 1: what version 1 made (the cdf lines), not its whole rows again;
    # version 0 alone: its adds; a reversed range: 400
    assert changes.change_lines(service, grant, v1, v1, KIND) == [
        line for line in lines if line[0] == "cdf"
    ]
    assert changes.change_lines(service, grant, v0, v0, KIND) == [
        line for line in lines if line[0] == "add"
    ]
    with pytest.raises(SharingError) as err:
        changes.change_lines(service, grant, v1, v0, KIND)
    assert err.value.status == 400


def test_one_build_a_pair_when_threads_ask_at_once(service, monkeypatch) -> None:
    grant = make_grant(service)
    v0 = versions.current_version(service, grant, KIND)
    commit(service, f"DELETE FROM {TABLE} WHERE rowid % 30 = 0")
    v1 = versions.current_version(service, grant, KIND)
    files.files_of(service, grant, v0, KIND)
    files.files_of(service, grant, v1, KIND)
    writes = []
    real = files.write_file
    monkeypatch.setattr(changes, "write_file", lambda *a, **k: writes.append(1) or real(*a, **k))
    results: list[list[files.SharedFile]] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(changes.cdf_files(service, grant, v0, v1, KIND))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert len(writes) == 2  # one part of rows and the empty mark
    assert [f.rows > 0 for f in results[0]] == [True]


def test_an_opt_out_shows_no_change_and_leaves_old_cdf_files(service) -> None:
    grant = make_grant(service)
    who = a_resident(service)
    theirs = count(service, f"\"_pid_citizen_id\" = '{who}'")
    assert theirs > 0
    v0 = versions.current_version(service, grant, KIND)
    where = f"\"_pid_citizen_id\" = '{who}' OR rowid % 40 = 0"
    gone = count(service, where)
    commit(service, f"DELETE FROM {TABLE} WHERE {where}")
    v1 = versions.current_version(service, grant, KIND)
    before = changes.change_lines(service, grant, v0, v1, KIND)
    _, deleted = split(service, before)
    assert sum(deleted.values()) == gone
    consent.record_choice(service, pseudonym=who, category="health", recipient_kind=KIND,
                          choice="declined", channel="app", actor="test")  # fmt: skip
    v2 = versions.current_version(service, grant, KIND)
    assert (v2.version, v2.snapshot) == (2, v1.snapshot)
    # v1 -> v2 changes no row the recipient may see: no cdf line
    assert changes.cdf_files(service, grant, v1, v2, KIND) == []
    after = changes.change_lines(service, grant, v0, v2, KIND)
    assert [(k, v.version) for k, _, v in after if k == "cdf"] == [("cdf", 1)]
    _, deleted = split(service, after)
    assert sum(deleted.values()) == gone - theirs  # their rows are in no old version either
    old_ids = {f.id for _, f, _ in before}
    assert not old_ids & {f.id for _, f, _ in after}
    # the superseded files are swept
    assert files.sweep(service) >= len(old_ids)
    assert all(files.lookup(service, fid) is None for fid in old_ids)
