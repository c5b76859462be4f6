"""The seed's sharing figures from the service's real records: a department requests an
unconditional dataset (granted at once), reads it over HTTP, rates it; the records copied
into the lake, ``sharing_metrics`` and the governance scorecard built — the dataset counts
as shared, the request's time to first byte is seconds, measured for that department and
month; the leak scanner's own reads of the grant change none of it."""

from __future__ import annotations

import datetime as dt

import polars as pl

from catalog.model import ShareType
from lakehouse.lake import open_lake
from marts.build import build_mart
from masking.names import KnownNames
from pipelines.leak_responses import scan_responses
from pipelines.share_records import copy_share_records
from share_api import feedback as fb
from share_api import requests as rq
from share_api.calendar import beijing_day


def unconditional_dataset(service) -> tuple[str, str]:
    """(resource, provider) of an unconditional dataset with staged rows."""
    with open_lake(service.settings, read_only=True) as con:
        for dept, ds in service.catalogue.datasets():
            if ds.share_type is not ShareType.unconditional:
                continue
            (rows,) = con.execute(
                f'SELECT count(*) FROM staged."{dept.code}__{ds.code}"'
            ).fetchone()
            if rows:
                return f"{dept.code}.{ds.code}", dept.code
    raise LookupError("no unconditional dataset with rows")


def test_a_request_read_over_http_is_counted_shared_and_timed(
    service, people, api, mart_street
) -> None:
    resource, provider = unconditional_dataset(service)
    asker = next(d for d in sorted(service.catalogue.departments) if d != provider)
    alice = people.make(asker, "requester")
    req = rq.create_request(
        service, alice.principal, resource=resource, purpose="核对服务对象",
        legal_basis="社会救助暂行办法",
    )  # fmt: skip
    assert (req["path"], req["status"]) == ("unconditional", "granted")
    page = api.get(f"/grants/{req['grant_id']}/data", params={"limit": 5}, headers=alice.headers)
    assert page.status_code == 200, page.text
    fb.rate(service, alice.principal, req["grant_id"], 5)
    service.close()
    # the leak scanner samples the grant too: audited reads, but no use of the data
    assert scan_responses(service.settings, service.catalogue, KnownNames(set()))

    counts = copy_share_records(service.settings)
    assert (counts["share_requests"], counts["share_grants"], counts["share_reads"]) == (1, 1, 1)
    with open_lake(service.settings) as con:
        for name in ("sharing_metrics", "governance_scorecard"):
            build_mart(
                con, mart_street.catalogue, mart_street.marts, name, mart_street.protection()
            )
        metrics = con.execute("SELECT * FROM marts.sharing_metrics").pl()
        card = con.execute("SELECT * FROM marts.governance_scorecard").pl()

    row = metrics.filter(pl.col("resource") == resource).row(0, named=True)
    assert (row["shared"], row["departments_granted"], row["reads"]) == (True, 1, 1)
    assert row["mean_rating"] == 5
    month = metrics.filter(pl.col("kind") == "department_month").row(0, named=True)
    submitted = dt.datetime.fromisoformat(req["submitted_at"])
    assert (month["resource"], month["month"]) == (asker, beijing_day(submitted).strftime("%Y-%m"))
    assert (month["requests"], month["first_bytes_measured"]) == (1, 1)
    seconds = month["median_seconds_unconditional"]
    print(f"\nrequest → first byte (unconditional, {resource}): {seconds:.3f} s")
    assert 0 < seconds < 60  # seconds, not hours
    rate = card.filter(pl.col("figure") == "sharing_rate").row(0, named=True)
    assert rate["numerator"] == 1
    fetch = card.filter(pl.col("figure") == "cross_department_retrieval_hours").row(0, named=True)
    assert fetch["denominator"] == 1 and fetch["value"] == seconds / 3600
    assert fetch["meets_goal"] is True
