"""Leak scanner: finds planted IDs, phones, cards and names; 0 on masked frames."""

from __future__ import annotations

import polars as pl

from catalog.model import Dataset
from masking.crypto import encrypt_series
from masking.keys import KeyRing
from masking.leaks import scan_frame
from masking.masks import apply_masking
from masking.text import scrub_series

NAMES = {"张三丰", "欧阳娜娜", "郭春梅"}


def _planted() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ["11010519491231002X", "110105491231002", "x", None],
            "phone": ["+86 138 1234 5678", "plain", "13912345678", None],
            "card": ["6222021234567890128", "6222 0212 3456 7890 128", "1234520251124000120", None],
            "note": ["市民郭春梅来电", "身份证１１０１０５１９４９１２３１００２Ｘ", "无", None],
            "who": ["张三丰", "张*", "欧阳娜娜", None],
            "mobile_int": pl.Series([13812345678, None, 1, 2], dtype=pl.Int64),
        }
    )


def test_finds_planted_values() -> None:
    leaks = scan_frame(_planted(), known_names=NAMES)
    assert leaks.by_column["id"] == {"citizen_id": 2}
    assert leaks.by_column["phone"] == {"mobile": 2}
    assert leaks.by_column["card"] == {"bank_card": 2}  # the work-order number is no card
    assert leaks.by_column["note"] == {"person_name": 1, "citizen_id": 1}
    assert leaks.by_column["who"] == {"person_name": 2}
    assert leaks.by_column["mobile_int"] == {"mobile": 1}
    assert leaks.by_kind == {"citizen_id": 3, "mobile": 3, "bank_card": 2, "person_name": 3}
    assert leaks and leaks.total == 11
    assert all(isinstance(r, int) and isinstance(c, str) for r, c, _ in leaks.samples)
    assert "11010519491231002X" not in repr(leaks)


def test_names_need_the_registry() -> None:
    assert scan_frame(_planted()).by_kind["person_name"] == 0


def test_bad_check_digit_is_not_an_id() -> None:
    assert not scan_frame(pl.DataFrame({"x": ["110105194912310021"]}))


def test_masked_pseudonymised_encrypted_frames_are_clean(
    keyring: KeyRing, residents: Dataset
) -> None:
    raw = pl.DataFrame(
        {
            "citizen_id": ["11010519491231002X", "110105194912310039"] * 50,
            "name": ["张三丰", "欧阳娜娜"] * 50,
            "mobile": ["13812345678", "+86 139 1234 5678"] * 50,
            "address": ["北京市朝阳区建外街道秀水社区1号楼2单元502室"] * 100,
            "community_code": ["110105001006"] * 100,
        }
    )
    assert scan_frame(raw, known_names=NAMES).total > 0
    masked = apply_masking(raw, residents, keyring=keyring)
    assert scan_frame(masked, known_names=NAMES).total == 0
    encrypted = raw.with_columns(
        encrypt_series(raw[c], keyring, column=f"x.{c}") for c in ("citizen_id", "name", "mobile")
    )
    assert scan_frame(encrypted.drop("address"), known_names=NAMES).total == 0
    text = pl.DataFrame({"t": ["市民张三丰来电，电话13812345678，身份证11010519491231002X"]})
    assert scan_frame(text, known_names=NAMES).total == 3
    scrubbed = text.with_columns(scrub_series(text["t"]))
    assert scan_frame(scrubbed, known_names=NAMES).total == 0
