"""Requests and reviews, as functions: the share-type rules, the two approvals by different
people, refusal with the recorded legal basis, the answer deadline, admin operations.

The grant itself is GRANTS' (``create_grant``): here a recorder stands in for it, so what
the rules hand over is checked; the HTTP end to end is tests/share_api/test_e2e.py.
"""

from __future__ import annotations

import datetime as dt
import time

import chinese_calendar
import pytest

from catalog.model import ShareType
from catalog.settings import Settings
from share_api import calendar
from share_api import requests as rq
from share_api.db import create_schema, engine_for
from share_api.deps import Principal
from share_api.service import Service


class Recorder:
    """Stands in for the audit log and for GRANTS' create_grant."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict]] = []
        self.grants: list[dict] = []
        self.fail = False
        self.revoked: list[str] = []
        self.pause = 0.0

    def record(self, action: str, actor: str, **details):
        self.records.append((action, actor, details))
        return {"seq": len(self.records)}

    def actions(self) -> list[str]:
        return [a for a, _, _ in self.records]

    def create_grant(self, service, **kwargs) -> str:
        if self.fail:
            raise RuntimeError("lake unavailable")
        time.sleep(self.pause)  # a slow lake: two deliveries at once overlap
        self.grants.append(kwargs)
        return f"grant-{len(self.grants)}"

    def revoke_grant(self, service, grant_id: str, actor: str, reason: str = "") -> None:
        self.revoked.append(grant_id)

    def close(self) -> None:
        return None


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    from share_api import grants

    r = Recorder()
    monkeypatch.setattr(grants, "create_grant", r.create_grant, raising=False)
    monkeypatch.setattr(grants, "revoke_grant", r.revoke_grant, raising=False)
    monkeypatch.setattr(grants, "default_masking", catalogue_rules, raising=False)
    return r


def catalogue_rules(catalogue, resource: str) -> dict[str, str]:
    """Each sensitive field's catalogue masking rule (what GRANTS' default_masking gives)."""
    if resource.startswith("marts."):
        return {}  # published masked
    _, ds = catalogue.dataset(resource)
    return {f.name: f.masking.value for f in ds.fields if f.level.sensitive}


@pytest.fixture
def service(tmp_path, rec: Recorder) -> Service:
    settings = Settings(home=tmp_path / "home").ensure_dirs()
    engine = engine_for(settings)
    create_schema(engine)
    svc = Service(settings=settings, engine=engine)
    svc.__dict__["audit"] = rec
    yield svc
    engine.dispose()


def person(org: str, user: str, *roles: str) -> Principal:
    return Principal(user, org, "department", frozenset(roles), f"tok-{user}")


def pick(service: Service, share_type: ShareType, *, sensitive: bool):
    """A dataset of the catalogue with this share type, with (or without) an L3/L4 field,
    and the name of one such field (or of any field)."""
    for dept, ds in service.catalogue.datasets():
        fields = [f.name for f in ds.fields if f.level.sensitive]
        if ds.share_type is share_type and bool(fields) == sensitive:
            return dept.code, ds, (fields or [ds.fields[0].name])[0]
    raise LookupError(f"the catalogue has no {share_type.value} dataset (sensitive={sensitive})")


def requester_of(service: Service, owner: str) -> Principal:
    other = next(code for code in service.catalogue.departments if code != owner)
    return person(other, "alice", "requester")


def ask(service, who, dept, ds, **kw):
    kw.setdefault("purpose", "核实低保对象家庭情况")
    kw.setdefault("legal_basis", "社会救助暂行办法 第十一条")
    return rq.create_request(service, who, resource=f"{dept}.{ds.code}", **kw)


# --- share types -------------------------------------------------------------------------


def test_unconditional_is_granted_at_once_with_catalogue_masking(service, rec):
    dept, ds, _ = pick(service, ShareType.unconditional, sensitive=True)
    req = ask(service, requester_of(service, dept), dept, ds)
    assert (req["path"], req["status"], req["needs"]) == ("unconditional", "granted", [])
    assert req["grant_id"] == "grant-1" and req["due_at"] is None
    (grant,) = rec.grants
    assert grant["resource"] == f"{dept}.{ds.code}"
    assert grant["columns"] == [f.name for f in ds.fields]
    sensitive = {f.name: f.masking.value for f in ds.fields if f.level.sensitive}
    assert grant["masking"] == sensitive and "none" not in sensitive.values()
    assert grant["request_id"] == req["id"] and grant["grantee_org"] != dept
    days = (grant["expires_at"] - dt.datetime.now(dt.UTC)).days  # no period named: the default
    assert rq.DEFAULT_PERIOD_DAYS <= days <= rq.DEFAULT_PERIOD_DAYS + 1


def test_the_grant_ends_after_the_period_asked_for(service, rec):
    dept, ds, _ = pick(service, ShareType.unconditional, sensitive=True)
    last = calendar.beijing_day(dt.datetime.now(dt.UTC)) + dt.timedelta(days=30)
    ask(service, requester_of(service, dept), dept, ds, period_end=last)
    ends = rec.grants[0]["expires_at"]
    assert ends == dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), calendar.BEIJING)
    for wrong in (dt.date(2000, 1, 1), dt.date(9999, 12, 31)):  # past; beyond the longest
        with pytest.raises(rq.RequestError) as exc:
            ask(service, requester_of(service, dept), dept, ds, period_end=wrong)
        assert exc.value.status == 422


def test_unconditional_with_a_sensitive_field_in_clear_is_reviewed(service, rec):
    dept, ds, field = pick(service, ShareType.unconditional, sensitive=True)
    req = ask(service, requester_of(service, dept), dept, ds, unmasked=[field])
    assert (req["path"], req["status"]) == ("conditional", "pending")
    assert req["needs"] == ["owner", "data_officer"] and req["due_at"] is not None
    assert rec.grants == []
    rq.review(service, person(dept, "bob", "reviewer"), req["id"], "approve")
    req = rq.review(service, person("hub", "dora", "data_officer"), req["id"], "approve")
    assert req["status"] == "granted" and rec.grants[0]["masking"][field] == "none"


def test_unconditional_scoped_by_a_sensitive_field_is_reviewed(service, rec):
    dept, ds, field = pick(service, ShareType.unconditional, sensitive=True)
    plain = [f.name for f in ds.fields if not f.level.sensitive]
    scope = {"field": field, "op": "not_null"}  # compares the field's values in clear
    req = ask(service, requester_of(service, dept), dept, ds, columns=plain, row_filter=scope)
    assert (req["path"], req["needs"]) == ("conditional", ["owner", "data_officer"])
    assert req["row_filter"] == scope and rec.grants == []


def test_a_row_scope_is_checked_when_asked(service):
    dept, ds, _ = pick(service, ShareType.unconditional, sensitive=True)
    bad = {"and": [{"field": "x' OR 1=1 --", "op": "eq", "value": 1}]}
    with pytest.raises(rq.RequestError) as exc:
        ask(service, requester_of(service, dept), dept, ds, row_filter=bad)
    assert exc.value.status == 422 and "and[0]" in str(exc.value)


def test_only_masked_fields_can_be_asked_in_clear(service):
    dept, ds, _ = pick(service, ShareType.unconditional, sensitive=True)
    plain = next(f.name for f in ds.fields if f.masking.value == "none")
    with pytest.raises(rq.RequestError) as exc:
        ask(service, requester_of(service, dept), dept, ds, unmasked=[plain])
    assert exc.value.status == 422 and plain in str(exc.value)


def test_conditional_l3_needs_owner_reviewer_and_data_officer(service, rec):
    dept, ds, field = pick(service, ShareType.conditional, sensitive=True)
    alice = requester_of(service, dept)
    req = ask(service, alice, dept, ds, columns=[field, ds.key[0]])
    assert (req["status"], req["awaiting"]) == ("pending", ["owner", "data_officer"])

    owner = person(dept, "bob", "reviewer")
    req = rq.review(service, owner, req["id"], "approve")
    assert (req["status"], req["awaiting"]) == ("pending", ["data_officer"])
    assert rec.grants == []  # one approval is not enough

    # the same person cannot give the second approval, whatever roles they hold
    both = person(dept, "bob", "reviewer", "data_officer")
    with pytest.raises(rq.RequestError) as exc:
        rq.review(service, both, req["id"], "approve")
    assert exc.value.status == 409
    # another reviewer of the owner department is not a data officer
    with pytest.raises(rq.RequestError) as exc:
        rq.review(service, person(dept, "carol", "reviewer"), req["id"], "approve")
    assert exc.value.status == 403

    officer = person("hub", "dora", "data_officer")
    req = rq.review(service, officer, req["id"], "approve")
    assert (req["status"], req["grant_id"]) == ("granted", "grant-1")
    assert [r["capacity"] for r in req["reviews"]] == ["owner", "data_officer"]
    assert rec.grants[0]["columns"] == [field, ds.key[0]]
    assert rec.grants[0]["masking"][field] == ds.field(field).masking.value != "none"
    assert rec.actions().count("request.decide") == 2


def test_requester_never_reviews_own_request(service):
    dept, ds, _ = pick(service, ShareType.conditional, sensitive=True)
    self_reviewer = person(dept, "erin", "requester", "reviewer", "data_officer")
    req = ask(service, self_reviewer, dept, ds)
    with pytest.raises(rq.RequestError) as exc:
        rq.review(service, self_reviewer, req["id"], "approve")
    assert exc.value.status == 403


def test_conditional_without_sensitive_fields_needs_the_owner_only(service, rec):
    dept, ds, _ = pick(service, ShareType.conditional, sensitive=True)
    plain = [f.name for f in ds.fields if not f.level.sensitive]
    req = ask(service, requester_of(service, dept), dept, ds, columns=plain)
    assert req["needs"] == ["owner"]
    # a data officer is not the owner's answer
    with pytest.raises(rq.RequestError):
        rq.review(service, person("hub", "dora", "data_officer"), req["id"], "approve")
    req = rq.review(service, person(dept, "bob", "reviewer"), req["id"], "approve")
    assert req["status"] == "granted"


def test_refusal_needs_a_reason_and_ends_the_request(service, rec):
    dept, ds, _ = pick(service, ShareType.conditional, sensitive=True)
    req = ask(service, requester_of(service, dept), dept, ds)
    owner = person(dept, "bob", "reviewer")
    with pytest.raises(rq.RequestError) as exc:
        rq.review(service, owner, req["id"], "refuse")
    assert exc.value.status == 422
    req = rq.review(service, owner, req["id"], "refuse", "超出履职范围")
    assert (req["status"], req["refusal_basis"]) == ("refused", "超出履职范围")
    with pytest.raises(rq.RequestError) as exc:
        rq.review(service, person("hub", "dora", "data_officer"), req["id"], "approve")
    assert exc.value.status == 409
    assert rec.grants == []


def test_not_shareable_is_refused_with_the_recorded_legal_basis(service, rec):
    dept, ds = next(
        (d.code, ds)
        for d, ds in service.catalogue.datasets()
        if ds.share_type is ShareType.not_shareable
    )
    req = ask(service, requester_of(service, dept), dept, ds)
    assert (req["path"], req["status"]) == ("not_shareable", "refused")
    assert req["refusal_basis"] == ds.legal_basis and ds.legal_basis
    assert rec.grants == [] and "request.decide" in rec.actions()


def test_unknown_fields_and_resources_are_refused_by_name(service):
    dept, ds, _ = pick(service, ShareType.conditional, sensitive=True)
    alice = requester_of(service, dept)
    with pytest.raises(rq.RequestError) as exc:
        ask(service, alice, dept, ds, columns=["no_such_field"])
    assert exc.value.status == 422 and "no_such_field" in str(exc.value)
    with pytest.raises(rq.RequestError) as exc:
        rq.create_request(service, alice, resource="nodept.nothing", purpose="x", legal_basis="y")
    assert exc.value.status == 404


def test_failed_delivery_is_kept_and_retried(service, rec):
    dept, ds, _ = pick(service, ShareType.unconditional, sensitive=True)
    rec.fail = True
    req = ask(service, requester_of(service, dept), dept, ds)
    assert req["status"] == "approved" and req["delivery_error"] == "grant not made: RuntimeError"
    assert "lake" not in req["delivery_error"]  # the kind only, never the message
    rec.fail = False
    req = rq.retry_delivery(service, person("hub", "dora", "data_officer"), req["id"])
    assert (req["status"], req["grant_id"], req["delivery_error"]) == ("granted", "grant-1", None)


# --- who sees what -----------------------------------------------------------------------


def test_a_requester_sees_only_its_own_organisations_requests(service):
    dept, ds, _ = pick(service, ShareType.conditional, sensitive=True)
    alice = requester_of(service, dept)
    req = ask(service, alice, dept, ds)
    stranger = person(
        next(c for c in service.catalogue.departments if c not in (dept, alice.org)),
        "zed",
        "requester",
        "reviewer",
    )
    assert rq.list_requests(service, stranger) == []
    with pytest.raises(rq.RequestError) as exc:
        rq.get_request(service, req["id"], stranger)
    assert exc.value.status == 404
    assert [r["id"] for r in rq.list_requests(service, alice)] == [req["id"]]
    assert [r["id"] for r in rq.list_requests(service, person(dept, "bob", "reviewer"))] == [
        req["id"]
    ]


# --- the deadline ------------------------------------------------------------------------


def test_deadline_counts_working_days_on_the_state_council_calendar(service, monkeypatch):
    # submitted on Friday 2026-09-25 (Beijing): the National Day holidays 10-01..10-07 do
    # not count, the make-up working day Saturday 10-10 (调休) does
    submitted = dt.datetime(2026, 9, 25, 3, 0, tzinfo=dt.UTC)
    due = calendar.answer_due(submitted, 10)
    assert due == dt.datetime(2026, 10, 16, tzinfo=calendar.BEIJING)  # end of Thursday 10-15
    assert calendar.add_working_days(dt.date(2026, 9, 25), 10) == dt.date(2026, 10, 15)

    monkeypatch.setattr(rq, "utc_now", lambda: submitted)
    dept, ds, _ = pick(service, ShareType.conditional, sensitive=True)
    req = ask(service, requester_of(service, dept), dept, ds)
    assert req["due_at"] == due.isoformat() and not req["overdue"]
    later = due + dt.timedelta(days=1)
    monkeypatch.setattr(rq, "utc_now", lambda: later)
    (seen,) = rq.list_requests(service, person(dept, "bob", "reviewer"))
    assert seen["overdue"] and seen["working_days_overdue"] == 1


def test_beijing_day_decides_the_start_of_the_count():
    # 15:00 UTC on Sunday is still Sunday in Beijing: the first working day after is Monday;
    # 16:30 UTC is Monday morning in Beijing: Monday itself does not count
    sunday_evening = dt.datetime(2026, 11, 29, 15, 0, tzinfo=dt.UTC)
    monday_morning = dt.datetime(2026, 11, 29, 16, 30, tzinfo=dt.UTC)
    assert calendar.beijing_day(monday_morning) == dt.date(2026, 11, 30)
    assert calendar.answer_due(sunday_evening, 1) == dt.datetime(2026, 11, 30, 16, tzinfo=dt.UTC)
    assert calendar.answer_due(monday_morning, 1) == dt.datetime(2026, 12, 1, 16, tzinfo=dt.UTC)


def test_a_year_without_a_published_schedule_counts_weekdays_provisionally():
    assert not calendar.schedule_known(dt.date(2099, 1, 5))
    assert calendar.add_working_days(dt.date(2099, 1, 2), 1) == dt.date(2099, 1, 5)  # Fri→Mon


# --- administrators' operations: the two-person rule -------------------------------------


def test_admin_operation_needs_a_second_administrator(service):
    ann, ben = person("hub", "ann", "admin"), person("hub", "ben", "admin")
    op = rq.open_admin_operation(service, ann, "keys.rotate", {"pseudonyms": False})
    with pytest.raises(rq.RequestError) as exc:
        rq.approved_admin_operation(service, op, "keys.rotate")
    assert exc.value.status == 409
    with pytest.raises(rq.RequestError):  # the opener is not the second administrator
        rq.review(service, ann, op, "approve")
    with pytest.raises(rq.RequestError):  # nor is a data officer
        rq.review(service, person("hub", "dora", "data_officer"), op, "approve")
    assert rq.review(service, ben, op, "approve")["status"] == "approved"
    with pytest.raises(rq.RequestError) as exc:  # approved for another kind
        rq.approved_admin_operation(service, op, "keys.rekey")
    assert exc.value.status == 404
    assert rq.approved_admin_operation(service, op, "keys.rotate") == {"pseudonyms": False}
    with pytest.raises(rq.RequestError) as exc:  # once only
        rq.approved_admin_operation(service, op, "keys.rotate")
    assert exc.value.status == 409


def test_refused_admin_operation_cannot_be_used(service, rec):
    ann, ben = person("hub", "ann", "admin"), person("hub", "ben", "admin")
    scope = '{"field": "id_number", "op": "eq", "value": "110105194912310021"}'
    op = rq.open_admin_operation(
        service, ann, "grant.change", {"grant": "g-1", "row_filter": scope}
    )
    (opened,) = [d for a, _, d in rec.records if a == "admin.open"]
    assert opened == {"request": op, "kind": "grant.change", "terms": "grant,row_filter"}
    rq.review(service, ben, op, "refuse", "scope too wide")
    with pytest.raises(rq.RequestError):
        rq.approved_admin_operation(service, op, "grant.change")
    op = rq.open_admin_operation(service, ann, "role.grant", {"user": "u-1", "role": "admin"})
    rq.review(service, ben, op, "refuse", "no second admin needed")
    with pytest.raises(rq.RequestError):
        rq.approved_admin_operation(service, op, "role.grant")


def test_only_admins_open_operations_and_see_them(service):
    with pytest.raises(rq.RequestError) as exc:
        rq.open_admin_operation(service, person("hub", "x", "data_officer"), "keys.rotate", {})
    assert exc.value.status == 403
    op = rq.open_admin_operation(service, person("hub", "ann", "admin"), "keys.rekey", {})
    assert rq.list_requests(service, person("hub", "dora", "data_officer")) == []
    assert [r["id"] for r in rq.list_requests(service, person("hub", "ben", "admin"))] == [op]


def test_two_last_approvals_at_once_make_one_grant(service, rec, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    reviews = rq._reviews

    def slow_reviews(con, request_id):  # widen the window between reading and deciding
        found = reviews(con, request_id)
        time.sleep(0.2)
        return found

    dept, ds, _ = pick(service, ShareType.conditional, sensitive=True)
    officers = [person("hub", f"officer{i}", "data_officer") for i in range(2)]
    made = []
    for _ in range(3):
        req = ask(service, requester_of(service, dept), dept, ds)
        rq.review(service, person(dept, "bob", "reviewer"), req["id"], "approve")
        monkeypatch.setattr(rq, "_reviews", slow_reviews)

        def approve(officer, request_id=req["id"]):
            try:
                return rq.review(service, officer, request_id, "approve")["status"]
            except rq.RequestError as exc:
                return exc.status

        with ThreadPoolExecutor(2) as pool:
            made.append(sorted(map(str, pool.map(approve, officers))))
        monkeypatch.setattr(rq, "_reviews", reviews)
    assert made == [["409", "granted"]] * 3
    assert len(rec.grants) == 3


def test_two_retries_at_once_leave_one_grant(service, rec):
    from concurrent.futures import ThreadPoolExecutor

    dept, ds, _ = pick(service, ShareType.unconditional, sensitive=True)
    rec.fail = True
    req = ask(service, requester_of(service, dept), dept, ds)
    rec.fail, rec.pause = False, 0.3
    officers = [person("hub", f"officer{i}", "data_officer") for i in range(2)]

    def retry(officer):
        try:
            return rq.retry_delivery(service, officer, req["id"])["status"]
        except rq.RequestError as exc:
            return str(exc.status)

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(retry, officers)) == ["409", "granted"]
    kept = rq.get_request(service, req["id"])["grant_id"]
    assert len(rec.grants) == 2 and rec.revoked == [g for g in ("grant-1", "grant-2") if g != kept]


def test_a_mart_is_reviewed_by_two_different_data_officers(service, rec):
    from share_api.catalogue import entries

    mart = next(
        e
        for e in entries(service)
        if e.kind == "mart"
        and e.share_type is ShareType.conditional
        and any(f.level in ("L3", "L4") for f in e.fields)
    )
    alice = person("wjw", "alice", "requester")
    req = rq.create_request(service, alice, resource=mart.resource, purpose="p", legal_basis="b")
    assert (req["owner_org"], req["needs"]) == (None, ["data_officer", "data_officer"])
    # a reviewer of any department is not the owner of a mart
    with pytest.raises(rq.RequestError):
        rq.review(service, person("wjw", "bob", "reviewer"), req["id"], "approve")
    dora, ed = person("hub", "dora", "data_officer"), person("hub", "ed", "data_officer")
    assert rq.review(service, dora, req["id"], "approve")["awaiting"] == ["data_officer"]
    with pytest.raises(rq.RequestError):
        rq.review(service, dora, req["id"], "approve")
    assert rq.review(service, ed, req["id"], "approve")["status"] == "granted"
    assert rec.grants[0]["resource"] == mart.resource
    sensitive = next(f.name for f in mart.fields if f.masking != "none")
    with pytest.raises(rq.RequestError) as exc:  # published masked: nothing in clear
        rq.create_request(
            service, alice, resource=mart.resource, purpose="p", legal_basis="b",
            unmasked=[sensitive],
        )  # fmt: skip
    assert exc.value.status == 422


def test_without_a_schedule_the_fixed_statutory_holidays_still_count():
    # the package's schedule ends with 2026: 2027-01-01 (a Friday, 元旦) is not a working day
    assert not calendar.schedule_known(dt.date(2027, 1, 1))
    assert calendar.add_working_days(dt.date(2026, 12, 31), 1) == dt.date(2027, 1, 4)
    assert not calendar.is_working_day(dt.date(2027, 4, 5))  # 清明, a Monday
    # where a schedule is published (the law as revised for 2025 on), it agrees
    for year in (2025, 2026):
        fixed = [dt.date(year, m, d) for m, d in calendar.FIXED_HOLIDAYS]
        qingming = [d for d, name in chinese_calendar.get_solar_terms(
            dt.date(year, 4, 1), dt.date(year, 4, 30)) if name == calendar.QINGMING]  # fmt: skip
        for day in [*fixed, *qingming]:
            assert calendar.statutory_holiday(day) and chinese_calendar.is_holiday(day), day
