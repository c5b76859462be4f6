"""Sealed cells: personal values a delivery put in a column the catalogue leaves in the clear
are encrypted in the raw zone, cell by cell, and opened again for an audited purpose."""

from __future__ import annotations

import polars as pl
import pytest

from catalog.loader import get_catalogue
from catalog.model import Dataset
from masking.audit import AuditLog
from masking.crypto import CIPHERTEXT
from masking.errors import DecryptionError
from masking.keys import KeyRing
from masking.leaks import scan_frame
from masking.masks import mask_values
from pipelines.protection import Protection

FOOTER = {"所属社区": "联系电话：13911112222", "登记日期": "填表人：钱晓东"}
FORGED = "a1:" + "A" * 40  # a delivered value with a ciphertext's shape


@pytest.fixture
def elderly() -> Dataset:
    return get_catalogue().dataset("mzj.elderly_alone")[1]


def raw_frame(**columns: list) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    base = {
        "_delivery_id": ["d1"] * n,
        "_source_row": list(range(2, n + 2)),
        "name": ["张三"] * n,
        "citizen_id": ["11010519491231002X"] * n,
        "community_name": ["秀水社区"] * n,
        "registered_on": ["2026-10-07"] * n,
        "gender": ["男"] * n,
    }
    return pl.DataFrame({**base, **columns}, schema_overrides={"_source_row": pl.Int64})


def test_a_footer_in_clear_columns_is_sealed_in_raw_and_opened_for_the_gate(
    elderly: Dataset, keyring: KeyRing, audit: AuditLog
) -> None:
    protection = Protection(keyring, audit)
    plain = raw_frame(
        community_name=["秀水社区", FOOTER["所属社区"], FORGED],
        registered_on=["2026-10-07", FOOTER["登记日期"], "2026-10-08"],
    )
    stored = protection.protect(plain, elderly)
    assert stored["community_name"][0] == "秀水社区" and stored["registered_on"][0] == "2026-10-07"
    assert stored["community_name"][1:].str.contains(CIPHERTEXT).all()  # the forged one too
    assert stored["registered_on"][1] != FOOTER["登记日期"]
    assert stored["gender"].to_list() == ["男"] * 3  # nothing personal: left as it came
    found = scan_frame(stored.drop("_delivery_id", "_source_row"), known_names={"钱晓东"})
    assert found.total == 0
    assert protection.reveal_text(stored, elderly, "quality_gate").equals(plain)
    decrypted = [r for r in audit.records() if r["action"] == "decrypt"]
    assert {r["column"].rsplit(".", 1)[-1] for r in decrypted} >= {
        "community_name",
        "registered_on",
    }


def test_a_sealed_cell_is_bound_to_its_row(
    elderly: Dataset, keyring: KeyRing, audit: AuditLog
) -> None:
    protection = Protection(keyring, audit)
    plain = raw_frame(community_name=["秀水社区", FOOTER["所属社区"]]).drop("name", "citizen_id")
    stored = protection.protect(plain, elderly)  # the sealed cell is its only ciphertext
    moved = stored.with_columns(pl.col("_source_row").reverse())  # the cell under another row
    with pytest.raises(DecryptionError):
        protection.reveal_text(moved, elderly, "quality_gate")


def test_a_staged_frame_is_never_sealed(
    elderly: Dataset, keyring: KeyRing, audit: AuditLog
) -> None:
    staged = raw_frame(community_name=[FOOTER["所属社区"], FORGED]).with_columns(
        pl.lit("0" * 20).alias("_key_pid")
    )
    stored = Protection(keyring, audit).protect(staged, elderly)
    assert stored["community_name"].to_list() == [FOOTER["所属社区"], FORGED]


def test_a_quarantined_value_of_a_clear_column_is_shown_with_its_personal_part_masked() -> None:
    values = pl.Series([FOOTER["所属社区"], FOOTER["登记日期"], "不存在社区", None])
    assert mask_values(values, "none").to_list() == [
        "联系电话：139****2222",
        "填表人：钱*",
        "不存在社区",
        None,
    ]
