"""The sharing metrics and the governance scorecard's sharing figures from the share
service's own records: requests, grants and reads written into a copy of the mart street's
service state, copied into the lake (pipelines/share_records.py), both marts built, and the
figures compared with what was recorded, counted apart in Python."""

from __future__ import annotations

import datetime as dt
import statistics

import polars as pl
import pytest

from catalog.model import ShareType
from lakehouse.lake import open_lake
from marts.build import build_mart
from pipelines.share_records import COPIES, copy_share_records
from share_api import grants as gr
from share_api import requests as rq
from share_api.feedback import corrections_table, ratings_table
from share_api.service import Service
from tests.streets import copy_home, lake_snapshot

SHAREABLE = {ShareType.unconditional, ShareType.conditional}
T0 = dt.datetime(2026, 11, 10, 2, 0, tzinfo=dt.UTC)  # Beijing 2026-11-10 10:00
LATE = dt.datetime(2026, 10, 31, 16, 30, tzinfo=dt.UTC)  # Beijing 2026-11-01 00:30


def _request(con, rid, org, resource, path, at, grant_id=None) -> None:
    con.execute(rq.requests_table.insert().values(
        id=rid, kind="data", requester_org=org, requester_user="u", resource=resource,
        path=path, needs=[], status="granted" if grant_id else "pending", submitted_at=at,
        grant_id=grant_id, due_provisional=False,
    ))  # fmt: skip


def _grant(con, gid, org, resource, at, request_id=None, standing=False) -> None:
    con.execute(gr.grants_table.insert().values(
        id=gid, grantee_org=org, resource=resource, columns=["x"], masking={}, standing=standing,
        request_id=request_id, rate_per_minute=60, created_at=at,
    ))  # fmt: skip


def _read(con, gid, org, at, rows=100) -> None:
    con.execute(gr.grant_reads.insert().values(
        id=f"rd-{gid}-{at.timestamp():.0f}", grant_id=gid, org=org, principal=f"{org}/u",
        snapshot=1, format="json", offset=0, rows=rows, bytes=10, digest="0" * 64, time=at,
    ))  # fmt: skip


@pytest.fixture(scope="module")
def recorded(mart_street, tmp_path_factory):
    """A copy of the mart street with share records: two departments asking four datasets."""
    settings = copy_home(mart_street.home, tmp_path_factory.mktemp("sharing"))
    cat = mart_street.catalogue
    depts = sorted(cat.departments)
    shareable = [(d.code, ds.code, ds.share_type) for d, ds in cat.datasets()
                 if ds.share_type in SHAREABLE]  # fmt: skip
    uncond = next(x for x in shareable if x[2] is ShareType.unconditional)
    cond = next(x for x in shareable if x[2] is ShareType.conditional and x[0] != uncond[0])
    own = next(x for x in shareable if x[0] not in (uncond[0], cond[0]))
    asker = next(d for d in depts if d not in (uncond[0], cond[0], own[0]))
    late = next(d for d in depts if d not in (uncond[0], cond[0], own[0], asker))
    res = {k: f"{x[0]}.{x[1]}" for k, x in (("u", uncond), ("c", cond), ("own", own))}
    service = Service.open(settings)
    s = dt.timedelta(seconds=1)
    with service.engine.begin() as con:
        # unconditional: granted at once, first byte 5 s after asking, read again later
        _request(con, "rq-u", asker, res["u"], "unconditional", T0, "gr-u")
        _grant(con, "gr-u", asker, res["u"], T0 + s, "rq-u")
        _read(con, "gr-u", asker, T0 + 5 * s)
        _read(con, "gr-u", asker, T0 + 3600 * s, rows=40)
        # conditional: approved after 3 h, first byte 10 s after the grant
        _request(con, "rq-c", asker, res["c"], "conditional", T0, "gr-c")
        _grant(con, "gr-c", asker, res["c"], T0 + 3 * 3600 * s, "rq-c")
        _read(con, "gr-c", asker, T0 + (3 * 3600 + 10) * s)
        # a grant to the provider itself does not make its dataset shared
        _grant(con, "gr-own", own[0], res["own"], T0, None)
        _read(con, "gr-own", own[0], T0 + s)
        # another department's request at Beijing's midnight, never read: counted, not timed
        _request(con, "rq-late", late, res["c"], "conditional", LATE)
        con.execute(corrections_table.insert().values(
            id="cor-1", grant_id="gr-c", resource=res["c"], owner_org=cond[0],
            requester_org=asker, requester_user="u", record_column="x", record="a" * 20,
            field="x", problem="wrong", status="open", filed_at=T0, due_at=T0,
        ))  # fmt: skip
        con.execute(ratings_table.insert().values(
            id="rat-1", grant_id="gr-u", resource=res["u"], org=asker, user_id="u", score=4,
            rated_at=T0,
        ))  # fmt: skip
    service.close()
    counts = copy_share_records(settings)
    with open_lake(settings) as con:
        for name in ("sharing_metrics", "governance_scorecard"):
            build_mart(con, cat, mart_street.marts, name, mart_street.protection())
        metrics = con.execute("SELECT * FROM marts.sharing_metrics").pl()
        scorecard = con.execute("SELECT * FROM marts.governance_scorecard").pl()
    return {"res": res, "asker": asker, "late": late, "counts": counts,
            "metrics": metrics, "scorecard": scorecard, "shareable": len(shareable)}  # fmt: skip


def _row(frame: pl.DataFrame, **where) -> dict:
    for k, v in where.items():
        frame = frame.filter(pl.col(k) == v)
    (row,) = frame.iter_rows(named=True)
    return row


def test_the_copy_holds_every_record_and_no_free_text(recorded) -> None:
    assert recorded["counts"] == {
        "share_requests": 3, "share_reviews": 0, "share_grants": 3, "share_reads": 4,
        "share_corrections": 1, "share_ratings": 1,
        "disputes_opened": 0,  # its record names no staged row: not taken in
    }  # fmt: skip
    copied = {c for _, cols in COPIES.values() for c, _ in cols.values()}
    assert not copied & {"purpose", "legal_basis", "reason", "note", "answer", "refusal_basis"}


def test_a_resource_is_shared_when_another_department_holds_a_grant(recorded) -> None:
    m, res = recorded["metrics"], recorded["res"]
    u = _row(m, kind="dataset", resource=res["u"])
    assert (u["requests"], u["grants"], u["departments_granted"], u["shared"]) == (1, 1, 1, True)
    assert (u["reads"], u["rows_read"], u["first_bytes_measured"]) == (2, 140, 1)
    assert u["median_seconds_unconditional"] == pytest.approx(5.0)
    assert u["mean_rating"] == pytest.approx(4.0)
    c = _row(m, kind="dataset", resource=res["c"])
    assert (c["requests"], c["shared"], c["corrections"], c["open_corrections"]) == (2, True, 1, 1)
    assert c["median_hours_to_first_byte"] == pytest.approx(3 + 10 / 3600)
    assert c["median_seconds_unconditional"] is None
    own = _row(m, kind="dataset", resource=res["own"])
    assert (own["grants"], own["departments_granted"], own["shared"]) == (1, 0, False)
    shared = m.filter(pl.col("kind") == "dataset")["shared"].sum()
    assert shared == 2


def test_time_to_first_byte_per_requesting_department_and_beijing_month(recorded) -> None:
    months = recorded["metrics"].filter(pl.col("kind") == "department_month")
    asker = _row(months, resource=recorded["asker"])
    assert (asker["month"], asker["requests"], asker["first_bytes_measured"]) == ("2026-11", 2, 2)
    waits = [5.0, 3 * 3600 + 10.0]
    assert asker["median_hours_to_first_byte"] == pytest.approx(statistics.median(waits) / 3600)
    assert asker["median_seconds_unconditional"] == pytest.approx(5.0)
    late = _row(months, resource=recorded["late"])  # 16:30 UTC on 31 Oct is November in Beijing
    assert (late["month"], late["requests"], late["first_bytes_measured"]) == ("2026-11", 1, 0)
    assert late["median_hours_to_first_byte"] is None
    assert months.height == 2


def test_the_scorecard_s_sharing_figures_come_from_the_records(recorded) -> None:
    card = recorded["scorecard"]
    rate = _row(card, figure="sharing_rate")
    assert (rate["numerator"], rate["denominator"]) == (2, recorded["shareable"])
    assert rate["value"] == pytest.approx(2 / recorded["shareable"])
    assert rate["meets_goal"] is False
    fetch = _row(card, figure="cross_department_retrieval_hours")
    assert fetch["denominator"] == 2  # requests timed; the unread one is not
    assert fetch["value"] == pytest.approx((5.0 + 3 * 3600 + 10.0) / 2 / 3600)
    assert fetch["meets_goal"] is True and fetch["goal"] == pytest.approx(2.0)  # 1.5 h


def test_a_home_whose_service_never_ran_reports_no_sharing(mart_street, tmp_path) -> None:
    settings = copy_home(mart_street.home, tmp_path)
    assert set(copy_share_records(settings).values()) == {0}
    before = lake_snapshot(settings)
    copy_share_records(settings)  # nothing new: nothing written, the marts stay fresh
    assert lake_snapshot(settings) == before
    assert not (settings.home_abs / "share" / "share.db").exists()
    with open_lake(settings) as con:
        build_mart(con, mart_street.catalogue, mart_street.marts, "sharing_metrics",
                   mart_street.protection())  # fmt: skip
        build_mart(con, mart_street.catalogue, mart_street.marts, "governance_scorecard",
                   mart_street.protection())  # fmt: skip
        card = con.execute("SELECT * FROM marts.governance_scorecard").pl()
        tables = {t for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'landing' "
            "AND table_name LIKE 'share_%'"
        ).fetchall()}  # fmt: skip
    assert tables == set(COPIES)
    rate = _row(card, figure="sharing_rate")
    assert rate["numerator"] == 0 and rate["value"] == 0
    fetch = _row(card, figure="cross_department_retrieval_hours")
    assert fetch["value"] is None and fetch["meets_goal"] is None
