"""The IoT platform (物联网): sensor readings and door-access events, one JSON Lines file a day.

The largest source, so values are drawn with numpy in one go; only the final
serialisation walks the rows.
"""

from __future__ import annotations

import datetime as dt
import json
import random

import numpy as np

from departments.dirt import RATES, Dirtier
from departments.spec import cols
from departments.world import SENSOR_METRICS, World

TZ = dt.timezone(dt.timedelta(hours=8))
READING_INTERVAL_S = 300
# the keys of each JSON line, with the roles the dirt is drawn for (see dirt.py)
IOT_COLS = {
    "sensor_readings": cols("device_id:fixed!", "ts:fixed!", "metric:fixed!", "value:num!",
                            "unit:fixed", "battery:num"),
    "door_access_events": cols("event_id:fixed!", "device_id:fixed!", "event_time:fixed!",
                               "citizen_id:cid", "method:fixed!", "direction:fixed!",
                               "result:fixed!"),
}  # fmt: skip


OFFSET_S = int(TZ.utcoffset(None).total_seconds())
OFFSET_TEXT = dt.datetime(2000, 1, 1, tzinfo=TZ).isoformat()[-6:]  # "+08:00"


def _isos(epoch: np.ndarray) -> list[str]:
    """Whole epoch seconds as ``datetime.fromtimestamp(e, TZ).isoformat()`` writes them,
    all at once (one call a reading was ~5 % of a simulation with history)."""
    local = (np.asarray(epoch, dtype=np.int64) + OFFSET_S).astype("datetime64[s]")
    return [t + OFFSET_TEXT for t in np.datetime_as_string(local, unit="s").tolist()]


def _serialise(
    rows: list[dict], time_key: str, g: np.random.Generator, file: str
) -> tuple[list[str], list[dict], list[dict]]:
    """Lines as delivered (with duplicates, epoch-millis times, broken lines), truth, defects."""
    n = len(rows)
    dup = g.random(n) < RATES["duplicate_row"]
    millis = g.random(n) < RATES["epoch_millis"]
    broken = g.random(n) < RATES["broken_line"]
    lines: list[str] = []
    clean: list[dict] = []
    defects: list[dict] = []
    for i, row in enumerate(rows):
        cell_defects = row.pop("_defects")
        delivered = dict(row["_delivered"])
        truth = row["_truth"]
        if millis[i]:
            epoch_ms = int(dt.datetime.fromisoformat(truth[time_key]).timestamp() * 1000)
            delivered[time_key] = epoch_ms
            cell_defects = [*cell_defects, (time_key, "epoch_millis", str(epoch_ms),
                                            truth[time_key])]  # fmt: skip
        line = json.dumps(delivered, ensure_ascii=False)
        for copy in range(2 if dup[i] else 1):
            src = len(lines) + 1
            clean.append({**truth, "_source_row": src})
            if broken[i] and copy == 0:
                cut = line[: len(line) // 2]
                lines.append(cut)
                defects.append({"_source_row": src, "field": "*", "kind": "broken_line",
                                "delivered": cut, "truth": line})  # fmt: skip
                continue
            lines.append(line)
            for field, kind, d, t in cell_defects:
                defects.append({"_source_row": src, "field": field, "kind": kind,
                                "delivered": d, "truth": t})  # fmt: skip
            if copy and not broken[i]:  # a copy of a cut line is the only whole one
                defects.append({"_source_row": src, "field": "*", "kind": "duplicate_row",
                                "delivered": "", "truth": ""})  # fmt: skip
    for d in defects:
        d["_file"] = file
    for c in clean:
        c["_file"] = file
    return lines, clean, defects


def sensor_readings(w: World, day: dt.date, seed: int) -> tuple[list[str], list[dict], list[dict]]:
    g = np.random.default_rng([seed, day.toordinal(), 1])
    sensors = [d for d in w.devices if d.metric]
    ticks = 86400 // READING_INTERVAL_S
    start = int(dt.datetime.combine(day, dt.time(), TZ).timestamp())
    s_idx = np.repeat(np.arange(len(sensors)), ticks)
    t_idx = np.tile(np.arange(ticks), len(sensors))
    epoch = start + t_idx * READING_INTERVAL_S + g.integers(0, 30, len(s_idx))
    lo = np.array([SENSOR_METRICS[s.metric][1] for s in sensors], dtype=float)[s_idx]
    hi = np.array([SENSOR_METRICS[s.metric][2] for s in sensors], dtype=float)[s_idx]
    phase = np.sin(t_idx / ticks * 2 * np.pi)
    value = np.round(lo + (hi - lo) * np.clip(0.45 + 0.25 * phase + g.normal(0, 0.12, len(s_idx)),
                                              0, 1), 1)  # fmt: skip
    battery = np.clip(100 - (t_idx // 40) - g.integers(0, 30, len(s_idx)), 5, 100)
    null = g.random(len(s_idx)) < RATES["null_value"]
    sentinel = g.random(len(s_idx)) < RATES["sentinel_value"]
    order = np.argsort(epoch, kind="stable")
    rows = []
    times = _isos(epoch)
    for i in order.tolist():
        s = sensors[s_idx[i]]
        truth = {"device_id": s.id, "ts": times[i], "metric": s.metric,
                 "value": float(value[i]), "unit": SENSOR_METRICS[s.metric][0],
                 "battery": int(battery[i])}  # fmt: skip
        delivered, defects = dict(truth), []
        if null[i]:
            delivered["value"] = None
            defects.append(("value", "null_value", "", str(truth["value"])))
        elif sentinel[i]:
            delivered["value"] = -999.0
            defects.append(("value", "sentinel_value", "-999.0", str(truth["value"])))
        rows.append({"_truth": truth, "_delivered": delivered, "_defects": defects})
    return _serialise(rows, "ts", g, f"sensor_readings_{day:%Y%m%d}.jsonl")


METHODS = ("card", "face", "qr", "password")


def door_access_events(
    w: World, day: dt.date, seed: int
) -> tuple[list[str], list[dict], list[dict]]:
    g = np.random.default_rng([seed, day.toordinal(), 2])
    people = [p for p in w.people if p.age(day) >= 8]
    n = int(len(w.people) * 0.6)
    who = g.integers(0, len(people), n)
    visitor = g.random(n) < 0.08
    hour = np.clip(g.normal(13, 4.5, n), 0, 23.99)
    epoch = int(dt.datetime.combine(day, dt.time(), TZ).timestamp()) + (hour * 3600).astype(int)
    return door_lines(w, day, seed, g, [people[i] for i in who.tolist()], visitor, epoch)


def door_lines(
    w: World,
    day: dt.date,
    seed: int,
    g: np.random.Generator,
    persons: list,
    visitor: np.ndarray,
    epoch: np.ndarray,
) -> tuple[list[str], list[dict], list[dict]]:
    """One day's door events as delivered: who passed (a visitor shows no ID) and when are
    given; door, method, direction and result drawn from ``g``, then the usual dirt."""
    n = len(persons)
    method = g.integers(0, len(METHODS), n)
    direction = g.random(n) < 0.5
    deny = g.random(n) < 0.01
    pick = g.integers(0, 4, n)
    doors: dict[str, list] = {}
    for d in w.devices:
        if d.kind == "door_access":
            doors.setdefault(d.community.code, []).append(d)
    order = np.argsort(epoch, kind="stable")
    dirtier = Dirtier(random.Random(f"{seed}:iot:door:{day}"), "jsonl", authoritative=False)
    cid_col = IOT_COLS["door_access_events"][3]
    rows = []
    times = _isos(epoch)
    prefix = f"MJ{day:%Y%m%d}"  # a day's event ids (strftime once, not a row)
    for k, i in enumerate(order.tolist()):
        p = persons[i]
        comm_doors = doors[p.household.community.code]
        truth = {
            "event_id": f"{prefix}{k + 1:07d}",
            "device_id": comm_doors[pick[i] % len(comm_doors)].id,
            "event_time": times[i],
            "citizen_id": None if visitor[i] else p.cid,
            "method": "qr" if visitor[i] else METHODS[method[i]],
            "direction": "in" if direction[i] else "out",
            "result": "deny" if deny[i] else "pass",
        }
        delivered, defects = dict(truth), []
        cid, kind = dirtier.cell(cid_col, truth["citizen_id"], truth)
        if kind:
            delivered["citizen_id"] = cid
            defects.append(("citizen_id", kind, "" if cid is None else str(cid),
                            truth["citizen_id"]))  # fmt: skip
        truth["_person"] = truth["citizen_id"]  # a visitor (no ID) is no resident's record
        rows.append({"_truth": truth, "_delivered": delivered, "_defects": defects})
    return _serialise(rows, "event_time", g, f"door_access_events_{day:%Y%m%d}.jsonl")
