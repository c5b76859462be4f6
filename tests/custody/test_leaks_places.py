"""The leak scanner covers every place: one value of each kind planted in each place is
found there (and nothing in hashes, pseudonyms, ciphertexts, timestamps beside them);
encrypted landed files are proven ciphertext; `streethub leaks scan --all` fails on them."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import zlib
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import xlwt
from openpyxl import Workbook
from stdnum import luhn
from typer.testing import CliRunner

from catalog.authority import person_registers
from catalog.loader import load_catalogue
from catalog.model import Catalogue, PiiKind
from catalog.settings import Settings
from lakehouse.lake import ZONES, open_lake
from masking.keys import KeyRing
from masking.stream import encrypt_chunks
from pipelines.cli import app
from pipelines.ingest.raw import raw_table
from pipelines.leaks import ScanReport, scan_all, scan_changed, scan_lake
from pipelines.protection import Protection

NAME = "欧阳娜娜"
CARD = "622202020011223344" + luhn.calc_check_digit("622202020011223344")


def _permit() -> str:
    """A 16-digit residence-permit number that is no card (fails Luhn)."""
    return next(
        p for i in range(100) if not luhn.is_valid(p := f"1101052024{i:06d}")
    )  # fmt: skip


PLANTED = [
    ("citizen_id", "身份证号11010519491231002X"),
    ("citizen_id", "110105 19491231 002X"),  # spaced 6-8-4
    ("citizen_id", "110105-19491231-002X"),  # dashed 6-8-4
    ("citizen_id", "1.10105194912310E+17"),  # a number stored as a float
    ("citizen_id_embedded", "残疾人证号11010519491231002X11"),
    ("residence_permit", f"居住证{_permit()}"),
    ("mobile", "13812345678"),
    ("mobile", "8613912345678"),
    ("mobile", "电话139.1234.5678"),
    ("mobile", "+86 137 1234 5678"),
    ("bank_card", f"卡号{CARD}"),
    ("landline", "座机010-65123456"),
    ("email", "zhang.san@example.com"),
    ("plate", "车牌京A12345"),
    ("person_name", f"联系人{NAME}已到场"),
]
EXPECTED = Counter(kind for kind, _ in PLANTED)
CLEAN = [
    hashlib.sha256(b"a delivery").hexdigest(),  # a landed file's SHA-256
    "landing/gaj/x/" + hashlib.sha256(b"x").hexdigest() + ".csv",
    "66bc944f-6afb-4892-aaf4-ab164c9a138f",  # a run's UUID
    "2026-11-30T07:12:13.123456+08:00",
    "1764486733123",  # epoch milliseconds
    "1764486733.123456",
    "20261130071213",
    '{"duration_ms": 2082.17951700135}',
    "138****5678",
    "110105********002X",
    "张*",
]


def _values() -> list[str]:
    return [v for _, v in PLANTED]


@pytest.fixture
def cat() -> Catalogue:
    return load_catalogue()


@pytest.fixture
def hub(settings: Settings, cat: Catalogue, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A home with the register staged (its names encrypted) and clean values everywhere;
    ``_plant`` adds the planted values."""
    monkeypatch.delenv("STREETHUB_MASTER_KEY", raising=False)
    protection = Protection.from_settings(settings)
    reg = person_registers(cat)[0]
    name_fields = [f.name for f in reg.dataset.fields if f.pii is PiiKind.person_name]
    register = pl.DataFrame({"_key_pid": ["0f1e2d3c4b5a6978"], **{f: [NAME] for f in name_fields}})
    register = protection.protect(register, reg.dataset)
    assert register[name_fields[0]][0] != NAME
    pseudonym = protection.key_pid(pl.DataFrame({k: ["11010519491231002X"] for k in reg.dataset.key}),
                                   reg.dataset)[0]  # fmt: skip
    clean = pl.DataFrame({"clean": [*CLEAN, pseudonym, register[name_fields[0]][0]]})
    with open_lake(settings) as con:
        con.register("reg", register.to_arrow())
        con.execute(f'CREATE TABLE staged."{raw_table(reg.dept, reg.dataset)}" AS FROM reg')
        con.register("clean", clean.to_arrow())
        for zone in ZONES:
            con.execute(f"CREATE TABLE {zone}.clean_values AS FROM clean")
    for folder in ("reports", "audit", "state", "dagster/storage/r/compute_logs"):
        (settings.home_abs / folder).mkdir(parents=True, exist_ok=True)
        (settings.home_abs / folder / "clean.txt").write_text("\n".join(CLEAN), encoding="utf-8")
    return settings


def _ring_landing_file(settings: Settings, folder: Path, plain: bytes) -> Path:
    ring = KeyRing.from_settings(settings)
    key = ring.current("landing")
    path = folder / f"{hashlib.sha256(plain).hexdigest()}.csv"
    path.write_bytes(b"".join(encrypt_chunks([plain], ring.suite.name, key.version, key.material)))
    return path


def _plant(settings: Settings) -> dict[str, Path]:
    """One value of each kind in every area; returns the files, by area."""
    home = settings.home_abs
    lines = "\n".join(_values())
    with open_lake(settings) as con:
        con.register("p", pl.DataFrame({"note": _values()}).to_arrow())
        for zone in ZONES:
            con.execute(f"CREATE TABLE {zone}.planted AS FROM p")
    files: dict[str, Path] = {}

    def write(area: str, rel: str, data: bytes) -> None:
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[area] = path

    plain = ("姓名,备注\n" + "\n".join(f"x,{v}" for v in _values()) + "\n").encode("utf-8")
    write("landing", f"landing/wjw/x/{hashlib.sha256(plain).hexdigest()}.csv", plain)
    write("inbox", "inbox/wjw/x_20261130.csv", plain.decode().encode("gb18030"))  # GBK export
    write("reports", "reports/scorecard.html", f"<html><body><pre>{lines}</pre>".encode())
    audit = Protection.from_settings(settings).audit
    for v in _values():  # a caller that put a value into an audit record's details
        audit.append("note", "tests", note=v)
    files["audit"] = settings.audit_dir / "audit.jsonl"
    write("state", "state/cursors.json", json.dumps({"cursor": _values()}, indent=1).encode())
    write("dagster", "dagster/storage/r/compute_logs/step.err", lines.encode())
    book = Workbook()
    sheet = book.active
    sheet.title = "名单"
    sheet.append(["备注"])
    for v in _values():
        sheet.append([v])
    sheet.append([110105194912310032.0])  # an ID typed into Excel as a number: a float
    book.save(home / "inbox/wjw/x_20261130.xlsx")
    files["inbox.xlsx"] = home / "inbox/wjw/x_20261130.xlsx"
    db = home / "dagster/history/runs/66bc944f-6afb-4892-aaf4-ab164c9a138f.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db) as con:  # as Dagster writes events: JSON, ASCII-only
        con.execute("CREATE TABLE event_logs (id INTEGER, event TEXT, snapshot BLOB)")
        con.executemany(
            "INSERT INTO event_logs VALUES (?, ?, ?)",
            [(i, json.dumps({"message": v}), zlib.compress(b"{}")) for i, v in enumerate(_values())],
        )  # fmt: skip
    con.close()
    files["dagster.db"] = db
    return files


def _by_place(report: ScanReport) -> dict[str, Counter]:
    return {f.place: Counter(f.counts.by_kind) for f in report.findings}


def test_one_of_each_kind_in_each_place_is_found(hub: Settings, cat: Catalogue) -> None:
    with open_lake(hub, read_only=True) as con:
        clean = scan_all(hub, cat, con)
    assert clean.leaks == 0 and not clean.problems, clean.by_kind()
    assert {f.area for f in clean.findings} >= {"lake", "reports", "audit", "state", "dagster"}

    files = _plant(hub)
    with open_lake(hub, read_only=True) as con:
        report = scan_all(hub, cat, con)
    found = _by_place(report)
    for zone in ZONES:
        assert found[f"{zone}.planted"] == EXPECTED, zone
        assert found[f"{zone}.clean_values"] == Counter(), zone
    for area, path in files.items():
        place = str(path.relative_to(hub.home_abs))
        extra = Counter({"citizen_id": 1}) if area == "inbox.xlsx" else Counter()
        assert found[place] == EXPECTED + extra, area
    # the lake's metadata keeps each column's smallest and largest value: planted there too
    other = {f.place: f.leaks for f in report.findings if f.area == "other" and f.leaks}
    assert list(other) == ["lake/metadata.sqlite"] and other["lake/metadata.sqlite"] > 0
    total = EXPECTED.total() * (len(ZONES) + len(files)) + 1
    assert report.leaks == total + other["lake/metadata.sqlite"]
    assert not report.problems
    assert NAME not in repr(report) and "11010519491231002X" not in repr(report)


def test_encrypted_landed_files_are_proven_ciphertext(hub: Settings, cat: Catalogue) -> None:
    plain = ("\n".join(_values()) + "\n").encode()
    folder = hub.landing_dir / "wjw" / "x"
    folder.mkdir(parents=True)
    path = _ring_landing_file(hub, folder, plain)
    assert not any(v.encode() in path.read_bytes() for v in _values())
    with open_lake(hub, read_only=True) as con:
        report = scan_all(hub, cat, con)
        content = scan_all(hub, cat, con, landing_content=True)
    place = str(path.relative_to(hub.home_abs))
    (f,) = [f for f in report.findings if f.place == place]
    assert f.protected and f.leaks == 0 and f.held is None and report.leaks == 0
    (g,) = [f for f in content.findings if f.place == place]
    assert g.protected and g.leaks == 0 and Counter(g.held.by_kind) == EXPECTED
    audit = (hub.audit_dir / "audit.jsonl").read_text(encoding="utf-8")
    assert '"purpose":"leak_scan"' in audit.replace(" ", "")
    # a changed byte: not proven (and said), never read as if it were clear
    data = bytearray(path.read_bytes())
    data[-20] ^= 1
    path.write_bytes(bytes(data))
    with open_lake(hub, read_only=True) as con:
        broken = scan_all(hub, cat, con)
    (h,) = [f for f in broken.findings if f.place == place]
    assert not h.protected and h.problem and h.problem.startswith("encrypted, not proven")
    assert broken.leaks == 0


def test_scan_changed_reads_only_what_changed_since(hub: Settings, cat: Catalogue) -> None:
    import os

    files = _plant(hub)
    index = hub.dagster_home / "history" / "runs" / "index.db"  # Dagster's UTC text stamps
    hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with sqlite3.connect(index) as db:
        db.execute("CREATE TABLE event_logs (event TEXT, timestamp DATETIME)")
        db.executemany("INSERT INTO event_logs VALUES (?, ?)",
                       [(v, f"{hour_ago:%Y-%m-%d %H:%M:%S.%f}") for v in _values()])  # fmt: skip
    db.close()
    for path in [*files.values(), index]:  # written before the run
        os.utime(path, (hour_ago.timestamp(), hour_ago.timestamp()))
    since = dt.datetime.now(dt.UTC)
    with sqlite3.connect(index) as db:  # one event of this run: the older rows are not read
        db.execute("INSERT INTO event_logs VALUES (?, ?)",
                   [_values()[7], f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S.%f}"])  # fmt: skip
    db.close()
    with open_lake(hub) as con:
        con.register("p", pl.DataFrame({"note": _values()[:2]}).to_arrow())
        con.execute("INSERT INTO marts.planted FROM p")
    (hub.home_abs / "reports" / "new.html").write_text(_values()[6], encoding="utf-8")
    with open_lake(hub, read_only=True) as con:
        report = scan_changed(hub, cat, con, since=since)
    found = {p: c for p, c in _by_place(report).items() if c}
    assert found.pop("lake/metadata.sqlite")  # written since: its column statistics read
    assert found == {
        "marts.planted": Counter({"citizen_id": 2}),  # the rows inserted since, not the table
        "reports/new.html": Counter({"mobile": 1}),
        "dagster/history/runs/index.db": Counter({"mobile": 1}),
        # the scan's own decryption of the register was audited since: the log is read whole
        "audit/audit.jsonl": EXPECTED,
    }


def test_the_check_scans_every_zone_and_the_cli_exits_1(hub: Settings, cat: Catalogue) -> None:
    runner = CliRunner()
    clean = runner.invoke(app, ["leaks", "scan", "--all"])
    assert clean.exit_code == 0, clean.output
    _plant(hub)
    with open_lake(hub, read_only=True) as con:
        lake = _by_place(ScanReport(scan_lake(hub, cat, con)))
    assert all(lake[f"{zone}.planted"] == EXPECTED for zone in ZONES)
    result = runner.invoke(app, ["leaks", "scan", "--all"])
    assert result.exit_code == 1
    assert "inbox" in result.output and "11010519491231002X" not in result.output
    assert NAME not in result.output


def test_encrypted_parquet_xlsx_and_xls_are_read_by_their_format(settings: Settings) -> None:
    import io

    from openpyxl import Workbook

    from pipelines.ingest.landing import open_landed
    from pipelines.leak_files import scan_stream

    parquet = io.BytesIO()
    pl.DataFrame({"v": _values()}).write_parquet(parquet)
    book = Workbook()
    for v in _values():
        book.active.append([v])
    xlsx = io.BytesIO()
    book.save(xlsx)
    legacy = xlwt.Workbook(encoding="utf-8")  # Excel 97-2003 (.xls): an OLE2 document
    sheet = legacy.add_sheet("名单")
    for i, v in enumerate(_values()):
        sheet.write(i, 0, v)
    xls = io.BytesIO()
    legacy.save(xls)
    folder = settings.landing_dir / "zjj" / "x"
    folder.mkdir(parents=True)
    formats = (
        (parquet.getvalue(), ".parquet"), (xlsx.getvalue(), ".xlsx"), (xls.getvalue(), ".xls")
    )  # fmt: skip
    for plain, suffix in formats:
        path = _ring_landing_file(settings, folder, plain).rename(
            folder / (hashlib.sha256(plain).hexdigest() + suffix)
        )
        with open_landed(settings, path, seekable=True) as fh:
            counts, how = scan_stream(fh, {NAME}, seekable=True)
        assert how == suffix[1:] and Counter(counts.by_kind) == EXPECTED, suffix


def test_an_xls_cell_typed_as_a_number_is_read_as_a_float_wrote_it() -> None:
    # every number in an xls is a float: an ID typed as a number keeps 15-16 digits
    # (its check character lost), a mobile all of its 11
    import io

    from pipelines.leak_files import scan_stream

    legacy = xlwt.Workbook(encoding="utf-8")
    sheet = legacy.add_sheet("名单")
    sheet.write(0, 0, 110105194912310021)
    sheet.write(1, 0, 13812345678)
    sheet.write(2, 0, 2024)  # a year: no kind
    data = io.BytesIO()
    legacy.save(data)
    data.seek(0)
    counts, how = scan_stream(data, {NAME}, seekable=True)
    assert how == "xls" and Counter(counts.by_kind) == {"citizen_id": 1, "mobile": 1}


def test_a_gzip_file_is_read_decompressed(settings: Settings) -> None:
    # compression hides nothing from the scan: a gzip-compressed text is read as its text
    # (its compressed bytes, read as text, once read as an e-mail address), in the clear or
    # landed encrypted (read as a stream)
    import gzip
    import io

    from pipelines.ingest.landing import open_landed
    from pipelines.leak_files import scan_plain_file, scan_stream

    plain = gzip.compress("\n".join(_values()).encode("utf-8"), mtime=0)
    path = settings.home_abs / "export.csv.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(plain)
    counts, how = scan_plain_file(path, {NAME})
    assert how == "gzip" and Counter(counts.by_kind) == EXPECTED
    counts, how = scan_stream(io.BytesIO(plain), {NAME}, seekable=False)
    assert how == "gzip" and Counter(counts.by_kind) == EXPECTED
    folder = settings.landing_dir / "zjj" / "x"
    folder.mkdir(parents=True)
    landed = _ring_landing_file(settings, folder, plain).rename(
        folder / (hashlib.sha256(plain).hexdigest() + ".gz")
    )
    with open_landed(settings, landed) as fh:
        counts, how = scan_stream(fh, {NAME}, seekable=False)
    assert how == "gzip" and Counter(counts.by_kind) == EXPECTED
    clean = gzip.compress(b"nothing personal here\n" * 1000, mtime=0)
    assert scan_stream(io.BytesIO(clean), {NAME}, seekable=False)[0].by_kind == Counter()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_text_is_read_as_its_text(encoding: str) -> None:
    # a UTF-16 delivery is read (Excel's "Unicode text"): read as bytes, its digits stood
    # between 0 bytes and nothing planted in it was found; with its mark or without one
    import io

    from pipelines.leak_files import scan_stream

    text = "\r\n".join(f"{i}\t{v}" for i, v in enumerate(_values()))
    counts, how = scan_stream(io.BytesIO(text.encode(encoding)), {NAME}, seekable=False)
    assert how == "text" and Counter(counts.by_kind) == EXPECTED
    clean = "\r\n".join(CLEAN).encode(encoding)
    assert scan_stream(io.BytesIO(clean), {NAME}, seekable=False)[0].by_kind == Counter()


def test_a_zip_archive_is_read_file_by_file() -> None:
    # a delivery sent as a zip (pipelines.connectors.compressed): read as an xlsx it failed;
    # each of its files is read by what it holds (a text, a gzip inside it)
    import gzip
    import io
    import zipfile

    from pipelines.leak_files import scan_stream

    values = _values()
    half = len(values) // 2
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.csv", "\n".join(values[:half]).encode("gbk"))
        zf.writestr("b.jsonl.gz", gzip.compress("\n".join(values[half:]).encode(), mtime=0))
        zf.writestr("clean/", b"")
    buf.seek(0)
    counts, how = scan_stream(buf, {NAME}, seekable=True)
    assert how == "zip" and Counter(counts.by_kind) == EXPECTED
