"""Each file connector on real files: good deliveries, bad rows, and deliveries that fail whole."""

from __future__ import annotations

import codecs
import datetime as dt
import gzip
import io
import json
import zipfile
from pathlib import Path

import openpyxl
import polars as pl
import pytest
import xlwt

from catalog.errors import DeliveryError
from catalog.model import Dataset
from pipelines.connectors import read_delivery
from pipelines.connectors.base import map_to_fields, split_stray_headers


def make_dataset(kind: str, **delivery: object) -> Dataset:
    return Dataset.model_validate(
        {
            "code": "elderly",
            "resource_code": "T-1",
            "name_zh": "测试",
            "name_en": "test",
            "entity": "person",
            "summary": "测试数据",
            "format": kind,
            "update_cycle": "daily",
            "update_mode": "snapshot",
            "share_type": "conditional",
            "share_conditions": "审核",
            "consent_category": "identity",
            "release_date": "2024-01-01",
            "key": ["citizen_id"],
            "delivery": {"kind": kind, **delivery},
            "fields": [
                {
                    "name": "citizen_id",
                    "label_zh": "身份证号",
                    "source": "身份证号",
                    "type": "string",
                    "required": True,
                    "pii": "citizen_id",
                    "level": "L4",
                    "masking": "pseudonymise",
                },
                {
                    "name": "name",
                    "label_zh": "姓名",
                    "source": "姓名",
                    "type": "string",
                    "required": True,
                    "pii": "person_name",
                    "level": "L3",
                    "masking": "mask_name",
                },
                {
                    "name": "birth_date",
                    "label_zh": "出生日期",
                    "source": "出生日期",
                    "type": "date",
                    "level": "L2",
                },
            ],
        }
    )


ROWS = [
    ("11010519491231002X", "张三", "1949-12-31"),
    ("110105194912310035", "李四", "1949年12月31日"),
]


def write_csv(path: Path, lines: list[str], encoding: str, newline_end: bool = True) -> Path:
    text = "\r\n".join(lines) + ("\r\n" if newline_end else "")
    path.write_bytes(text.encode(encoding))
    return path


def test_gbk_csv_reads_with_line_numbers(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    p = write_csv(
        tmp_path / "a.csv", ["身份证号,姓名,出生日期", *(",".join(r) for r in ROWS)], "gbk"
    )
    parsed = read_delivery(p, ds)
    frame = map_to_fields(parsed, ds, p)
    assert frame["_source_row"].to_list() == [2, 3]
    assert frame["name"].to_list() == ["张三", "李四"]
    assert frame["birth_date"][1] == "1949年12月31日"


def test_a_gbk_delivery_keeps_the_rare_characters_of_names(tmp_path: Path) -> None:
    # 生僻字 outside GBK (䶮, 𠮷): a GBK exporter writes them in GB18030's four bytes; read
    # as GBK the row was quarantined ("wrong encoding") and the resident lost
    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    names = ["刘䶮", "𠮷野家", "张三"]
    lines = ["身份证号,姓名,出生日期", *(f"{ROWS[0][0]},{n},1949-12-31" for n in names)]
    p = write_csv(tmp_path / "a.csv", lines, "gb18030")
    with pytest.raises(UnicodeDecodeError):
        p.read_bytes().decode("gbk")
    parsed = read_delivery(p, ds)
    assert parsed.problems == []
    assert map_to_fields(parsed, ds, p)["name"].to_list() == names
    for declared in ("GB2312", "cp936"):  # GBK's other names: read the same way
        again = read_delivery(p, make_dataset("csv", pattern="*.csv", encoding=declared))
        assert map_to_fields(again, ds, p)["name"].to_list() == names


@pytest.mark.parametrize(
    ("declared", "written", "note"),
    [
        # a department's export switched to Excel's "CSV UTF-8": a byte-order mark says so
        ("gbk", "utf-8-sig", "the file is UTF-8 (it starts with UTF-8's byte-order mark), "
         "the catalogue says gbk"),
        # … or UTF-8 without one: the header reads as UTF-8 and names the columns
        ("gbk", "utf-8", "the file is UTF-8 (its header reads so), the catalogue says gbk"),
        ("GB2312", "utf-8", "the file is UTF-8 (its header reads so), the catalogue says GB2312"),
        # an old system's GBK export where the catalogue says UTF-8
        ("utf-8", "gbk", "the file is GB18030/GBK (its header reads so), the catalogue says utf-8"),
    ],
)  # fmt: skip
def test_a_csv_in_the_other_chinese_encoding_is_read_as_its_header_says(
    tmp_path: Path, declared: str, written: str, note: str
) -> None:
    # the whole delivery failed: "wrong encoding at byte 14" or "missing column"
    ds = make_dataset("csv", pattern="*.csv", encoding=declared)
    names = ["刘䶮", "张三"] if written != "gbk" else ["欧阳娜娜", "张三"]
    lines = ["身份证号,姓名,出生日期", *(f"{ROWS[0][0]},{n},1949-12-31" for n in names)]
    p = write_csv(tmp_path / "a.csv", lines, written)
    parsed = read_delivery(p, ds)
    assert parsed.problems == [] and parsed.notes == [note]
    frame = map_to_fields(parsed, ds, p)
    assert frame["name"].to_list() == names and frame["_source_row"].to_list() == [2, 3]


@pytest.mark.parametrize(
    "title",
    [
        "XX街道独居老人台账（刘䶮填报）,,",  # reads as (mojibake) GB18030 too
        "独居老人台账表,,",  # does not: its last UTF-8 byte starts no GB18030 character
    ],
)
def test_a_header_under_a_title_tells_the_encoding_too(tmp_path: Path, title: str) -> None:
    # an Excel ledger saved as "CSV UTF-8" without its mark, a title line above the header:
    # the title names no column in either encoding, the header under it does in UTF-8
    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    lines = [
        title,
        "身份证号,姓名,出生日期",
        *(",".join(r) for r in ROWS),
    ]
    parsed = read_delivery(write_csv(tmp_path / "a.csv", lines, "utf-8"), ds)
    assert parsed.notes == [
        "the file is UTF-8 (its header reads so), the catalogue says gbk",
        "the header is on line 2, under a title",
    ]
    frame = map_to_fields(parsed, ds, "a.csv")
    assert frame["name"].to_list() == ["张三", "李四"] and frame["_source_row"].to_list() == [3, 4]


UTF16_NOTE = "the file is UTF-16 (it starts with UTF-16's byte-order mark), the catalogue says "
TAB_NOTE = "the cells are separated by tabs (the header reads so), the catalogue says ','"


@pytest.mark.parametrize(
    ("declared", "delimiter", "written", "sep", "notes"),
    [
        # Excel's "Unicode text": UTF-16 little-endian with its mark, cells between tabs
        ("gbk", ",", "utf-16", "\t", [UTF16_NOTE + "gbk", TAB_NOTE]),
        ("utf-8", ",", "utf-16-be-bom", ",", [UTF16_NOTE + "utf-8"]),
        # declared so: read so, nothing to note (without a mark: Windows' byte order)
        ("utf-16", "\t", "utf-16-le", "\t", []),
        ("UTF-16LE", ",", "utf-16", ",", []),
        # Excel's "Text (tab delimited)" in GBK
        ("gbk", ",", "gbk", "\t", [TAB_NOTE]),
    ],
)  # fmt: skip
def test_excels_unicode_text_and_tabbed_exports_are_read(
    tmp_path: Path, declared: str, delimiter: str, written: str, sep: str, notes: list[str]
) -> None:
    # the whole delivery failed: "wrong encoding at byte 0" or "missing column"
    ds = make_dataset("csv", pattern="*.csv", encoding=declared, delimiter=delimiter)
    names = ["刘䶮", "𠮷野家", "张三"] if written != "gbk" else ["欧阳娜娜", "张三"]
    lines = [sep.join(["身份证号", "姓名", "出生日期"])]
    lines += [sep.join([ROWS[0][0], n, "1949-12-31"]) for n in names]
    text = "\r\n".join(lines) + "\r\n"
    if written == "utf-16-be-bom":
        data = codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    else:
        data = text.encode(written)
    p = tmp_path / "a.csv"
    p.write_bytes(data)
    parsed = read_delivery(p, ds)
    assert parsed.problems == [] and parsed.notes == notes
    frame = map_to_fields(parsed, ds, p)
    assert frame["name"].to_list() == names
    assert frame["_source_row"].to_list() == list(range(2, 2 + len(names)))
    assert frame["birth_date"].to_list() == ["1949-12-31"] * len(names)


def test_damage_in_a_utf16_file_stays_with_its_row(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    header = "身份证号,姓名,出生日期\r\n".encode("utf-16-le")
    good = [f"{ROWS[0][0]},{n},1949-12-31\r\n".encode("utf-16-le") for n in ("张三", "李四")]
    lone = (
        "110105194912310035,王".encode("utf-16-le")
        + b"\x00\xd8"
        + ",1949-12-31\r\n".encode("utf-16-le")
    )  # a lone surrogate (half of a pair): no character
    cut = f"{ROWS[0][0]},赵六,1949-12-31\r\n".encode("utf-16-le")[:-1]  # cut inside its "\n"
    p = tmp_path / "a.csv"
    p.write_bytes(codecs.BOM_UTF16_LE + header + good[0] + lone + good[1] + cut)
    parsed = read_delivery(p, ds)
    frame = map_to_fields(parsed, ds, p)
    assert frame["name"].to_list() == ["张三", "李四"]
    assert frame["_source_row"].to_list() == [2, 4]
    assert [(q.source_row, q.check) for q in parsed.problems] == [
        (3, "encoding"),
        (5, "truncated"),  # its line end cut in half: the file was cut
    ]
    assert "wrong encoding" in parsed.problems[0].reason
    assert all("王" not in q.reason and "赵六" not in q.reason for q in parsed.problems)


def test_utf16_without_its_mark_fails_as_declared(tmp_path: Path) -> None:
    # a bcp -w export: UTF-16 with no byte-order mark says nothing of itself; declared GBK,
    # its header reads in neither Chinese encoding, or as cells with 0 bytes between
    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    for header, expect in (
        ("身份证号,姓名,出生日期", "it holds 0 bytes: a UTF-16 file without its byte-order mark"),
        ("身份证号,姓名,出生日期,联系电话", "wrong encoding at byte"),
    ):
        p = write_csv(tmp_path / "a.csv", [header, *(",".join(r) for r in ROWS)], "utf-16-le")
        with pytest.raises(DeliveryError) as info:
            read_delivery(p, ds)
        assert expect in str(info.value) and info.value.row == 1


def ascii_headed(ds: Dataset) -> Dataset:
    """``ds`` with the ASCII column names many department systems export (pinyin initials)."""
    sources = {"citizen_id": "SFZH", "name": "XM", "birth_date": "CSRQ"}
    fields = [f.model_copy(update={"source": sources[f.name]}) for f in ds.fields]
    return ds.model_copy(update={"fields": fields})


@pytest.mark.parametrize(
    ("declared", "written", "note"),
    [
        # read in GB18030, UTF-8 decodes as mojibake (张三 as 寮犱笁): loaded garbled, silently
        ("gbk", "utf-8", "the file is UTF-8 (its rows read so, its header is ASCII), the "
         "catalogue says gbk"),
        # read in UTF-8, GBK failed every row with a name: the delivery failed whole
        ("utf-8", "gbk", "the file is GB18030/GBK (its rows read so, its header is ASCII), "
         "the catalogue says utf-8"),
        ("gbk", "gbk", None),
        ("utf-8", "utf-8", None),
    ],
)  # fmt: skip
def test_under_an_ascii_header_the_rows_tell_the_encoding(
    tmp_path: Path, declared: str, written: str, note: str | None
) -> None:
    ds = ascii_headed(make_dataset("csv", pattern="*.csv", encoding=declared))
    names = ["张三", "欧阳娜娜", "李四"] + (["刘䶮"] if written == "utf-8" else [])
    lines = ["SFZH,XM,CSRQ", *(f"{ROWS[0][0]},{n},1949-12-31" for n in names)]
    p = write_csv(tmp_path / "a.csv", lines, written)
    parsed = read_delivery(p, ds)
    assert parsed.problems == [] and parsed.notes == ([note] if note else [])
    assert map_to_fields(parsed, ds, p)["name"].to_list() == names


def test_one_damaged_row_does_not_turn_a_utf8_file(tmp_path: Path) -> None:
    # a UTF-8 file with one GBK row (pasted in from another export): the row is quarantined,
    # the file stays UTF-8
    ds = ascii_headed(make_dataset("csv", pattern="*.csv", encoding="utf-8"))
    rows = [f"{ROWS[0][0]},{n},1949-12-31" for n in ("张三", "欧阳娜娜", "李四")]
    data = ("SFZH,XM,CSRQ\r\n" + "\r\n".join(rows) + "\r\n").encode("utf-8")
    data += f"{ROWS[1][0]},王五,1949-12-31\r\n".encode("gbk")
    p = tmp_path / "a.csv"
    p.write_bytes(data)
    parsed = read_delivery(p, ds)
    assert parsed.notes == [] and [(q.source_row, q.check) for q in parsed.problems] == [
        (5, "encoding")
    ]
    assert map_to_fields(parsed, ds, p)["name"].to_list() == ["张三", "欧阳娜娜", "李四"]


def test_the_declared_encoding_stays_where_the_header_does_not_tell(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    # the header names no column in either encoding: the delivery fails as declared
    p = write_csv(tmp_path / "a.csv", ["编号,名字,日期", f"{ROWS[0][0]},张三,1949-12-31"], "utf-8")
    with pytest.raises(DeliveryError, match="missing column"):
        map_to_fields(read_delivery(p, ds), ds, p)
    # a GBK file read as declared, with no note
    p = write_csv(
        tmp_path / "b.csv", ["身份证号,姓名,出生日期", *(",".join(r) for r in ROWS)], "gbk"
    )
    assert read_delivery(p, ds).notes == []


def test_a_header_is_matched_without_spaces_and_with_full_width_forms_folded(
    tmp_path: Path,
) -> None:
    # 姓　　名 padded to a form's width, a full-width space, a line break in a header cell;
    # a re-pasted header block in the delivered spelling is still a stray header
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    header = ["身份证号 ", "姓　　名", '"出生\n日期"']
    lines = [",".join(header), ",".join(ROWS[0]), ",".join(header), ",".join(ROWS[1])]
    parsed = split_stray_headers(
        read_delivery(write_csv(tmp_path / "a.csv", lines, "utf-8"), ds), ds
    )
    frame = map_to_fields(parsed, ds, "a.csv")
    assert frame["name"].to_list() == ["张三", "李四"]
    assert frame["birth_date"].to_list() == [ROWS[0][2], ROWS[1][2]]
    assert [(p.source_row, p.check) for p in parsed.problems] == [(4, "stray_header")]
    wide = [
        "身份证号",
        "姓名",
        "出生日期（公历）",
    ]  # full-width brackets: the catalogue's are plain
    spec = ds.model_dump()
    spec["fields"][2]["source"] = "出生日期(公历)"
    dated = Dataset.model_validate(spec)
    lines = [",".join(wide), ",".join(ROWS[0])]
    frame = map_to_fields(
        read_delivery(write_csv(tmp_path / "b.csv", lines, "utf-8"), dated), dated, "b"
    )
    assert frame["birth_date"].to_list() == [ROWS[0][2]]


def test_a_column_named_twice_in_two_spellings_fails_the_delivery(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    lines = ["身份证号,姓名,姓　名,出生日期", f"{ROWS[0][0]},张三,李四,{ROWS[0][2]}"]
    p = write_csv(tmp_path / "a.csv", lines, "utf-8")
    with pytest.raises(DeliveryError, match=r"names column\(s\) 姓名 more than once") as info:
        map_to_fields(read_delivery(p, ds), ds, p)
    assert "张三" not in str(info.value) and "李四" not in str(info.value)


def test_the_catalogue_refuses_two_sources_that_match_alike() -> None:
    spec = make_dataset("csv", pattern="*.csv", encoding="utf-8").model_dump()
    spec["fields"][2]["source"] = "姓 名"
    with pytest.raises(ValueError, match="duplicate source column"):
        Dataset.model_validate(spec)


def test_a_csv_with_a_title_line_above_its_header(tmp_path: Path) -> None:
    # an Excel ledger saved as CSV: its title is the first line
    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    lines = ["XX街道独居老人台账,,", "", "身份证号,姓名,出生日期", *(",".join(r) for r in ROWS)]
    parsed = read_delivery(write_csv(tmp_path / "a.csv", lines, "gbk"), ds)
    frame = map_to_fields(parsed, ds, "a.csv")
    assert frame["name"].to_list() == ["张三", "李四"]
    assert frame["_source_row"].to_list() == [4, 5]  # the file's own line numbers
    assert parsed.notes == ["the header is on line 3, under a title"]
    # no line names the required columns: read as before, and it fails on them
    p = write_csv(tmp_path / "b.csv", lines[:2] + lines[3:], "gbk")
    with pytest.raises(DeliveryError, match="missing column"):
        map_to_fields(read_delivery(p, ds), ds, p)


def test_utf8_bom_csv(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8-sig")
    p = write_csv(tmp_path / "a.csv", ["身份证号,姓名,出生日期", ",".join(ROWS[0])], "utf-8-sig")
    assert p.read_bytes().startswith(b"\xef\xbb\xbf")
    frame = map_to_fields(read_delivery(p, ds), ds, p)
    assert frame.columns[:3] == ["_source_row", "citizen_id", "name"]
    assert frame["citizen_id"][0] == "11010519491231002X"


def test_wrong_encoding_fails_the_delivery_naming_file_and_line(tmp_path: Path) -> None:
    # a header in neither encoding (a UTF-8 file in the other one is read: see above)
    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    p = tmp_path / "bad.csv"
    p.write_bytes("身份证号,".encode() + b"\x80" + "姓名,出生日期\r\n1,张三丰,x\r\n".encode())
    with pytest.raises(DeliveryError) as info:
        read_delivery(p, ds)
    assert info.value.file == str(p) and info.value.row is not None
    assert "gbk" in str(info.value)


def test_truncated_csv_quarantines_its_last_row(tmp_path: Path) -> None:
    """Issue 9: a CSV cut inside its last row loads the rest; the cut row is quarantined."""
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    lines = ["身份证号,姓名,出生日期", *(",".join(r) for r in ROWS), "110105194912"]
    p = write_csv(tmp_path / "cut.csv", lines, "utf-8", newline_end=False)
    parsed = read_delivery(p, ds)
    assert parsed.frame["_source_row"].to_list() == [2, 3]
    assert [(q.source_row, q.check) for q in parsed.problems] == [(4, "truncated")]
    assert "possibly truncated" in parsed.problems[0].reason


def test_truncated_inside_quotes_fails_the_delivery(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    p = write_csv(
        tmp_path / "cut.csv",
        [
            "身份证号,姓名,出生日期",
            '1,"张',
        ],
        "utf-8",
        False,
    )
    with pytest.raises(DeliveryError, match="truncated"):
        read_delivery(p, ds)


def test_row_with_wrong_cell_count_is_quarantined_rest_loads(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    lines = ["身份证号,姓名,出生日期", ",".join(ROWS[0]), "1,2,3,4", ",".join(ROWS[1])]
    parsed = read_delivery(write_csv(tmp_path / "a.csv", lines, "utf-8"), ds)
    assert parsed.frame.height == 2 and parsed.rows_read == 3
    assert [(p.source_row, p.check) for p in parsed.problems] == [(3, "cell_count")]
    assert "4 cells" in parsed.problems[0].reason


def test_stray_header_rows_are_quarantined(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    lines = [
        "身份证号,姓名,出生日期",
        ",".join(ROWS[0]),
        "身份证号,姓名,出生日期",
        ",".join(ROWS[1]),
    ]
    parsed = split_stray_headers(
        read_delivery(write_csv(tmp_path / "a.csv", lines, "utf-8"), ds), ds
    )
    assert parsed.frame["_source_row"].to_list() == [2, 4]
    assert [(p.source_row, p.check) for p in parsed.problems] == [(3, "stray_header")]


def test_missing_required_column_fails_the_delivery(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    p = write_csv(tmp_path / "a.csv", ["身份证号,出生日期", "1,2"], "utf-8")
    with pytest.raises(DeliveryError, match=r"required column.*姓名"):
        map_to_fields(read_delivery(p, ds), ds, p)


def write_xlsx(path: Path, sheet: str, title: str | None, rows: list[tuple]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    if title:
        ws.append([title])
    ws.append(["身份证号", "姓名", "出生日期"])
    for r in rows:
        ws.append(list(r))
    wb.save(path)
    return path


def test_excel_with_title_row_gives_spreadsheet_row_numbers(tmp_path: Path) -> None:
    ds = make_dataset("excel", pattern="*.xlsx", sheet="台账", header_row=1)
    rows = [ROWS[0], (None, None, None), (ROWS[1][0], ROWS[1][1], 18264)]
    p = write_xlsx(tmp_path / "a.xlsx", "台账", "XX街道独居老人台账", rows)
    frame = map_to_fields(read_delivery(p, ds), ds, p)
    assert frame["_source_row"].to_list() == [3, 5]  # blank row 4 is no record
    assert frame["birth_date"].to_list() == ["1949-12-31", "18264"]


def write_xls(path: Path, sheet: str, title: str, rows: list[tuple]) -> Path:
    """An Excel 97-2003 workbook (xlwt), as older department systems export: a title merged
    over the header, Chinese headers, dates as date cells, numbers as numbers."""
    book = xlwt.Workbook(encoding="utf-8")
    ws = book.add_sheet(sheet)
    ws.write_merge(0, 0, 0, 2, title)
    dated = xlwt.easyxf(num_format_str="YYYY年MM月DD日")
    for c, name in enumerate(["身份证号", "姓名", "出生日期"]):
        ws.write(1, c, name)
    for r, row in enumerate(rows, start=2):
        for c, v in enumerate(row):
            if v is not None:
                ws.write(r, c, v, dated) if isinstance(v, dt.date) else ws.write(r, c, v)
    book.save(str(path))
    return path


def test_an_excel_97_2003_workbook_reads_as_its_xlsx_does(tmp_path: Path) -> None:
    # an .xls (OLE2), told by its content under either name, gives the xlsx's rows, row
    # numbers and texts: a date cell as a date, a number as its digits
    ds = make_dataset("excel", pattern="*.xls", sheet="台账", header_row=1)
    rows = [
        (ROWS[0][0], ROWS[0][1], dt.date(1949, 12, 31)),
        (None, None, None),
        (ROWS[1][0], ROWS[1][1], 18264),
    ]
    expected = map_to_fields(
        read_delivery(write_xlsx(tmp_path / "a.xlsx", "台账", "XX街道台账", rows), ds), ds, None
    )
    for name in ("a.xls", "b.xlsx"):
        p = write_xls(tmp_path / name, "台账", "XX街道台账", rows)
        assert p.read_bytes()[:4] == bytes.fromhex("d0cf11e0")
        frame = map_to_fields(read_delivery(p, ds), ds, p)
        assert frame.equals(expected), name
    assert frame["_source_row"].to_list() == [3, 5]
    assert frame["birth_date"].to_list() == ["1949-12-31 00:00:00", "18264"]


def zipfile_replace(data: bytes, member: str, old: bytes, new: bytes) -> bytes:
    """The archive with ``old`` replaced by ``new`` (once) in one member."""
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            dst.writestr(
                info.filename, body.replace(old, new, 1) if info.filename == member else body
            )
    return out.getvalue()


def test_merged_cells_over_data_rows_take_their_first_cells_value(tmp_path: Path) -> None:
    # a hand-kept ledger: 出生日期 merged over three residents' rows (and the title merged
    # over the header, a header cell merged with the one beside it: neither is data)
    ds = make_dataset("excel", pattern="*.xlsx", sheet="台账", header_row=1)
    rows = [
        (f"11010519491231{n:03d}X", name, "1949-12-31" if n == 1 else None)
        for n, name in enumerate(["张三", "李四", "王五", "赵六"], start=1)
    ]
    p = write_xlsx(tmp_path / "a.xlsx", "台账", "XX街道台账", rows)
    book = openpyxl.load_workbook(p)
    ws = book["台账"]
    ws.merge_cells("A1:C1")
    ws.merge_cells("C3:C5")  # rows 3-5: 张三, 李四, 王五; 赵六's stays empty
    book.save(p)
    parsed = read_delivery(p, ds)
    frame = map_to_fields(parsed, ds, p)
    assert frame["birth_date"].to_list() == ["1949-12-31"] * 3 + [None]
    assert frame["_source_row"].to_list() == [3, 4, 5, 6]
    assert parsed.notes == ["2 cell(s) of merged cells filled from the merge's first"]
    # the same sheet without the merge: the cells stay empty, as delivered
    book = openpyxl.load_workbook(p)
    book["台账"].unmerge_cells("C3:C5")
    book.save(p)
    assert map_to_fields(read_delivery(p, ds), ds, p)["birth_date"].null_count() == 3

    # a hostile workbook: thousands of merges over the same cells is refused, not expanded
    data = zipfile_replace(p.read_bytes(), "xl/worksheets/sheet1.xml", b"</sheetData>",
                           b"</sheetData><mergeCells>" + b'<mergeCell ref="C3:C99999"/>' * 5000
                           + b"</mergeCells>")  # fmt: skip
    p.write_bytes(data)
    with pytest.raises(DeliveryError, match="merged cells overlap"):
        read_delivery(p, ds)


def test_a_header_moved_by_a_title_line_is_found(tmp_path: Path) -> None:
    # this month's export has a 制表日期 line under its title: the header is on row 3, not 2
    ds = make_dataset("excel", pattern="*.xlsx", sheet="台账", header_row=1)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "台账"
    for row in (["XX街道独居老人台账"], ["制表日期：2026年10月31日"], ["身份证号", "姓名", "出生日期"],
                *map(list, ROWS)):  # fmt: skip
        ws.append(row)
    wb.save(tmp_path / "a.xlsx")
    parsed = read_delivery(tmp_path / "a.xlsx", ds)
    frame = map_to_fields(parsed, ds, "a.xlsx")
    assert frame["name"].to_list() == ["张三", "李四"]
    assert frame["_source_row"].to_list() == [4, 5]  # the spreadsheet's own row numbers
    assert parsed.notes == ["the header is on row 3, the catalogue says 2"]
    # no row names the required columns: the catalogue's row, and the delivery fails on it
    ws.delete_rows(3)
    wb.save(tmp_path / "b.xlsx")
    with pytest.raises(DeliveryError, match="missing column"):
        map_to_fields(read_delivery(tmp_path / "b.xlsx", ds), ds, "b.xlsx")


def test_a_sheet_named_alike_is_the_catalogues(tmp_path: Path) -> None:
    # a trailing space or a full-width space in a sheet's name (as headers are matched)
    ds = make_dataset("excel", pattern="*.xlsx", sheet="台账", header_row=1)
    p = write_xlsx(tmp_path / "a.xlsx", "台　账 ", "标题", [ROWS[0]])
    assert map_to_fields(read_delivery(p, ds), ds, p)["name"].to_list() == [ROWS[0][1]]
    book = openpyxl.load_workbook(p)
    book.create_sheet("台账 ")  # a second one named alike: which is meant is not guessed
    book.save(p)
    with pytest.raises(DeliveryError, match="named 2 ways"):
        read_delivery(p, ds)


def test_excel_sheet_named_otherwise_is_read_where_its_header_says(tmp_path: Path) -> None:
    # a clerk's workbook on another template: its one sheet is Sheet1, not the catalogue's
    # 台账; that sheet's header names every required column (it failed the delivery)
    ds = make_dataset("excel", pattern="*.xlsx", sheet="台账", header_row=1)
    p = write_xlsx(tmp_path / "a.xlsx", "Sheet1", "title", [ROWS[0]])
    book = openpyxl.load_workbook(p)
    book.create_sheet("说明").append(["填表说明：身份证号填18位"])  # a sheet of instructions
    book.save(p)
    parsed = read_delivery(p, ds)
    assert map_to_fields(parsed, ds, p)["name"].to_list() == [ROWS[0][1]]
    assert parsed.notes[0] == (
        "the catalogue's sheet is not in the workbook: read its one sheet (of 2) whose header "
        "names every required column"
    )
    book.copy_worksheet(book["Sheet1"])  # two sheets with the columns: which is not guessed
    book.save(p)
    with pytest.raises(DeliveryError, match="2 of them with every required column") as info:
        read_delivery(p, ds)
    assert info.value.file == str(p)


def test_excel_missing_sheet_fails_the_delivery(tmp_path: Path) -> None:
    ds = make_dataset("excel", pattern="*.xlsx", sheet="台账", header_row=1)
    p = write_xlsx(tmp_path / "a.xlsx", "Sheet1", "title", [("a", "b", "c")])
    book = openpyxl.load_workbook(p)
    book["Sheet1"].delete_rows(1, 3)  # the data sheet deleted, an empty one left
    book.save(p)
    with pytest.raises(DeliveryError, match="sheet '台账' is missing") as info:
        read_delivery(p, ds)
    assert "none with every required column" in str(info.value)
    assert info.value.file == str(p)


def test_jsonl_broken_line_is_quarantined_with_its_line(tmp_path: Path) -> None:
    ds = make_dataset("jsonl", pattern="*.jsonl")
    good = [
        json.dumps(dict(zip(["身份证号", "姓名", "出生日期"], r, strict=True)), ensure_ascii=False)
        for r in ROWS
    ]
    p = tmp_path / "a.jsonl"
    p.write_text("\n".join([good[0], '{"身份证号": "1101', good[1]]) + "\n", encoding="utf-8")
    parsed = read_delivery(p, ds)
    assert parsed.frame["_source_row"].to_list() == [1, 3]
    assert [(q.source_row, q.check) for q in parsed.problems] == [(2, "json")]
    assert parsed.rows_read == 3


def test_jsonl_numbers_become_exact_text(tmp_path: Path) -> None:
    ds = make_dataset("jsonl", pattern="*.jsonl")
    p = tmp_path / "a.jsonl"
    p.write_text('{"身份证号": 110105194912310035, "姓名": "王", "出生日期": 19491231}\n', "utf-8")
    frame = read_delivery(p, ds).frame
    assert frame["身份证号"][0] == "110105194912310035"


def test_json_records_path_and_truncation(tmp_path: Path) -> None:
    ds = make_dataset("json", pattern="*.json", records_path="data")
    recs = [dict(zip(["身份证号", "姓名", "出生日期"], r, strict=True)) for r in ROWS]
    p = tmp_path / "a.json"
    p.write_text(json.dumps({"data": recs, "total": 2}, ensure_ascii=False), "utf-8")
    assert read_delivery(p, ds).frame["_source_row"].to_list() == [1, 2]
    p.write_text(json.dumps({"data": recs}, ensure_ascii=False)[:-10], "utf-8")
    with pytest.raises(DeliveryError, match="truncated"):
        read_delivery(p, ds)


def test_parquet_values_become_text(tmp_path: Path) -> None:
    ds = make_dataset("parquet", pattern="*.parquet")
    p = tmp_path / "a.parquet"
    pl.DataFrame(
        {"身份证号": [ROWS[0][0]], "姓名": ["张三"], "出生日期": [dt.date(1949, 12, 31)]}
    ).write_parquet(p)
    frame = map_to_fields(read_delivery(p, ds), ds, p)
    assert frame.row(0) == (1, ROWS[0][0], "张三", "1949-12-31")
    p.write_bytes(b"PAR1 not really")
    with pytest.raises(DeliveryError, match="Parquet"):
        read_delivery(p, ds)


def test_http_error_text_reaches_the_error_masked(tmp_path: Path) -> None:
    """A department's error page that quotes a record: the error (and so the log) masks it."""
    from catalog.identifiers import id_check_char_str
    from catalog.loader import get_catalogue
    from catalog.settings import Settings
    from pipelines.connectors.http_api import RetryPolicy, pull_http
    from tests.page_helper_api import http_server

    cid = "11010519800101002" + id_check_char_str("11010519800101002")
    body = f"record rejected: 身份证 {cid} 手机 13912345678 联系人王建国先生".encode()
    with http_server(lambda *_: (400, "text/plain; charset=utf-8", body)) as url:
        settings = Settings(home=tmp_path, dept_api_url=url, dept_api_token="t").ensure_dirs()
        _, ds = get_catalogue().dataset("rx.appeals")
        with pytest.raises(DeliveryError) as err:
            pull_http(settings, "rx", ds, None, policy=RetryPolicy(attempts=1))
    text = str(err.value)
    assert "HTTP 400" in text and "record rejected" in text
    for secret in (cid, "13912345678", "王建国"):
        assert secret not in text


def _gbk_csv(names: list[str]) -> bytes:
    lines = ["身份证号,姓名,出生日期", *(f"{ROWS[0][0]},{n},1949-12-31" for n in names)]
    return ("\r\n".join(lines) + "\r\n").encode("gbk")


def _zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


NAMES = ["张三", "欧阳娜娜", "李四"]


@pytest.mark.parametrize(
    ("packed", "note"),
    [
        (gzip.compress(_gbk_csv(NAMES), mtime=0), "the file is gzip-compressed"),
        # gzip members one after another (as `cat a.gz b.gz` or an appending exporter writes)
        (
            gzip.compress(_gbk_csv(NAMES)[:40], mtime=0)
            + gzip.compress(_gbk_csv(NAMES)[40:], mtime=0),
            "the file is gzip-compressed",
        ),
        # macOS's archiver adds its resource folder beside the file
        (
            _zipped({"台账.csv": _gbk_csv(NAMES), "__MACOSX/._台账.csv": b"\x00\x05"}),
            "the file is a zip archive of one file, read unpacked",
        ),
    ],
)
def test_a_csv_sent_compressed_is_read(tmp_path: Path, packed: bytes, note: str) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    p = tmp_path / "a.csv.gz"
    p.write_bytes(packed)
    parsed = read_delivery(p, ds)
    assert parsed.problems == [] and parsed.notes == [note]
    frame = map_to_fields(parsed, ds, p)
    assert frame["name"].to_list() == NAMES and frame["_source_row"].to_list() == [2, 3, 4]


def test_json_lines_and_a_json_document_sent_compressed_are_read(tmp_path: Path) -> None:
    recs = [{"身份证号": ROWS[0][0], "姓名": n, "出生日期": "1949-12-31"} for n in NAMES]
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs).encode()
    p = tmp_path / "a.jsonl.gz"
    p.write_bytes(gzip.compress(lines, mtime=0))
    ds = make_dataset("jsonl", pattern="*.jsonl")
    parsed = read_delivery(p, ds)
    assert parsed.problems == [] and parsed.notes == ["the file is gzip-compressed"]
    assert map_to_fields(parsed, ds, p)["name"].to_list() == NAMES
    doc = json.dumps({"data": recs}, ensure_ascii=False).encode()
    p = tmp_path / "a.json.zip"
    p.write_bytes(_zipped({"export/a.json": doc}))
    ds = make_dataset("json", pattern="*.json", records_path="data")
    parsed = read_delivery(p, ds)
    assert parsed.notes == ["the file is a zip archive of one file, read unpacked"]
    assert map_to_fields(parsed, ds, p)["name"].to_list() == NAMES
    # a document of many pieces: read whole (one piece of a gzip is 8 KiB)
    many = json.dumps({"data": recs * 2000}, ensure_ascii=False).encode()
    p = tmp_path / "b.json.gz"
    p.write_bytes(gzip.compress(many, mtime=0))
    assert len(many) > 100 * 1024
    assert read_delivery(p, ds).frame.height == len(recs) * 2000


def test_a_gzip_cut_short_loads_what_came_before_the_cut(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    data = _gbk_csv([f"张{chr(0x4E00 + i)}" for i in range(2000)])
    packed = gzip.compress(data, mtime=0)
    p = tmp_path / "a.csv.gz"
    p.write_bytes(packed[: len(packed) // 2])
    parsed = read_delivery(p, ds)
    loaded = parsed.frame.height
    assert 0 < loaded < 2000
    # the cut row, and only it, is quarantined as any truncated file's last row
    assert [q.check for q in parsed.problems] == ["truncated"]
    assert parsed.problems[0].source_row == loaded + 2


def _protected(packed: bytes) -> bytes:
    """``packed`` (a zip of one member) with the member marked encrypted (bit 0 of its
    flags, in its local header and in the central directory)."""
    out = bytearray(packed)
    for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = out.index(sig) + at
        out[i] |= 0x1
    return bytes(out)


def test_compressed_deliveries_that_fail_say_why(tmp_path: Path) -> None:
    from catalog.settings import get_settings

    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    packed = gzip.compress(_gbk_csv(NAMES * 200), mtime=0)
    corrupt = bytearray(packed)
    corrupt[len(corrupt) // 2] ^= 0xFF
    one = _zipped({"a.csv": _gbk_csv(NAMES)})
    cases = {
        "corrupt gzip stream": bytes(corrupt),
        "the zip archive holds 2 files": _zipped({"a.csv": b"x", "b.csv": b"y"}),
        "the zip archive holds 0 files": _zipped({}),
        "password-protected": _protected(one),
        "corrupt zip archive": one[: len(one) // 2],
    }
    for expect, data in cases.items():
        p = tmp_path / "a.csv.gz"
        p.write_bytes(data)
        with pytest.raises(DeliveryError) as info:
            read_delivery(p, ds)
        assert expect in str(info.value), expect
        assert "张三" not in str(info.value)
    # a bomb: 1,000 rows a few kB packed unpack past the limit, which stops the read
    small = get_settings().model_copy(update={"max_file_bytes": 20_000})
    bomb = gzip.compress(_gbk_csv(NAMES * 1000), mtime=0)
    assert len(bomb) < 20_000 < len(_gbk_csv(NAMES * 1000))
    p = tmp_path / "a.csv.gz"
    p.write_bytes(bomb)
    with pytest.raises(DeliveryError, match="too large: the gzip stream unpacks to more than"):
        read_delivery(p, ds, small)


def test_a_compressed_name_matches_its_pattern_for_the_kinds_that_read_it() -> None:
    from pipelines.ingest.inbox import matches

    assert matches("cases_*.csv", "CASES_1.csv.gz", compressed=True)
    assert matches("cases_*.csv", "cases_1.CSV.ZIP", compressed=True)
    assert not matches("cases_*.csv", "cases_1.csv.gz")  # a workbook or Parquet dataset
    assert not matches("cases_*.csv", "cases_1.csv.rar", compressed=True)
    assert not matches("cases_*.csv", ".cases_1.csv.gz", compressed=True)


def test_a_ledgers_totals_and_footer_rows_are_no_records(tmp_path: Path) -> None:
    from pipelines.connectors.base import split_ledger_rows

    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    lines = [
        "身份证号,姓名,出生日期",
        *(",".join(r) for r in ROWS),
        "合计,2人,",  # the total, in the key's cell
        ",合 计：2人,",  # or beside it, spaced to a cell's width
        "填表人：钱晓东,联系电话：13911112222,填报日期：2026年11月30日",
        ",,审核人:李四",
        # records that merely hold such words: their key holds an ID
        f"{ROWS[0][0]},合计,1949-12-31",
        f"{ROWS[1][0]},张三,填报日期：2026-11-30",
        ",合计发放两次,",  # not a totals cell: quarantined later as a record without its ID
    ]
    p = write_csv(tmp_path / "a.csv", lines, "utf-8")
    parsed = split_ledger_rows(read_delivery(p, ds), ds)
    assert parsed.frame["_source_row"].to_list() == [2, 3, 8, 9, 10]
    got = [(q.source_row, q.check, q.reason) for q in parsed.problems]
    assert got == [
        (4, "ledger_row", "a ledger's totals row, not a record"),
        (5, "ledger_row", "a ledger's totals row, not a record"),
        (6, "ledger_row", "a ledger's footer row (who filled it in, when), not a record"),
        (7, "ledger_row", "a ledger's footer row (who filled it in, when), not a record"),
    ]


def test_empty_cells_beyond_the_table_are_no_broken_rows(tmp_path: Path) -> None:
    # a spreadsheet saved as CSV pads lines to its used range: the header ends with empty
    # cells, and rows with as many, more or fewer of them; each such row was quarantined
    # for its cell count although nothing was in those cells
    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    a, b = (",".join(r) for r in ROWS)
    lines = [
        "身份证号,姓名,出生日期,,",
        f"{a},,",
        f"{b},,,,",
        a,
        f"{b},",
        f"{a},,x",  # x in an unnamed column of the header: ignored, as before
        f"{a},,,x",  # x beyond the header: a broken row
        "1,2",  # a named cell missing: a broken row
        ",,",  # no record
    ]
    p = write_csv(tmp_path / "a.csv", lines, "gbk")
    parsed = read_delivery(p, ds)
    assert map_to_fields(parsed, ds, p)["_source_row"].to_list() == [2, 3, 4, 5, 6]
    assert [(q.source_row, q.check) for q in parsed.problems] == [
        (7, "cell_count"),
        (8, "cell_count"),
    ]
    assert parsed.notes == [
        "3 row(s) differ from the header (of 3 named cells) only by empty cells beyond the "
        "table, the used range of a spreadsheet: read without them",
        "2 column(s) not in the catalogue, not loaded",  # the header's empty ones
    ]


def test_a_value_inside_a_json_object_is_named_by_its_dotted_path(tmp_path: Path) -> None:
    # an API or export that nests the person: {"person": {"idcard": …, "name": …}}
    def nested(kind: str, **delivery: object) -> Dataset:
        ds = make_dataset(kind, **delivery)
        sources = {"citizen_id": "person.idcard", "name": "person.name.full"}
        fields = [f.model_copy(update={"source": sources.get(f.name, f.source)}) for f in ds.fields]
        return ds.model_copy(update={"fields": fields})

    records = [
        {"person": {"idcard": ROWS[0][0], "name": {"full": "张三"}}, "出生日期": ROWS[0][2]},
        {"person": {"idcard": ROWS[1][0], "name": {"full": "李四"}}, "出生日期": ROWS[1][2],
         "person.idcard": "a key so named wins"},
        {"person": {"idcard": ROWS[0][0]}, "出生日期": None},  # no name: the field is blank
    ]  # fmt: skip
    ds = nested("jsonl", pattern="*.jsonl")
    p = tmp_path / "a.jsonl"
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", "utf-8")
    frame = map_to_fields(read_delivery(p, ds), ds, p)
    assert frame["citizen_id"].to_list() == [ROWS[0][0], "a key so named wins", ROWS[0][0]]
    assert frame["name"].to_list() == ["张三", "李四", None]
    doc = nested("json", pattern="*.json", records_path="data.list")
    p = tmp_path / "a.json"
    p.write_text(json.dumps({"data": {"list": records[:1]}}, ensure_ascii=False), "utf-8")
    assert map_to_fields(read_delivery(p, doc), doc, p)["name"].to_list() == ["张三"]


def test_lines_ended_by_a_carriage_return_alone_are_read(tmp_path: Path) -> None:
    # Excel for Mac's "CSV (Macintosh)": the whole file was one unterminated line and
    # failed "truncated: the file ends inside its header line"
    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    lines = ["身份证号,姓名,出生日期", *(",".join(r) for r in ROWS), f'{ROWS[0][0]},"王\r五",']
    p = tmp_path / "a.csv"
    p.write_bytes(("\r".join(lines) + "\r").encode("gbk"))
    parsed = read_delivery(p, ds)
    assert parsed.notes == [
        "the lines end with a carriage return alone (an old Mac export): read so"
    ]
    frame = map_to_fields(parsed, ds, p)
    assert frame["name"].to_list() == ["张三", "李四", "王\n五"]  # a line break inside quotes
    assert frame["_source_row"].to_list() == [2, 3, 4]
    # CR LF files, and a CR inside a cell of one, are read as before
    p.write_bytes(("\r\n".join(lines) + "\r\n").encode("gbk"))
    parsed = read_delivery(p, ds)
    assert parsed.notes == [] and map_to_fields(parsed, ds, p)["name"].to_list()[-1] == "王\r五"
