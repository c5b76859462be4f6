"""The frozen latent need process: who needs home care, a health follow-up, financial help or
emergency help, and when (departments/NEEDS.md writes it down: read that first).

Every resident has a daily hazard of each need. It rises with signals the hub can see
(age, living alone, chronic disease, disability, low income, unemployment, housing) and
with a latent state it cannot see directly: a frailty per person and two two-state
episode chains — a health *decline* (its symptoms: door activity drops against the
person's own rate, health checks and follow-ups are missed, more 12345 calls) and a
financial *hardship* (more calls). Outcomes are drawn day by day from those hazards; the
true probability of a need in the ``HORIZON_DAYS`` after a cut-off is computed exactly
from the latent state on the cut-off day (a forward recursion over the joint chain), so
it is the ceiling no model of the hub's data can beat.

Drawn from random streams of its own (``numpy`` seeded ``[seed, 16, k]``): the rest of
the street is as it was without it. Nothing here is read by the hub.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from departments.world import World

HORIZON_DAYS = 90
STREAM = 16  # the number: numpy streams [seed, STREAM, k]
NEEDS = ("home_care", "health_event", "financial_assistance", "emergency_help")
# the signals a hazard may weigh (NEEDS.md "Signals"); each is 0/1 except `old`
SIGNALS = ("old", "alone", "chronic", "disabled", "low_income", "unemployed", "public_rental",
           "walkup", "renter")  # fmt: skip


@dataclass(frozen=True)
class Hazard:
    """log daily hazard = intercept + Σ weights·signals + decline·D + hardship·H
    + frailty·u + ε (ε ~ N(0, noise²) per person, latent) + winter·cos(2π(doy − 15)/365)."""

    intercept: float
    weights: dict[str, float]
    decline: float = 0.0
    hardship: float = 0.0
    frailty: float = 0.0
    noise: float = 0.0
    winter: float = 0.0


@dataclass(frozen=True)
class Episode:
    """A latent two-state chain: onset at the daily hazard ``Hazard`` (its decline /
    hardship weights unused), recovery at 1 / ``mean_days`` a day."""

    onset: Hazard
    mean_days: float


# ---- the frozen parameters (NEEDS.md "Parameters"; changing one is a new process) ----
DECLINE = Episode(Hazard(-8.9, {"old": 0.75, "chronic": 0.5, "alone": 0.5, "disabled": 0.4},
                         frailty=0.6), mean_days=50)  # fmt: skip
HARDSHIP = Episode(Hazard(-8.2, {"low_income": 1.5, "unemployed": 1.5, "renter": 0.5,
                                 "public_rental": 0.6}, frailty=0.3), mean_days=60)  # fmt: skip
NEED_HAZARDS: dict[str, Hazard] = {
    "home_care": Hazard(-10.4, {"old": 1.1, "alone": 1.0, "disabled": 1.4, "walkup": 0.5,
                                "chronic": 0.4, "low_income": 0.4},
                        decline=1.5, frailty=0.5, noise=0.3),
    "health_event": Hazard(-10.0, {"old": 0.9, "chronic": 1.0, "alone": 0.3, "disabled": 0.6},
                           decline=2.8, frailty=0.5, noise=0.3, winter=0.25),
    "financial_assistance": Hazard(-9.6, {"low_income": 2.2, "unemployed": 1.8,
                                          "disabled": 1.0, "public_rental": 0.9,
                                          "renter": 0.6, "old": 0.1},
                                   decline=0.4, hardship=2.6, frailty=0.3, noise=0.3),
    "emergency_help": Hazard(-10.4, {"old": 0.8, "alone": 1.0, "chronic": 0.5,
                                     "disabled": 0.6},
                             decline=2.4, frailty=0.5, noise=0.3, winter=0.15),
}  # fmt: skip
FRAILTY_SD = 1.0
PLANTED_MIN_AGE = 65  # the seed's example: elderly living alone …
PLANTED_MIN_LEAD = 7  # … whose decline began at least a week before the health event


@dataclass
class NeedProcess:
    """One street's draw of the process over ``days`` (``first`` … ``last``)."""

    first: dt.date
    last: dt.date
    persons: list  # World.people, index = row
    signals: dict[str, np.ndarray]  # name → (n, days + HORIZON) float
    frailty: np.ndarray  # (n,)
    decline: np.ndarray  # (n, days) bool: in a decline episode that day
    hardship: np.ndarray  # (n, days) bool
    log_hazard: dict[str, np.ndarray]  # need → (n, days + HORIZON) in the well state
    onset_log: dict[str, np.ndarray]  # "decline" / "hardship" → (n, days + HORIZON)
    events: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # need → (row, day)
    # with a history (departments.history): whose door events are delivered, and the
    # expected weekly appeals per grid cell × category (a polars frame)
    door_residents: set[str] = field(default_factory=set)
    grid_expected: object = None

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def date(self, day: int) -> dt.date:
        return self.first + dt.timedelta(days=day)

    def probabilities(self, cutoff: dt.date) -> dict[str, np.ndarray]:
        """The true probability of each need in (cutoff, cutoff + HORIZON_DAYS] given the
        latent state on the cut-off day: 1 − P(no event), by a forward recursion over the
        joint chain (decline × hardship) that kills the probability mass a need's hazard
        takes each day."""
        c = (cutoff - self.first).days
        if not 0 <= c < self.days:
            raise ValueError("the cut-off lies outside the simulated window")
        n = len(self.persons)
        k = len(NEEDS)
        pi = np.zeros((k, n, 2, 2))  # need, person, decline, hardship
        pi[:, np.arange(n), self.decline[:, c].astype(int), self.hardship[:, c].astype(int)] = 1
        rec_d = 1 - np.exp(-1 / DECLINE.mean_days)
        rec_h = 1 - np.exp(-1 / HARDSHIP.mean_days)
        offsets = np.stack([_offsets(need).reshape(2, 2) for need in NEEDS])  # (k, 2, 2)
        for t in range(c + 1, c + HORIZON_DAYS + 1):
            on_d = 1 - np.exp(-np.exp(self.onset_log["decline"][:, t]))
            on_h = 1 - np.exp(-np.exp(self.onset_log["hardship"][:, t]))
            well, ill = pi[:, :, 0, :], pi[:, :, 1, :]  # over decline
            pi = np.stack([well * (1 - on_d)[:, None] + ill * rec_d,
                           well * on_d[:, None] + ill * (1 - rec_d)], axis=2)  # fmt: skip
            well, ill = pi[..., 0], pi[..., 1]  # over hardship
            pi = np.stack([well * (1 - on_h)[:, None] + ill * rec_h,
                           well * on_h[:, None] + ill * (1 - rec_h)], axis=3)  # fmt: skip
            base = np.stack([self.log_hazard[need][:, t] for need in NEEDS])  # (k, n)
            pi *= np.exp(-np.exp(base[:, :, None, None] + offsets[:, None, :, :]))
        survive = pi.sum(axis=(2, 3))
        return {need: 1 - survive[i] for i, need in enumerate(NEEDS)}

    def outcomes(self, cutoff: dt.date) -> dict[str, np.ndarray]:
        """Whether each need happened in (cutoff, cutoff + HORIZON_DAYS] (inside the window)."""
        c = (cutoff - self.first).days
        out = {}
        for need in NEEDS:
            hit = np.zeros(len(self.persons), dtype=bool)
            hit[[r for r, t in self.events[need] if c < t <= c + HORIZON_DAYS]] = True
            out[need] = hit
        return out


def _offsets(need: str) -> np.ndarray:
    """What each joint state (2·decline + hardship) adds to a need's log hazard."""
    h = NEED_HAZARDS[need]
    return np.array([0.0, h.hardship, h.decline, h.decline + h.hardship])


def _linear(h: Hazard, signals: dict[str, np.ndarray], frailty: np.ndarray) -> np.ndarray:
    out = np.full(signals["old"].shape, h.intercept, dtype=np.float32)
    for name, weight in h.weights.items():
        out += weight * signals[name]
    return out + h.frailty * frailty[:, None]


def signals_of(w: World, records: dict[tuple[str, str], list[dict]], first: dt.date,
               length: int) -> dict[str, np.ndarray]:  # fmt: skip
    """The signals per person and day (NEEDS.md "Signals"), from the world and the records
    the departments deliver (so each is what the hub can see, dated as the hub sees it)."""
    people = w.people
    n = len(people)
    row = {p.cid: p.pid for p in people}
    ords = first.toordinal() + np.arange(length)
    birth = np.array([p.birth.toordinal() for p in people], dtype=float)
    age = (ords[None, :] - birth[:, None]) / 365.25
    static = np.zeros((len(SIGNALS), n))
    s = {name: static[i] for i, name in enumerate(SIGNALS)}
    for p in people:
        unit = p.household.unit
        s["alone"][p.pid] = len(p.household.members) == 1
        s["public_rental"][p.pid] = unit.property_type == "公租房"
        s["walkup"][p.pid] = unit.building.floors <= 6 and unit.floor >= 4
        s["renter"][p.pid] = not p.hukou
    for r in records[("wjw", "chronic_followups")]:
        s["chronic"][row[r["_person"]]] = 1
    for r in records[("mzj", "disability_allowance")]:
        s["disabled"][row[r["_person"]]] = 1
    out = {name: s[name][:, None].astype(np.float32) for name in SIGNALS}  # static: (n, 1)
    out["old"] = (np.clip(age - 60, 0, None) / 10).astype(np.float32)
    out["low_income"] = np.zeros((n, length), dtype=np.float32)
    out["unemployed"] = np.zeros((n, length), dtype=np.float32)
    by_pid = {p.pid: p for p in people}
    for r in records[("mzj", "minimum_living")]:  # the whole household, from approval on
        since = dt.date.fromisoformat(r["认定日期"]).toordinal()
        for m in by_pid[row[r["_person"]]].household.members:
            out["low_income"][m.pid] = ords >= since
    for r in records[("rsj", "employment_registration")]:
        if r["reg_type"] == "失业登记":
            out["unemployed"][row[r["_person"]]] = (
                ords >= dt.date.fromisoformat(r["reg_date"]).toordinal()
            )
    return out


def _winter(first: dt.date, length: int) -> np.ndarray:
    doy = np.array([(first + dt.timedelta(days=i)).timetuple().tm_yday for i in range(length)])
    return np.cos(2 * np.pi * (doy - 15) / 365.25)


def _chain(g: np.random.Generator, onset_log: np.ndarray, mean_days: float,
           days: int) -> np.ndarray:  # fmt: skip
    """Draw an episode chain: the first day from the stationary share, then day by day."""
    n = onset_log.shape[0]
    rec = 1 - np.exp(-1 / mean_days)
    on = 1 - np.exp(-np.exp(onset_log))
    state = np.empty((n, days), dtype=bool)
    state[:, 0] = g.random(n) < on[:, 0] / (on[:, 0] + rec)
    for t in range(1, days):
        u = g.random(n)
        state[:, t] = np.where(state[:, t - 1], u >= rec, u < on[:, t])
    return state


def run(w: World, records: dict[tuple[str, str], list[dict]], first: dt.date,
        last: dt.date) -> NeedProcess:  # fmt: skip
    """Draw the process for the street over ``first`` … ``last`` (the hazards are laid out
    ``HORIZON_DAYS`` further, for the probabilities of the last cut-offs)."""
    days = (last - first).days + 1
    length = days + HORIZON_DAYS
    g = np.random.default_rng([w.seed, STREAM, 0])
    n = len(w.people)
    signals = signals_of(w, records, first, length)
    frailty = g.normal(0, FRAILTY_SD, n)
    onset_log = {"decline": _linear(DECLINE.onset, signals, frailty),
                 "hardship": _linear(HARDSHIP.onset, signals, frailty)}  # fmt: skip
    decline = _chain(g, onset_log["decline"][:, :days], DECLINE.mean_days, days)
    hardship = _chain(g, onset_log["hardship"][:, :days], HARDSHIP.mean_days, days)
    winter = _winter(first, length)
    log_hazard = {}
    for need in NEEDS:
        h = NEED_HAZARDS[need]
        base = _linear(h, signals, frailty) + h.winter * winter[None, :]
        base += g.normal(0, h.noise, n)[:, None] if h.noise else 0
        log_hazard[need] = base.astype(np.float32)
    proc = NeedProcess(first, last, w.people, signals, frailty, decline, hardship, log_hazard,
                       onset_log)  # fmt: skip
    joint = 2 * decline + hardship
    for k, need in enumerate(NEEDS):
        ge = np.random.default_rng([w.seed, STREAM, 1 + k])
        lam = log_hazard[need][:, :days] + _offsets(need)[joint]
        hit = ge.random((n, days)) < 1 - np.exp(-np.exp(lam))
        rows, ts = np.nonzero(hit)
        order = np.lexsort((rows, ts))  # by day, then person
        proc.events[need] = list(zip(rows[order].tolist(), ts[order].tolist(), strict=True))
    return proc


def month_cutoffs(proc: NeedProcess) -> list[dt.date]:
    """The cut-offs the truth is given for: the first of every month in the window."""
    out, d = [], dt.date(proc.first.year, proc.first.month, 1)
    while d <= proc.last:
        if d >= proc.first:
            out.append(d)
        d = dt.date(d.year + d.month // 12, d.month % 12 + 1, 1)
    return out


def planted_events(proc: NeedProcess) -> list[dict]:
    """The seed's example: health events of elderly residents living alone that came while
    a decline, begun at least ``PLANTED_MIN_LEAD`` days before, was under way."""
    out = []
    for r, t in proc.events["health_event"]:
        p = proc.persons[r]
        if len(p.household.members) != 1 or p.age(proc.date(t)) < PLANTED_MIN_AGE:
            continue
        if not proc.decline[r, t]:
            continue
        onset = t
        while onset > 0 and proc.decline[r, onset - 1]:
            onset -= 1
        if onset == 0 or t - onset < PLANTED_MIN_LEAD:
            continue  # begun before the window (onset unknown) or too late to warn
        out.append({"_person": p.cid, "event_date": proc.date(t),
                    "decline_onset": proc.date(onset), "lead_days": t - onset})  # fmt: skip
    return out
