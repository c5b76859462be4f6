"""`streethub deliveries list / ack / retry` on a small street with a delivery that failed
because the catalogue had its delimiter wrong (a semicolon for a comma-separated export;
an encoding wrong between GBK and UTF-8 no longer fails one: the header tells)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.loader import load_catalogue
from catalog.settings import CATALOG_DIR, Settings
from departments.simulate import simulate
from lakehouse.lake import open_lake
from masking.audit import AuditLog
from pipelines.cli import app
from pipelines.deliveries import list_deliveries
from pipelines.ingest import ingest_dataset
from pipelines.ingest.ledger import ensure_ledger, landed_file, record_failure
from pipelines.ingest.staged import stage_dataset
from pipelines.protection import Protection
from tests.cli_text import one_line

BROKEN = ("wjw", "elderly_health_checks")
DEPTS = ("wjw", "cgj")  # file deliveries only: no department API needed


def wrong_delimiter_catalogue(target: Path) -> Path:
    """A copy of the catalogue that says the health checks are separated by semicolons
    (they are by commas)."""
    shutil.copytree(CATALOG_DIR, target)
    path = target / "wjw.yaml"
    text = path.read_text(encoding="utf-8")
    head, tail = text.split("pattern: elderly_health_checks_*.csv", 1)
    tail = tail.replace("delimiter: ','", "delimiter: ';'", 1)
    path.write_text(head + "pattern: elderly_health_checks_*.csv" + tail, encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake with wjw and cgj ingested under the wrong catalogue, and one refused file."""
    root = tmp_path_factory.mktemp("deliveries")
    home = root / "home"
    simulate(home, residents=200, seed=11, days=1, start=dt.date(2026, 11, 20))
    wrong = wrong_delimiter_catalogue(root / "catalog_wrong")
    settings = Settings(home=home, catalog_dir=wrong).ensure_dirs()
    cat = load_catalogue(wrong)
    protection = Protection.from_settings(settings)
    with open_lake(settings) as con:
        ensure_ledger(con)
        for code in DEPTS:
            for ds in cat.departments[code].datasets:
                ingest_dataset(con, settings, code, ds)
                stage_dataset(con, code, ds, protection)
        record_failure(
            con,
            delivery_id="cgj.violation_cases.refused-1",
            dept="cgj",
            dataset="violation_cases",
            reason="refused: link\x1b[2J.csv is a symbolic link",
        )
        record_failure(
            con,
            delivery_id="wjw.chronic_followups.pull-1",
            dept="wjw",
            dataset="chronic_followups",
            reason="source down after 12 attempts",
        )
    return root


@pytest.fixture
def officer(street: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A private copy of the street; the CLI reads it with the catalogue fixed."""
    home = tmp_path / "home"
    shutil.copytree(street / "home", home)
    monkeypatch.setenv("STREETHUB_HOME", str(home))
    monkeypatch.setenv("STREETHUB_CATALOG_DIR", str(CATALOG_DIR))
    return Settings(home=home)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def failed_id(settings: Settings) -> str:
    with open_lake(settings, read_only=True) as con:
        (row,) = [r for r in list_deliveries(con, failed=True) if r.dataset == BROKEN[1]]
    return row.delivery_id


def test_the_wrong_catalogue_failed_one_delivery_and_nothing_else(officer: Settings) -> None:
    with open_lake(officer, read_only=True) as con:
        rows = list_deliveries(con)
    failed = [r for r in rows if r.failed]
    assert {(r.dept, r.dataset) for r in failed} == {
        BROKEN,
        ("cgj", "violation_cases"),
        ("wjw", "chronic_followups"),
    }
    assert "missing column" in next(r for r in failed if r.dataset == BROKEN[1]).reason.lower()
    loaded = [r for r in rows if not r.failed]
    assert {r.dept for r in loaded} == set(DEPTS) and all(r.rows_staged for r in loaded)


def test_list_failed_shows_failures_escaped(officer: Settings) -> None:
    result = invoke("deliveries", "list", "--failed")
    assert result.exit_code == 0, result.output
    out = result.output
    assert failed_id(officer) in out and "cgj.violation_cases.refused-1" in out
    assert "elderly_health_checks_" in out  # the file name as delivered
    assert "\x1b" not in out and "\\x1b[2J" in out  # a name's ESC shown, never sent
    assert "violation_cases_" not in out  # loaded deliveries are not failures
    everything = invoke("deliveries", "list", "--dept", "cgj").output
    assert "violation_cases_" in everything and "loaded" in everything


def test_ack_records_audits_and_hides_the_failure(officer: Settings) -> None:
    delivery = failed_id(officer)
    before = len(AuditLog.from_settings(officer).records())
    result = invoke("deliveries", "ack", delivery, "--reason", "resent by wjw as ticket 42")
    assert result.exit_code == 0, result.output
    with open_lake(officer, read_only=True) as con:
        acks = con.execute("SELECT delivery_id, acked_by, reason FROM landing.delivery_acks")
        (ack,) = acks.fetchall()
    assert ack[0] == delivery and ack[1].startswith("cli:") and ack[2].endswith("ticket 42")
    records = AuditLog.from_settings(officer).records()
    assert len(records) == before + 1
    assert records[-1]["action"] == "deliveries.ack" and records[-1]["delivery_id"] == delivery
    assert AuditLog.from_settings(officer).verify().ok
    open_ = invoke("deliveries", "list", "--failed").output
    assert delivery not in open_ and "cgj.violation_cases.refused-1" in open_
    assert delivery in invoke("deliveries", "list", "--failed", "--all").output
    again = invoke("deliveries", "ack", delivery, "--reason", "twice")
    assert again.exit_code == 1 and "already acknowledged" in again.output


def test_ack_refuses_a_loaded_delivery_and_an_unknown_id(officer: Settings) -> None:
    with open_lake(officer, read_only=True) as con:
        loaded = next(r for r in list_deliveries(con) if not r.failed).delivery_id
    result = invoke("deliveries", "ack", loaded, "--reason", "fine")
    assert result.exit_code == 1 and "not failed" in result.output
    assert invoke("deliveries", "ack", "nope", "--reason", "x").exit_code == 1


def test_retry_after_the_catalogue_fix_loads_and_balances(officer: Settings) -> None:
    delivery = failed_id(officer)
    before = len(AuditLog.from_settings(officer).records())
    result = invoke("deliveries", "retry", delivery)
    assert result.exit_code == 0, result.output
    assert f"{delivery} loaded" in result.output
    with open_lake(officer, read_only=True) as con:
        (row,) = list_deliveries(con, delivery_id=delivery)
        staged = con.execute(
            f'SELECT count(*) FROM staged."wjw__{BROKEN[1]}" WHERE _delivery_id = ?', [delivery]
        ).fetchone()[0]
    assert row.status == "loaded" and row.rows_read > 0 and row.balances
    assert staged == row.rows_staged > 0
    actions = [r["action"] for r in AuditLog.from_settings(officer).records()[before:]]
    assert "deliveries.retry" in actions  # besides the gate's audited decryptions
    again = invoke("deliveries", "retry", delivery)
    assert again.exit_code == 1 and "not failed" in again.output


def test_retry_refuses_a_changed_or_missing_landed_copy(officer: Settings) -> None:
    delivery = failed_id(officer)
    with open_lake(officer, read_only=True) as con:
        (path,) = con.execute(
            "SELECT landed_path FROM landing.deliveries WHERE delivery_id = ?", [delivery]
        ).fetchone()
    # the ledger names where the module's street landed it; this copy of the home reads its
    # own copy (pipelines.ingest.ledger.landed_file), and where that is gone, the one the
    # ledger names, which later tests read: both are put back afterwards
    landed = landed_file(officer.landing_dir, *BROKEN, path)
    recorded = Path(path)
    assert landed != recorded and landed.is_relative_to(officer.home_abs)
    original = landed.read_bytes()
    try:
        landed.write_bytes(original + b"\r\n")
        changed = invoke("deliveries", "retry", delivery)
        assert changed.exit_code == 1 and "no longer matches its SHA-256" in changed.output
        assert str(landed) not in changed.output  # never the landed path
        landed.unlink()
        recorded.rename(recorded.with_name(recorded.name + ".away"))
        missing = invoke("deliveries", "retry", delivery)
        assert missing.exit_code == 1 and "landed copy is missing" in missing.output
    finally:
        landed.write_bytes(original)
        if not recorded.exists():
            recorded.with_name(recorded.name + ".away").rename(recorded)
    with open_lake(officer, read_only=True) as con:
        assert list_deliveries(con, delivery_id=delivery)[0].failed  # still accounted


def test_retry_of_a_file_refused_at_landing_says_there_is_no_copy(officer: Settings) -> None:
    result = invoke("deliveries", "retry", "cgj.violation_cases.refused-1")
    assert result.exit_code == 1 and "no landed copy" in result.output
    ack = invoke("deliveries", "ack", "cgj.violation_cases.refused-1", "--reason", "a stray link")
    assert ack.exit_code == 0, ack.output
    pull = invoke("deliveries", "retry", "wjw.chronic_followups.pull-1")
    assert pull.exit_code == 1 and "next scheduled pull" in one_line(pull)


def test_an_empty_lake_lists_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.lake import init_lake

    settings = Settings(home=tmp_path / "empty").ensure_dirs()
    monkeypatch.setenv("STREETHUB_HOME", str(settings.home))
    init_lake(settings)
    result = invoke("deliveries", "list", "--failed")
    assert result.exit_code == 0 and "no failed delivery waits" in result.output


def test_a_retry_that_fails_again_needs_a_new_acknowledgement(
    street: Path, officer: Settings
) -> None:
    from pipelines.deliveries import acknowledge, find_delivery, retry

    delivery = failed_id(officer)
    audit = AuditLog.from_settings(officer)
    still_wrong = load_catalogue(street / "catalog_wrong")
    with open_lake(officer) as con:
        ensure_ledger(con)
        assert acknowledge(con, audit, "cli:li", delivery, "asked wjw").acknowledged
        done = retry(con, still_wrong, Protection.from_settings(officer), audit, "cli:li", delivery)
        assert done.account.status == "failed" and done.stage is None
        again = find_delivery(con, delivery)
    assert again.failed and not again.acknowledged  # the new failure is open again
