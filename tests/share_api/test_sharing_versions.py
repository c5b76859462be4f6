"""A grant's Delta Sharing table versions: a new version when the granted table's lake
data, the grant's terms or the opt-outs that apply change — never for a lake commit to
another table; times strictly increasing; look-ups by number, time and range; 400s."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from lakehouse.lake import open_lake
from share_api import consent, grants
from share_api.sharing import versions
from share_api.sharing.errors import SharingError

HEALTH = "wjw.chronic_followups"
COLUMNS = ["followup_id", "citizen_id"]
KIND = "department"
SNAPSHOT_TTL = 1.1  # views.SNAPSHOT_TTL_S: how long the service takes the lake's snapshot


def make_grant(service, **terms) -> grants.Grant:
    gid = grants.create_grant(
        service,
        **{
            "grantee_org": "mzj",
            "resource": HEALTH,
            "columns": COLUMNS,
            "row_filter": None,
            "masking": {"citizen_id": "pseudonymise"},
            "expires_at": dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
            "request_id": None,
        }
        | terms,
    )
    return grants.get_grant(service, gid)


def commit(service, sql: str) -> None:
    """One lake commit on the copied home."""
    with open_lake(service.settings) as con:
        con.execute(sql)
    time.sleep(SNAPSHOT_TTL)


def a_resident(service) -> str:
    with open_lake(service.settings, read_only=True) as con:
        (who,) = con.execute(
            'SELECT "_pid_citizen_id" FROM staged."wjw__chronic_followups" ORDER BY 1 LIMIT 1'
        ).fetchone()
    return who


def test_versions_follow_the_table_terms_and_opt_outs(service) -> None:
    grant = make_grant(service)
    v0 = versions.current_version(service, grant, KIND)
    assert v0.version == 0 and v0.recorded_at.tzinfo is not None
    assert versions.current_version(service, grant, KIND) == v0  # nothing changed
    # a lake commit to another table: the same version
    commit(service, 'DELETE FROM staged."rsj__social_insurance" WHERE rowid % 50 = 0')
    assert versions.current_version(service, grant, KIND) == v0
    # the granted table changes: version 1, at the new snapshot
    commit(service, 'DELETE FROM staged."wjw__chronic_followups" WHERE rowid % 50 = 0')
    v1 = versions.current_version(service, grant, KIND)
    assert (v1.version, v1.recorded_at > v0.recorded_at, v1.snapshot > v0.snapshot) == (
        1,
        True,
        True,
    )
    # an opt-out that applies: version 2, same snapshot
    consent.record_choice(
        service,
        pseudonym=a_resident(service),
        category="health",
        recipient_kind=KIND,
        choice="declined",
        channel="counter",
        actor="test",
    )
    v2 = versions.current_version(service, grant, KIND)
    assert (v2.version, v2.snapshot) == (2, v1.snapshot)
    # the same opt-out for another kind of recipient does not apply to this one
    assert versions.current_version(service, grant, KIND) == v2
    assert [v.version for v in versions.history(service, grant)] == [0, 1, 2]
    assert versions.get_version(service, grant, 1) == v1
    assert versions.versions_between(service, grant, 1, 2) == [v1, v2]
    assert versions.version_at(service, grant, v1.recorded_at) == v1
    assert versions.version_at(service, grant, v2.recorded_at - versions.STEP) == v1
    assert versions.version_from(service, grant, v0.recorded_at + versions.STEP) == v1
    assert versions.version_from(service, grant, v2.recorded_at) == v2


def test_changed_terms_make_a_version(service) -> None:
    grant = make_grant(service)
    v0 = versions.current_version(service, grant, KIND)
    narrowed = grant.__class__(**{**grant.__dict__, "columns": ("followup_id",),
                                  "masking": {"followup_id": "none"}})  # fmt: skip
    v1 = versions.current_version(service, narrowed, KIND)
    assert (v1.version, v1.snapshot, v1.state != v0.state) == (1, v0.snapshot, True)


def test_unknown_versions_and_times_are_400(service) -> None:
    grant = make_grant(service)
    v0 = versions.current_version(service, grant, KIND)
    cases = [
        lambda: versions.get_version(service, grant, 7),
        lambda: versions.version_at(service, grant, v0.recorded_at - dt.timedelta(seconds=1)),
        lambda: versions.version_from(service, grant, v0.recorded_at + dt.timedelta(days=1)),
        lambda: versions.versions_between(service, grant, 0, 3),
        lambda: versions.versions_between(service, grant, 1, 0),
        lambda: versions.version_at(service, grant, dt.datetime(2025, 1, 1)),  # no zone
    ]
    for case in cases:
        with pytest.raises(SharingError) as err:
            case()
        assert err.value.status == 400 and err.value.code == "INVALID_PARAMETER_VALUE"


def test_a_version_out_of_the_retention_window_is_400(service, monkeypatch) -> None:
    grant = make_grant(service)
    v0 = versions.current_version(service, grant, KIND)
    monkeypatch.setattr(service.settings, "snapshot_retention_days", 0)
    # unchanged since: the current snapshot reads the same rows
    assert versions.read_snapshot(service, grant, v0) >= v0.snapshot
    commit(service, 'DELETE FROM staged."wjw__chronic_followups" WHERE rowid % 50 = 0')
    with pytest.raises(SharingError) as err:
        versions.read_snapshot(service, grant, v0)
    assert err.value.status == 400 and "retention" in err.value.message


def test_threads_recording_at_once_record_one_version(service) -> None:
    grant = make_grant(service)
    got: list[versions.TableVersion] = []
    threads = [
        threading.Thread(target=lambda: got.append(versions.current_version(service, grant, KIND)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and {v.version for v in got} == {0}
    assert len(versions.history(service, grant)) == 1


def test_a_new_link_in_the_master_index_matters_only_with_opt_outs(service) -> None:
    """The view also leaves out records the master index links to a resident who declined:
    a change of those links makes a new version once someone declined, not before."""
    grant = make_grant(service)
    again = 'INSERT INTO curated."person_mentions" SELECT * FROM curated."person_mentions" LIMIT 1'
    v0 = versions.current_version(service, grant, KIND)
    commit(service, again)
    assert versions.current_version(service, grant, KIND) == v0
    consent.record_choice(service, pseudonym=a_resident(service), category="health",
                          recipient_kind=KIND, choice="declined", channel="app", actor="test")  # fmt: skip
    v1 = versions.current_version(service, grant, KIND)
    commit(service, again)
    v2 = versions.current_version(service, grant, KIND)
    assert (v1.version, v2.version, v2.snapshot) == (1, 2, v0.snapshot)
