"""The analyst database (issue 17): what an analysts' organisation's grants show, copied
into one DuckDB file — each grant's view (masking, the analyst's own pseudonym key,
residents' opt-outs), the catalogue's comments, nothing else — rebuilt only when what it
shows changed, every build audited."""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl
import pytest

from catalog.marts import load_marts
from lakehouse.lake import open_lake
from masking.pseudonym import pseudonym_key
from share_api.analysts.build import (
    BUILD_TABLE,
    AnalystError,
    analyst_db_path,
    ensure_analyst_db,
    stored_fingerprint,
)
from share_api.analysts.lock import open_locked
from share_api.consent import record_choice
from share_api.grants import create_grant, revoke_grant
from tests.share_api.conftest import ANALYST_MARTS, OPTED_OUT_MART


def _lake_rows(settings, mart: str) -> pl.DataFrame:
    with open_lake(settings, read_only=True) as con:
        return pl.from_arrow(con.execute(f'SELECT * FROM marts."{mart}"').to_arrow_table())


def test_the_database_holds_each_granted_view_and_nothing_else(analyst_street) -> None:
    svc, path = analyst_street.service, analyst_street.path
    assert path == analyst_db_path(svc.settings, analyst_street.org)
    con = open_locked(path)
    try:
        objects = con.execute(
            "SELECT table_name, table_type FROM information_schema.tables"
        ).fetchall()
        assert sorted(objects) == sorted(
            [(m, "BASE TABLE") for m in ANALYST_MARTS] + [(BUILD_TABLE, "BASE TABLE")]
        )
        assert (
            con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchone()[0] == 0
        )
        assert (
            con.execute("SELECT count(*) FROM duckdb_functions() WHERE NOT internal").fetchone()[0]
            == 0
        )
        assert [r[0] for r in con.execute("SELECT database_name FROM duckdb_databases() "
                                          "WHERE NOT internal").fetchall()] == [path.stem]  # fmt: skip
        # the catalogue's comments, on the table and every column
        marts = load_marts()
        for mart in ANALYST_MARTS:
            (comment,) = con.execute(
                "SELECT comment FROM duckdb_tables() WHERE table_name = ?", [mart]
            ).fetchone()
            assert comment.startswith(marts[mart].name_zh)
            cols = dict(
                con.execute(
                    "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = ?",
                    [mart],
                ).fetchall()
            )
            assert set(cols) == set(marts[mart].column_names)
            for c in marts[mart].columns:
                assert cols[c.name].startswith(c.label_zh)
        info = con.execute(
            f'SELECT analyst, snapshot, grants, tables FROM "{BUILD_TABLE}"'
        ).fetchone()
        copied = {m: pl.from_arrow(con.execute(f'SELECT * FROM "{m}"').to_arrow_table())
                  for m in ANALYST_MARTS}  # fmt: skip
    finally:
        con.close()
    assert info[0] == analyst_street.org
    assert sorted(info[2]) == sorted(analyst_street.grants.values())
    assert sorted(info[3]) == sorted(ANALYST_MARTS)
    # aggregates: as published; the person-level mart re-keyed and without the opt-out
    for mart in ANALYST_MARTS:
        lake = _lake_rows(svc.settings, mart)
        if mart != OPTED_OUT_MART:
            assert copied[mart].sort(lake.columns).equals(lake.sort(lake.columns))
    lake = _lake_rows(svc.settings, OPTED_OUT_MART)
    key = pseudonym_key(svc.keyring, recipient=analyst_street.org)
    theirs = key.hexdigests(pl.Series([analyst_street.opted_out]))[0]
    got = copied[OPTED_OUT_MART]["person_id"].to_list()
    assert theirs not in got
    assert len(got) == lake.height - lake["person_id"].to_list().count(analyst_street.opted_out)
    expected = set(key.hexdigests(lake["person_id"]).to_list()) - {theirs}
    assert set(got) == expected
    assert not set(got) & set(lake["person_id"].to_list())  # no hub pseudonym leaves


def test_rebuilt_only_when_a_grant_or_the_consent_registry_changes(analyst_street) -> None:
    svc, org, path = analyst_street.service, analyst_street.org, analyst_street.path
    first = stored_fingerprint(path)
    again = ensure_analyst_db(svc.settings, org, service=svc)
    assert not again.rebuilt and again.fingerprint == first
    # an opt-out withdrawn: back in the next build
    mart = load_marts()[OPTED_OUT_MART]
    record_choice(svc, pseudonym=analyst_street.opted_out, category=mart.consent_category.value,
                  recipient_kind="analyst", choice="allowed", channel="app",
                  actor="test/clerk")  # fmt: skip
    back = ensure_analyst_db(svc.settings, org, service=svc)
    assert back.rebuilt and back.fingerprint != first
    assert back.rows[OPTED_OUT_MART] == _lake_rows(svc.settings, OPTED_OUT_MART).height
    # an opt-out of departments does not concern analysts: no rebuild
    record_choice(svc, pseudonym=analyst_street.opted_out, category=mart.consent_category.value,
                  recipient_kind="department", choice="declined", channel="app",
                  actor="test/clerk")  # fmt: skip
    assert not ensure_analyst_db(svc.settings, org, service=svc).rebuilt
    # a grant revoked: its table is gone
    revoke_grant(svc, analyst_street.grants["appeal_sla"], "test/admin", "test")
    fewer = ensure_analyst_db(svc.settings, org, service=svc)
    assert fewer.rebuilt and set(fewer.rows) == set(ANALYST_MARTS) - {"appeal_sla"}
    # a new grant, narrower: the second of a mart gets a table of its own
    extra = create_grant(svc, grantee_org=org, resource="marts.demand_heatmap",
                         columns=[load_marts()["demand_heatmap"].column_names[0]],
                         row_filter=None, masking={}, standing=False, request_id=None,
                         expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))  # fmt: skip
    more = ensure_analyst_db(svc.settings, org, service=svc)
    assert more.rebuilt and f"demand_heatmap__{extra.rpartition('-')[2]}" in more.rows
    # every build audited: who, grants, snapshot, rows, digest of the file
    builds = [r for r in svc.audit.log.records() if r["action"] == "analyst.build"]
    assert len(builds) == 4  # the fixture's, the withdrawal, the revocation, the new grant
    last = builds[-1]
    assert last["analyst"] == org and extra in last["grants"]
    assert last["snapshot"] == more.snapshot and last["fingerprint"] == more.fingerprint


def test_a_chosen_snapshot_and_refusals(analyst_street) -> None:
    svc, org = analyst_street.service, analyst_street.org
    current = ensure_analyst_db(svc.settings, org, service=svc)
    out = svc.settings.home_abs.parent / "elsewhere" / "ana.duckdb"
    at = ensure_analyst_db(svc.settings, org, service=svc, snapshot=current.snapshot, out=out)
    assert at.rebuilt and at.path == out and at.snapshot == current.snapshot
    with pytest.raises(AnalystError, match="snapshot"):
        ensure_analyst_db(svc.settings, org, service=svc, snapshot=10**9, out=out)
    with pytest.raises(AnalystError, match="mzj"):  # a department is no analysts' team
        ensure_analyst_db(svc.settings, "mzj", service=svc)
    # nothing half-written is left beside the file
    assert [p.name for p in out.parent.iterdir()] == ["ana.duckdb"]
    with pytest.raises(duckdb.Error):
        open_locked(out).execute("CREATE TABLE x AS SELECT 1")
