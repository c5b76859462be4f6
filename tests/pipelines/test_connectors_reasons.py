"""One rule for every connector's reasons: they name columns, rows and offsets, never values.

Each connector gets the delivery that used to put a person's record into a reason — a
file without its header (the first record read as column names), shifted cells, broken
JSON around a record — and, to show the rule sits in one place for all of them, a reader
that words a reason carelessly (quoting cells): whatever reaches the ledger, the
quarantine or a pull's account has passed ``withhold_values``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.cn import ric

from catalog.errors import DeliveryError
from catalog.model import ConnectorKind, Dataset
from catalog.settings import Settings
from pipelines import connectors
from pipelines.connectors import read_batches
from pipelines.connectors.base import (
    WITHHELD,
    Parsed,
    RowProblem,
    catalogue_names,
    map_to_fields,
    withhold_values,
)
from pipelines.ingest.landing import pull_failure_reason
from tests.pipelines.test_connectors import make_dataset

PERSON = ("11010519491231002X", "张三丰", "13812345678")
FIELDS = ("身份证号", "姓名", "联系电话")


def record_dataset(kind: str, **delivery: object) -> Dataset:
    """make_dataset's person fields (citizen ID, name, birth date) as delivered."""
    return make_dataset(kind, **delivery)


def reasons_of(path: Path, ds: Dataset) -> list[str]:
    """Every reason reading ``path`` gives: rows' problems, notes, the delivery's failure
    (mapping included, as raw does)."""
    texts: list[str] = []
    try:
        for parsed in read_batches(path, ds, Settings()):
            texts += [p.reason for p in parsed.problems] + parsed.notes
            try:
                map_to_fields(parsed, ds, path)
            except DeliveryError as exc:
                texts.append(str(exc))
    except DeliveryError as exc:
        texts.append(str(exc))
    assert texts, "the delivery gave no reason at all"
    return texts


def assert_no_value(texts: list[str]) -> None:
    for text in texts:
        for value in (*PERSON, "1949-12-31", "13812345678"[:7]):
            assert value not in text, text


# -- the files that used to leak, one per connector --------------------------------------


def test_csv_without_its_header_names_columns_not_cells(tmp_path: Path) -> None:
    ds = record_dataset("csv", pattern="*.csv", encoding="utf-8")
    p = tmp_path / "a.csv"
    p.write_text(",".join((*PERSON[:2], "1949-12-31")) + "\r\n" + "110105194912310035,李四,x\r\n")
    texts = reasons_of(p, ds)
    assert any("missing column" in t and "身份证号" in t for t in texts)
    assert_no_value(texts)


def test_csv_with_shifted_cells_names_positions_not_cells(tmp_path: Path) -> None:
    ds = record_dataset("csv", pattern="*.csv", encoding="utf-8")
    p = tmp_path / "a.csv"
    lines = ["身份证号,姓名,出生日期", ",".join(("X", *PERSON[:2], "1949-12-31"))]
    p.write_text("\r\n".join(lines) + "\r\n")
    texts = reasons_of(p, ds)
    assert any("cell count: the row has 4 cells, the header has 3" in t for t in texts)
    assert_no_value(texts)


def test_excel_without_its_header_names_columns_not_cells(tmp_path: Path) -> None:
    ds = record_dataset("excel", pattern="*.xlsx", sheet="台账")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "台账"
    ws.append([PERSON[0], PERSON[1], "1949-12-31"])
    ws.append(["110105194912310035", "李四", "1949-12-31"])
    p = tmp_path / "a.xlsx"
    wb.save(p)
    texts = reasons_of(p, ds)
    assert any("missing column" in t for t in texts)
    assert_no_value(texts)


def test_parquet_whose_columns_are_values_names_none_of_them(tmp_path: Path) -> None:
    ds = record_dataset("parquet", pattern="*.parquet")
    p = tmp_path / "a.parquet"
    pl.DataFrame({PERSON[0]: ["a"], PERSON[1]: ["b"], "1949-12-31": ["c"]}).write_parquet(p)
    texts = reasons_of(p, ds)
    assert any("missing column" in t and "身份证号" in t for t in texts)
    assert_no_value(texts)


def test_json_broken_inside_a_record_names_line_and_column(tmp_path: Path) -> None:
    ds = record_dataset("json", pattern="*.json")
    p = tmp_path / "a.json"
    record = json.dumps(
        dict(zip(("身份证号", "姓名", "出生日期"), (*PERSON[:2], "1949-12-31"), strict=True))
    )
    p.write_text(f"[{record}, {{'身份证号': '{PERSON[0]}'}}]", encoding="utf-8")
    texts = reasons_of(p, ds)
    assert any("not json" in t and "line 1" in t for t in texts)
    assert_no_value(texts)


def test_jsonl_records_keyed_by_values_and_broken_lines_name_no_value(tmp_path: Path) -> None:
    ds = record_dataset("jsonl", pattern="*.jsonl")
    p = tmp_path / "a.jsonl"
    lines = [
        json.dumps({PERSON[0]: PERSON[1], PERSON[1]: PERSON[2]}, ensure_ascii=False),
        f'{{"身份证号": "{PERSON[0]}", "姓名": "{PERSON[1]}"',  # cut short
        f'{{"身份证号": "{PERSON[0]}", "身份证号": "{PERSON[0]}"}}',  # a repeated key
    ]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    texts = reasons_of(p, ds)
    assert any("duplicate key '身份证号'" in t for t in texts)
    assert any("not json" in t for t in texts)
    assert_no_value(texts)


# -- the one place: a careless reader is caught there, for every connector kind ----------


def careless(kind: ConnectorKind):
    real = connectors.READERS[kind]

    def reader(path: Path, dataset: Dataset, settings: Settings) -> Iterator[Parsed]:
        for parsed in real(path, dataset, settings):
            problem = RowProblem(2, f"bad cell '{PERSON[1]}' next to {PERSON[0]}", "name")
            yield Parsed(parsed.frame, [*parsed.problems, problem], [f"saw '{PERSON[2]}'"])
        raise DeliveryError(
            f"careless: the row reads {PERSON[0]},{PERSON[1]},{PERSON[2]} in column '身份证号'",
            dataset=dataset.code,
        )

    return reader


def delivery_of(kind: ConnectorKind, tmp_path: Path) -> tuple[Path, Dataset]:
    """A good two-row delivery of each kind (pulled kinds are landed as JSON Lines)."""
    rows = [dict(zip(("身份证号", "姓名", "出生日期"), r, strict=True)) for r in (PERSON, PERSON)]
    if kind is ConnectorKind.csv:
        p = tmp_path / "a.csv"
        p.write_text(
            "身份证号,姓名,出生日期\r\n" + "\r\n".join(",".join(r) for r in [PERSON]) + "\r\n"
        )
        return p, record_dataset("csv", pattern="*.csv", encoding="utf-8")
    if kind is ConnectorKind.excel:
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.title = "台账"
        ws.append(["身份证号", "姓名", "出生日期"])
        ws.append(list(PERSON))
        p = tmp_path / "a.xlsx"
        wb.save(p)
        return p, record_dataset("excel", pattern="*.xlsx", sheet="台账")
    if kind is ConnectorKind.parquet:
        p = tmp_path / "a.parquet"
        pl.DataFrame(rows).write_parquet(p)
        return p, record_dataset("parquet", pattern="*.parquet")
    if kind is ConnectorKind.json:
        p = tmp_path / "a.json"
        p.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        return p, record_dataset("json", pattern="*.json")
    p = tmp_path / "a.jsonl"
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    if kind is ConnectorKind.jsonl:
        return p, record_dataset("jsonl", pattern="*.jsonl")
    if kind is ConnectorKind.sql_db:
        return p, record_dataset("sql_db", table="t", cursor_column="出生日期")
    return p, record_dataset("http_api", endpoint="/x", cursor_param="since", page_size=10)


@pytest.mark.parametrize("kind", list(connectors.READERS), ids=lambda k: k.value)
def test_every_connectors_reasons_pass_the_one_rule(
    kind: ConnectorKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, ds = delivery_of(kind, tmp_path)
    monkeypatch.setitem(connectors.READERS, kind, careless(kind))
    texts: list[str] = []
    with pytest.raises(DeliveryError) as info:
        for parsed in read_batches(path, ds, Settings()):
            assert parsed.frame.height >= 1  # the rule touches reasons, not the data
            texts += [p.reason for p in parsed.problems] + parsed.notes
    texts.append(str(info.value))
    assert_no_value(texts)
    assert f"bad cell {WITHHELD} next to {WITHHELD}" in texts
    assert "column '身份证号'" in texts[-1]  # a catalogue name stays quoted


def test_a_failed_pull_is_worded_by_the_same_rule() -> None:
    ds = record_dataset("http_api", endpoint="/x", cursor_param="since", page_size=10)
    exc = DeliveryError(f"page 3: record {{'身份证号': '{PERSON[0]}'}} refused", dataset=ds.code)
    reason = pull_failure_reason(exc, ds)
    assert PERSON[0] not in reason and "page 3" in reason and "'身份证号'" in reason


# -- the rule itself ---------------------------------------------------------------------


def test_withhold_values_keeps_the_officers_words() -> None:
    ds = record_dataset("csv", pattern="*.csv", encoding="gbk")
    allowed = catalogue_names(ds)
    for text in (
        "wrong encoding at byte 1234567: not gbk (illegal multibyte sequence)",
        "cell count: the row has 4 cells, the header has 3",
        "too large: the record has 16,777,217 bytes, the limit is 16,777,216",
        "missing column: required column(s) 身份证号, 姓名 not in the delivery",
        "duplicate key '姓名' in one record",
        "sheet '台账' is missing (the workbook has 2 sheet(s))",
    ):
        assert withhold_values(text, allowed | {"台账"}) == text


def test_withhold_values_withholds_quoted_unknowns_and_detected_values() -> None:
    out = withhold_values(
        "row 3: '王小明' in 姓名: 110105 19491231 002X, +86 138-1234-5678, a@b.cn, 京A12345",
        {"姓名"},
    )
    assert out.count(WITHHELD) == 5 and "姓名" in out and "row 3" in out
    assert withhold_values("the cell 王小明 is odd") == f"the cell {WITHHELD} is odd"
    assert len(withhold_values("x" * 5000)) == 500


@given(
    prefix=st.text(max_size=30),
    suffix=st.text(max_size=30),
    digits=st.from_regex(
        r"1[1-6]0[1-9]0[1-9](19[5-9]\d)(0[1-9]|1[0-2])(0[1-9]|1\d|2[0-8])\d{3}", fullmatch=True
    ),
)
def test_no_valid_citizen_id_survives_the_rule(prefix: str, suffix: str, digits: str) -> None:
    cid = digits + ric.calc_check_digit(digits)
    for text in (f"{prefix} {cid} {suffix}", f"{prefix}'{cid}'{suffix}", f"身份证号{cid}号"):
        assert cid not in withhold_values(text)
