"""Write delivered rows in each department's form. Every writer is byte-deterministic.

Each writer returns the ``_source_row`` of the first item; items follow one a row.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from openpyxl import Workbook

from departments.dirt import Item
from departments.spec import Spec

FIXED_ZIP_TIME = (2000, 1, 1, 0, 0, 0)


def _text(v: object) -> str:
    return "" if v is None else str(v)


def write_csv(path: Path, spec: Spec, items: list[Item]) -> int:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")
    out.writerow(spec.sources)
    for item in items:
        out.writerow([_text(item.cells[s]) for s in spec.sources])
    path.write_bytes(buf.getvalue().encode(spec.encoding or "utf-8"))
    return 2


def _normalise_zip(path: Path) -> None:
    """Fix zip timestamps and document dates so the same workbook gives the same bytes."""
    with zipfile.ZipFile(path) as z:
        entries = [(info.filename, z.read(info.filename)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            if name == "docProps/core.xml":
                import re

                data = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"2000-01-01T00:00:00Z", data)
            z.writestr(zipfile.ZipInfo(name, FIXED_ZIP_TIME), data, zipfile.ZIP_DEFLATED)


def write_excel(path: Path, spec: Spec, items: list[Item], title: str) -> int:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(spec.sheet)
    ws.append([title])
    ws.append(spec.sources)
    for item in items:
        ws.append([item.cells[s] for s in spec.sources])
    wb.save(path)
    _normalise_zip(path)
    return 3


def write_json(path: Path, spec: Spec, items: list[Item]) -> int:
    doc = {"code": 0, "msg": "success", "total": len(items),
           spec.records_path or "data": [item.cells for item in items]}  # fmt: skip
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return 1


def write_jsonl(path: Path, items: list[Item]) -> int:
    lines = [item.raw if item.raw is not None else json.dumps(item.cells, ensure_ascii=False)
             for item in items]  # fmt: skip
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return 1


def _arrow_table(spec: Spec, items: list[Item]) -> pa.Table:
    columns = {}
    for col in spec.cols:
        values = [item.cells[col.source] for item in items]
        if col.role == "num":
            typ = pa.float64() if any(isinstance(v, float) for v in values) else pa.int64()
            columns[col.source] = pa.array(values, type=typ)
        else:
            columns[col.source] = pa.array([None if v is None else str(v) for v in values],
                                           type=pa.string())  # fmt: skip
    return pa.table(columns)


def write_parquet(path: Path, spec: Spec, items: list[Item]) -> int:
    pq.write_table(_arrow_table(spec, items), path)
    return 1


def write_sqlite(path: Path, spec: Spec, items: list[Item]) -> int:
    """All columns TEXT, as the legacy registry keeps them; rows in extraction order."""
    con = sqlite3.connect(path)
    try:
        columns = ", ".join(f'"{s}" TEXT' for s in spec.sources)
        con.execute(f'CREATE TABLE "{spec.table}" ({columns})')
        marks = ", ".join("?" for _ in spec.sources)
        con.executemany(
            f'INSERT INTO "{spec.table}" VALUES ({marks})',
            [[None if item.cells[s] is None else str(item.cells[s]) for s in spec.sources]
             for item in items],
        )  # fmt: skip
        con.execute(
            f'CREATE INDEX "ix_{spec.table}_{spec.cursor}" ON "{spec.table}" ("{spec.cursor}")'
        )
        con.commit()
    finally:
        con.close()
    return 1


def extraction_order(spec: Spec, items: list[Item]) -> list[Item]:
    """DB / API order: by the cursor, then the record id (as delivered)."""
    key = spec.key[0]
    return sorted(items, key=lambda it: (_text(it.cells[spec.cursor]), _text(it.cells[key])))
