"""The 国密 suite end to end: the main job on a small simulated street with
``STREETHUB_CIPHER_SUITE=gm``. The ring records gm; every sensitive value in raw and
staged is SM4-GCM (``s<v>:``) and reads back for an audited purpose; key pseudonyms are
HMAC-SM3 of the staged keys; the audit log verifies, its checkpoints SM2-signed, with the
exported public key alone too."""

from __future__ import annotations

import hmac
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from catalog.loader import load_catalogue
from catalog.model import PiiKind
from catalog.settings import Settings
from lakehouse.lake import open_lake, tables_in
from masking.audit import AuditLog
from masking.audit.format import load_public_keys
from masking.crypto import ciphertext_suite, protected_fields
from masking.keys import KeyRing
from masking.suite import Suite
from pipelines.protection import Protection

WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def _id_valid(value: str) -> bool:
    """GB 11643-1999 check character (an oracle apart from the project's validators)."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    return (
        "10X98765432"[sum(int(c) * w for c, w in zip(value[:17], WEIGHTS, strict=True)) % 11]
        == value[17]
    )


# a department for each way of delivering that lands and encrypts differently: a CSV file,
# the registry's database (the person key's authority) and an HTTP API: the whole job runs
# under the suite as it does on the whole catalogue (the protection is per value and per file,
# not per department), for a sixth of the datasets' fixed cost
GM_DEPARTMENTS = ("cgj", "gaj", "rsj")


def test_main_job_under_gm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.main_job import run_main
    from tests.reliability.conftest import sub_catalogue

    home = tmp_path / "hub"
    for name, value in {
        "STREETHUB_HOME": str(home),
        "STREETHUB_CATALOG_DIR": str(sub_catalogue(tmp_path / "catalogue", GM_DEPARTMENTS)),
        "STREETHUB_CIPHER_SUITE": "gm",
        "STREETHUB_SIM_RESIDENTS": "150",
        "STREETHUB_SIM_DAYS": "1",
        "STREETHUB_SETTLE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.cipher_suite == "gm"
    console = Console(record=True, width=200, force_terminal=False)
    run_main(settings, console)  # raises StreethubError on any failure of this run
    assert "every row of every delivery read is staged, quarantined or skipped" in (
        console.export_text()
    )

    ring = KeyRing.from_settings(settings)
    assert ring.suite.name is Suite.GM
    cat = load_catalogue(settings.catalog_dir)
    assert set(cat.departments) == set(GM_DEPARTMENTS)
    protection = Protection.from_settings(settings, actor="test:gm")
    datasets = {f"{d.code}__{ds.code}": ds for d, ds in cat.datasets()}
    suites: set[tuple[Suite, int]] = set()
    with open_lake(settings, read_only=True) as con:
        tables = tables_in(con)
        assert {t for z, t in tables if z == "staged"} == set(datasets)  # every one landed
        for zone, table in sorted(tables):
            if zone not in ("raw", "staged"):
                continue
            frame = con.execute(f'SELECT * FROM {zone}."{table}"').pl()
            ds = datasets[table]
            for name in protected_fields(frame, ds):
                suites |= {ciphertext_suite(v) for v in frame[name].drop_nulls()}
            # readable for the audited purposes, every table
            if zone == "raw":
                protection.reveal_text(frame, ds, "quality_gate")
            else:
                protection.reveal(frame, ds, "quality_scores")
        staged = con.execute("SELECT * FROM staged.gaj__registered_residents").pl()
        assert ("marts", "quality_scorecard") in tables
    assert suites == {(Suite.GM, 1)}  # every value SM4-GCM under the first key version

    _, residents = cat.dataset("gaj.registered_residents")
    plain = protection.reveal(staged, residents, "quality_scores")
    ids = plain["citizen_id"].drop_nulls().to_list()
    assert len(ids) > 100 and all(_id_valid(v) for v in ids)
    names = [f.name for f in residents.fields if f.pii is PiiKind.person_name]
    assert names and plain[names[0]].drop_nulls().str.len_chars().min() >= 2
    (key_field,) = residents.key
    key = ring.current("pseudonym").material.hex().encode()
    want = [hmac.digest(key, v.encode(), "sm3").hex()[:20] for v in plain[key_field]]
    assert plain["_key_pid"].to_list() == want  # HMAC-SM3, not HMAC-SHA256
    assert not plain.filter(pl.col("_key_pid").is_null()).height

    audit = AuditLog.from_settings(settings, ring)
    checked = audit.verify()
    assert checked.ok and checked.checkpoints >= 1, checked.problems
    exported = tmp_path / "audit-public.json"
    assert audit.export_public_keys(exported) >= 1
    public = load_public_keys(exported)
    assert {suite for suite, _ in public} == {"gm"}
    assert all(len(pub) == 64 for pub in public.values())  # SM2 points (x ‖ y)
    inspected = audit.verify(public_keys=public)
    assert inspected.ok and not inspected.with_secret, inspected.problems
