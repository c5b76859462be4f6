"""Damaged deliveries, reader by reader (issue 9): which rows are quarantined, why, what loads.

Every reason is matched on the officer's vocabulary (truncated, not json, empty,
wrong encoding at byte N, too deep, too large, duplicate key, corrupt archive,
cell count, not an object, missing column) and checked to quote no cell value and
no landed path.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest

from catalog.errors import DeliveryError
from catalog.settings import Settings
from pipelines.connectors import read_batches, read_delivery
from pipelines.connectors import records as records_mod
from pipelines.connectors.base import Parsed
from pipelines.connectors.jsonstrict import nesting_depth, too_deep
from pipelines.connectors.records import scan_lines, scan_records
from tests.pipelines.test_connectors import ROWS, make_dataset, write_xls, write_xlsx

HEADER = "身份证号,姓名,出生日期"
SECRET_ID = "11010519491231002X"
SECRET_NAME = "张三"


def limits(**kw: int) -> Settings:
    return Settings(**kw)


def problems(parsed: Parsed) -> list[tuple[int, str]]:
    return [(p.source_row, p.check) for p in parsed.problems]


def assert_clean_reasons(texts: list[str], *values: str, path: Path | None = None) -> None:
    for text in texts:
        for v in (SECRET_ID, SECRET_NAME, *values):
            assert v not in text, text
        if path is not None:
            assert str(path.parent) not in text, text


# --- CSV -------------------------------------------------------------------------------


def csv_file(tmp_path: Path, body: bytes, name: str = "a.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(body)
    return p


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_csv_bad_bytes_quarantine_one_row_at_their_file_offset(
    tmp_path: Path, encoding: str
) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding=encoding)
    head = (HEADER + "\r\n" + ",".join(ROWS[0]) + "\r\n").encode(encoding)
    bad = b"110105194912310035,\xff\xfe,1949\r\n"
    tail = (",".join(ROWS[1]) + "\r\n").encode(encoding)
    p = csv_file(tmp_path, head + bad + tail)
    parsed = read_delivery(p, ds)
    assert parsed.frame["_source_row"].to_list() == [2, 4]
    assert problems(parsed) == [(3, "encoding")]
    offset = len(head) + bad.index(b"\xff")
    assert f"wrong encoding at byte {offset}" in parsed.problems[0].reason
    assert parsed.frame["姓名"].to_list() == ["张三", "李四"]


def test_csv_oversized_field_is_quarantined_and_the_rest_loads(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    big = '"' + "长" * 5000 + "\n" + "x" * 5000 + '"'  # a quoted field over two lines
    body = "\n".join([HEADER, ",".join(ROWS[0]), f"1,{big},2", ",".join(ROWS[1])]) + "\n"
    p = csv_file(tmp_path, body.encode())
    parsed = read_delivery(p, ds, limits(max_record_bytes=4096))
    assert parsed.frame["_source_row"].to_list() == [2, 5]  # the big record took lines 3-4
    assert problems(parsed) == [(3, "too_large")]
    assert "too large" in parsed.problems[0].reason and "4,096" in parsed.problems[0].reason


def test_csv_oversized_record_across_chunks_keeps_counting_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records_mod, "CHUNK_BYTES", 64)
    body = b'h1,h2\n1,"' + b'a"",\n' * 100 + b'"\n2,b\n'
    with open(csv_file(tmp_path, body), "rb") as fh:
        recs = list(scan_records(fh, max_bytes=100, csv_delimiter=b","))
    assert [(r.line, r.data is None, r.terminated) for r in recs] == [
        (1, False, True),
        (2, True, True),
        (103, False, True),
    ]
    assert recs[2].data == b"2,b" and recs[2].offset == len(body) - 4


def test_csv_wrong_cell_count_and_stray_quote(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    lines = [HEADER, ",".join(ROWS[0]), "1,2,3,4", '1,"ab"c,x', ",".join(ROWS[1])]
    parsed = read_delivery(csv_file(tmp_path, ("\r\n".join(lines) + "\r\n").encode()), ds)
    assert parsed.frame["_source_row"].to_list() == [2, 5]
    assert problems(parsed) == [(3, "cell_count"), (4, "cell_count")]
    assert "cell count" in parsed.problems[0].reason and "4 cells" in parsed.problems[0].reason
    assert "cell count" in parsed.problems[1].reason


def test_csv_cut_last_row_is_possibly_truncated_unless_the_exporter_leaves_it_open(
    tmp_path: Path,
) -> None:
    body = ("\r\n".join([HEADER, ",".join(ROWS[0]), ",".join(ROWS[1])])).encode()
    p = csv_file(tmp_path, body)
    ends = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    parsed = read_delivery(p, ends)
    assert parsed.frame["_source_row"].to_list() == [2]
    assert problems(parsed) == [(3, "truncated")]
    assert "possibly truncated" in parsed.problems[0].reason
    open_end = make_dataset("csv", pattern="*.csv", encoding="utf-8", lines_terminated=False)
    parsed = read_delivery(p, open_end)
    assert parsed.frame["_source_row"].to_list() == [2, 3] and parsed.problems == []


def test_csv_ending_inside_a_quoted_cell_is_truncated_even_for_open_exporters(
    tmp_path: Path,
) -> None:
    body = f'{HEADER}\n{",".join(ROWS[0])}\n1,"张\n'.encode()
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8", lines_terminated=False)
    parsed = read_delivery(csv_file(tmp_path, body), ds)
    assert parsed.frame.height == 1
    assert problems(parsed) == [(3, "truncated")]
    assert "ends inside a quoted cell" in parsed.problems[0].reason


def test_csv_quoted_line_breaks_keep_the_first_line_number(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="gbk")
    body = f'{HEADER}\r\n1,"张\r\n三",x\r\n\r\n2,"李""四",y\r\n'.encode("gbk")
    parsed = read_delivery(csv_file(tmp_path, body), ds)
    assert parsed.frame["_source_row"].to_list() == [2, 5]
    assert parsed.frame["姓名"].to_list() == ["张\r\n三", '李"四']


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        (b"", "empty"),
        (b"   \r\n\r\n", "empty"),
        ('身份证号,"姓名'.encode(), "truncated"),
        (HEADER.encode() + b"\n1,\xff,2\n", "wrong encoding at byte"),
    ],
)
def test_csv_unreadable_as_a_whole(tmp_path: Path, body: bytes, phrase: str) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    p = csv_file(tmp_path, body)
    with pytest.raises(DeliveryError) as info:
        read_delivery(p, ds)
    assert phrase in str(info.value).lower()


def test_csv_every_row_broken_fails_with_a_summary(tmp_path: Path) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    p = csv_file(tmp_path, f"{HEADER}\n1;2;3\n4;5;6\n".encode())
    with pytest.raises(DeliveryError, match=r"no record .* \(2 damaged\).*cell count") as info:
        read_delivery(p, ds)
    assert info.value.row == 2


def test_csv_header_only_loads_nothing_and_repeated_catalogue_column_fails(
    tmp_path: Path,
) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    parsed = read_delivery(csv_file(tmp_path, f"{HEADER}\r\n".encode()), ds)
    assert parsed.frame.height == 0 and parsed.problems == []
    assert "姓名" in parsed.frame.columns
    p = csv_file(tmp_path, f"{HEADER},姓名\n1,2,3,4\n".encode(), "b.csv")
    with pytest.raises(DeliveryError, match="姓名 more than once"):
        read_delivery(p, ds)


def test_csv_reads_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records_mod, "BATCH_RECORDS", 2)
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    rows = [f"{i:018d},名{i},2000-01-01" for i in range(5)]
    parts = list(read_batches(csv_file(tmp_path, ("\n".join([HEADER, *rows]) + "\n").encode()), ds))
    assert [p.frame["_source_row"].to_list() for p in parts] == [[2, 3], [4, 5], [6]]


# --- property: the streaming CSV reader agrees with Python's csv module ----------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

CHARS = ["a", "1", " ", ",", '"', "\n", "\r\n", "张", "丰", "。", "μ", "，"]
cell = st.lists(st.sampled_from(CHARS), max_size=6).map("".join)
row = st.lists(cell, min_size=3, max_size=3)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(row, min_size=0, max_size=8),
    encoding=st.sampled_from(["utf-8", "gbk", "utf-8-sig"]),
    chunk=st.sampled_from([3, 7, 64, 4096]),
    terminator=st.sampled_from(["\r\n", "\n"]),
)
def test_streaming_csv_agrees_with_the_csv_module(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[list[str]],
    encoding: str,
    chunk: int,
    terminator: str,
) -> None:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator=terminator)
    writer.writerow(HEADER.split(","))
    writer.writerows(rows)
    text = buf.getvalue()
    p = tmp_path_factory.mktemp("prop") / "a.csv"
    p.write_bytes(text.encode(encoding))
    # the oracle: the csv module over the decoded text, blank rows dropped, first lines
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    want, lines, line = [], [], reader.line_num
    for rec in reader:
        start, line = line + 1, reader.line_num
        if any(c.strip() for c in rec):
            want.append(tuple(rec))
            lines.append(start)
    original = records_mod.CHUNK_BYTES
    records_mod.CHUNK_BYTES = chunk
    try:
        parsed = read_delivery(p, make_dataset("csv", pattern="*.csv", encoding=encoding))
    finally:
        records_mod.CHUNK_BYTES = original
    assert parsed.problems == []
    assert parsed.frame.drop("_source_row").rows() == want
    assert parsed.frame["_source_row"].to_list() == lines


# --- JSON Lines -----------------------------------------------------------------------


def jl(**kw: object) -> str:
    rec = dict(zip(["身份证号", "姓名", "出生日期"], ROWS[0], strict=True))
    rec.update(kw)
    return json.dumps(rec, ensure_ascii=False)


def jsonl_file(tmp_path: Path, lines: list[str | bytes], end: bytes = b"\n") -> Path:
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"\n".join(ln if isinstance(ln, bytes) else ln.encode() for ln in lines) + end)
    return p


def test_jsonl_each_kind_of_damage_is_one_quarantined_line(tmp_path: Path) -> None:
    ds = make_dataset("jsonl", pattern="*.jsonl")
    deep = "[" * 100 + "]" * 100
    lines: list[str | bytes] = [
        jl(),  # 1 good
        '{"身份证号": "1101',  # 2 broken
        "[1, 2]",  # 3 not an object
        '{"姓名": "王五", "姓名": "赵六", "出生日期": "x"}',  # 4 duplicate catalogue key
        '{"x": 1, "x": 2, "姓名": "王五"}',  # 5 duplicate non-catalogue key
        f'{{"身份证号": {deep}}}',  # 6 too deep
        '{"姓名": "'.encode() + b"\xff" + b'"}',  # 7 bad utf-8
        '{"身份证号": NaN}',  # 8 NaN
        "",  # 9 blank: no record
        jl(出生日期="1950-01-01"),  # 10 good
        '{"姓名": "' + "x" * 3000 + '"}',  # 11 too large
        jl(),  # 12 good
    ]
    p = jsonl_file(tmp_path, lines)
    parsed = read_delivery(p, ds, limits(max_record_bytes=2048, max_json_depth=16))
    assert parsed.frame["_source_row"].to_list() == [1, 10, 12]
    assert problems(parsed) == [
        (2, "json"),
        (3, "json"),
        (4, "duplicate_key"),
        (5, "duplicate_key"),
        (6, "json"),
        (7, "encoding"),
        (8, "json"),
        (11, "too_large"),
    ]
    reasons = {p.source_row: p.reason for p in parsed.problems}
    assert reasons[2].startswith("not json")
    assert reasons[3].startswith("not an object")
    assert "duplicate key '姓名'" in reasons[4]
    assert "duplicate key" in reasons[5] and "'x'" not in reasons[5]
    assert reasons[6].startswith("too deep")
    offset = sum(len(x if isinstance(x, bytes) else x.encode()) + 1 for x in lines[:6])
    offset += lines[6].index(b"\xff")
    assert reasons[7].startswith(f"wrong encoding at byte {offset}")
    assert reasons[8].startswith("not json")
    assert reasons[11].startswith("too large")
    assert_clean_reasons(list(reasons.values()), "王五", "赵六", path=p)


@pytest.mark.parametrize("closed", [True, False])
def test_jsonl_nesting_bomb_is_refused_before_any_parser(tmp_path: Path, closed: bool) -> None:
    """100,000 levels: RecursionError in json, a native stack overflow in polars."""
    bomb = '{"身份证号": ' + "[" * 100_000 + ("]" * 100_000 + "}" if closed else "")
    p = jsonl_file(tmp_path, [jl(), bomb, jl()])
    parsed = read_delivery(p, make_dataset("jsonl", pattern="*.jsonl"))
    assert parsed.frame["_source_row"].to_list() == [1, 3]
    assert problems(parsed) == [(2, "json")]
    assert parsed.problems[0].reason == "too deep: nested over 64 levels"


def test_jsonl_duplicate_key_among_many_clean_lines(tmp_path: Path) -> None:
    """The vectorised path (polars keeps the first of two keys) still finds the one line."""
    ds = make_dataset("jsonl", pattern="*.jsonl")
    lines = [jl(出生日期=f"19{i % 100:02d}-01-01") for i in range(500)]
    lines[321] = '{"身份证号": "1", "姓名": "王五", "出生日期": "x", "身份证号": "2"}'
    parsed = read_delivery(jsonl_file(tmp_path, lines), ds)
    assert parsed.frame.height == 499 and problems(parsed) == [(322, "duplicate_key")]
    assert "duplicate key '身份证号'" in parsed.problems[0].reason


def test_jsonl_last_line_without_line_end(tmp_path: Path) -> None:
    p = jsonl_file(tmp_path, [jl(), jl()], end=b"")
    parsed = read_delivery(p, make_dataset("jsonl", pattern="*.jsonl"))
    assert parsed.frame["_source_row"].to_list() == [1]
    assert problems(parsed) == [(2, "truncated")]
    assert "possibly truncated" in parsed.problems[0].reason
    parsed = read_delivery(p, make_dataset("jsonl", pattern="*.jsonl", lines_terminated=False))
    assert parsed.frame["_source_row"].to_list() == [1, 2]


@pytest.mark.parametrize(
    ("lines", "phrase"),
    [
        ([], "empty"),
        (["", "  "], "empty"),
        (['{"a": 1', "[1]"], "no record of the file could be read (2 damaged)"),
    ],
)
def test_jsonl_unreadable_as_a_whole(tmp_path: Path, lines: list[str], phrase: str) -> None:
    p = jsonl_file(tmp_path, lines) if lines else tmp_path / "a.jsonl"
    if not lines:
        p.write_bytes(b"")
    with pytest.raises(DeliveryError) as info:
        read_delivery(p, make_dataset("jsonl", pattern="*.jsonl"))
    assert phrase in info.value.message


def test_jsonl_required_key_missing_everywhere_fails_in_raw(tmp_path: Path) -> None:
    """Checked over the whole delivery (a batch may lack a key): see raw's test below."""
    ds = make_dataset("jsonl", pattern="*.jsonl")
    parsed = read_delivery(jsonl_file(tmp_path, ['{"身份证号": "1"}']), ds)
    assert "姓名" not in parsed.frame.columns


# --- JSON documents ---------------------------------------------------------------------


def json_file(tmp_path: Path, body: bytes) -> Path:
    p = tmp_path / "a.json"
    p.write_bytes(body)
    return p


def test_json_duplicate_key_and_non_object_records_are_quarantined(tmp_path: Path) -> None:
    ds = make_dataset("json", pattern="*.json", records_path="data")
    body = (
        '{"data": [' + jl() + ', {"姓名": "王五", "姓名": "赵六"}, 7, '
        '{"身份证号": "1", "extra": {"k": 1, "k": 2}}, ' + jl() + "]}"
    ).encode()
    parsed = read_delivery(json_file(tmp_path, body), ds)
    assert parsed.frame["_source_row"].to_list() == [1, 5]
    assert problems(parsed) == [(2, "duplicate_key"), (3, "json"), (4, "duplicate_key")]
    assert "duplicate key '姓名'" in parsed.problems[0].reason
    assert parsed.problems[1].reason.startswith("not an object")
    assert "'k'" not in parsed.problems[2].reason
    assert_clean_reasons([p.reason for p in parsed.problems], "王五", "赵六")


def test_json_record_over_the_size_limit_is_quarantined(tmp_path: Path) -> None:
    ds = make_dataset("json", pattern="*.json", records_path="data")
    big = json.dumps({"姓名": "王" * 2000}, ensure_ascii=False)
    body = ('{"data": [' + jl() + ", " + big + ", " + jl() + "]}").encode()
    parsed = read_delivery(json_file(tmp_path, body), ds, limits(max_record_bytes=1000))
    assert parsed.frame["_source_row"].to_list() == [1, 3]
    assert problems(parsed) == [(2, "too_large")]
    assert parsed.problems[0].reason.startswith("too large: the record has 6,")


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        (b"", "empty"),
        ('{"data": [{"姓名": "张三"}, {"姓名": "李'.encode(), "truncated"),
        ('{"data": [{"姓名": "张'.encode()[:-1], "truncated"),  # cut inside a character
        (b'{"data": [1, 2]] garbage', "not json"),
        (b'{"data": [' + b"[" * 5000 + b"]" * 5000 + b"]}", "too deep"),
        (b'{"data": [], "data": []}', "duplicate key 'data'"),
        (b'{"rows": []}', "missing column"),
        (b'"just a string"', "not an object"),
        (b'{"data": [{"a": NaN}]}', "not json"),
        ('{"data": "\xff"}'.encode("latin-1"), "wrong encoding at byte 10"),
    ],
)
def test_json_unreadable_as_a_whole(tmp_path: Path, body: bytes, phrase: str) -> None:
    ds = make_dataset("json", pattern="*.json", records_path="data")
    p = json_file(tmp_path, body)
    with pytest.raises(DeliveryError) as info:
        read_delivery(p, ds)
    assert phrase in str(info.value)
    assert_clean_reasons([info.value.message], path=p)


def test_depth_is_measured_without_parsing() -> None:
    assert nesting_depth(b'{"a": [1, {"b": "[[[["}]}', 10) == 3
    assert nesting_depth(b"[" * 100 + b"]" * 100, 64) == 65
    assert nesting_depth(b'{"a": [}', 10) == 2  # broken: every opening bracket counts
    assert not too_deep(b'{"a": "' + b"[" * 1000 + b'"}', 4)
    assert too_deep(b"[" * 10_000_000, 64)  # a cut bomb never reaches a parser
    assert too_deep(b'{"a": ' + b"[" * 100 + b"}", 64)


# --- Excel ------------------------------------------------------------------------------


def xlsx(tmp_path: Path) -> Path:
    return write_xlsx(tmp_path / "a.xlsx", "台账", "标题", [ROWS[0]])


def excel_error(p: Path, settings: Settings | None = None) -> str:
    ds = make_dataset("excel", pattern="*.xlsx", sheet="台账", header_row=1)
    with pytest.raises(DeliveryError) as info:
        read_delivery(p, ds, settings)
    assert str(p.parent) not in info.value.message
    return info.value.message


def test_xlsx_that_is_no_zip_is_not_a_workbook(tmp_path: Path) -> None:
    p = tmp_path / "a.xlsx"
    p.write_bytes(b"<html>not a workbook</html>")
    assert "not a workbook" in excel_error(p)
    p.write_bytes(b"PK\x03\x04 but nothing else " * 10)
    assert "corrupt archive" in excel_error(p)
    whole = xlsx(tmp_path).read_bytes()
    p.write_bytes(whole[: len(whole) // 2])  # cut short: the zip's directory is gone
    assert "corrupt archive" in excel_error(p) and "truncated" in excel_error(p)
    p.write_bytes(b"")
    assert "empty" in excel_error(p)


def test_an_xls_cut_short_too_large_or_no_workbook_is_refused_unread(tmp_path: Path) -> None:
    whole = write_xls(tmp_path / "w.xls", "台账", "标题", [ROWS[0]]).read_bytes()
    p = tmp_path / "a.xls"
    p.write_bytes(whole[:-700])  # no longer whole 512-byte sectors
    assert "corrupt workbook" in excel_error(p) and "truncated" in excel_error(p)
    p.write_bytes(whole)
    msg = excel_error(p, limits(xlsx_max_uncompressed_bytes=len(whole) - 1))
    assert "too large" in msg and f"{len(whole):,} bytes" in msg
    p.write_bytes(whole[:8] + bytes(4 * 512 - 8))  # the signature and nothing of a workbook
    assert "not a workbook" in excel_error(p)


def test_xlsx_with_a_bad_crc_is_a_corrupt_archive(tmp_path: Path) -> None:
    p = xlsx(tmp_path)
    data = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("xl/worksheets/sheet1.xml")
    # flip a byte inside the sheet's compressed data (after its local header)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    assert "corrupt archive" in excel_error(p)


def test_xlsx_over_the_member_and_size_limits_is_too_large(tmp_path: Path) -> None:
    p = xlsx(tmp_path)
    with zipfile.ZipFile(p) as zf:
        members = len(zf.infolist())
        declared = sum(m.file_size for m in zf.infolist())
    msg = excel_error(p, limits(xlsx_max_members=members - 1))
    assert "too large" in msg and f"{members:,} archive members" in msg
    msg = excel_error(p, limits(xlsx_max_uncompressed_bytes=declared - 1))
    assert "too large" in msg and f"{declared:,} bytes" in msg
    ds = make_dataset("excel", pattern="*.xlsx", sheet="台账", header_row=1)
    assert read_delivery(p, ds, limits(xlsx_max_members=members)).frame.height == 1


def test_unreadable_parquet_names_no_path(tmp_path: Path) -> None:
    p = tmp_path / "a.parquet"
    p.write_bytes(b"PAR1 garbage PAR1")
    with pytest.raises(DeliveryError, match="corrupt archive") as info:
        read_delivery(p, make_dataset("parquet", pattern="*.parquet"))
    assert str(tmp_path) not in info.value.message


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=10),
    end=st.booleans(),
    bom=st.booleans(),
    chunk=st.integers(1, 20),
    limit=st.integers(0, 12),
)
def test_line_blocks_agree_with_a_plain_split(
    lines: list[bytes], end: bool, bom: bool, chunk: int, limit: int
) -> None:
    """scan_lines over any chunk size: every line, its number and offset, long ones skipped."""
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + (b"\n" if end and lines else b"")
    got = []
    for block in scan_lines(io.BytesIO(data), max_bytes=limit, skip_bom=True, chunk_bytes=chunk):
        for i, line in enumerate(block.lines):
            size = block.sizes[i] if line is None else len(line)
            got.append((block.first_line + i, block.offset_of(i), line, size))
    want, offset = [], 3 if bom else 0
    for n, line in enumerate(lines, start=1):
        if line or n < len(lines) or end:
            want.append((n, offset, line if len(line) <= limit else None, len(line)))
        offset += len(line) + 1
    assert got == want
