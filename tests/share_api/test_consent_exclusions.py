"""On the mart street: the exclusions the registry gives meet the lake's own columns — the
staged person pseudonym, the master index's mentions, a mart's subject column. The lake is
only read; the service (its state and audit log) runs on a copy of the home."""

from __future__ import annotations

import pyarrow as pa

from lakehouse.lake import open_lake
from lakehouse.snapshots import current_snapshot
from share_api import consent as reg


def table(street, name: str, *columns: str) -> pa.Table:
    cols = ", ".join(f'"{c}"' for c in columns)
    with open_lake(street.settings, read_only=True) as con:
        return con.execute(f"SELECT {cols} FROM {name}").arrow().read_all()


def decline(service, who: str, category: str, kind: str = "department") -> None:
    reg.record_choice(service, pseudonym=who, category=category, recipient_kind=kind,
                      choice="declined", channel="counter", actor="jw/officer")  # fmt: skip


def test_an_opted_out_resident_leaves_the_health_data_not_the_register(mart_street, service):
    health = table(mart_street, 'staged."wjw__elderly_health_checks"', "_pid_citizen_id")
    register = table(mart_street, 'staged."gaj__registered_residents"', "_pid_citizen_id")
    both = set(health["_pid_citizen_id"].to_pylist()) & set(register["_pid_citizen_id"].to_pylist())
    who = sorted(both)[0]
    decline(service, who, "health")
    for ref, t in (("wjw.elderly_health_checks", health), ("gaj.registered_residents", register)):
        kept = reg.excluded_residents(service, ref, "department").filter_arrow(t)
        gone = t.num_rows - kept.num_rows
        expected = t["_pid_citizen_id"].to_pylist().count(who) if ref.startswith("wjw") else 0
        assert gone == expected and (gone > 0) == ref.startswith("wjw"), ref


def test_records_linked_without_an_id_are_left_out_through_the_index(mart_street, service):
    """A 12345 caller gives a name and a number, no ID: the master index links the appeal to
    the person, and the widened exclusion drops it by its ``_key_pid``."""
    mentions = mart_street.query(
        "SELECT person_id, key_pid FROM curated.person_mentions "
        "WHERE dept = 'rx' AND dataset = 'appeals' AND method = 'probabilistic'"
    )
    who = mentions["person_id"][0]
    keys = set(mentions.filter(mentions["person_id"] == who)["key_pid"])
    decline(service, who, "public_service")
    ex = reg.excluded_residents(service, "rx.appeals", "department")
    assert ex.columns == () and not ex  # rx appeals carry no citizen ID
    with open_lake(mart_street.settings, read_only=True) as con:
        wide = reg.widen_by_mentions(ex, con)
        as_of = reg.widen_by_mentions(ex, con, snapshot=current_snapshot(con))
    assert wide.by_column == as_of.by_column == {reg.KEY_PID: keys}
    appeals = table(mart_street, 'staged."rx__appeals"', "_key_pid")
    kept = wide.filter_arrow(appeals)
    assert appeals.num_rows - kept.num_rows == len(keys) > 0
    assert not set(kept["_key_pid"].to_pylist()) & keys


def test_a_mart_drops_the_resident_by_its_subject_column(mart_street, service):
    care = table(mart_street, 'marts."elderly_care"', "person_id")
    who = care["person_id"][0].as_py()
    decline(service, who, "social_assistance", kind="frontend")
    kept = reg.excluded_residents(service, "marts.elderly_care", "frontend").filter_arrow(care)
    assert care.num_rows - kept.num_rows == 1 and who not in kept["person_id"].to_pylist()
    other = reg.excluded_residents(service, "marts.elderly_care", "department")
    assert other.filter_arrow(care).num_rows == care.num_rows
