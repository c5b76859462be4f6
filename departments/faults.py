"""Broken deliveries on demand, for tests of the hub's connectors and quarantine.

Default deliveries are always readable as a whole; these helpers break a copy
(or the file in place when ``dest`` is omitted) the way real deliveries break.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from openpyxl import load_workbook


def _target(src: Path, dest: Path | None) -> Path:
    if dest is None:
        return src
    shutil.copyfile(src, dest)
    return dest


def truncate_csv(src: Path, dest: Path | None = None, fraction: float = 0.5) -> Path:
    """Cut a CSV in the middle of a data row (no final newline), like an aborted upload."""
    path = _target(src, dest)
    data = path.read_bytes()
    cut = int(len(data) * fraction)
    nl = data.find(b"\n", cut)
    if nl == -1:
        nl = data.rfind(b"\n", 0, cut)
    # stop a few bytes into the next row, mid-field, on a byte that starts no multibyte char
    end = min(len(data) - 1, nl + 4)
    path.write_bytes(data[:end])
    return path


def wrong_encoding(src: Path, dest: Path | None = None, declared: str = "gbk") -> Path:
    """Re-encode a CSV delivered in ``declared`` as UTF-16 without a byte-order mark (a
    database's ``bcp -w`` export), so it decodes neither as declared nor as the other
    Chinese encoding and says nothing of itself (a UTF-8 file declared GBK is read: its
    header tells; Excel's "Unicode text" is read: its UTF-16 mark tells)."""
    path = _target(src, dest)
    text = path.read_bytes().decode(declared)
    path.write_bytes(text.encode("utf-16-le"))
    return path


def drop_sheet(src: Path, sheet: str, dest: Path | None = None) -> Path:
    """An Excel workbook without the expected sheet: it was deleted, an empty 'Sheet1' (or
    '工作表1') left (a sheet merely renamed, its header intact, would be read)."""
    path = _target(src, dest)
    wb = load_workbook(path)
    wb.create_sheet("Sheet1" if sheet != "Sheet1" else "工作表1")
    wb.remove(wb[sheet])
    wb.save(path)
    return path


def break_jsonl_line(src: Path, line_no: int = 2, dest: Path | None = None) -> Path:
    """Cut JSON Lines line ``line_no`` (1-based) in half, so it no longer parses."""
    path = _target(src, dest)
    lines = path.read_text(encoding="utf-8").split("\n")
    line = lines[line_no - 1]
    lines[line_no - 1] = line[: max(1, len(line) // 2)]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def truncate_file(src: Path, dest: Path | None = None, fraction: float = 0.5) -> Path:
    """Any file cut at ``fraction`` of its bytes (a broken Parquet / xlsx / JSON)."""
    path = _target(src, dest)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path
