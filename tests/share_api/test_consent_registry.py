"""The consent registry: a resident's choice by pseudonym, per category and recipient kind,
with its time and channel; the history kept; what a grant's read must leave out."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from catalog.model import PiiKind
from catalog.settings import Settings
from masking.pseudonym import pseudonym
from share_api import consent as reg
from share_api.app import create_app
from share_api.db import create_schema, engine_for
from share_api.deps import Principal, current_principal
from share_api.service import Service

ANNA = "0123456789abcdef0123"
BO = "fedcba9876543210fedc"


class Recorder:
    """Stands in for the audit log."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict]] = []

    def record(self, action: str, actor: str, **details):
        self.records.append((action, actor, details))
        return {"seq": len(self.records)}

    def close(self) -> None:
        return None


@pytest.fixture
def service(tmp_path) -> Service:
    settings = Settings(home=tmp_path / "home").ensure_dirs()
    engine = engine_for(settings)
    create_schema(engine)
    svc = Service(settings=settings, engine=engine)
    svc.__dict__["audit"] = Recorder()
    yield svc
    engine.dispose()


def choose(service, who=ANNA, category="health", kind="department", choice="declined", **kw):
    kw.setdefault("channel", "counter")
    kw.setdefault("actor", "jw/officer")
    return reg.record_choice(
        service, pseudonym=who, category=category, recipient_kind=kind, choice=choice, **kw
    )


def test_a_refusal_then_a_withdrawal(service):
    choose(service)
    assert reg.declined(service, "health", "department") == {ANNA}
    choose(service, choice="allowed", channel="app")
    assert reg.declined(service, "health", "department") == set()
    history = reg.history(service, ANNA)
    assert [(h["choice"], h["channel"]) for h in history] == [
        ("declined", "counter"), ("allowed", "app"),
    ]  # fmt: skip
    assert [c["choice"] for c in reg.current_choices(service, ANNA)] == ["allowed"]
    assert all(h["chosen_at"].tzinfo is not None for h in history)


def test_a_time_with_an_offset_is_kept_as_the_same_instant(service):
    beijing = dt.timezone(dt.timedelta(hours=8))
    when = dt.datetime(2026, 11, 30, 9, 30, tzinfo=beijing)
    record = choose(service, chosen_at=when)
    (stored,) = reg.history(service, ANNA)
    assert record["chosen_at"] == stored["chosen_at"] == when
    assert stored["chosen_at"].utcoffset() == dt.timedelta(0)
    with pytest.raises(reg.ConsentError, match=r"^chosen_at"):
        choose(service, chosen_at=dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14))))


def test_the_choice_made_last_counts_not_the_one_recorded_last(service):
    now = dt.datetime.now(dt.UTC)
    choose(service, chosen_at=now - dt.timedelta(hours=1))
    choose(service, choice="allowed", chosen_at=now - dt.timedelta(days=3), channel="paper")
    assert reg.declined(service, "health", "department") == {ANNA}  # the letter was older


def test_a_choice_another_process_records_counts_at_the_next_call(service):
    assert reg.declined(service, "health", "department") == set()  # kept by this service
    other = Service(settings=service.settings, engine=engine_for(service.settings))
    other.__dict__["audit"] = Recorder()
    choose(other)
    assert reg.declined(service, "health", "department") == {ANNA}
    choose(other, choice="allowed", channel="app")
    assert reg.declined(service, "health", "department") == set()
    other.engine.dispose()


def test_choices_are_per_category_recipient_kind_and_resident(service):
    choose(service)
    choose(service, who=BO, category="social_assistance", kind="frontend")
    assert reg.declined(service, "health", "department") == {ANNA}
    assert reg.declined(service, "health", "frontend") == set()
    assert reg.declined(service, "social_assistance", "frontend") == {BO}
    assert reg.declined(service, "social_assistance", "department") == set()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"who": "110105194912310021"}, "pseudonym"),  # a citizen ID is no pseudonym
        ({"category": "none"}, "category"),
        ({"category": "wellbeing"}, "category"),
        ({"kind": "everyone"}, "recipient_kind"),
        ({"choice": "maybe"}, "choice"),
        ({"channel": "carrier pigeon"}, "channel"),
        ({"chosen_at": dt.datetime.now(dt.UTC) + dt.timedelta(days=1)}, "chosen_at"),
    ],
)
def test_a_bad_choice_is_refused_naming_the_field_not_the_value(service, change, field):
    with pytest.raises(reg.ConsentError) as err:
        choose(service, **change)
    assert err.value.field == field and str(err.value).startswith(field)
    assert "110105194912310021" not in str(err.value)
    assert reg.history(service, ANNA) == [] and service.audit.records == []


def test_each_choice_is_audited_with_the_pseudonym(service):
    record = choose(service, channel="hotline")
    assert service.audit.records == [
        ("consent.set", "jw/officer", {
            "consent_id": record["id"], "pseudonym": ANNA, "category": "health",
            "recipient_kind": "department", "choice": "declined", "channel": "hotline",
        }),
    ]  # fmt: skip


# --- what a grant's read leaves out -------------------------------------------------------


def test_a_health_dataset_excludes_by_its_person_pseudonym(service):
    choose(service)
    ex = reg.excluded_residents(service, "wjw.elderly_health_checks", "department")
    assert ex and ex.category == "health" and ex.pseudonyms == {ANNA}
    assert ex.by_column == {"_pid_citizen_id": {ANNA}}
    assert not reg.excluded_residents(service, "wjw.elderly_health_checks", "frontend")
    other = reg.excluded_residents(service, "gaj.registered_residents", "department")
    assert not other and other.category == "identity" and other.columns == ("_pid_citizen_id",)


def test_a_mart_excludes_by_its_subject_column(service):
    choose(service, category="social_assistance", kind="frontend")
    ex = reg.excluded_residents(service, "marts.elderly_care", "frontend")
    assert ex.by_column == {"person_id": {ANNA}}
    none = reg.excluded_residents(service, "marts.age_structure", "frontend")
    assert not none and none.category == "none" and none.columns == ()


def test_an_unknown_resource_is_a_key_error(service):
    with pytest.raises(KeyError):
        reg.excluded_residents(service, "wjw.nothing", "department")
    with pytest.raises(KeyError):
        reg.excluded_residents(service, "marts.nothing", "department")


def test_the_exclusion_filters_an_arrow_table(service):
    choose(service)
    ex = reg.excluded_residents(service, "wjw.chronic_followups", "department")
    table = pa.table({"_pid_citizen_id": [ANNA, BO, None, ANNA], "n": [1, 2, 3, 4]})
    assert ex.filter_arrow(table)["n"].to_pylist() == [2, 3]


# --- over HTTP ----------------------------------------------------------------------------


def client_as(service, org: str, kind: str, *roles: str) -> TestClient:
    app = create_app(service=service)
    app.dependency_overrides[current_principal] = lambda: Principal(
        "u1", org, kind, frozenset(roles), "tok-u1"
    )
    return TestClient(app)


def test_the_residents_app_records_a_choice_for_every_recipient_kind(service):
    app = client_as(service, "jwapp", "frontend")
    r = app.post("/consent", json={"pseudonym": ANNA, "category": "health",
                                   "choice": "declined", "channel": "app"})  # fmt: skip
    assert r.status_code == 201
    # every kind of organisation a principal can belong to (street and community included)
    assert sorted(x["recipient_kind"] for x in r.json()) == [
        "analyst", "community", "department", "frontend", "street"]  # fmt: skip
    mine = app.get(f"/consent/{ANNA}").json()
    assert [(c["category_zh"], c["choice"]) for c in mine["current"]] == [
        ("医疗健康信息", "declined")
    ] * 5


def test_a_citizen_id_is_pseudonymised_on_arrival_and_never_kept(service):
    cid = "11010519491231002X"
    expected = pseudonym(cid, service.keyring, kind=PiiKind.citizen_id)  # the hub's _pid_
    office = client_as(service, "jw", "department", "data_officer")
    r = office.post("/consent", json={"citizen_id": cid, "category": "housing",
                                      "recipient_kinds": ["analyst"], "choice": "declined",
                                      "channel": "counter"})  # fmt: skip
    assert r.status_code == 201 and r.json()[0]["pseudonym"] == expected
    assert cid not in r.text and cid not in str(service.audit.records)
    bad = office.post("/consent", json={"citizen_id": "110105194912310021", "category": "housing",
                                        "choice": "declined", "channel": "counter"})  # fmt: skip
    assert bad.status_code == 422 and "110105194912310021" not in bad.text
    # full-width digits and a lower-case x are the same person
    same = office.post("/consent", json={"citizen_id": "１１０１０５１９４９１２３１００２x",
                                         "category": "housing", "recipient_kinds": ["analyst"],
                                         "choice": "allowed", "channel": "paper"})  # fmt: skip
    assert same.status_code == 201 and same.json()[0]["pseudonym"] == expected


def test_who_may_record_and_read(service):
    requester = client_as(service, "wjw", "department", "requester")
    body = {"pseudonym": ANNA, "category": "health", "choice": "declined", "channel": "app"}
    assert requester.post("/consent", json=body).status_code == 403
    assert requester.get(f"/consent/{ANNA}").status_code == 403
    assert "auth.forbidden" in [action for action, _, _ in service.audit.records[-2:]]
    auditor = client_as(service, "jw", "department", "auditor")
    assert auditor.get(f"/consent/{ANNA}").status_code == 200
    assert auditor.get("/consent/not-a-pseudonym").status_code == 422
    officer = client_as(service, "jw", "department", "data_officer")
    assert officer.post("/consent", json={**body, "category": "none"}).status_code == 422
    both = {**body, "citizen_id": "11010519491231002X"}
    assert officer.post("/consent", json=both).status_code == 422
