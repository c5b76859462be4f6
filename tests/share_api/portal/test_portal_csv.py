"""The portal's CSV rule (share_api.portal.csv): a BOM, CRLF rows, formula cells escaped —
read back with the standard library's csv module as the independent reader."""

from __future__ import annotations

import csv as stdcsv
import io

import polars as pl
import pyarrow as pa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from share_api.portal import csv as portal_csv

BOM = "\ufeff"


def parsed(data: bytes) -> list[list[str]]:
    text = data.decode("utf-8")
    assert text.startswith(BOM) and not text[1:].startswith(BOM)
    return list(stdcsv.reader(io.StringIO(text[1:], newline="")))


def expected(cell: str) -> str:  # the rule, as OWASP states it
    return "'" + cell if cell[:1] in {"=", "+", "-", "@", "\t", "\r"} else cell


DIRTY = ["=1+2", "+3", "-2+3+cmd|' /C calc'!A0", "@SUM(A1)", "\tx", "\rx", "ok", "a=b", "", "张*"]


def test_text_cells_escaped_numbers_kept_bom_and_crlf():
    frame = pl.DataFrame(
        {
            "text": DIRTY,
            "amount": [-5, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            "ratio": [-0.5, None, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        }
    )
    data = portal_csv.csv_bytes(frame)
    assert data.startswith(b"\xef\xbb\xbf")
    body = data.decode("utf-8")[1:]
    # every row ends CRLF, and no bare LF ends a row
    assert body.endswith("\r\n") and body.count("\n") == body.count("\r\n") == 11
    table = parsed(data)
    assert table[0] == ["text", "amount", "ratio"]
    assert [row[0] for row in table[1:]] == [expected(c) for c in DIRTY]
    assert table[1][1] == "-5"  # a number is no formula
    assert table[1][2] == "-0.5" and table[2][2] == ""  # null: an empty cell


def test_categoricals_headers_and_quoting():
    frame = pl.DataFrame(
        {
            "=cmd": pl.Series(["-a", "b"], dtype=pl.Categorical),
            "备注": ['他说"好", 然后\n走了', '=HYPERLINK("x")'],
        }
    )
    table = parsed(portal_csv.csv_bytes(frame))
    assert table[0] == ["'=cmd", "备注"]
    assert table[1] == ["'-a", '他说"好", 然后\n走了']
    assert table[2] == ["b", '\'=HYPERLINK("x")']


def test_every_input_kind_gives_the_same_bytes():
    frame = pl.DataFrame({"名称": ["=x", "y"], "n": [1, -2]})
    want = portal_csv.csv_bytes(frame)
    assert portal_csv.csv_bytes(frame.lazy()) == want
    assert portal_csv.csv_bytes(pa.table({"名称": ["=x", "y"], "n": [1, -2]})) == want
    assert portal_csv.csv_bytes(rows=[("=x", 1), ("y", -2)], header=["名称", "n"]) == want


def test_empty_table_is_a_header_row():
    data = portal_csv.csv_bytes(rows=[], header=["a", "@b"])
    assert parsed(data) == [["a", "'@b"]]


def test_streamed_in_slices_equals_the_whole():
    n = 1_003
    frame = pl.DataFrame({"v": [f"={i}" if i % 3 else str(i) for i in range(n)], "i": range(n)})
    chunks = list(portal_csv.csv_chunks(frame, chunk_rows=100))
    assert len(chunks) >= 1 + n // 100  # header chunk, then slices
    assert chunks[0] == "\ufeffv,i\r\n".encode()
    whole = b"".join(chunks)
    assert whole == portal_csv.csv_bytes(frame)
    table = parsed(whole)
    assert len(table) == n + 1
    assert [row[0] for row in table[1:]] == [expected(v) for v in frame["v"]]
    assert [int(row[1]) for row in table[1:]] == list(range(n))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=8), min_size=1, max_size=20))
def test_any_text_reads_back_escaped(cells):
    table = parsed(portal_csv.csv_bytes(pl.DataFrame({"c": cells})))
    # the standard reader turns a lone CR inside a quoted cell into itself; compare exactly
    assert [row[0] if row else "" for row in table[1:]] == [expected(c) for c in cells]


def test_csv_response_streams_with_a_chinese_filename():
    app = FastAPI()

    @app.get("/x")
    def download():
        return portal_csv.csv_response(
            pl.DataFrame({"a": ["+1"]}), filename="授权-g1.csv", headers={"X-Audit-Seq": "7"}
        )

    response = TestClient(app).get("/x")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = response.headers["content-disposition"]
    assert "filename*=UTF-8''%E6%8E%88%E6%9D%83-g1.csv" in disposition
    assert 'filename="__-g1.csv"' in disposition
    assert response.headers["x-audit-seq"] == "7"
    assert parsed(response.content) == [["a"], ["'+1"]]
