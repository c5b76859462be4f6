"""``simulate --history-days N``: the need model's inputs over a window, and the need truth.

With a history the departments deliver, besides everything they always do:

- door events over the window (the last days a file a day, the archive before them a
  file a week), only from residents of the buildings with
  smart doors (``SMART_DOOR_SHARE``), each at a rate of their own (the elderly steadier),
  lower in a decline or while away (NEEDS.md "Symptoms");
- elderly health checks (yearly) and chronic follow-ups (every 90 days) over the window
  and one year before it, missed more by the frail and in a decline;
- 12345 appeals over the window and one year before it (so a 52-week seasonal-naive
  forecast has its lag): per grid cell and category a weekly and yearly season; each
  resident caller drawn from the cell's adults, more often the frail, those in hardship
  or in a decline.

Every draw comes from a stream of its own: the world and every other dataset are as they
are without a history.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import numpy as np
import polars as pl

from departments import callers, iot, needs, texts
from departments.people import CLINICS
from departments.places import AppealStreams, appeal
from departments.spec import D
from departments.world import World

# without a history the outcome registers hold the last 150 days: never the four monthly
# cut-offs with complete 90-day labels the need model trains on (the hub's rule:
# marts.need_model.step.can_train), whatever the calendar day, even where a date's dirt
# reads as the 1st of its month (a register of 180 days trained on some days and not on
# others); a benchmark asking for training gives ``register_days`` of 270 or more (its cut-offs
# always five or more)
REGISTER_DAYS = 150
LOOKBACK_DAYS = 364  # appeals and registers reach a season (52 weeks) before the window
SMART_DOOR_SHARE = 0.4  # of buildings
BACKFILL_FILE_DAYS = 7  # a history's door events before the daily days: a file a week
VISITORS = 0.08  # door events of visitors (no ID) per resident event
AWAY_ONSET, AWAY_DAYS, AWAY_FACTOR = 1 / 250, (3, 20), 0.03
DECLINE_FACTOR = (0.1, 0.45)  # door rate in a decline, uniform per person
APPEALS_PER_RESIDENT_WEEK = 1 / 20
# yearly season of each appeal category: (amplitude, peak day of year)
APPEAL_SEASON = {"噪音扰民": (0.35, 200), "物业管理": (0.1, 100), "环境卫生": (0.3, 210),
                 "市政设施": (0.3, 200), "占道经营": (0.3, 150), "供暖": (0.9, 15),
                 "邻里纠纷": (0.15, 190), "养老服务": (0.2, 20), "其他": (0.05, 60)}  # fmt: skip
APPEAL_SHARE = {"噪音扰民": 3, "物业管理": 3, "环境卫生": 2, "市政设施": 2, "占道经营": 1,
                "供暖": 2, "邻里纠纷": 1.5, "养老服务": 1, "其他": 2}  # fmt: skip
WEEKDAY = (1.2, 1.1, 1.05, 1.0, 0.95, 0.8, 0.75)  # Monday first
APPEAL_NOISE_SHAPE = 8.0  # a week's gamma shock to a cell's category (not forecastable)
CALLER_WEIGHTS = {"frailty": 0.7, "hardship": 1.5, "decline": 1.0}


def process_days(history_days: int | None, register_days: int | None = None) -> int:
    """Days the need process runs over, ending on the last day: a history's with its
    lookback, else the registers' (``register_days``, default :data:`REGISTER_DAYS`)."""
    return history_days + LOOKBACK_DAYS if history_days else register_days or REGISTER_DAYS


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def smart_door_buildings(w: World) -> set[str]:
    rng = random.Random(f"{w.seed}:needs:smart_doors")
    return {b.id for b in w.buildings if rng.random() < SMART_DOOR_SHARE}


class DoorHistory:
    """Daily door counts per resident of a smart-door building over the window."""

    def __init__(self, w: World, proc: needs.NeedProcess, history_days: int) -> None:
        g = np.random.default_rng([w.seed, needs.STREAM, 10])
        self.first = proc.last - dt.timedelta(days=history_days - 1)
        doors = smart_door_buildings(w)
        self.people = [p for p in w.people
                       if p.household.unit.building.id in doors and p.age(w.today) >= 8]  # fmt: skip
        rows = np.array([p.pid for p in self.people], dtype=int)
        n, days = len(rows), history_days
        old = np.array([p.age(w.today) >= 65 for p in self.people])
        self.rate = np.where(old, g.gamma(16, 1.4 / 16, n), g.gamma(2.5, 0.6 / 2.5, n))
        shape = np.where(old, 12.0, 2.0)[:, None]
        offset = (self.first - proc.first).days
        mult = np.where(proc.decline[rows, offset:], g.uniform(*DECLINE_FACTOR, n)[:, None], 1.0)
        away = np.zeros((n, days), dtype=bool)
        for i, t in zip(*np.nonzero(g.random((n, days)) < AWAY_ONSET), strict=True):
            away[i, t : t + g.integers(AWAY_DAYS[0], AWAY_DAYS[1] + 1)] = True
        self.away = away
        mult = np.where(away, AWAY_FACTOR, mult)
        dates = [self.first + dt.timedelta(days=t) for t in range(days)]
        weekday = np.array([1.0 if d.weekday() < 5 else 0.85 for d in dates])
        winter = np.cos(2 * np.pi * (np.array([d.timetuple().tm_yday for d in dates]) - 15) / 365)
        day_factor = np.where(old[:, None], 1.0, weekday[None, :]) * (1 - 0.1 * winter)[None, :]
        noise = g.gamma(shape, 1 / shape, (n, days))
        self.counts = g.poisson(self.rate[:, None] * day_factor * mult * noise)
        self.old = old
        self.dates = dates

    def make(self, w: World, day: dt.date, seed: int):
        """The day's delivery (the signature of ``iot.door_access_events``)."""
        t = (day - self.first).days
        g = np.random.default_rng([seed, day.toordinal(), 2, needs.STREAM])
        idx = np.repeat(np.arange(len(self.people)), self.counts[:, t])
        n_vis = g.binomial(len(idx), VISITORS)
        idx = np.concatenate([idx, g.choice(len(self.people), n_vis)]).astype(int)
        visitor = np.arange(len(idx)) >= len(idx) - n_vis
        hour = np.where(self.old[idx], g.normal(10.5, 3, len(idx)), g.normal(13, 4.5, len(idx)))
        hour = np.clip(hour, 0, 23.99)
        midnight = int(dt.datetime.combine(day, dt.time(), iot.TZ).timestamp())
        epoch = midnight + (hour * 3600).astype(int)
        persons = [self.people[i] for i in idx.tolist()]
        return iot.door_lines(w, day, seed, g, persons, visitor, epoch)


def health_checks(w: World, proc: needs.NeedProcess, g: np.random.Generator) -> list[dict]:
    """A yearly check around each elderly person's usual day; missed by the frail and, in
    a decline, mostly missed."""
    n = len(w.people)
    comply = _sigmoid(1.3 - 0.8 * proc.frailty + g.normal(0, 0.8, n))
    usual = g.integers(0, 365, n)
    rng = random.Random(f"{w.seed}:needs:wjw.elderly_health_checks")
    out = []
    for year in range(proc.first.year, proc.last.year + 1):
        jitter = g.integers(-10, 11, n)
        attend = g.random(n)
        for p in w.people:
            day = dt.date(year, 1, 1) + dt.timedelta(days=int(usual[p.pid] + jitter[p.pid]))
            if not proc.first <= day <= proc.last or p.age(day) < 65:
                continue
            t = (day - proc.first).days
            if attend[p.pid] >= comply[p.pid] * (0.25 if proc.decline[p.pid, t] else 1.0):
                continue
            out.append({
                "体检编号": f"TJ{year}{len(out) + 1:06d}", "姓名": p.name, "身份证号": p.cid,
                "性别": p.gender, "出生日期": D(p.birth), "体检日期": D(day),
                "收缩压": rng.randint(100, 175), "舒张压": rng.randint(60, 105),
                "空腹血糖": round(rng.uniform(4.2, 11.5), 1),
                "体检结论": rng.choices(("未见异常", "血压偏高", "血糖偏高", "建议复查"),
                                        (5, 3, 2, 1))[0],
                "联系电话": p.mobile, "体检机构": rng.choice(CLINICS), "_person": p.cid,
            })  # fmt: skip
    return sorted(out, key=lambda r: r["体检编号"])


def chronic_followups(
    w: World, proc: needs.NeedProcess, g: np.random.Generator, default: list[dict]
) -> list[dict]:
    """Every 90 days for each patient of the default register (same disease and doctor);
    a missed follow-up is tried again 30 days later (overdue)."""
    patients = {r["_person"]: (r["病种"], r["责任医生"]) for r in default}
    by_cid = {p.cid: p for p in w.people}
    n = len(w.people)
    comply = _sigmoid(1.8 - 0.6 * proc.frailty + g.normal(0, 0.7, n))
    rng = random.Random(f"{w.seed}:needs:wjw.chronic_followups")
    out = []
    for cid, (disease, doctor) in patients.items():
        p = by_cid[cid]
        t = int(g.integers(0, 90))
        while t < proc.days:
            ok = g.random() < comply[p.pid] * (0.3 if proc.decline[p.pid, t] else 1.0)
            if not ok:
                t += 30
                continue
            day = proc.date(t)
            out.append({
                "随访编号": "", "身份证号": cid, "姓名": p.name, "病种": disease,
                "随访日期": D(day), "随访方式": rng.choice(("门诊", "家庭", "电话")),
                "收缩压": rng.randint(110, 180), "舒张压": rng.randint(65, 110),
                "空腹血糖": round(rng.uniform(4.5, 13.0), 1) if disease != "高血压" else None,
                "下次随访日期": D(day + dt.timedelta(days=90)), "责任医生": doctor,
                "_person": cid,
            })  # fmt: skip
            t += 90
    out.sort(key=lambda r: (r["随访日期"], r["身份证号"]))
    for i, r in enumerate(out):
        r["随访编号"] = f"SF{i + 1:07d}"
    return out


def appeal_rates(w: World, first: dt.date, days: int) -> tuple[list, list[str], np.ndarray, dict]:
    """Expected appeals per (cell, category, day): cells with homes, their share of the
    street's adults, a category share, a yearly season, the weekday and a slow trend."""
    g = np.random.default_rng([w.seed, needs.STREAM, 20])
    adults: dict[str, list] = {}
    for p in w.people:
        if p.age(w.today) >= 18:
            b = p.household.unit.building
            adults.setdefault(w.grid_at(b.lon, b.lat).code, []).append(p)
    cells = [c for c in w.grids if c.code in adults]
    cats = list(texts.ISSUES)
    total = sum(len(v) for v in adults.values())
    per_day = len(w.people) * APPEALS_PER_RESIDENT_WEEK / 7
    share = np.array([APPEAL_SHARE[c] for c in cats]) / sum(APPEAL_SHARE.values())
    level = np.array([len(adults[c.code]) / total for c in cells])[:, None] * share[None, :]
    level *= g.gamma(4, 1 / 4, level.shape)  # each cell's own taste for each category
    dates = [first + dt.timedelta(days=t) for t in range(days)]
    doy = np.array([d.timetuple().tm_yday for d in dates])
    season = np.stack([1 + APPEAL_SEASON[c][0] * np.cos(2 * np.pi * (doy - APPEAL_SEASON[c][1])
                                                         / 365.25) for c in cats])  # fmt: skip
    weekday = np.array([WEEKDAY[d.weekday()] for d in dates]) / np.mean(WEEKDAY)
    trend = 1 + 0.05 * np.arange(days) / 365
    rate = per_day * level[:, :, None] * season[None, :, :] * (weekday * trend)[None, None, :]
    return cells, cats, rate, adults


def appeals(w: World, proc: needs.NeedProcess) -> tuple[list[dict], pl.DataFrame]:
    """The history's 12345 appeals and their weekly expected counts per cell × category."""
    g = np.random.default_rng([w.seed, needs.STREAM, 21])
    cells, cats, rate, adults = appeal_rates(w, proc.first, proc.days)
    first_monday = proc.first - dt.timedelta(days=proc.first.weekday())
    week_index = (np.arange(proc.days) + proc.first.weekday()) // 7
    shock = g.gamma(APPEAL_NOISE_SHAPE, 1 / APPEAL_NOISE_SHAPE,
                    (len(cells), len(cats), week_index[-1] + 1))  # fmt: skip
    counts = g.poisson(rate * shock[:, :, week_index])
    rng = random.Random(f"{w.seed}:needs:rx.appeals")
    streams = AppealStreams(w, ":history")
    out = []
    for ci, cell in enumerate(cells):
        people = adults[cell.code]
        rows = np.array([p.pid for p in people])
        for ki, cat in enumerate(cats):
            for t in np.nonzero(counts[ci, ki])[0].tolist():
                weight = np.exp(CALLER_WEIGHTS["frailty"] * proc.frailty[rows]
                                + CALLER_WEIGHTS["hardship"] * proc.hardship[rows, t]
                                + CALLER_WEIGHTS["decline"] * proc.decline[rows, t])  # fmt: skip
                for _ in range(int(counts[ci, ki, t])):
                    caller = people[int(g.choice(len(people), p=weight / weight.sum()))]
                    hour = min(max(rng.gauss(13, 3.5), 0), 23.99)
                    at = dt.datetime.combine(proc.date(t), dt.time()) + dt.timedelta(
                        seconds=int(hour * 3600)
                    )
                    urgency = "emergency" if rng.random() < 0.08 else "ordinary"
                    report = callers.reported(streams.variants, "rx.appeals", caller, w)
                    out.append((at, cell, cat, urgency, report))
    out.sort(key=lambda a: (a[0], a[1].code, a[2]))
    records = [appeal(w, rng, streams, i, rep, cat, urg, at, cell)
               for i, (at, cell, cat, urg, rep) in enumerate(out)]  # fmt: skip
    n_weeks = week_index[-1] + 1
    expected = np.zeros((len(cells), len(cats), n_weeks))
    np.add.at(expected, (slice(None), slice(None), week_index), rate)
    mondays = [first_monday + dt.timedelta(weeks=k) for k in range(n_weeks)]
    frame = pl.DataFrame({
        "grid_code": np.repeat([c.code for c in cells], len(cats) * n_weeks).tolist(),
        "category": np.tile(np.repeat(cats, n_weeks), len(cells)).tolist(),
        "week_start": pl.Series(mondays * (len(cells) * len(cats)), dtype=pl.Date),
        "expected": expected.reshape(-1),
    })  # fmt: skip
    return records, frame


def file_groups(dates: list[dt.date], daily: int) -> list[list[dt.date]]:
    """The door-event files of a history: the last ``daily`` days a file a day as always,
    the days before them (the platform's archive) a file a week, the first one shorter."""
    split = max(len(dates) - daily, 0)
    backfill, recent = dates[:split], dates[split:]
    first = len(backfill) % BACKFILL_FILE_DAYS
    weeks = [backfill[:first]] if first else []
    weeks += [backfill[i : i + BACKFILL_FILE_DAYS] for i in range(first, split, BACKFILL_FILE_DAYS)]
    return weeks + [[d] for d in recent]


def replace_records(w: World, records: dict, history_days: int, daily: int) -> dict:
    """Swap the history's versions in (health checks, follow-ups, appeals); return the
    door-event maker and its files (groups of days) for the IoT delivery."""
    proc = w.needs
    g = np.random.default_rng([w.seed, needs.STREAM, 30])
    records[("wjw", "elderly_health_checks")] = health_checks(w, proc, g)
    records[("wjw", "chronic_followups")] = chronic_followups(
        w, proc, g, records[("wjw", "chronic_followups")]
    )
    records[("rx", "appeals")], proc.grid_expected = appeals(w, proc)
    doors = DoorHistory(w, proc, history_days)
    proc.door_residents = {p.cid for p in doors.people}
    return {"door_access_events": (doors.make, file_groups(doors.dates, daily))}


def write_truth(w: World, folder: Path, history_days: int | None) -> dict:
    """truth/needs/: the latent probabilities per resident and cut-off, the outcomes, the
    planted elderly events, the weekly expected appeals (with a history); a summary."""
    proc: needs.NeedProcess = w.needs
    out = Path(folder) / "needs"
    out.mkdir(parents=True, exist_ok=True)
    cids = [p.cid for p in proc.persons]
    frames = []
    cutoffs = needs.month_cutoffs(proc)
    for cutoff in cutoffs:
        c = (cutoff - proc.first).days
        probs, happened = proc.probabilities(cutoff), proc.outcomes(cutoff)
        cols = {"_person": cids, "cutoff": [cutoff] * len(cids)}
        for need in needs.NEEDS:
            cols[f"p_{need}"] = probs[need]
            cols[f"y_{need}"] = happened[need]
        cols["horizon_complete"] = [c + needs.HORIZON_DAYS < proc.days] * len(cids)
        frames.append(pl.DataFrame(cols))
    if frames:
        pl.concat(frames).write_parquet(out / "probabilities.parquet")
    pl.DataFrame(
        [{"_person": cids[r], "need": need, "date": proc.date(t)}
         for need in needs.NEEDS for r, t in proc.events[need]],
        schema={"_person": pl.String, "need": pl.String, "date": pl.Date}, orient="row",
    ).write_parquet(out / "events.parquet")  # fmt: skip
    planted = needs.planted_events(proc)
    with_door = proc.door_residents
    for e in planted:
        e["smart_door"] = e["_person"] in with_door
    pl.DataFrame(planted, schema={"_person": pl.String, "event_date": pl.Date,
                                  "decline_onset": pl.Date, "lead_days": pl.Int64,
                                  "smart_door": pl.Boolean}, orient="row",
                 ).write_parquet(out / "elderly_events.parquet")  # fmt: skip
    if proc.grid_expected is not None:
        proc.grid_expected.write_parquet(out / "grid_expected.parquet")
    return {
        "history_days": history_days, "first": proc.first.isoformat(),
        "cutoffs": [c.isoformat() for c in cutoffs], "horizon_days": needs.HORIZON_DAYS,
        "events": {need: len(proc.events[need]) for need in needs.NEEDS},
        "planted_elderly_events": len(planted),
        "door_residents": len(with_door), "files": sorted(f.name for f in out.iterdir()),
    }  # fmt: skip
