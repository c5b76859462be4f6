"""The street's days: calendar days in Beijing (China Standard Time, UTC+8, no daylight
saving since 1991), whatever clock the hub's machine keeps.

One home for the rule. A street office's servers often run in Asia/Shanghai, containers
and CI hosts in UTC; between 16:00 and 24:00 UTC the two disagree on the date. Every day
the hub names — a mart's ``run_date``, the need model's scoring cut-off, a grant's last
day, the age a row filter compares, a delivery's local times — is the day in Beijing of an
instant, never the machine's ``date.today()`` nor a SQL session's ``current_date``.
"""

from __future__ import annotations

import datetime as dt

BEIJING_OFFSET_MIN = 8 * 60
# the zone's name in the IANA database (DuckDB's ICU, ``timezone(name, ts)``)
BEIJING_ZONE = "Asia/Shanghai"
BEIJING = dt.timezone(dt.timedelta(minutes=BEIJING_OFFSET_MIN), BEIJING_ZONE)


def beijing_day(instant: dt.datetime | None = None) -> dt.date:
    """The calendar day in Beijing of a timezone-aware instant (default: now)."""
    if instant is None:
        return dt.datetime.now(dt.UTC).astimezone(BEIJING).date()
    if instant.tzinfo is None:
        raise ValueError("a naive datetime: the hub keeps times timezone-aware (UTC)")
    return instant.astimezone(BEIJING).date()


__all__ = ["BEIJING", "BEIJING_OFFSET_MIN", "BEIJING_ZONE", "beijing_day"]
