"""Display masks, generalisation and apply_masking by the catalogue."""

from __future__ import annotations

import datetime as dt
import re

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.model import Dataset, MaskingRule, PiiKind
from masking import generalise as gen
from masking import masks
from masking.crypto import is_encrypted
from masking.errors import MaskingError
from masking.keys import KeyRing
from masking.pseudonym import looks_like_pseudonym


def one(fn, value):
    return pl.select(fn(pl.lit(value, dtype=pl.String))).item()


@pytest.mark.parametrize(
    ("fn", "value", "want"),
    [
        (masks.mask_id, "11010519491231002X", "110105********002X"),
        (masks.mask_id, "11010519491231002x", "110105********002X"),
        (masks.mask_id, "110105491231002", "110105*****1002"),
        (masks.mask_id, "12345", "*****"),
        (masks.mask_document, "11010519491231002X01", "110105**********2X01"),  # 残疾人证号
        (masks.mask_document, "1101052024000001", "110105******0001"),  # 居住证编号
        (masks.mask_document, "E12345678", "E1*****78"),  # passport
        (masks.mask_document, "DB00100600001", "DB*********01"),  # 低保证号
        (masks.mask_document, "1234567", "*******"),
        (masks.mask_mobile, "13812345678", "138****5678"),
        (masks.mask_mobile, "+86 138-1234-5678", "138****5678"),
        (masks.mask_mobile, "010-12345678", "010****5678"),
        (masks.mask_mobile, "12345", "*****"),
        (masks.mask_name, "张三", "张*"),
        (masks.mask_name, "张三丰", "张*"),
        (masks.mask_name, "欧阳娜娜", "欧阳*"),
        (masks.mask_name, "司马光", "司马*"),
        (masks.mask_name, "王", "*"),
        (
            masks.mask_address,
            "北京市朝阳区建外街道秀水社区1号楼2单元502室",
            "北京市朝阳区建外街道秀水社区",
        ),
        (masks.mask_address, "秀水社区15号楼附近", "秀水社区"),
        (masks.mask_address, "建国门外大街1号", "建国门外大街"),
        (masks.mask_address, "光华里3号院2号楼1单元101", "光华里"),
        (masks.mask_bank_card, "6222 0212 3456 7890 128", "***************0128"),
        (masks.mask_plate, "京A12345", "京A·***45"),
        (masks.mask_plate, "京AD12345", "京A·****45"),
        (masks.mask_email, "zhang.san@example.com", "z***@example.com"),
        (masks.mask_email, "not-an-email", "************"),
    ],
)
def test_presets(fn, value: str, want: str) -> None:
    assert one(fn, value) == want


def test_nulls_stay_null() -> None:
    for fn in masks.DISPLAY_MASKS.values():
        assert one(fn, None) is None


@settings(deadline=None)  # one polars select per example: slow on a busy machine
@given(st.text(alphabet="0123456789X", min_size=0, max_size=20))
def test_id_mask_reveals_at_most_first6_last4(value: str) -> None:
    out = one(masks.mask_id, value)
    assert len(out) == len(value)
    assert sum(c != "*" for c in out) <= 10
    if len(value) >= 15:
        assert out[:6] == value[:6] and out[-4:] == value[-4:]


@settings(deadline=None)  # one polars select per example: slow on a busy machine
@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_mobile_mask_keeps_3_and_4(value: str) -> None:
    out = one(masks.mask_mobile, value)
    assert out == value[:3] + "****" + value[-4:]


@settings(deadline=None)  # one polars select per example: slow on a busy machine
@given(st.text(alphabet="张王李欧阳司马明华国强伟芳", min_size=1, max_size=5))
def test_name_mask_keeps_at_most_the_surname(value: str) -> None:
    out = one(masks.mask_name, value)
    shown = out.rstrip("*")
    assert value.startswith(shown) and len(shown) <= 2 and len(shown) < max(len(value), 2)


@settings(deadline=None)  # one polars select per example: slow on a busy machine
@given(st.from_regex(r"[\u4e00-\u9fff]{2,8}社区\d{1,2}号楼\d单元\d{3,4}室", fullmatch=True))
def test_address_mask_never_shows_numbers(value: str) -> None:
    out = one(masks.mask_address, value)
    assert not re.search(r"\d", out) and out.endswith("社区")


def test_generalisation() -> None:
    df = pl.DataFrame(
        {
            "age": [0, 34, 89, None],
            "birth": [dt.date(1954, 6, 23), dt.date(2001, 1, 1), None, dt.date(1999, 12, 31)],
            "text_date": ["1954-06-23", "2026/1/5", "garbage", None],
            "lat": [39.9135, 39.9101, 39.9140, None],
            "lon": [116.4455, 116.4501, 116.4454, None],
        }
    )
    out = df.select(
        gen.age_band(pl.col("age")).alias("age"),
        gen.to_year(pl.col("birth")).alias("year"),
        gen.to_month(pl.col("text_date")).alias("month"),
        gen.to_grid(pl.col("lat"), "lat").alias("lat"),
        gen.to_grid(pl.col("lon"), "lon").alias("lon"),
    )
    assert out["age"].to_list() == ["0-9", "30-39", "80-89", None]
    assert out["year"].to_list() == ["1954", "2001", None, "1999"]
    assert out["month"].to_list() == ["1954-06", "2026-01", None, None]
    lat = out["lat"].to_list()
    assert abs(lat[0] - 39.9135) <= gen.LAT_STEP / 2 and lat[0] == lat[2] != lat[1]
    assert abs(out["lon"][0] - 116.4455) <= gen.LON_STEP / 2


@settings(deadline=None)  # one polars select per example: slow on a busy machine
@given(st.text(alphabet="0123456789XE", min_size=0, max_size=24))
def test_document_mask_never_shows_more_than_an_id_mask(value: str) -> None:
    out = one(masks.mask_document, value)
    assert len(out) == len(value)
    shown = sum(c != "*" for c in out)
    assert shown <= (10 if len(value) >= 15 else 4 if len(value) >= 8 else 0)
    assert out[-4:].count("*") < 4 or len(value) < 8


def test_mask_value() -> None:
    assert masks.mask_value("11010519491231002X01", PiiKind.id_document) == "110105**********2X01"
    assert masks.mask_value("11010519491231002X", PiiKind.citizen_id) == "110105********002X"
    assert masks.mask_value("13812345678", "mobile") == "138****5678"
    assert masks.mask_value("张三", "person_name") == "张*"
    assert masks.mask_value("高血压", "health") == "***"
    assert masks.mask_value("1954-06-23", "birth_date") == "1954"
    assert masks.mask_value(None, "mobile") is None
    assert (
        masks.mask_value("市民张三来电，电话13812345678", "free_text")
        == "市民张*来电，电话138****5678"
    )


def _residents_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "citizen_id": ["11010519491231002X", "440524188001010014"],
            "name": ["张三", "欧阳娜娜"],
            "gender": ["男", "女"],
            "birth_date": [dt.date(1949, 12, 31), dt.date(1980, 1, 1)],
            "ethnicity": ["汉", "回"],
            "address": ["北京市朝阳区建外街道秀水社区1号楼2单元502室", "建外社区3号楼1单元101室"],
            "community_code": ["110105001006", "110105001001"],
            "mobile": ["13812345678", None],
            "extra": ["kept", "kept"],
        }
    )


def test_apply_masking_by_catalogue(keyring: KeyRing, residents: Dataset) -> None:
    out = masks.apply_masking(_residents_frame(), residents, keyring=keyring)
    assert all(looks_like_pseudonym(v) for v in out["citizen_id"])
    assert out["name"].to_list() == ["张*", "欧阳*"]
    assert out["gender"].to_list() == ["男", "女"]
    assert out["birth_date"].to_list() == ["1949", "1980"]
    assert out["ethnicity"].to_list() == [None, None]
    assert out["address"].to_list() == ["北京市朝阳区建外街道秀水社区", "建外社区"]
    assert out["mobile"].to_list() == ["138****5678", None]
    assert out["extra"].to_list() == ["kept", "kept"]
    again = masks.apply_masking(out, residents, keyring=keyring)  # hub pseudonyms stay
    assert again["citizen_id"].to_list() == out["citizen_id"].to_list()


def test_apply_masking_overrides_and_recipient(keyring: KeyRing, residents: Dataset) -> None:
    frame = _residents_frame()
    hub = masks.apply_masking(frame, residents, keyring=keyring)
    wjw = masks.apply_masking(
        frame,
        residents,
        overrides={"mobile": MaskingRule.suppress, "address": MaskingRule.encrypt},
        recipient="wjw",
        keyring=keyring,
    )
    assert wjw["mobile"].to_list() == [None, None]
    assert is_encrypted(wjw["address"])
    assert set(wjw["citizen_id"]).isdisjoint(set(hub["citizen_id"]))
    with pytest.raises(MaskingError, match="nosuch"):
        masks.apply_masking(
            frame, residents, overrides={"nosuch": MaskingRule.none}, keyring=keyring
        )


def test_apply_masking_scrubs_free_text(keyring: KeyRing, appeals: Dataset) -> None:
    frame = pl.DataFrame(
        {"content": ["市民王建国来电反映：电话13812345678", None], "caller_name": ["王建国", None]}
    )
    out = masks.apply_masking(frame, appeals, keyring=keyring)
    assert out["content"].to_list() == ["市民王*来电反映：电话138****5678", None]
    assert out["caller_name"].to_list() == ["王*", None]
