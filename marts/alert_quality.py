"""How right the elderly alert is (预警准确率): precision and recall of ``marts.elderly_alert``.

Two measures, one arithmetic (:class:`AlertQuality`):

- **against visit outcomes** (a real street; :func:`against_visits`): of the residents
  visited because they were on the alert, how many were found in need (precision); of all
  residents visited and found in need, alerted or not, how many the alert had named
  (recall). A visit that saw no one (not home, refused, moved) judges nothing. The frame
  comes from the share service's records (``share_api.worklist.visit_frame``).
- **against planted events** (a simulated street; :func:`against_events`): an alert row
  (resident, list date ``as_of``) is right when the resident has an event in
  ``(as_of, as_of + horizon]``; an event is caught when its resident was on a list dated in
  ``[event date − horizon, event date)``. Only events the lists could have warned of count:
  those dated after the first list and at most ``horizon`` days after the last. The caller
  (``streethub models backtest``) maps the simulator's truth to hub pseudonyms; the lists
  as of past dates come from :func:`alert_lists` (the mart's own SQL, not published).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import duckdb
import polars as pl

from catalog.marts import Mart
from catalog.model import Catalogue
from marts.build import Revealer, build_mart

DEFAULT_HORIZON_DAYS = 30  # an alert warns of an event within the month after its list
ALERT_MART = "elderly_alert"
AS_OF_VARIABLE = "elderly_alert_as_of"  # the date its SQL makes the list as of (default: now)


@dataclass(frozen=True)
class AlertQuality:
    """``hits`` of ``alerted`` were right; ``found`` of ``positives`` were named."""

    alerted: int
    hits: int
    positives: int
    found: int

    @property
    def precision(self) -> float | None:
        return self.hits / self.alerted if self.alerted else None

    @property
    def recall(self) -> float | None:
        return self.found / self.positives if self.positives else None


def against_visits(visits: pl.DataFrame) -> AlertQuality:
    """From visit outcomes: ``person_id``, ``on_alert``, ``visited`` (someone was seen) and
    ``need_found`` (booleans), one row a visit; a resident's latest visit decides."""
    seen = visits.filter(pl.col("visited"))
    if "visited_at" in seen.columns:
        seen = seen.sort("visited_at")
    latest = seen.group_by("person_id").agg(pl.col("on_alert").last(), pl.col("need_found").last())
    alerted = latest.filter(pl.col("on_alert"))
    needy = latest.filter(pl.col("need_found"))
    return AlertQuality(
        alerted=alerted.height,
        hits=int(alerted["need_found"].sum()),
        positives=needy.height,
        found=int(needy["on_alert"].sum()),
    )


def against_events(
    alerts: pl.DataFrame, events: pl.DataFrame, *, horizon_days: int = DEFAULT_HORIZON_DAYS
) -> AlertQuality:
    """From alert lists (``person_id``, ``as_of``: one row per resident and list) and events
    (``person_id``, ``event_date``); see the module doc."""
    alerts = alerts.select("person_id", "as_of").unique()
    events = events.select("person_id", "event_date").unique()
    if alerts.is_empty():
        return AlertQuality(0, 0, 0, 0)
    horizon = dt.timedelta(days=horizon_days)
    pairs = alerts.join(events, on="person_id", how="inner")
    within = (pl.col("event_date") > pl.col("as_of")) & (
        pl.col("event_date") <= pl.col("as_of") + horizon
    )
    right = pairs.filter(within)
    first, last = alerts["as_of"].min(), alerts["as_of"].max()
    warnable = events.filter(
        (pl.col("event_date") > first) & (pl.col("event_date") <= last + horizon)
    )
    caught = (
        right.select("person_id", "event_date")
        .unique()
        .join(warnable, on=["person_id", "event_date"], how="semi")
    )
    return AlertQuality(
        alerted=alerts.height,
        hits=right.select("person_id", "as_of").unique().height,
        positives=warnable.height,
        found=caught.height,
    )


def alert_lists(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    marts: Mapping[str, Mart],
    protection: Revealer,
    dates: Iterable[dt.date],
) -> pl.DataFrame:
    """The elderly alert as its SQL would have made it on each of ``dates`` (``person_id``,
    ``as_of``), nothing published: door records up to the date against the baseline before
    it. Who is elderly and living alone is elderly_care's today (the lake's current
    registers). For :func:`against_events` on a simulated street's history."""
    frames = [pl.DataFrame(schema={"person_id": pl.String, "as_of": pl.Date})]
    try:
        for day in dates:
            con.execute(f"SET VARIABLE {AS_OF_VARIABLE} = CAST(? AS DATE)", [day])
            built = build_mart(con, catalogue, dict(marts), ALERT_MART, protection, publish=False)
            frames.append(pl.from_arrow(built.result).select("person_id", "as_of"))
    finally:
        con.execute(f"RESET VARIABLE {AS_OF_VARIABLE}")
    return pl.concat(frames)


__all__ = [
    "ALERT_MART",
    "DEFAULT_HORIZON_DAYS",
    "AlertQuality",
    "against_events",
    "against_visits",
    "alert_lists",
]
