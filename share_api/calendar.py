"""Working days on the State Council's holiday calendar (国务院办公厅 节假日安排).

The owner department's answer to a conditional request is due within a number of working
days (工作日; provincial rules use 10). A working day is what ``chinese-calendar`` says: a
weekday that is not a statutory holiday, or a weekend day made a working day (调休). For a
year the package holds no schedule for yet (the State Council publishes the next year's in
November or December), weekdays count and :func:`schedule_known` is false, so the
deadline can be shown as provisional.

Days are days in Beijing (UTC+8, no daylight saving): a request submitted at 23:30 UTC on
a Sunday was submitted on Monday in Beijing. A deadline ends at midnight Beijing time after
its last working day; :func:`answer_due` returns that instant as a UTC datetime.
"""

from __future__ import annotations

import datetime as dt

import chinese_calendar

BEIJING = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def schedule_known(day: dt.date) -> bool:
    """True when the package holds the State Council's schedule for ``day``'s year."""
    try:
        chinese_calendar.is_workday(day)
    except NotImplementedError:
        return False
    return True


def is_working_day(day: dt.date) -> bool:
    """A working day (工作日) in mainland China: the published schedule, else Monday–Friday."""
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        return day.weekday() < 5


def beijing_day(instant: dt.datetime) -> dt.date:
    """The calendar day in Beijing of a timezone-aware instant."""
    if instant.tzinfo is None:
        raise ValueError("a naive datetime: the service keeps times timezone-aware (UTC)")
    return instant.astimezone(BEIJING).date()


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
