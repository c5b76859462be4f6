"""The departments' failed deliveries to the hub in the attention lists (the source the CLI
installs, and ``streethub serve`` may): what ``streethub deliveries list --failed`` shows
as unacknowledged, for data officers and the department's reviewers only."""

from __future__ import annotations

from catalog.settings import Settings
from lakehouse.lake import open_lake
from pipelines.cli_attention import UNREAD, install_sources, landing_failures
from pipelines.deliveries import list_deliveries
from pipelines.ingest.ledger import ensure_ledger, record_failure
from share_api.attention import attention_for
from share_api.deps import Principal
from share_api.service import Service


def test_failed_deliveries_of_the_lake_by_role(service, people):
    (one, _), (two, _) = list(service.catalogue.departments.items())[:2]
    with open_lake(service.settings) as con:  # the test's copy of the street
        ensure_ledger(con)
        for dept in (one, two):
            record_failure(
                con, delivery_id=f"{dept}.x.pull-1", dept=dept, dataset="x", reason="source down"
            )
    with open_lake(service.settings, read_only=True) as con:
        failed = list_deliveries(con, failed=True, acknowledged=False)
    assert {r.dept for r in failed} >= {one, two}
    dept = one
    officer = people.make("hub", "data_officer", kind="analyst")
    reviewer, requester = people.make(dept, "reviewer"), people.make(dept, "requester")

    install_sources(service)
    found = attention_for(service, officer.principal)["sections"]["failed_deliveries"]
    assert sorted(i["id"] for i in found) == sorted(r.delivery_id for r in failed)
    mine = {i["id"] for i in landing_failures(service, reviewer.principal)}
    assert mine == {r.delivery_id for r in failed if r.dept == dept}
    assert landing_failures(service, requester.principal) == []


def test_a_home_without_a_lake_says_so(tmp_path):
    service = Service.open(Settings(home=tmp_path / "empty").ensure_dirs())
    try:
        officer = Principal("ann", "hub", "analyst", frozenset({"data_officer"}), "")
        (item,) = landing_failures(service, officer)
        assert item["error"] == UNREAD
    finally:
        service.close()
