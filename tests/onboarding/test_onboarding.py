"""Onboarding proof: 区残疾人联合会 (残联, ``cl``) joins the hub by a YAML file and a delivery.

The simulator has no such department and no module of ours names it. From ``cl.yaml`` and
one dirty UTF-8 CSV in ``inbox/cl/`` the hub lands the file, gates every row (each dirty
row repaired, skipped or quarantined for its own field and check), keeps every L3/L4
value encrypted in the raw and staged Parquet files, masks what it publishes, scores the
dataset, leak-scans the lake, and shows the department in Dagster as its own group.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from catalog.street import get_street
from lakehouse.lake import open_lake
from masking.crypto import CIPHERTEXT
from masking.leaks import scan_frame
from masking.masks import apply_masking
from pipelines.leaks import scan_lake
from pipelines.protection import Protection
from quality.standardise import standardise
from tests.onboarding.conftest import (
    DATASET,
    DEPT,
    FILE_NAME,
    RENAMED,
    Onboarded,
    write_catalogue,
)
from tests.onboarding.delivery import Expected, build_delivery

REPO = Path(__file__).resolve().parents[2]
TABLE = f"{DEPT}__{DATASET}"
HELD_BACK = "quarantined"
NOT_RECORD = "not_record"  # a ledger's totals or footer row: quarantined as it is read


def _expected(ob: Onboarded, outcome: str) -> dict[int, Expected]:
    return {row: e for row, e in ob.delivery.expected.items() if e.outcome == outcome}


def test_the_street_ran_without_an_escaped_exception(onboarded: Onboarded) -> None:
    assert onboarded.escaped == {}
    assert DEPT in onboarded.cat.departments  # the copy of the catalogue holds 残联 …
    assert len(onboarded.cat.departments) >= 13  # … beside every shipped department


def test_landed_once_and_every_row_accounted(onboarded: Onboarded) -> None:
    expected = onboarded.delivery.expected
    with open_lake(onboarded.settings, read_only=True) as con:
        landed = con.execute(
            "SELECT delivery_id, file_name, size_bytes FROM landing.deliveries "
            "WHERE dept = ? AND dataset = ?",
            [DEPT, DATASET],
        ).fetchall()
        account = con.execute(
            "SELECT status, rows_read, rows_loaded, rows_quarantined FROM "
            "landing.delivery_accounts WHERE dept = ? AND dataset = ?",
            [DEPT, DATASET],
        ).fetchall()
        staged = con.execute(
            "SELECT rows_in, rows_out, rows_quarantined, rows_skipped FROM landing.stage_accounts "
            "WHERE delivery_id = ? AND stage = 'staged'",
            [landed[0][0]],
        ).fetchall()
    assert [(n, s) for _, n, s in landed] == [
        (FILE_NAME, len(onboarded.delivery.text.encode("utf-8")))
    ]
    outcomes = [e.outcome for e in expected.values()]
    not_records = outcomes.count(NOT_RECORD)
    assert not_records == 2
    assert account == [("loaded", len(expected), len(expected) - not_records, not_records)]
    assert staged == [
        (
            len(expected) - not_records,
            outcomes.count("staged"),
            outcomes.count(HELD_BACK),
            outcomes.count("skipped"),
        )
    ]


def test_each_dirty_row_quarantined_for_its_own_reason(onboarded: Onboarded) -> None:
    with open_lake(onboarded.settings, read_only=True) as con:
        q = con.execute(
            "SELECT source_row, field, check_name, reason, value_masked, key_pid "
            "FROM quarantine.rows WHERE dept = ? AND dataset = ?",
            [DEPT, DATASET],
        ).pl()
    got = {
        row: frozenset(zip(g["field"], g["check_name"], strict=True))
        for (row,), g in q.group_by("source_row")
    }
    want = {
        row: e.failures
        for outcome in (HELD_BACK, NOT_RECORD)
        for row, e in _expected(onboarded, outcome).items()
    }
    assert len(want) >= 12
    assert got == want
    # reasons and masked values carry no delivered sensitive value (names, IDs, numbers, phones)
    for text in [*q["reason"].to_list(), *q["value_masked"].drop_nulls().to_list()]:
        assert not any(secret in text for secret in onboarded.delivery.sensitive), text
        assert not re.search(r"\d{11,}", text), text
    # each held-back row keyed by the pseudonym of its person, so the owner's next good
    # delivery of that person closes the correction issue (the two versions share one)
    assert q["key_pid"].str.contains(r"^[0-9a-f]{20}$").all()
    twins = [row for row, e in _expected(onboarded, HELD_BACK).items()
             if ("citizen_id", "conflicting_key") in e.failures]  # fmt: skip
    assert q.filter(pl.col("source_row").is_in(twins))["key_pid"].n_unique() == 1


def test_repaired_rows_staged_with_standard_values(onboarded: Onboarded) -> None:
    ds = onboarded.dataset
    protection = Protection.from_settings(onboarded.settings)
    with open_lake(onboarded.settings, read_only=True) as con:
        frame = con.execute(f'SELECT * FROM staged."{TABLE}"').pl()
    revealed = protection.reveal(frame, ds, "quality_scores")
    by_row = {r["_source_row"]: r for r in revealed.iter_rows(named=True)}
    staged = _expected(onboarded, "staged")
    assert set(by_row) == set(staged)
    repaired = {row: e for row, e in staged.items() if e.staged}
    assert len(repaired) >= 15
    for row, e in repaired.items():
        for name, value in e.staged.items():
            assert by_row[row][name] == value, (e.dirt, name)
    for row in staged:  # every staged value in its standard form
        r = by_row[row]
        assert re.fullmatch(r"\d{17}[\dX]", r["citizen_id"])
        assert r["certificate_no"].startswith(r["citizen_id"])
        assert isinstance(r["issued_on"], dt.date)
        assert isinstance(r["birth_date"], dt.date) or staged[row].staged == {"birth_date": None}
        assert r["mobile"] is None or re.fullmatch(r"1[3-9]\d{9}", r["mobile"])


def test_each_repair_counted_by_its_kind(onboarded: Onboarded) -> None:
    """The standardiser counts, per field and kind, exactly the repairs planted in the file."""
    ds = onboarded.dataset
    protection = Protection.from_settings(onboarded.settings)
    staged = _expected(onboarded, "staged")
    with open_lake(onboarded.settings, read_only=True) as con:
        raw = con.execute(f'SELECT * FROM raw."{TABLE}"').pl()
    raw = protection.reveal_text(raw, ds, "standardise")
    raw = raw.filter(pl.col("_source_row").is_in(list(staged)))
    counts = standardise(raw, ds).repairs
    got = {(f, k): n for f, k, n in counts.iter_rows()}
    want = Counter(repair for e in staged.values() for repair in e.repairs)
    assert len(want) >= 12
    assert got == dict(want)


def test_sensitive_values_encrypted_in_raw_and_staged_parquet(onboarded: Onboarded) -> None:
    ds = onboarded.dataset
    secrets = onboarded.delivery.sensitive
    assert len(secrets) > 150
    files = [
        p
        for zone in ("raw", "staged")
        for p in (onboarded.settings.lake_data_dir / zone).rglob("*.parquet")
        if TABLE in str(p)
    ]
    assert {p.relative_to(onboarded.settings.lake_data_dir).parts[0] for p in files} == {
        "raw",
        "staged",
    }
    sensitive = [f.name for f in ds.fields if f.level.sensitive]
    plain = [f.name for f in ds.fields if not f.level.sensitive]
    for path in files:  # read the files alone, as a thief with a copy would
        frame = pl.read_parquet(path)
        for name in sensitive:
            values = frame[name].drop_nulls()
            assert values.len() and values.str.contains(CIPHERTEXT).all(), (path.name, name)
        for name, dtype in frame.schema.items():
            if dtype == pl.String:
                assert not set(frame[name].drop_nulls().to_list()) & secrets, (path.name, name)
        # the L1/L2 columns are readable, so these are the right files
        assert frame.select(pl.col(plain).is_not_null().any()).row(0) == (True,) * len(plain)


def test_masked_where_published(onboarded: Onboarded) -> None:
    ds = onboarded.dataset
    protection = Protection.from_settings(onboarded.settings)
    with open_lake(onboarded.settings, read_only=True) as con:
        staged = protection.reveal(con.execute(f'SELECT * FROM staged."{TABLE}"').pl(), ds,
                                   "quality_scores")  # fmt: skip
    published = apply_masking(staged, ds, keyring=protection.keyring)
    for before, after in zip(
        staged.iter_rows(named=True), published.iter_rows(named=True), strict=True
    ):
        cert = before["certificate_no"]
        assert after["certificate_no"] == cert[:6] + "*" * (len(cert) - 10) + cert[-4:]
        assert after["name"] == before["name"][0] + "*"
        assert re.fullmatch(r"[0-9a-f]{20}", after["citizen_id"])
        born = before["birth_date"]
        assert after["birth_date"] == (None if born is None else str(born.year))
        assert re.fullmatch(CIPHERTEXT, after["disability_grade"])  # encrypt: never shown
        if before["mobile"]:
            assert after["mobile"] == before["mobile"][:3] + "****" + before["mobile"][-4:]
    public = published.drop([c for c in published.columns if c.startswith("_")])
    assert scan_frame(public, known_names=set(staged["name"].to_list())).total == 0
    # and the scanner would see this department's number, were it published unmasked
    exposed = scan_frame(staged.select("certificate_no"))
    assert exposed.by_kind["citizen_id_embedded"] == staged.height


def test_scored_on_the_scorecard(onboarded: Onboarded) -> None:
    with open_lake(onboarded.settings, read_only=True) as con:
        scores = con.execute(
            "SELECT dataset, dimension, score, numerator, denominator, detail "
            "FROM marts.quality_scorecard WHERE dept = ?",
            [DEPT],
        ).pl()
        expectations = con.execute(
            "SELECT expectation, success FROM marts.quality_expectations "
            "WHERE dept = ? AND dataset = ?",
            [DEPT, DATASET],
        ).pl()
    mine = scores.filter(pl.col("dataset") == DATASET)
    assert set(mine["dimension"]) == {
        "completeness",
        "validity",
        "uniqueness",
        "consistency",
        "timeliness",
        "accuracy",
    }
    assert "*" in set(scores["dataset"])  # the department's own row
    score = {r["dimension"]: r for r in mine.iter_rows(named=True)}
    outcomes = [e.outcome for e in onboarded.delivery.expected.values()]
    blanks = sum(check == "required" for e in onboarded.delivery.expected.values()
                 for _, check in e.failures)  # fmt: skip
    required = sum(f.required for f in onboarded.dataset.fields)
    completeness = score["completeness"]
    assert completeness["denominator"] == len(outcomes) * required
    assert completeness["numerator"] == completeness["denominator"] - blanks
    held, not_records = outcomes.count(HELD_BACK), outcomes.count(NOT_RECORD)
    assert (
        f"{held + not_records} rows in quarantine ({held} held back by the row gate)"
        in score["validity"]["detail"]
    )
    # validity: rows past reading and the row gate (a skipped exact copy was valid)
    assert score["validity"]["denominator"] == len(outcomes)
    assert score["validity"]["numerator"] == len(outcomes) - held - not_records
    assert score["uniqueness"]["numerator"] == outcomes.count("staged")
    # against the authority (the police registry): one holder registered under another name
    assert 0.9 < score["consistency"]["score"] < 1
    assert 0.9 < score["accuracy"]["score"] < 1
    assert score["timeliness"]["score"] == 1.0  # delivered just now, monthly cycle
    assert expectations.height > 0
    report = (onboarded.settings.home_abs / "reports" / "quality.html").read_text("utf-8")
    assert onboarded.dataset.name_zh in report or DATASET in report


def test_checked_against_the_registry_the_catalogue_names(onboarded: Onboarded) -> None:
    """The authority comes from the catalogue: the registry's holders are compared and
    the certificate holders' IDs looked up in it, with nothing in code naming either."""
    with open_lake(onboarded.settings, read_only=True) as con:
        flagged = con.execute(
            "SELECT source_row, field FROM quarantine.disagreements WHERE dept = ? AND dataset = ?",
            [DEPT, DATASET],
        ).fetchall()
        references = con.execute(
            'SELECT "column", success, observed FROM marts.quality_expectations '
            "WHERE dept = ? AND dataset = ? AND expectation = 'expect_column_values_to_be_in_set'",
            [DEPT, DATASET],
        ).fetchall()
    assert flagged == [(RENAMED, "name")]
    staged = sum(e.outcome == "staged" for e in onboarded.delivery.expected.values())
    assert references == [("citizen_id", False, f"1 of {staged} unexpected ({100 / staged:.2f} %)")]


def test_leak_scan_covers_it_and_finds_nothing(onboarded: Onboarded) -> None:
    with open_lake(onboarded.settings, read_only=True) as con:
        findings = scan_lake(onboarded.settings, onboarded.cat, con)
    by_place = {f.place: f for f in findings}
    assert by_place["quarantine.rows"].cells > 0
    assert any(p.endswith("quality.html") for p in by_place)
    assert {f.place: f.counts.total for f in findings if f.counts.total} == {}


def test_a_group_of_its_own_in_the_dagster_definitions(
    onboarded: Onboarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREETHUB_HOME", str(onboarded.settings.home_abs))
    monkeypatch.setenv("STREETHUB_CATALOG_DIR", str(onboarded.settings.catalog_dir))
    defs = dg.load_from_defs_folder(path_within_project=REPO)
    graph = defs.resolve_asset_graph()
    keys = {k for k in graph.get_all_asset_keys() if graph.get(k).group_name == DEPT}
    zones = ("landing", "raw", "staged")
    assert keys == {dg.AssetKey([zone, DEPT, DATASET]) for zone in zones}
    staged = dg.AssetKey(["staged", DEPT, DATASET])
    assert dg.AssetKey(["raw", DEPT, DATASET]) in graph.get(staged).parent_keys
    assert staged in graph.get(dg.AssetKey(["marts", "quality_scorecard"])).parent_keys
    node = graph.get(staged)
    assert node.owners == ["team:cl"]
    assert onboarded.dataset.name_zh in (node.description or "")
    checks = {(tuple(c.asset_key.path), c.name) for c in graph.asset_check_keys}
    mine = {(path, name) for path, name in checks if path[1:2] == (DEPT,)}
    assert {name for _, name in mine} >= {"deliveries_accounted", "contract", "expectations"}
    assert {path[0] for path, _ in mine} == {"raw", "staged"}
    assert f"inbox_{DEPT}" in {s.name for s in defs.sensors or []}


def _files_naming_the_department(*pathspec: str) -> list[str]:
    """Files (tracked or new) under ``pathspec`` that name 残联's code, dataset, resource
    code, name or provider code."""
    names = ['"cl"', "'cl'", DATASET, "JD-CL-001", "区残疾人联合会", "13110105MB01746539"]
    found = subprocess.run(
        ["git", "grep", "-l", "--untracked", "-F", *[a for n in names for a in ("-e", n)],
         "--", *pathspec],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert found.returncode in (0, 1), found.stderr
    return found.stdout.split()


def test_no_module_of_ours_names_the_department() -> None:
    """Everything above came from cl.yaml and the delivery: no code knows 残联."""
    assert _files_naming_the_department(".", ":!tests", ":!*.md") == []
    # the search itself finds what it looks for: this package names it everywhere
    assert "tests/onboarding/cl.yaml" in _files_naming_the_department("tests/onboarding")


def test_onboarded_through_dagster_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same YAML and file, run by Dagster's own job from the definitions: the group's
    assets materialise and its checks pass, in a home where nothing else happened."""
    delivery = build_delivery(get_street().community_names)
    inbox = tmp_path / "home" / "inbox" / DEPT
    inbox.mkdir(parents=True)
    (inbox / FILE_NAME).write_text(delivery.text, encoding="utf-8")
    os.utime(inbox / FILE_NAME, (1e9, 1e9))  # settled long ago
    monkeypatch.setenv("STREETHUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STREETHUB_CATALOG_DIR", str(write_catalogue(tmp_path / "catalogue")))
    monkeypatch.setenv("STREETHUB_SIM_DIR", str(tmp_path / "no_simulator"))
    defs = dg.load_from_defs_folder(path_within_project=REPO)
    graph = defs.resolve_asset_graph()
    group = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name == DEPT]
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=group, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    checks = {
        (e.asset_key.path[0], e.check_name): e.passed for e in result.get_asset_check_evaluations()
    }
    assert checks == {
        ("raw", "deliveries_accounted"): True,
        ("staged", "contract"): True,
        ("staged", "expectations"): True,
    }
    mats = {
        m.asset_key.path[0]: m.metadata
        for e in result.get_asset_materialization_events()
        for m in [e.event_specific_data.materialization]
    }
    outcomes = [e.outcome for e in delivery.expected.values()]
    assert mats["raw"]["rows_read"].value == len(outcomes)
    assert mats["staged"]["rows_passed"].value == outcomes.count("staged")
    assert mats["staged"]["rows_quarantined"].value == outcomes.count(HELD_BACK)
    assert mats["staged"]["rows_skipped"].value == outcomes.count("skipped")
    # the standardisers' repairs, by field and kind, on the staged asset (for the officer)
    repairs = mats["staged"]["repairs"].value
    planted = Counter(
        f"{field}: {kind}"
        for e in delivery.expected.values()
        if e.outcome == "staged"
        for field, kind in e.repairs
    )
    assert len(planted) >= 12
    assert all(repairs.get(k, 0) >= n for k, n in planted.items()), (repairs, planted)
    assert mats["staged"]["values_repaired"].value == sum(repairs.values())
