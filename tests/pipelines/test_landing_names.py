"""Names are stored as given and shown escaped: a file name cannot forge a log line.

Also the inbox sensor: it asks for a run only once a new file has settled.
"""

from __future__ import annotations

import json
import logging
import os
import time
import unicodedata
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog.errors import DeliveryError, shown
from catalog.loader import load_catalogue
from catalog.settings import Settings

EVIL = "violation_cases_\n\x1b[2J\u202e2026.csv"  # newline, clear-screen, bidi override
EVIL_SHOWN = "violation_cases_\\n\\x1b[2J\\u202e2026.csv"
OLD = time.time() - 3600


def test_shown_escapes_what_a_terminal_or_log_reader_would_act_on() -> None:
    assert shown(EVIL) == EVIL_SHOWN
    assert shown("a\rb\tc\u2028d\u2029e\u200bf\x00") == "a\\rb\\tc\\u2028d\\u2029e\\u200bf\\x00"
    assert shown("城管_违建 案件 2026.CSV") == "城管_违建 案件 2026.CSV"  # printable stays
    assert shown(os.fsdecode(b"bad\xff.csv")) == "bad\\udcff.csv"  # bytes that were not UTF-8


@given(st.text())
def test_shown_leaves_nothing_unsafe_and_is_idempotent(name: str) -> None:
    out = shown(name)
    assert "\n" not in out and "\r" not in out and "\x1b" not in out
    assert all(unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Zl", "Zp"} for c in out)
    assert shown(out) == out
    if name.isprintable():
        assert out == name


def test_errors_show_the_file_escaped() -> None:
    err = DeliveryError("empty: the file has no bytes", file=EVIL, dataset="violation_cases")
    assert str(err) == f"file {EVIL_SHOWN}, dataset violation_cases: empty: the file has no bytes"
    assert err.file == EVIL  # kept as given


def test_odd_names_reach_reasons_and_logs_escaped_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from lakehouse.lake import open_lake
    from pipelines.defs.sources.assets import build_dataset_assets
    from pipelines.resources import LakeResource

    home = tmp_path / "home"
    monkeypatch.setenv("STREETHUB_HOME", str(home))
    settings = Settings(home=home).ensure_dirs()
    inbox = settings.inbox_dir / "cgj"
    inbox.mkdir(parents=True)
    (inbox / EVIL).write_bytes(b"")  # lands, then fails reading: empty
    (inbox / EVIL.replace("2026", "link")).symlink_to(inbox / EVIL)  # refused
    (inbox / "notes\n\x1b[2J.txt").write_bytes(b"x")  # unmatched
    for name in os.listdir(inbox):
        os.utime(inbox / name, (OLD, OLD), follow_symlinks=False)
    dept = load_catalogue().departments["cgj"]
    ds = next(d for d in dept.datasets if d.code == "violation_cases")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        build_dataset_assets(dept, ds), resources={"lake": LakeResource()}, instance=instance
    )
    assert result.success
    with open_lake(settings, read_only=True) as con:
        stored = con.execute("SELECT file_name FROM landing.deliveries").fetchall()
        reasons = [
            r for (r,) in con.execute("SELECT reason FROM landing.delivery_accounts").fetchall()
        ]
    assert stored == [(EVIL,)]  # stored as given
    assert len(reasons) == 2 and all(EVIL_SHOWN[:-8] in r for r in reasons)
    assert any(r.startswith("refused: symbolic link") for r in reasons)
    # what the UI shows (the run's event log) and what the console printed
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    console = capfd.readouterr().err
    assert any(EVIL_SHOWN in m for m in logged), "the failure was not logged"
    assert any("notes\\n\\x1b[2J.txt" in m for m in logged), "the unmatched name was not logged"
    assert EVIL_SHOWN in console and "\x1b[2J" not in console and EVIL not in console
    for text in [*logged, *reasons]:
        assert "\x1b" not in text and "\u202e" not in text and EVIL not in text
    mats = {
        e.asset_key.path[0]: e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert mats["landing"]["new_files"].value == [EVIL_SHOWN]
    assert mats["landing"]["unmatched_names"].value == ["notes\\n\\x1b[2J.txt"]
    assert mats["landing"]["refused_files"].value == 1


def test_inbox_sensor_waits_for_a_file_to_settle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.defs.sources.sensors import evaluate_inbox

    home = tmp_path / "home"
    monkeypatch.setenv("STREETHUB_HOME", str(home))
    # long enough that the two evaluations below fall inside it on a loaded machine (each
    # reads the lake's ledger): with 0.3 s, a stall between them settled the file early
    settings = Settings(home=home, settle_seconds=2.0).ensure_dirs()
    dept = load_catalogue().departments["cgj"]
    inbox = settings.inbox_dir / "cgj"
    inbox.mkdir(parents=True)
    fresh = inbox / "VIOLATION_CASES_7.CSV"
    fresh.write_bytes(b"case_id\r\n")
    future = time.time() + 3600  # a clock ahead of ours: settles by being watched
    os.utime(fresh, (future, future))
    new, settling, cursor = evaluate_inbox(settings, dept, None)
    assert new == [] and settling == ["VIOLATION_CASES_7.CSV"]
    new, settling, cursor = evaluate_inbox(settings, dept, cursor)
    assert new == []  # not watched long enough yet
    time.sleep(2.05)
    new, settling, cursor = evaluate_inbox(settings, dept, cursor)
    assert new == ["VIOLATION_CASES_7.CSV"] and settling == []
    assert evaluate_inbox(settings, dept, cursor)[0] == []  # asked once
    with open(fresh, "ab") as fh:  # changed: settles again before a new run
        fh.write(b"A-1\r\n")
    new, settling, cursor = evaluate_inbox(settings, dept, cursor)
    assert new == [] and settling == ["VIOLATION_CASES_7.CSV"]
    assert json.loads(cursor)["requested"] == {}


def test_inbox_sensor_logs_settling_names_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pipelines.defs.sources.sensors import build_inbox_sensor

    home = tmp_path / "home"
    monkeypatch.setenv("STREETHUB_HOME", str(home))
    inbox = home / "inbox" / "cgj"
    inbox.mkdir(parents=True)
    (inbox / EVIL).write_bytes(b"x")  # young
    caplog.set_level(logging.DEBUG)
    sensor = build_inbox_sensor(load_catalogue().departments["cgj"])
    with dg.build_sensor_context() as context:
        context._logger = logging.getLogger("test.inbox_sensor")  # the instigation log, captured
        out = sensor(context)
    assert isinstance(out, dg.SensorResult) and not out.run_requests
    logged = [r.getMessage() for r in caplog.records]
    assert any(EVIL_SHOWN in m for m in logged)
    assert not any("\x1b" in m or EVIL in m for m in logged)


def test_what_a_file_said_against_the_catalogue_is_on_the_raw_asset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a UTF-8 export sent gzip-compressed and separated by tabs: the officer sees it in the
    # UI (the raw asset's metadata and the run's log), not only in the ledger
    import gzip

    from pipelines.defs.sources.assets import build_dataset_assets
    from pipelines.resources import LakeResource

    home = tmp_path / "home"
    monkeypatch.setenv("STREETHUB_HOME", str(home))
    settings = Settings(home=home).ensure_dirs()
    dept = load_catalogue().departments["cgj"]
    ds = next(d for d in dept.datasets if d.code == "violation_cases")
    header = "\t".join(f.source_name for f in ds.fields)
    row = "\t".join("CG-0001" if f.name in ds.key else "" for f in ds.fields)
    inbox = settings.inbox_dir / "cgj"
    inbox.mkdir(parents=True)
    sent = inbox / "violation_cases_2026.csv.gz"
    sent.write_bytes(gzip.compress(f"{header}\r\n{row}\r\n".encode(), mtime=0))
    os.utime(sent, (OLD, OLD))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(  # the row gate holds the one row back (blank required fields)
        build_dataset_assets(dept, ds),
        resources={"lake": LakeResource()},
        instance=instance,
        raise_on_error=False,
    )
    mats = {
        e.asset_key.path[0]: e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    said = (
        "violation_cases_2026.csv.gz: the file is gzip-compressed; the cells are separated "
        "by tabs (the header reads so), the catalogue says ','"
    )
    assert mats["raw"]["read_as_the_file_says"].value == [said]
    assert mats["raw"]["rows_read"].value == 1
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(said in m for m in logged)
