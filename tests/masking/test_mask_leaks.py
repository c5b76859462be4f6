"""Leak scanner: finds planted IDs, phones, cards and names; 0 on masked frames."""

from __future__ import annotations

import datetime as dt
import random
import re

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.identifiers import citizen_id_valid_str, id_check_char_str
from catalog.model import Dataset
from masking.crypto import encrypt_series
from masking.keys import KeyRing
from masking.leaks import cell_kinds, scan_frame
from masking.masks import apply_masking
from masking.names import KnownNames
from masking.text import ID_PROVINCES, embedded_citizen_ids, scrub_series

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
    assert leaks.by_kind == {  # only the kinds found
        "citizen_id": 3,
        "mobile": 3,
        "bank_card": 2,
        "person_name": 3,
    }
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


# 残疾人证号: the holder's citizen ID and two digits (disability category, grade)
DISABILITY_CERT = "11010519491231002X" + "11"
YOUNGER = "44052419800101001"
CERT_OF_YOUNGER = YOUNGER + id_check_char_str(YOUNGER) + "42"


def _ids_with_bad_check(digits: str) -> bool:
    return not any(citizen_id_valid_str(digits[i : i + 18]) for i in range(len(digits) - 17))


def test_finds_an_id_embedded_in_a_document_number() -> None:
    frame = pl.DataFrame(
        {
            "cert": [DISABILITY_CERT, CERT_OF_YOUNGER, DISABILITY_CERT[:17] + "0" + "11", None],
            "note": [
                f"残疾人证号{DISABILITY_CERT}，已核实",
                "残疾人证号："
                + CERT_OF_YOUNGER.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
                "工单号20251124000120000013",  # an ordinary 24-digit work-order number
                "无",
            ],
        }
    )
    leaks = scan_frame(frame)
    assert leaks.by_column["cert"] == {"citizen_id_embedded": 2}
    assert leaks.by_column["note"] == {"citizen_id_embedded": 2}
    assert leaks.by_kind["citizen_id"] == 0  # the look-arounds still refuse the run as an ID
    assert DISABILITY_CERT not in repr(leaks) and "11010519491231002X" not in repr(leaks)


def test_id_at_the_end_of_a_run_and_limits_of_the_search() -> None:
    assert embedded_citizen_ids("NO0111010519491231002X") == []  # a letter before: no run
    assert embedded_citizen_ids("证号 01 11010519491231002X") == []  # separated: a plain ID
    assert embedded_citizen_ids("证号0111010519491231002X") == [(2, 22)]
    assert embedded_citizen_ids("99" + DISABILITY_CERT + "99999") == []  # ID in the middle
    assert embedded_citizen_ids(DISABILITY_CERT[:17] + "0" + "11") == []  # wrong check char
    future = "110105" + "20991231" + "002"  # a check-valid ID born after today
    assert embedded_citizen_ids(future + id_check_char_str(future) + "11") == []
    unknown_province = "990105" + "19491231" + "002"
    assert embedded_citizen_ids(unknown_province + id_check_char_str(unknown_province) + "11") == []


def test_scrubbing_masks_the_document_number_so_the_scan_is_clean() -> None:
    text = pl.Series("t", [f"残疾人证号{DISABILITY_CERT}，请回电"])
    scrubbed = scrub_series(text, use_jieba=False)
    assert scrubbed[0] == "残疾人证号110105**********2X11，请回电"
    assert not scan_frame(pl.DataFrame({"t": scrubbed}))


@settings(max_examples=300, deadline=None)  # scan_frame builds frames: slow on a busy core
@given(st.text(alphabet="0123456789", min_size=19, max_size=24).filter(_ids_with_bad_check))
def test_long_numbers_without_an_id_are_not_flagged(digits: str) -> None:
    leaks = scan_frame(pl.DataFrame({"n": [digits, f"编号{digits}号"]}))
    assert leaks.by_kind["citizen_id_embedded"] == leaks.by_kind["citizen_id"] == 0


@settings(deadline=None)
@given(
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date.today()),
    st.sampled_from(sorted(ID_PROVINCES)),
    st.text(alphabet="0123456789", min_size=7, max_size=7),
    st.text(alphabet="0123456789", min_size=1, max_size=6),
)
def test_every_issued_id_with_a_short_suffix_is_found(
    born: dt.date, province: str, rest: str, suffix: str
) -> None:
    first17 = province + rest[:4] + f"{born:%Y%m%d}" + rest[4:]
    cert = first17 + id_check_char_str(first17) + suffix
    assert scan_frame(pl.DataFrame({"c": [cert]})).by_kind["citizen_id_embedded"] == 1


def test_hex_digests_in_paths_and_ids_are_not_numbers() -> None:
    # a landed file's SHA-256 in its path: its digit runs are chance, not a mobile or card
    frame = pl.DataFrame(
        {"path": ["/lake/landing/17b18611758298ae5c.csv", "gaj.x.file-17b18611758298ae"]}
    )
    assert scan_frame(frame).total == 0
    # the same digits as a word of their own, or beside non-hex letters, still count
    leaked = pl.DataFrame({"note": ["tel 18611758298", "ID18611758298x"]})
    assert scan_frame(leaked).by_kind["mobile"] == 2


HK_PERMIT = "81000019900101001" + id_check_char_str("81000019900101001")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("110105 19491231 002X", "citizen_id"),  # 6-8-4, spaced
        ("身份证110105-19491231-002x", "citizen_id"),  # dashed, lower-case x
        ("1.10105194912310E+17", "citizen_id"),  # a float's scientific form
        ("110105194912310000.0", "citizen_id"),  # a float written out
        ("8613812345678", "mobile"),
        ("0086 138 1234 5678", "mobile"),
        ("电话138.1234.5678。", "mobile"),
        ("13812345678.0", "mobile"),
        ("座机(010)65123456", "landline"),
        ("0755 1234567", "landline"),
        ("邮箱 zhang.san@example.com", "email"),
        ("京AD12345", "plate"),
        ("居住证1101052024000121", "residence_permit"),  # county, year of issue, sequence
        (HK_PERMIT, "residence_permit"),  # 港澳台居民居住证 (GB 11643 form)
        ('{"m": "\\u8054\\u7cfb\\u4eba\\u6b27\\u9633\\u5a1c\\u5a1c"}', "person_name"),  # JSON
    ],
)
def test_each_spelling_is_found_as_its_kind(text: str, kind: str) -> None:
    assert kind in cell_kinds(text, KnownNames({"欧阳娜娜"})), text


def test_a_permit_number_that_passes_luhn_is_still_a_leak() -> None:
    found = scan_frame(pl.DataFrame({"p": ["1101052024000122", "1101052024000121"]}))
    assert found.total == 2 and set(found.by_kind) <= {"residence_permit", "bank_card"}


def test_float_columns_are_read_as_the_numbers_they_hold() -> None:
    frame = pl.DataFrame({"f": [13812345678.0, 110105194912310032.0, 0.5, None, 42.0]})
    assert dict(scan_frame(frame).by_kind) == {"mobile": 1, "citizen_id": 1}
    # an 18-digit float without a plausible region and birth date is not an ID
    assert not scan_frame(pl.DataFrame({"f": [990105999912310032.0, 1.7e18]}))


@settings(max_examples=200, deadline=None)
@given(st.uuids(), st.binary(min_size=1, max_size=64), st.floats(0, 1e7, allow_nan=False))
def test_uuids_digests_and_decimals_are_no_leaks(uid, blob: bytes, x: float) -> None:
    import hashlib

    cells = [str(uid), hashlib.sha256(blob).hexdigest(), blob.hex(), repr(x),
             f'{{"duration_ms": {x}}}', f"/runs/{uid}/compute_logs/{blob.hex()[:8]}.err"]  # fmt: skip
    assert scan_frame(pl.DataFrame({"c": cells})).total == 0, cells


@settings(max_examples=200, deadline=None)
@given(
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date.today()),
    st.sampled_from(sorted(ID_PROVINCES - {"81", "82", "83"})),
    st.text(alphabet="0123456789", min_size=7, max_size=7),
    st.sampled_from([" ", "-"]),
)
def test_every_valid_id_written_6_8_4_is_found(born, province, rest, sep) -> None:
    first17 = province + rest[:4] + f"{born:%Y%m%d}" + rest[4:]
    cid = first17 + id_check_char_str(first17)
    spaced = sep.join((cid[:6], cid[6:14], cid[14:]))
    assert dict(scan_frame(pl.DataFrame({"c": [spaced, f"证件号：{spaced}"]})).by_kind) == {
        "citizen_id": 2
    }


def test_a_registry_name_inside_a_structured_value_is_chance_but_the_whole_value_counts() -> None:
    names = KnownNames({"王兴", "李福"})
    frame = pl.DataFrame(
        {"employer": ["王兴便利店", "李福", " 李福 "], "note": ["王兴便利店", "x", "y"]}
    )
    counts = scan_frame(frame, known_names=names, whole_name_columns={"employer"})
    # employer: only the cells that are a name; note (free text): the name inside the text
    assert counts.by_column["employer"] == {"person_name": 2}
    assert counts.by_column["note"] == {"person_name": 1}
    assert scan_frame(frame, known_names=names).by_kind["person_name"] == 4


def test_a_registry_name_in_parts_is_found_however_its_parts_are_joined() -> None:
    names = {"买买提·艾力", "李四"}
    texts = [
        "居民买买提•艾力要求回访",
        "来电人买买提.艾力反映",
        "买买提・艾力",
        "买买提 艾力",
        "已处理.谢谢",
    ]
    found = scan_frame(pl.DataFrame({"t": texts}), known_names=names)
    assert found.samples == [
        (0, "t", "person_name"),
        (1, "t", "person_name"),
        (2, "t", "person_name"),
    ]
    whole = scan_frame(pl.DataFrame({"t": texts}), known_names=names, whole_name_columns=["t"])
    assert whole.samples == [(2, "t", "person_name")]  # the whole value only
    many = KnownNames(
        {"买买提·艾力"} | {f"王{chr(0x4E00 + i)}{chr(0x4E00 + i // 7)}" for i in range(1500)}
    )
    assert scan_frame(pl.DataFrame({"t": texts}), known_names=many).by_kind["person_name"] == 3


def test_a_registry_name_padded_to_a_rosters_width_is_found() -> None:
    # 王芳 in the registry, 王　芳 or 王 芳 where a roster's padding came along: in a text and
    # as a whole cell (a name typed into a clear column)
    names = {"王芳", "李四"}
    texts = ["居民王　芳要求回访", "王 芳", "王  芳", "王 芳芳", "三 王 芳", "王   芳", "王，芳"]
    found = scan_frame(pl.DataFrame({"t": texts}), known_names=names)
    # inside a text a name is found as it is unpadded (王芳芳 holds 王芳 too)
    assert [row for row, _, kind in found.samples if kind == "person_name"] == [0, 1, 2, 3, 4]
    whole = scan_frame(pl.DataFrame({"t": texts}), known_names=names, whole_name_columns=["t"])
    assert [row for row, _, _ in whole.samples] == [1, 2]
    many = KnownNames(
        {"王芳"} | {f"王{chr(0x4E00 + i)}{chr(0x4E00 + i // 7)}" for i in range(1500)}
    )
    assert scan_frame(pl.DataFrame({"t": texts}), known_names=many).by_kind["person_name"] == 5


def _certs(count: int) -> list[str]:
    """Disability certificate numbers of digits alone (an ID whose check character is a
    digit, then category and grade): shaped like a digest of 20 hex characters."""
    out = []
    for seq in range(100, 1000):
        head = f"110105198001{seq % 28 + 1:02d}{seq:03d}"
        check = id_check_char_str(head)
        if check != "X" and len(out) < count:
            out.append(head + check + "11")
    return out


def test_a_digest_of_digits_alone_among_digests_is_no_document_number() -> None:
    """A column of pseudonyms (20 hex characters) holds one of digits alone in ~11,500, and
    one such in tens of thousands carries a valid ID at its start: a 200,000-resident run
    failed its leak check on one. Among a column's digests it is counted as one; alone,
    among numbers, among too few digests, or with more like it than chance gives, every
    such value is read as the document number it may be."""
    rng = random.Random(7)
    digests = [
        d for d in (f"{rng.getrandbits(80):020x}" for _ in range(3000)) if re.search("[a-f]", d)
    ]
    cert, *more = _certs(11)
    assert embedded_citizen_ids(cert) == [(0, 20)]
    assert not scan_frame(pl.DataFrame({"_key_pid": [*digests, cert]}))
    alone = scan_frame(pl.DataFrame({"cert": [cert, "12345678901234567890"]}))
    assert alone.by_column["cert"] == {"citizen_id_embedded": 1}
    few = scan_frame(pl.DataFrame({"_key_pid": [*digests[:50], cert]}))
    assert few.by_column["_key_pid"] == {"citizen_id_embedded": 1}
    leaked = scan_frame(pl.DataFrame({"_key_pid": [*digests, cert, *more]}))
    assert leaked.by_column["_key_pid"] == {"citizen_id_embedded": 11}
