"""No cell value in any reason (issue 9, item 8): every reason, note and failure a reader
gives for damaged deliveries is searched for every value the deliveries hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalog.errors import DeliveryError
from catalog.settings import Settings
from pipelines.connectors import read_delivery
from pipelines.connectors.base import map_to_fields
from tests.pipelines.test_connectors import make_dataset

# distinctive values: an ID, a name, a phone, a free text with a key-like shape
VALUES = ["11010519491231002X", "欧阳秘密", "13912345678", '"姓名": 泄露']
LIMITS = Settings(max_record_bytes=400, max_json_depth=8)


def reasons_of(path: Path, kind: str, **delivery: object) -> list[str]:
    """Every text the reader produced for the delivery: reasons, notes, or its failure."""
    ds = make_dataset(kind, pattern=f"*.{kind}", **delivery)
    try:
        parsed = read_delivery(path, ds, LIMITS)
        map_to_fields(parsed, ds, path.name)
    except DeliveryError as exc:
        return [exc.message]
    return [p.reason for p in parsed.problems] + parsed.notes


def csv_damage(encoding: str) -> list[bytes]:
    a, b, c, d = VALUES
    row = f"{a},{b},{c}"
    enc = encoding
    return [
        # header, a bad byte inside a value, cell counts, a stray quote, a long cell, a cut row
        f"身份证号,姓名,出生日期\n{row}\n".encode(enc)
        + f"{a},{b}".encode(enc)
        + b"\xff\xfe"
        + f',{c}\n{row},{d}\n{a},{b}x"{c}",{c}\n{a},"{d}"{b},{c}\n'.encode(enc)
        + f"{a},{b * 200},{c}\n{a},{b},{c[:5]}".encode(enc),
        # no header at all: the first row is values
        f"{row}\n{row}\n".encode(enc),
        # a header repeating a column that is not in the catalogue (a value, in a headerless file)
        f"身份证号,姓名,出生日期,{b},{b}\n{row},1,2\n".encode(enc),
        # every row broken
        f"身份证号,姓名,出生日期\n{a};{b};{c}\n".encode(enc),
    ]


@pytest.mark.parametrize("encoding", ["utf-8", "gbk"])
def test_csv_reasons_quote_no_value(tmp_path: Path, encoding: str) -> None:
    texts = []
    for n, body in enumerate(csv_damage(encoding)):
        p = tmp_path / f"d{n}.csv"
        p.write_bytes(body)
        texts += reasons_of(p, "csv", encoding=encoding)
    assert any("wrong encoding at byte" in t for t in texts)
    assert any("cell count" in t for t in texts) and any("too large" in t for t in texts)
    assert any("missing column" in t for t in texts)
    assert_no_value(texts, tmp_path)


def test_jsonl_and_json_reasons_quote_no_value(tmp_path: Path) -> None:
    a, b, c, d = VALUES
    good = json.dumps({"身份证号": a, "姓名": b, "出生日期": c}, ensure_ascii=False)
    lines = [
        good,
        f'{{"身份证号": "{a}", "姓名": "{b}", "姓名": "{c}"}}',  # duplicate key
        f'{{"{a}": 1, "{a}": 2}}',  # a duplicate key that is itself a value
        f'{{"身份证号": "{a}", "姓名": [[[[[[[[[["{b}"]]]]]]]]]]}}',  # too deep
        f'["{a}", "{b}"]',  # not an object
        f'{{"身份证号": "{a}", "姓名": "{b}',  # broken
        f'{{"身份证号": "{a}", "出生日期": NaN}}',
        f'{{"姓名": "{b * 100}"}}',  # too large
        f'{{"身份证号": "{a}", "{d}": "{c}"}}',  # a key outside the catalogue
    ]
    p = tmp_path / "a.jsonl"
    p.write_text("\n".join(lines) + "\n" + good, encoding="utf-8")
    texts = reasons_of(p, "jsonl")
    assert len(texts) >= 8
    doc = tmp_path / "a.json"
    records = f'[{good}, {lines[1]}, {lines[2]}, "{a}", {good}]'
    doc.write_text('{"data": ' + records + "}", encoding="utf-8")
    texts += reasons_of(doc, "json", records_path="data")
    doc.write_text('{"data": ' + records[:-20], encoding="utf-8")  # cut inside a value
    texts += reasons_of(doc, "json", records_path="data")
    doc.write_text(f'{{"data": [{{"{a}": {b}}}]}}', encoding="utf-8")  # not json at a value
    texts += reasons_of(doc, "json", records_path="data")
    assert_no_value(texts, tmp_path)


def assert_no_value(texts: list[str], folder: Path) -> None:
    assert texts
    for text in texts:
        for value in VALUES:
            for part in (value, value[:6], value[-6:]):
                assert part not in text, (part, text)
        assert str(folder) not in text, text
