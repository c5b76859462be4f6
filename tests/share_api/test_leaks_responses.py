"""``streethub leaks scan`` samples every data endpoint's responses: each live grant read
through the service's own route in JSON, Arrow and Parquet, scanned with the lake's rules —
0 unmasked values under the catalogue's masking; a grant that lets an identifier out in
the clear is caught (the scan can fail); the scan's reads stay out of the sharing metrics."""

from __future__ import annotations

import datetime as dt

import pytest
from typer.testing import CliRunner

from catalog.marts import load_marts
from lakehouse.lake import open_lake
from masking.names import KnownNames
from pipelines.leak_responses import AREA, FORMATS, SAMPLE_ROWS, scan_responses
from pipelines.share_records import read_records
from share_api import grants
from tests.share_api.conftest import lake_clock_threads

RESOURCE = "gaj.registered_residents"
COLUMNS = ["citizen_id", "name", "gender", "birth_date", "community_code", "mobile"]
DAY = dt.timedelta(days=1)
MART = "resident_profile"  # a resident a row: pseudonyms, masked names, bands


def make(service, org: str, **terms) -> str:
    args = {"grantee_org": org, "resource": RESOURCE, "columns": COLUMNS, "row_filter": None,
            "masking": {}, "expires_at": dt.datetime.now(dt.UTC) + DAY,
            "request_id": None} | terms  # fmt: skip
    return grants.create_grant(service, **args)


def rows_of(service) -> int:
    with open_lake(service.settings, read_only=True) as con:
        (n,) = con.execute(
            f'SELECT count(*) FROM staged."{RESOURCE.replace(".", "__")}"'
        ).fetchone()
    return n


def test_every_live_grant_s_responses_hold_no_unmasked_value(service, people) -> None:
    people.org("app", kind="frontend")
    masked = make(service, "mzj")  # the catalogue's masking
    mart = grants.create_grant(
        service, grantee_org="app", resource=f"marts.{MART}", columns=load_marts()[MART].column_names,
        row_filter=None, masking={}, expires_at=None, request_id=None, standing=True,
    )  # fmt: skip
    revoked = make(service, "wjw")
    grants.revoke_grant(service, revoked, "test")
    service.close()  # the scan opens the service itself, as the CLI does

    before = lake_clock_threads()
    found = scan_responses(service.settings, service.catalogue, KnownNames(set()))
    # and closes it after: its lake clock (a thread reading the lake) is not left running
    assert lake_clock_threads() == before
    by_grant: dict[str, list] = {}
    for f in found:
        by_grant.setdefault(f.place.split("/")[2], []).append(f)
    assert set(by_grant) == {masked, mart}  # live grants only
    pages = 2 if rows_of(service) >= 2 * SAMPLE_ROWS else 1
    assert len(by_grant[masked]) == len(FORMATS) * pages
    for f in found:
        assert f.area == AREA and f.problem is None, f.place
        assert f.cells > 0 and f.leaks == 0, (f.place, f.counts.by_kind)
    assert {f.place.split("format=")[1].split("&")[0] for f in found} == set(FORMATS)
    # the scanner's reads are audited reads, but no use of the data: not in the metrics
    assert read_records(service.settings)["share_reads"].height == 0


def test_a_grant_letting_identifiers_out_is_caught(service) -> None:
    clear = make(service, "mzj", masking={"citizen_id": "none", "mobile": "none"})
    service.close()
    found = scan_responses(service.settings, service.catalogue, KnownNames(set()))
    assert found and all(clear in f.place for f in found)
    for f in found:
        assert f.leaks > 0 and {"citizen_id", "mobile"} <= set(f.counts.by_kind), f.place
        for sample in f.counts.samples:  # a place: row, column, kind — never the value
            assert all(not str(part).isdigit() or len(str(part)) < 11 for part in sample)


def test_a_home_without_the_share_service_has_no_responses(share_settings, mart_street) -> None:
    assert scan_responses(share_settings, mart_street.catalogue, KnownNames(set())) == []
    assert not (share_settings.home_abs / "share" / "share.db").exists()


@pytest.mark.parametrize("clear", [False, True])
def test_the_cli_scan_counts_the_responses(service, clear, monkeypatch) -> None:
    from pipelines.cli import app

    make(service, "mzj", masking={"citizen_id": "none"} if clear else {})
    service.close()
    result = CliRunner().invoke(app, ["leaks", "scan"])
    assert "responses" in result.output
    assert result.exit_code == (1 if clear else 0), result.output
