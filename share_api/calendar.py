"""Working days on the State Council's holiday calendar (国务院办公厅 节假日安排).

The owner department's answer to a conditional request is due within a number of working
days (工作日; provincial rules use 10). A working day is what ``chinese-calendar`` says: a
weekday that is not a statutory holiday, or a weekend day made a working day (调休). For a
year the package holds no schedule for yet (the State Council publishes the next year's in
November or December), Monday to Friday count but the statutory holidays whose day the law
fixes (元旦, 清明, 劳动节, 国庆节), and :func:`schedule_known` is false, so the
deadline can be shown as provisional.

Days are days in Beijing (UTC+8, no daylight saving): a request submitted at 23:30 UTC on
a Sunday was submitted on Monday in Beijing. A deadline ends at midnight Beijing time after
its last working day; :func:`answer_due` returns that instant as a UTC datetime.
"""

from __future__ import annotations

import datetime as dt

import chinese_calendar

from catalog.days import BEIJING, beijing_day

# statutory holidays that fall on the same day every year (全国年节及纪念日放假办法, as revised
# in force from 2025): 元旦 1-1, 劳动节 5-1 and 5-2, 国庆节 10-1 to 10-3; 清明节 is the day of the
# Qingming solar term. The lunar ones (春节, 端午节, 中秋节) and the make-up working days (调休)
# come only with the published schedule.
FIXED_HOLIDAYS = frozenset({(1, 1), (5, 1), (5, 2), (10, 1), (10, 2), (10, 3)})
QINGMING = "清明"


def schedule_known(day: dt.date) -> bool:
    """True when the package holds the State Council's schedule for ``day``'s year."""
    try:
        chinese_calendar.is_workday(day)
    except NotImplementedError:
        return False
    return True


def statutory_holiday(day: dt.date) -> bool:
    """A statutory holiday whose day the law fixes (the fallback's, for a year without a
    published schedule)."""
    if (day.month, day.day) in FIXED_HOLIDAYS:
        return True
    if day.month != 4 or not 1900 <= day.year <= 2100:  # the solar terms' range
        return False
    return (day, QINGMING) in chinese_calendar.get_solar_terms(day, day)


def is_working_day(day: dt.date) -> bool:
    """A working day (工作日) in mainland China: the published schedule; for a year without
    one, Monday–Friday but the statutory holidays on fixed days."""
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        return day.weekday() < 5 and not statutory_holiday(day)


def add_working_days(day: dt.date, count: int) -> dt.date:
    """The ``count``-th working day after ``day`` (``day`` itself never counts, as a
    deadline counts from the day after receipt)."""
    if count < 1:
        raise ValueError("a deadline counts at least one working day")
    left = count
    while left:
        day += dt.timedelta(days=1)
        if is_working_day(day):
            left -= 1
    return day


def answer_due(submitted: dt.datetime, working_days: int) -> dt.datetime:
    """When an answer to a request submitted at ``submitted`` is due: the end (midnight in
    Beijing) of the ``working_days``-th working day after the day it came in, in UTC."""
    last = add_working_days(beijing_day(submitted), working_days)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), BEIJING)
    return end.astimezone(dt.UTC)


def working_days_between(start: dt.date, end: dt.date) -> int:
    """Working days after ``start`` up to and including ``end`` (0 when end ≤ start)."""
    count, day = 0, start
    while day < end:
        day += dt.timedelta(days=1)
        count += is_working_day(day)
    return count


def working_days_overdue(due: dt.datetime, now: dt.datetime) -> int:
    """How many working days past ``due`` ``now`` is (0 when not overdue). A request due at
    the end of Friday is 1 working day overdue all Monday (Beijing)."""
    if now < due:
        return 0
    last_day_allowed = beijing_day(due - dt.timedelta(microseconds=1))
    return working_days_between(last_day_allowed, beijing_day(now))
