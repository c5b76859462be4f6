"""The IoT readings' truth: a reading delivered twice whose first line was cut is no
duplicate (the second line is the only whole one, and the gate stages it); a reading
delivered twice intact is."""

from __future__ import annotations

import json

import numpy as np
import pytest

from departments import iot


def _rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        reading = {"device_id": f"SN{i:05d}", "ts": "2026-12-01T08:00:00+08:00", "value": i}
        rows.append({"_defects": [], "_delivered": dict(reading), "_truth": dict(reading)})
    return rows


@pytest.mark.parametrize("broken", [0.0, 1.0])
def test_a_copy_of_a_cut_line_is_no_duplicate(monkeypatch, broken: float) -> None:
    rates = {**iot.RATES, "duplicate_row": 1.0, "epoch_millis": 0.0, "broken_line": broken}
    monkeypatch.setattr(iot, "RATES", rates)
    lines, clean, defects = iot._serialise(_rows(5), "ts", np.random.default_rng(1), "f.jsonl")
    assert len(lines) == len(clean) == 10
    kinds = {(d["_source_row"], d["kind"]) for d in defects}
    whole = [i + 1 for i, line in enumerate(lines) if _parses(line)]
    if broken:
        assert kinds == {(r, "broken_line") for r in range(1, 11, 2)}
        assert whole == list(range(2, 11, 2))  # each reading's second line, once
    else:
        assert kinds == {(r, "duplicate_row") for r in range(2, 11, 2)}
        assert lines[0::2] == lines[1::2]


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def test_times_are_written_as_datetime_writes_them_in_the_streets_offset() -> None:
    import datetime as dt

    # the epoch, a day's first second in Beijing (16:00 UTC the day before), a leap day, 2038+
    epoch = np.array([0, 1_764_518_400, 1_709_164_799, 1_709_164_800, 2_200_000_000, 59])
    want = [dt.datetime.fromtimestamp(int(e), iot.TZ).isoformat() for e in epoch]
    assert iot._isos(epoch) == want
    assert iot._isos(epoch[1:2]) == ["2025-12-01T00:00:00+08:00"]
