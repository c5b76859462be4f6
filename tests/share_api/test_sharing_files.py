"""A grant version's materialised files: the grant's view (the same rows as the JSON read),
encrypted at rest, read back seekably; stable ids; one build however many threads ask;
an opt-out makes old versions' files again under new ids; statistics; write_file for cdf."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from masking.stream import StreamError, is_encrypted
from share_api import consent, grants
from share_api.service import Service
from share_api.sharing import files, versions
from share_api.sharing.errors import SharingError
from share_api.views import grant_view, pick_snapshot
from tests.share_api.audit_support import built_mart, standing_grant
from tests.share_api.test_sharing_versions import COLUMNS, KIND, a_resident, commit, make_grant


def test_files_hold_the_grant_view_encrypted_and_read_back(service) -> None:
    grant = make_grant(service)
    version = versions.current_version(service, grant, KIND)
    made = files.files_of(service, grant, version, KIND)
    assert [f.part for f in made] == [0] and made[0].kind == "data"
    view = grant_view(service, grant, recipient_kind=KIND)
    (only,) = made
    assert only.rows == view.total == only.stats["numRecords"]
    # on disk: encrypted, nothing of the plaintext
    path = files.path_of(service, only)
    sealed = path.read_bytes()
    assert is_encrypted(sealed[:8]) and b"PAR1" not in sealed
    with files.open_plain(service, only) as fh:
        plain = fh.read()
        assert len(plain) == only.size and hashlib.sha256(plain).hexdigest() == only.sha256
        fh.seek(only.size - 8)  # a ranged read: the footer's length and magic
        assert fh.read() == plain[-8:] and plain[-4:] == b"PAR1"
    got = files.read_table(service, only)
    assert got.equals(view.table.replace_schema_metadata(None))
    assert files.schema_of(service, grant, version, KIND) == got.schema
    assert files.lookup(service, only.id) == only
    # statistics: counts of every column, values only of columns in clear naming nobody
    assert set(only.stats["nullCount"]) == set(COLUMNS)
    assert files.stat_columns(service, grant) == {"followup_id"}
    assert set(only.stats["minValues"]) == {"followup_id"}  # never the citizen's pseudonym
    assert files.lookup(service, "f" + "0" * 32) is None
    # asked again: the same file, not made again
    written = path.stat().st_mtime_ns
    assert files.files_of(service, grant, version, KIND) == made
    assert path.stat().st_mtime_ns == written


def test_one_build_when_threads_ask_at_once(service) -> None:
    grant = make_grant(service)
    version = versions.current_version(service, grant, KIND)
    results: list[list[files.SharedFile]] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(files.files_of(service, grant, version, KIND))
        )
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(r == results[0] for r in results)
    # every writer writes a place of its own: one file on disk means one build
    assert len(list((files.files_dir(service) / grant.id).iterdir())) == 1


def test_an_opt_out_remakes_old_versions_under_new_ids(service) -> None:
    grant = make_grant(service)
    v0 = versions.current_version(service, grant, KIND)
    (before,) = files.files_of(service, grant, v0, KIND)
    who = a_resident(service)
    consent.record_choice(service, pseudonym=who, category="health", recipient_kind=KIND,
                          choice="declined", channel="app", actor="test")  # fmt: skip
    v1 = versions.current_version(service, grant, KIND)
    assert v1.version == 1 and v1.snapshot == v0.snapshot
    (old,) = files.files_of(service, grant, v0, KIND)  # time travel: the current opt-outs
    (new,) = files.files_of(service, grant, v1, KIND)
    assert old.id != before.id and old.rows < before.rows
    assert (new.id, new.sha256, new.version, old.version) == (old.id, old.sha256, 1, 0)


def test_statistics_bound_the_rows() -> None:
    table = pa.table(
        {
            "n": [3, None, -2],
            "x": [1.5, 2.25, None],
            "s": ["b", "a" * 40, "c"],
            "long": ["z" * 40, "y", None],
            "d": [dt.date(2024, 1, 2), dt.date(2023, 5, 6), None],
            "t": pa.array([dt.datetime(2024, 1, 1, 0, 0, 0, 1500), None, None], pa.timestamp("us")),
            "b": [True, False, None],
        }
    )
    stats = files.file_stats(table)
    assert stats["numRecords"] == 3
    assert stats["nullCount"] == {"n": 1, "x": 1, "s": 0, "long": 1, "d": 1, "t": 2, "b": 1}
    low, high = stats["minValues"], stats["maxValues"]
    assert (low["n"], high["n"]) == (-2, 3)
    assert low["x"] <= 1.5 and high["x"] >= 2.25
    assert (low["s"], high["s"]) == ("a" * 32, "c")  # a long min is cut, never the max
    assert "long" not in low and "long" not in high
    assert (low["d"], high["d"]) == ("2023-05-06", "2024-01-02")
    assert (low["t"], high["t"]) == ("2024-01-01T00:00:00.001Z", "2024-01-01T00:00:00.002Z")
    assert "b" not in low


def test_write_file_registers_cdf_files_once(service) -> None:
    grant = make_grant(service)
    version = versions.current_version(service, grant, KIND)
    table = pa.table({"followup_id": ["a", "b"], "_change_type": ["insert", "delete"]})
    made = files.write_file(service, grant, version, 0, table, "cdf", "pair-state")
    again = files.write_file(service, grant, version, 0, table, "cdf", "pair-state")
    assert made == again and made.kind == "cdf" and made.rows == 2
    assert files.registered(service, grant.id, "pair-state", "cdf") == [made]
    with files.open_plain(service, made) as fh:
        assert pq.read_table(fh).equals(table)


def test_prepared_downloads_serve_the_view_from_disk(service) -> None:
    grant = make_grant(service)
    view = grant_view(service, grant, recipient_kind=KIND)
    expected = view.table.replace_schema_metadata(None)
    for fmt, decode in (
        ("parquet", lambda body: pq.read_table(pa.BufferReader(body))),
        ("arrow", lambda body: pa.ipc.open_stream(body).read_all()),
    ):
        got = files.prepared_download(service, grant, view.snapshot, KIND, fmt)
        assert got is not None, fmt
        body = b"".join(got.chunks)
        assert (len(body), got.rows, got.total, got.snapshot) == (
            got.nbytes,
            view.total,
            view.total,
            view.snapshot,
        )
        assert hashlib.sha256(body).hexdigest() == got.digest
        assert decode(body).equals(expected), fmt
    assert files.prepared_download(service, grant, view.snapshot, KIND, "json") is None
    # an old state still kept serves; one never made (the table changed since) is the
    # view's work
    commit(service, 'DELETE FROM staged."wjw__chronic_followups" WHERE rowid % 40 = 0')
    assert files.prepared_download(service, grant, view.snapshot, KIND, "parquet") is not None
    other = make_grant(service)
    assert files.prepared_download(service, other, view.snapshot, KIND, "parquet") is None


def test_sweep_removes_revoked_grants_and_superseded_states(service) -> None:
    kept, revoked = make_grant(service), make_grant(service)
    v0 = versions.current_version(service, kept, KIND)
    (old,) = files.files_of(service, kept, v0, KIND)
    (gone,) = files.files_of(
        service, revoked, versions.current_version(service, revoked, KIND), KIND
    )
    assert files.drop_grant(service, kept.id) == 0  # a live grant's files stay
    grants.revoke_grant(service, revoked.id, actor="test")  # its files go with it, no sweep
    assert files.lookup(service, gone.id) is None
    assert not (files.files_dir(service) / revoked.id).exists()
    pair = versions.materialisation_state(service, kept, v0, KIND)
    cdf = pa.table({"followup_id": ["a"], "_change_type": ["insert"]})
    stale_cdf = files.write_file(service, kept, v0, 0, cdf, "cdf", f"{pair}>{'0' * 64}")
    assert files.sweep(service) == 1  # the stale cdf
    assert files.lookup(service, stale_cdf.id) is None
    assert files.lookup(service, old.id) == old
    # an opt-out supersedes v0's files; v1 (same snapshot) needs the remade ones only
    consent.record_choice(service, pseudonym=a_resident(service), category="health",
                          recipient_kind=KIND, choice="declined", channel="app", actor="test")  # fmt: skip
    v1 = versions.current_version(service, kept, KIND)
    (new,) = files.files_of(service, kept, v1, KIND)
    assert files.sweep(service) == 1
    assert files.lookup(service, old.id) is None
    assert files.lookup(service, new.id) is not None and files.sweep(service) == 0


def wait_for(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"the preparer did not {what}")
        time.sleep(0.2)


def test_the_preparer_follows_new_grants_opt_outs_and_revocations(service, monkeypatch) -> None:
    monkeypatch.setattr(service.settings, "share_prepare_seconds", 3600)  # only what moves
    stop = files.start_preparer(service)
    try:
        grant = make_grant(service)

        def made() -> list[files.SharedFile]:
            recorded = versions.history(service, grant)
            if not recorded:
                return []
            state = versions.materialisation_state(service, grant, recorded[-1], KIND)
            data = files.registered(service, grant.id, state, "data")
            return data if files.registered(service, grant.id, state, files.ARROW) else []

        wait_for(made, "make the new grant's files (its data file and Arrow stream)")
        (first,) = made()
        consent.record_choice(service, pseudonym=a_resident(service), category="health",
                              recipient_kind=KIND, choice="declined", channel="app",
                              actor="test")  # fmt: skip
        wait_for(lambda: made() and made()[0].id != first.id, "remake them after an opt-out")
        wait_for(lambda: files.lookup(service, first.id) is None, "sweep the superseded ones")
        (data,) = made()
        assert data.rows < first.rows
        grants.revoke_grant(service, grant.id, actor="test")
        wait_for(lambda: files.lookup(service, data.id) is None, "sweep the revoked grant")
        assert not (files.files_dir(service) / grant.id).exists()
    finally:
        stop()


def test_a_file_swapped_for_another_is_refused(service) -> None:
    first, second = make_grant(service), make_grant(service)
    (one,) = files.files_of(service, first, versions.current_version(service, first, KIND), KIND)
    (two,) = files.files_of(service, second, versions.current_version(service, second, KIND), KIND)
    place = files.path_of(service, one)
    place.write_bytes(files.path_of(service, two).read_bytes())
    with pytest.raises(StreamError):
        files.open_plain(service, one)
    with pytest.raises(StreamError):
        b"".join(
            files.prepared_download(
                service, first, pick_snapshot(service, None), KIND, "parquet"
            ).chunks
        )
    place.unlink()
    with pytest.raises(SharingError) as gone:
        files.open_plain(service, one)
    assert gone.value.status == 404


def test_a_version_out_of_the_retention_window_is_refused_and_swept(service, monkeypatch) -> None:
    grant = make_grant(service)
    v0 = versions.current_version(service, grant, KIND)
    (old,) = files.files_of(service, grant, v0, KIND)
    commit(service, 'DELETE FROM staged."wjw__chronic_followups" WHERE rowid % 40 = 0')
    v1 = versions.current_version(service, grant, KIND)
    (new,) = files.files_of(service, grant, v1, KIND)
    monkeypatch.setattr(service.settings, "snapshot_retention_days", 0)
    with pytest.raises(SharingError) as err:
        files.files_of(service, grant, v0, KIND)  # made already: refused all the same
    assert err.value.status == 400 and "retention" in err.value.message
    assert files.sweep(service) == 1
    assert files.lookup(service, old.id) is None and files.lookup(service, new.id) == new
    assert files.files_of(service, grant, v1, KIND)[0].id == new.id  # the table's latest


def test_two_processes_making_the_same_files_agree(service) -> None:
    """Two services on one home (as two server processes) build the same version at once:
    one registration wins, the other's files go, both read the winner's."""
    other = Service.open(service.settings)
    try:
        grant = make_grant(service)
        version = versions.current_version(service, grant, KIND)
        got: dict[int, list[files.SharedFile]] = {}
        threads = [
            threading.Thread(
                target=lambda s=s: got.update({id(s): files.files_of(s, grant, version, KIND)})
            )
            for s in (service, other)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        first, second = got.values()
        assert [f.id for f in first] == [f.id for f in second]
        for svc, made in ((service, first), (other, second)):
            assert files.read_table(svc, made[0]).num_rows == made[0].rows
    finally:
        other.close()


def test_prepare_makes_a_front_end_s_standing_mart_grant(service, people, mart_street) -> None:
    people.org("portal", kind="frontend")
    grant = grants.get_grant(service, standing_grant(service, "portal", built_mart(mart_street)))
    assert files.prepare(service) >= 1
    (version,) = versions.history(service, grant)
    state = versions.materialisation_state(service, grant, version, "frontend")
    (data,) = files.registered(service, grant.id, state, "data")
    assert data.rows == grant_view(service, grant, recipient_kind="frontend").total
    assert files.registered(service, grant.id, state, files.ARROW)
    assert files.prepare(service) == 0  # nothing missing any more
