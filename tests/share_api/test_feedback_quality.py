"""A correction request reaches the quality loop: a grantee reads its grant over HTTP, files
a correction naming a record by the pseudonym its data shows; the share records copied into
the lake open a consumer dispute on that very staged record in ``quarantine.issues`` (once,
however often they are copied), which the quality report counts; a rejected correction and
one naming no single record are not taken in."""

from __future__ import annotations

import datetime as dt

import polars as pl

from lakehouse.lake import open_lake
from pipelines.share_records import copy_share_records
from quality.corrections import issue_counts
from share_api import feedback as fb
from share_api import grants
from tests.streets import lake_snapshot

RESOURCE = "gaj.registered_residents"
TABLE = 'staged."gaj__registered_residents"'


def test_a_correction_becomes_a_dispute_on_the_record_it_names(service, people, api) -> None:
    reader = people.make("mzj", "requester")
    owner = people.make("gaj", "reviewer")
    gid = grants.create_grant(
        service, grantee_org="mzj", resource=RESOURCE,
        columns=["citizen_id", "gender", "community_code", "mobile"], row_filter=None,
        masking={}, expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1), request_id=None,
    )  # fmt: skip
    page = api.get(f"/grants/{gid}/data", params={"limit": 3}, headers=reader.headers)
    assert page.status_code == 200, page.text
    seen, other, third = page.json()["rows"]

    def file(row, **kw):
        return fb.file_correction(
            service, reader.principal, gid, record_column="citizen_id",
            record=row["citizen_id"], field="mobile", problem="wrong", **kw,
        )  # fmt: skip

    taken = file(seen, note="电话已停机")
    refused = file(other)
    fb.answer_correction(service, owner.principal, refused["id"], "rejected", "核实无误")
    community = fb.file_correction(  # a community code names many records: none of them
        service, reader.principal, gid, record_column="community_code",
        record=third["community_code"], field="mobile", problem="outdated",
    )  # fmt: skip
    assert community["status"] == "open"
    service.close()

    first = copy_share_records(service.settings)
    assert first["share_corrections"] == 3 and first["disputes_opened"] == 1
    before = lake_snapshot(service.settings)
    again = copy_share_records(service.settings)
    assert again["disputes_opened"] == 0  # taken once
    assert lake_snapshot(service.settings) == before  # the same records: nothing written

    with open_lake(service.settings, read_only=True) as con:
        issues = con.execute("SELECT * FROM quarantine.issues WHERE kind = 'dispute'").pl()
        (dispute,) = issues.iter_rows(named=True)
        staged = con.execute(
            f'SELECT gender, community_code FROM {TABLE} WHERE "_key_pid" = ?',
            [dispute["key_pid"]],
        ).fetchall()
    assert (dispute["dept"], dispute["dataset"], dispute["field"]) == (
        "gaj",
        "registered_residents",
        "mobile",
    )
    assert (dispute["status"], dispute["opened_by"]) == ("open", "mzj")
    assert taken["id"] in dispute["reason"] and "电话" not in dispute["reason"]
    # the staged record it names is the row the grantee saw (its attributes in clear agree)
    assert staged == [(seen["gender"], seen["community_code"])]
    counts = issue_counts(issues).filter(pl.col("dataset") == "registered_residents")
    assert counts["open_disputes"].to_list() == [1]
