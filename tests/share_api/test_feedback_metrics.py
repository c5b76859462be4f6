"""The seed's sharing figures from the service's real records: a department requests an
unconditional dataset (granted at once), reads it over HTTP, rates it; the records copied
into the lake, ``sharing_metrics`` and the governance scorecard built — the dataset counts
as shared, the request's time to first byte is seconds, measured for that department and
month; the leak scanner's own reads of the grant change none of it."""

from __future__ import annotations

import datetime as dt

import polars as pl
from typer.testing import CliRunner

from catalog.days import beijing_day
from catalog.model import ShareType
from lakehouse.lake import open_lake
from masking.names import KnownNames
from pipelines.cli import app
from pipelines.leak_responses import scan_responses
from share_api import feedback as fb
from share_api import requests as rq


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


def test_a_request_read_over_http_is_counted_shared_and_timed(service, people, api) -> None:
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

    # `streethub sharing refresh`: the records copied, both marts rebuilt, the figures shown
    shown = CliRunner().invoke(app, ["sharing", "refresh"])
    assert shown.exit_code == 0, shown.output
    assert "sharing_rate" in shown.output and asker in shown.output
    with open_lake(service.settings, read_only=True) as con:
        counts = {t: con.execute(f"SELECT count(*) FROM landing.{t}").fetchone()[0]
                  for t in ("share_requests", "share_grants", "share_reads")}  # fmt: skip
        metrics = con.execute("SELECT * FROM marts.sharing_metrics").pl()
        card = con.execute("SELECT * FROM marts.governance_scorecard").pl()
    assert counts == {"share_requests": 1, "share_grants": 1, "share_reads": 1}

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
