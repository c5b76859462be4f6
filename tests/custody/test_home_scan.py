"""After a whole run, an independent scan of every file under the home finds no valid
citizen ID, mobile or card number in the clear, and `streethub leaks scan --all` agrees.

The scanner (``pipelines.home_scan``) shares nothing with the leak scanner but the GB 11643
check character and Luhn: its own walk, readers and patterns. Its controls plant each kind
in each format it decodes (and in raw bytes) and keep digests, UUIDs and durations clean.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import sqlite3
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import xlwt
from openpyxl import Workbook
from stdnum import luhn

from catalog.loader import load_catalogue
from catalog.settings import Settings
from lakehouse.lake import open_lake
from pipelines.home_scan import scan_home
from pipelines.leaks import scan_all
from tests.streets import copy_home

ID = "11010519491231002X"
MOBILE = "13812345678"
CARD = "622202020011223344" + luhn.calc_check_digit("622202020011223344")
CLEAN = [
    hashlib.sha256(b"x").hexdigest(),
    "66bc944f-6afb-4892-aaf4-ab164c9a138f",
    "a13812345678b9c0d1e2",  # a hex word: its digits are chance
    '{"duration_ms": 2082.17951700135}',
    "1764486733123",
    "138****5678",
    "110105********002X",
    "110105194912310021",  # an ID with a wrong check character is no valid ID
]


@pytest.fixture(scope="module")
def after_a_run(mart_street, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The home of a whole run: the session's mart street (the main job on a small
    simulated street, its marts built), copied, since the leak scan's decryptions are
    audited into the home."""
    settings = copy_home(mart_street.settings.home, tmp_path_factory.mktemp("run"))
    assert (settings.home_abs / "dagster").is_dir()  # the main job ran there, through Dagster
    return settings


def test_no_personal_data_in_the_clear_anywhere_under_the_home(after_a_run: Settings) -> None:
    result = scan_home(after_a_run.home_abs)
    print(f"\nwhole-home scan: {result.files:,} files, {result.bytes:,} bytes scanned; "
          f"{result.total:,} values in the clear {dict(result.by_kind())} "
          f"in {len(result.findings)} files")  # fmt: skip
    for path, kinds in sorted(result.findings.items()):
        print(f"  {path}: {dict(kinds)}")
    assert result.files > 50 and result.bytes > 1_000_000
    assert (after_a_run.home_abs / "landing").is_dir()
    assert result.findings == {}
    assert result.unreadable == []


def test_leaks_scan_all_agrees(after_a_run: Settings) -> None:
    cat = load_catalogue()
    with open_lake(after_a_run, read_only=True) as con:
        report = scan_all(after_a_run, cat, con)
    areas = report.by_area()
    print(f"\nleaks scan --all: {areas}")
    assert {"lake", "landing", "dagster", "audit"} <= set(areas)
    assert report.leaks == 0, {f.place: dict(f.counts.by_kind) for f in report.findings if f.leaks}
    assert [f.place for f in report.problems] == []
    landing = [f for f in report.findings if f.area == "landing"]
    assert landing and all(f.protected for f in landing)  # every landed file proven ciphertext


def _plant(folder: Path) -> dict[str, Counter]:
    """Each kind once in each format; the expected findings by file."""
    folder.mkdir(parents=True)
    values = [ID, MOBILE, CARD, *CLEAN]
    pl.DataFrame({"v": values, "n": [13912345678] + [None] * (len(values) - 1)}).write_parquet(
        folder / "t.parquet"
    )
    with sqlite3.connect(folder / "events.db") as con:
        con.execute("CREATE TABLE e (body TEXT, blob BLOB)")
        con.executemany("INSERT INTO e VALUES (?, ?)", [(v, None) for v in values])
        con.execute(
            "INSERT INTO e VALUES (NULL, ?)", [zlib.compress(f'{{"m":"{MOBILE}"}}'.encode())]
        )
    con.close()
    book = Workbook()
    for v in values:
        book.active.append([v])
    book.active.append([13712345678])  # a mobile typed as a number
    book.save(folder / "list.xlsx")
    legacy = xlwt.Workbook(encoding="utf-8")  # the same list as an Excel 97-2003 .xls
    sheet = legacy.add_sheet("名单")
    for i, v in enumerate([*values, 13712345678]):
        sheet.write(i, 0, v)
    legacy.save(str(folder / "list.xls"))
    (folder / "log.txt").write_text("\n".join(values), encoding="gb18030")
    (folder / "nested").mkdir()
    (folder / "nested" / "x.json").write_text(json.dumps({"id": ID, "ok": CLEAN}))
    # a number across the edge of two 4 MiB chunks
    edge = b"." * ((4 << 20) - 6) + b" " + MOBILE.encode() + b" "
    (folder / "edge.bin").write_bytes(edge)
    # compressed (inflated), and in UTF-16 (digits with a 0 byte between): hidden from a
    # scan of raw bytes
    (folder / "z.gz").write_bytes(gzip.compress(ID.encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.csv", f"身份证号\n{ID}\n")
        z.writestr("sub/b.txt", MOBILE)
    (folder / "export.zip").write_bytes(buf.getvalue())
    (folder / "unicode.txt").write_text(f"手机\t{MOBILE}\n", encoding="utf-16")
    three = Counter({"citizen_id": 1, "mobile": 1, "bank_card": 1})
    return {
        "t.parquet": three + Counter({"mobile": 1}),
        "events.db": three + Counter({"mobile": 1}),
        "list.xlsx": three + Counter({"mobile": 1}),
        "list.xls": three + Counter({"mobile": 1}),
        "log.txt": three,
        "nested/x.json": Counter({"citizen_id": 1}),
        "edge.bin": Counter({"mobile": 1}),
        "z.gz": Counter({"citizen_id": 1}),
        "export.zip": Counter({"citizen_id": 1, "mobile": 1}),
        "unicode.txt": Counter({"mobile": 1}),
    }


def test_a_compressed_file_inflating_past_the_limit_is_unreadable(tmp_path, monkeypatch):
    from pipelines import home_scan

    monkeypatch.setattr(home_scan, "MAX_INFLATED", 10_000)
    home = tmp_path / "home"
    home.mkdir()
    (home / "bomb.gz").write_bytes(gzip.compress(b"0" * 100_000 + ID.encode()))
    (home / "small.gz").write_bytes(gzip.compress(ID.encode()))
    result = scan_home(home)
    assert result.unreadable == ["bomb.gz"]  # read as its compressed bytes, and said so
    assert result.findings == {"small.gz": Counter({"citizen_id": 1})}


def test_the_scanner_finds_each_kind_in_each_format(tmp_path: Path) -> None:
    expected = _plant(tmp_path / "home")
    result = scan_home(tmp_path / "home")
    assert result.findings == expected
    assert result.files == 10 and result.bytes > 4 << 20
    assert result.unreadable == []
    # the same files copied into a run's home would be found there too: nothing is skipped
    shutil.copytree(tmp_path / "home", tmp_path / "copy" / "lake" / "data")
    assert scan_home(tmp_path / "copy").total == result.total
