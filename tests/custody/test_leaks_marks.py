"""Each table scanned once: the scan on record (a mark) and what the next scan reads."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from catalog.authority import person_registers
from catalog.loader import load_catalogue
from catalog.model import Catalogue, PiiKind
from catalog.settings import Settings
from lakehouse.lake import open_lake
from pipelines.ingest.raw import raw_table
from pipelines.leak_marks import MARK_FILE, ScanMark, lake_mark, read_mark, write_mark
from pipelines.leaks import scan_changed, scan_lake_changes
from pipelines.protection import Protection

OLD_NAME, NEW_NAME = "欧阳娜娜", "司马小光"
MOBILE = "13812345678"


@pytest.fixture
def cat() -> Catalogue:
    return load_catalogue()


def _register(settings: Settings, cat: Catalogue, name: str, pid: str, create: bool) -> None:
    """One resident in the first person register (names encrypted, as staged)."""
    reg = person_registers(cat)[0]
    fields = [f.name for f in reg.dataset.fields if f.pii is PiiKind.person_name]
    row = pl.DataFrame({"_key_pid": [pid], **{f: [name] for f in fields}})
    row = Protection.from_settings(settings).protect(row, reg.dataset)
    table = raw_table(reg.dept, reg.dataset)
    with open_lake(settings) as con:
        con.register("reg", row.to_arrow())
        verb = "CREATE TABLE staged.{t} AS" if create else "INSERT INTO staged.{t}"
        con.execute(verb.format(t=f'"{table}"') + " FROM reg")


def _notes(settings: Settings, notes: list[str], create: bool = False) -> None:
    with open_lake(settings) as con:
        con.register("n", pl.DataFrame({"note": notes}).to_arrow())
        con.execute(
            "CREATE TABLE marts.notes AS FROM n" if create else "INSERT INTO marts.notes FROM n"
        )


def _scan(settings: Settings, cat: Catalogue) -> tuple[dict[str, dict[str, int]], int]:
    """(place → kind → count of places with leaks, cells read); a clean scan is recorded."""
    with open_lake(settings, read_only=True) as con:
        report = scan_lake_changes(settings, cat, con)
    if not report.leaks and not report.problems:
        assert report.mark is not None
        write_mark(settings, report.mark)
    leaking = {f.place: dict(f.counts.by_kind) for f in report.findings if f.leaks}
    return leaking, sum(f.cells for f in report.findings if f.area == "lake")


def test_a_clean_scan_is_recorded_and_the_next_reads_only_new_rows(
    settings: Settings, cat: Catalogue
) -> None:
    _register(settings, cat, OLD_NAME, "0f1e2d3c4b5a6978", create=True)
    _notes(settings, ["已处理", "回访完成"], create=True)
    leaking, cells = _scan(settings, cat)  # no mark: every table
    assert leaking == {} and cells == 2  # the notes (the register holds ciphertext)
    assert _scan(settings, cat) == ({}, 0)  # nothing new: nothing read
    _notes(settings, [f"电话{MOBILE}"])
    leaking, cells = _scan(settings, cat)  # the inserted row only, found
    assert leaking == {"marts.notes": {"mobile": 1}} and cells == 1
    leaking, _ = _scan(settings, cat)  # not recorded: found again until it is gone
    assert leaking == {"marts.notes": {"mobile": 1}}


def test_a_name_new_to_the_registers_is_looked_for_in_rows_scanned_before(
    settings: Settings, cat: Catalogue
) -> None:
    _register(settings, cat, OLD_NAME, "0f1e2d3c4b5a6978", create=True)
    _notes(settings, [f"联系人{NEW_NAME}已到场", "已处理"], create=True)
    assert _scan(settings, cat)[0] == {}  # the name is no resident's yet
    _register(settings, cat, NEW_NAME, "1a2b3c4d5e6f7081", create=False)
    leaking, _ = _scan(settings, cat)
    assert leaking == {"marts.notes (names new to the registers)": {"person_name": 1}}


def test_a_mark_the_lake_does_not_know_means_a_whole_scan(
    settings: Settings, cat: Catalogue
) -> None:
    _register(settings, cat, OLD_NAME, "0f1e2d3c4b5a6978", create=True)
    _notes(settings, [f"电话{MOBILE}"], create=True)
    with open_lake(settings, read_only=True) as con:
        assert read_mark(settings, con) is None  # none on record
        write_mark(settings, ScanMark(10_000, "2026-01-01T00:00:00+00:00"))
        assert read_mark(settings, con) is None  # not a snapshot of this lake
    assert (settings.state_dir / MARK_FILE).exists()
    leaking, _ = _scan(settings, cat)
    assert leaking == {"marts.notes": {"mobile": 1}}


def test_the_closing_scan_reads_what_the_check_did_not(settings: Settings, cat: Catalogue) -> None:
    started = dt.datetime.now(dt.UTC)
    _register(settings, cat, OLD_NAME, "0f1e2d3c4b5a6978", create=True)
    _notes(settings, ["已处理"], create=True)
    assert _scan(settings, cat) == ({}, 1)  # the run's check: every table, recorded
    _notes(settings, [f"电话{MOBILE}"])  # written after the check (say, by the summary)
    with open_lake(settings, read_only=True) as con:
        report = scan_changed(settings, cat, con, since=started, from_mark=True)
        current = lake_mark(con)
    lake = {f.place: (f.cells, dict(f.counts.by_kind)) for f in report.findings if f.area == "lake"}
    assert lake == {"marts.notes": (1, {"mobile": 1})}
    assert report.mark == current
