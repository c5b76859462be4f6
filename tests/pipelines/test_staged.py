"""Staged on the simulated street: the gate's account balances, and no plain sensitive value
is on disk in raw or staged Parquet files, or in quarantine."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest

from catalog.loader import load_catalogue
from catalog.model import Catalogue
from catalog.settings import Settings
from departments.simulate import sim_dir_for
from lakehouse.lake import open_lake
from pipelines.connectors.http_api import RetryPolicy
from pipelines.ingest import ingest_dataset
from pipelines.ingest.staged import stage_dataset
from pipelines.protection import Protection

DATE_LIKE = re.compile(r"^\d{4}[-/.年]\d")
FAST = RetryPolicy(attempts=12, base_delay_s=0.01, max_delay_s=0.05, timeout_s=5)


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


def test_every_delivery_balances_through_the_gate(staged_street: Settings) -> None:
    with open_lake(staged_street, read_only=True) as con:
        rows = con.execute(
            """SELECT a.delivery_id, a.rows_read, a.rows_quarantined, s.rows_in, s.rows_out,
                      s.rows_quarantined, s.rows_skipped
               FROM landing.delivery_accounts a
               JOIN landing.stage_accounts s USING (delivery_id)"""
        ).fetchall()
        n_accounts = con.execute("SELECT count(*) FROM landing.delivery_accounts").fetchone()[0]
        q_rows = dict(
            con.execute(
                "SELECT delivery_id, count(DISTINCT source_row) FROM quarantine.rows "
                "GROUP BY delivery_id"
            ).fetchall()
        )
    assert len(rows) == n_accounts > 20
    for delivery, read, q_raw, rows_in, rows_out, q_gate, skipped in rows:
        assert read == rows_in + q_raw, delivery
        assert rows_in == rows_out + q_gate + skipped, delivery
        # delivered = staged + quarantined + skipped (the simulator's exact copies)
        assert read == rows_out + q_rows.get(delivery, 0) + skipped, delivery
    assert sum(r[-1] for r in rows) > 0


def test_staged_is_typed_and_keyed_by_pseudonym(staged_street: Settings) -> None:
    with open_lake(staged_street, read_only=True) as con:
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name='lake' "
                "AND schema_name='staged' AND table_name='gaj__registered_residents'"
            ).fetchall()
        )
        pids = con.execute(
            "SELECT count(*), count(DISTINCT _key_pid) FROM staged.gaj__registered_residents"
        ).fetchone()
        sample = con.execute(
            "SELECT citizen_id, name FROM staged.gaj__registered_residents LIMIT 1"
        ).fetchone()
    assert types["updated_at"] == "TIMESTAMP"
    assert types["citizen_id"] == "VARCHAR" and types["birth_date"] == "VARCHAR"  # ciphertext
    assert pids[0] == pids[1] > 0
    assert all(v.startswith("a") and ":" in v for v in sample)


def _sensitive_truth(home: Path, cat: Catalogue) -> set[str]:
    values: set[str] = set()
    for dept, ds in cat.datasets():
        clean = sim_dir_for(home) / "truth" / dept.code / ds.code / "clean.parquet"
        if not clean.exists():
            continue
        frame = pl.read_parquet(clean)
        for f in ds.fields:
            # an enumerated field's values are a public code list (其他, 跌倒 …), the same
            # words as an L1 category elsewhere: what is sensitive is whose row holds one
            if f.level.rank >= 3 and f.source_name in frame.columns and not f.allowed_values:
                col = frame[f.source_name].drop_nulls()
                # every L3/L4 value distinctive enough to mean something when found:
                # names and other Chinese text, IDs, phones, free text (a date or a time
                # alone is not: the same instant is an L1 sensor timestamp elsewhere)
                values |= {
                    v
                    for v in col.to_list()
                    if isinstance(v, str)
                    and (len(v) >= 6 or (len(v) >= 2 and not v.isascii()))
                    and not DATE_LIKE.match(v)
                }
    return values


def test_no_plain_l3_l4_value_in_raw_or_staged_parquet_files(
    staged_street: Settings, cat: Catalogue
) -> None:
    secrets = _sensitive_truth(staged_street.home_abs, cat)
    assert len(secrets) > 500
    files = [
        p
        for zone in ("raw", "staged")
        for p in (staged_street.lake_data_dir / zone).rglob("*.parquet")
    ]
    assert len(files) > 20
    leaks = []
    for path in files:  # read the files alone, as a thief with a copy would
        frame = pl.read_parquet(path)
        for name, dtype in frame.schema.items():
            if dtype == pl.String:
                found = set(frame[name].drop_nulls().to_list()) & secrets
                if found:
                    leaks.append((path.parent.name, name, sorted(found)[:2]))
    assert leaks == []


def test_quarantined_values_are_masked(staged_street: Settings, cat: Catalogue) -> None:
    secrets = _sensitive_truth(staged_street.home_abs, cat)
    with open_lake(staged_street, read_only=True) as con:
        values = [
            v
            for (v,) in con.execute(
                "SELECT value_masked FROM quarantine.rows WHERE value_masked IS NOT NULL"
            ).fetchall()
        ]
        keyed = con.execute(
            "SELECT count(*) FILTER (WHERE key_pid IS NOT NULL), count(*) FROM quarantine.rows "
            "WHERE stage = 'staged'"
        ).fetchone()
    assert values, "the street should have quarantined values"
    assert not set(values) & secrets
    assert keyed[0] > 0


def _copy(settings: Settings, tmp_path: Path) -> Settings:
    import shutil

    home = tmp_path / "copy"
    shutil.copytree(settings.home_abs, home)
    copied = settings.model_copy(update={"home": home})
    if settings.witness_dir_abs.exists():  # the audit's witness, outside the home
        shutil.copytree(settings.witness_dir_abs, copied.witness_dir_abs)
    return copied


def test_leak_scan_is_clean_then_finds_planted_values(
    staged_street: Settings, cat: Catalogue, tmp_path: Path
) -> None:
    from pipelines.leaks import scan_lake

    settings = _copy(staged_street, tmp_path)
    with open_lake(settings, read_only=True) as con:
        clean = scan_lake(settings, cat, con)
        name = con.execute(
            "SELECT name, _key_pid FROM staged.gaj__registered_residents LIMIT 1"
        ).fetchone()
    assert clean and sum(f.counts.total for f in clean) == 0
    plain_name = Protection.from_settings(settings).reveal(
        pl.DataFrame({"name": [name[0]], "_key_pid": [name[1]]}),
        cat.dataset("gaj.registered_residents")[1],
        "quality_scores",
    )["name"][0]  # fmt: skip
    from stdnum import luhn

    card = "622202020011223344" + luhn.calc_check_digit("622202020011223344")  # 19 digits
    planted = pl.DataFrame(
        {
            "note": [
                "身份证号11010519491231002X，请核实",
                "联系电话 138 1234 5678",
                f"卡号{card}",
                f"联系人{plain_name}已到场",
                "残疾人证号11010519491231002X11",  # an ID inside a document number
            ]
        }
    )
    with open_lake(settings) as con:
        con.register("p", planted.to_arrow())
        con.execute("CREATE TABLE marts.planted AS SELECT * FROM p")
    with open_lake(settings, read_only=True) as con:
        found = {f.place: f.counts.by_kind for f in scan_lake(settings, cat, con)}
    assert found["marts.planted"] == {
        "citizen_id": 1,
        "citizen_id_embedded": 1,
        "mobile": 1,
        "bank_card": 1,
        "person_name": 1,
    }


def test_key_rotation_keeps_old_data_readable_and_new_writes_use_the_new_version(
    staged_street: Settings, cat: Catalogue, tmp_path: Path
) -> None:
    from masking.keys import KeyRing

    settings = _copy(staged_street, tmp_path)
    _, ds = cat.dataset("gaj.registered_residents")
    with open_lake(settings, read_only=True) as con:
        before = con.execute(
            "SELECT _key_pid, name FROM staged.gaj__registered_residents LIMIT 5"
        ).pl()
    old_version = KeyRing.from_settings(settings).current("at_rest").version
    assert before["name"].str.starts_with(f"a{old_version}:").all()
    KeyRing.from_settings(settings).rotate()
    protection = Protection.from_settings(settings)
    revealed = protection.reveal(before, ds, "quality_scores")  # old version still decrypts
    assert revealed["name"].str.len_chars().min() >= 2
    assert not revealed["name"].str.starts_with(f"a{old_version}:").any()
    fresh = protection.protect(revealed, ds)
    assert fresh["name"].str.starts_with(f"a{old_version + 1}:").all()
    assert (
        protection.reveal(fresh, ds, "quality_scores")["name"].to_list()
        == revealed["name"].to_list()
    )


def test_correction_loop_next_delivery_resolves_the_quarantined_record(
    staged_street: Settings, cat: Catalogue, tmp_path: Path
) -> None:
    """校核纠错: the owner re-delivers a quarantined record corrected; its issue resolves."""
    from pipelines.quality_run import _issues, load_inputs

    settings = _copy(staged_street, tmp_path)
    dept, ds = cat.dataset("wjw.chronic_followups")
    with open_lake(settings, read_only=True) as con:
        bad = con.execute(
            "SELECT file_name, source_row, key_pid FROM quarantine.rows WHERE dept='wjw' "
            "AND dataset='chronic_followups' AND check_name='citizen_id_checksum' LIMIT 1"
        ).fetchone()
    assert bad is not None, "the simulated street should have a bad check digit here"
    file_name, source_row, key_pid = bad
    protection = Protection.from_settings(settings)
    with open_lake(settings, read_only=True) as con:
        before = _issues(load_inputs(con, cat, protection), dt.datetime.now(dt.UTC))
    mine = before.filter(pl.col("key_pid") == key_pid)
    assert mine.height >= 1 and (mine["status"] == "open").all()

    # the department fixes the cell and delivers its file again the next day
    simulator_truth = staged_street.sim_dir_abs / "truth"  # the street this home copies
    defects = pl.read_parquet(simulator_truth / "wjw" / ds.code / "defects.parquet")
    fix = defects.filter((pl.col("_file") == file_name) & (pl.col("_source_row") == source_row))
    delivered, truth = fix["delivered"][0], fix["truth"][0]
    inbox = settings.inbox_dir / "wjw"
    from tests.pipelines.test_landing import delivered_bytes  # the inbox file was landed

    lines = delivered_bytes(settings, "wjw", file_name).decode("gbk").split("\r\n")
    assert delivered in lines[source_row - 1]
    lines[source_row - 1] = lines[source_row - 1].replace(delivered, truth)
    (inbox / file_name.replace("20261120", "20261121")).write_bytes(
        "\r\n".join(lines).encode("gbk")
    )
    with open_lake(settings) as con:
        landed, _ = ingest_dataset(con, settings, dept.code, ds)
        stage_dataset(con, dept.code, ds, protection)
    assert len(landed.landed) == 1
    with open_lake(settings, read_only=True) as con:
        after = _issues(load_inputs(con, cat, protection), dt.datetime.now(dt.UTC))
    mine = after.filter(pl.col("key_pid") == key_pid)
    assert (mine["status"] == "resolved").all()
    assert mine["resolved_by_delivery"].is_not_null().all()


def test_no_key_material_anywhere_outside_the_key_ring(staged_street: Settings) -> None:
    """Keys never reach the lake, the audit log, reports or any other file of the home."""
    import base64

    from masking.keys import KeyRing

    ring = KeyRing.from_settings(staged_street)
    keys = [ring.get(p, v).material for p in ring.purposes() for v in ring.versions(p)]
    assert {"at_rest", "pseudonym", "audit_signing"} <= set(ring.purposes())
    masters = [ring.provider.export(ring.master_kid)]  # the master too (kept outside)
    needles = [
        form
        for key in [*keys, *masters]
        for form in (key, key.hex().encode(), key.hex().upper().encode(),
                     base64.b64encode(key), base64.urlsafe_b64encode(key))
    ]  # fmt: skip
    files = [
        p
        for p in staged_street.home_abs.rglob("*")
        if p.is_file() and staged_street.keys_dir not in p.parents
    ]
    assert any(p.suffix == ".parquet" for p in files) and any("audit" in p.parts for p in files)
    found = []
    for path in files:
        data = path.read_bytes()
        found += [(path.name, i) for i, needle in enumerate(needles) if needle in data]
    assert found == []


def test_k_anonymity_of_staged_datasets(
    staged_street: Settings, cat: Catalogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Measured over the catalogue's quasi-identifiers, decrypted for an audited purpose;
    enforcing reaches k, or publishing is refused; the CLI says which, never a value."""
    from typer.testing import CliRunner

    from masking.audit import AuditLog
    from pipelines.cli import app
    from pipelines.kanon import kanon_dataset

    settings = _copy(staged_street, tmp_path)
    protection = Protection.from_settings(settings)
    with open_lake(settings, read_only=True) as con:
        r = kanon_dataset(con, cat, protection, "gaj.registered_residents", k=5)
        huge = kanon_dataset(con, cat, protection, "gaj.registered_residents", k=10_000)
    assert r.quasi_identifiers == ["gender", "birth_date", "community_code"]
    assert r.measured.rows > 400 and r.measured.smallest_class < 5  # exact birth dates
    assert r.enforced is not None and r.enforced.final.ok and r.enforced.steps
    assert r.enforced.final.smallest_class >= 5
    assert r.enforced.suppressed_rows <= 0.05 * r.measured.rows
    assert huge.enforced is None and "k=10000" in huge.refused
    audit = [
        x for x in AuditLog.from_settings(settings).records() if x.get("purpose") == "k_anonymity"
    ]
    assert "JD-GAJ-001.birth_date" in {x.get("column") for x in audit}

    monkeypatch.setenv("STREETHUB_HOME", str(settings.home_abs))
    ok = CliRunner().invoke(app, ["kanon", "check", "gaj.registered_residents", "rx.appeals"])
    assert ok.exit_code == 0, ok.output
    assert "gaj.registered_residents" in ok.output and "birth_date: month" in ok.output
    refused = CliRunner().invoke(
        app, ["kanon", "check", "gaj.registered_residents", "--k", "10000"]
    )
    assert refused.exit_code == 1 and "refused" in refused.output
    with open_lake(settings, read_only=True) as con:
        some = con.execute(
            "SELECT _key_pid, birth_date FROM staged.gaj__registered_residents LIMIT 20"
        ).pl()
    _, ds = cat.dataset("gaj.registered_residents")
    dates = protection.reveal(some, ds, "quality_scores")["birth_date"].cast(pl.String).to_list()
    assert len(dates) == 20 and not any(d in ok.output + refused.output for d in dates)


def test_audit_cli_verifies_then_finds_tampering(
    staged_street: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    settings = _copy(staged_street, tmp_path)
    monkeypatch.setenv("STREETHUB_HOME", str(settings.home_abs))
    runner = CliRunner()
    runner.invoke(app, ["kanon", "check", "gaj.registered_residents"])
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "hash chain, every MAC" in ok.output
    tail = runner.invoke(app, ["audit", "tail", "-n", "3"])
    assert tail.exit_code == 0 and "k_anonymity" in tail.output and "cli:" in tail.output
    log = settings.audit_dir / "audit.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace('"purpose":"', '"purpose":"x', 1)  # somebody edits record 2
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bad = runner.invoke(app, ["audit", "verify"])
    assert bad.exit_code == 1 and "record 2: changed" in bad.output


def test_leak_check_in_dagster_passes_then_blocks_a_planted_leak(
    staged_street: Settings, cat: Catalogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from pipelines.defs.protection.checks import LEAK_CHECK, build_leak_check
    from pipelines.defs.quality.assets import build_scorecard_asset, staged_key
    from pipelines.resources import LakeResource

    settings = _copy(staged_street, tmp_path)
    monkeypatch.setenv("STREETHUB_HOME", str(settings.home_abs))
    check = build_leak_check()
    assert all(spec.blocking for spec in check.check_specs)
    scorecard = build_scorecard_asset([staged_key(d.code, ds.code) for d, ds in cat.datasets()])

    def run() -> dg.AssetCheckEvaluation:
        result = dg.materialize(  # the check alone: the scan reads the lake as it is
            [scorecard, check],
            selection=dg.AssetSelection.checks(dg.AssetCheckKey(scorecard.key, LEAK_CHECK)),
            resources={"lake": LakeResource()},
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        (evaluation,) = [
            e for e in result.get_asset_check_evaluations() if e.check_name == LEAK_CHECK
        ]
        return evaluation

    clean = run()
    assert clean.passed and clean.metadata["cells_scanned"].value > 1000
    assert set(clean.metadata["unmasked_by_kind"].value.values()) <= {0}  # kinds found only
    with open_lake(settings) as con:
        con.execute("CREATE TABLE marts.oops AS SELECT '联系电话13812345678' AS note")
    leaking = run()
    assert not leaking.passed
    assert leaking.metadata["places_with_unmasked_values"].value == {"marts.oops": 1}
    assert "13812345678" not in str(leaking.metadata)
