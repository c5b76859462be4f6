"""What the marts need of an event beyond when, what and where (``curated.event``'s detail
columns): one column per concept of :data:`DETAILS` — urgency, first answer (派单), handling
office, channel, government-service item, promised time limit, visits — null where a
dataset has no field of the concept. Only L1/L2 fields are kept as values; the free text of
``event.description`` (L3) is kept as ciphertext by :mod:`curated.events`.
"""

from __future__ import annotations

import polars as pl

from catalog.model import Dataset
from curated.houses import concept_field

DESCRIPTION = "event.description"  # free text (L3): stored as ciphertext
# event concepts kept as columns of curated.event (null where a dataset has none):
# concept → (column, SQL type)
DETAILS = {
    "event.urgency": ("urgency", "VARCHAR"),  # emergency / ordinary
    "event.dispatched_time": ("dispatched_at", "TIMESTAMP"),  # first answer (派单)
    "event.handler": ("handler", "VARCHAR"),  # handling office (承办单位 / 承办部门)
    "event.channel": ("channel", "VARCHAR"),  # how it came in (电话 …, 窗口, 网上办理 …)
    "event.item_code": ("item_code", "VARCHAR"),  # government-service item (事项编码)
    "event.time_limit_days": ("time_limit_days", "BIGINT"),  # promised working days
    "event.visits": ("visits", "BIGINT"),  # times the applicant came in person (跑动次数)
}


def as_timestamp(series: pl.Series) -> pl.Series:
    """A date, datetime (any zone: its wall time) or text column as naive microsecond
    timestamps (unreadable text: null)."""
    if series.dtype == pl.Date:
        return series.cast(pl.Datetime("us"))
    if isinstance(series.dtype, pl.Datetime):
        return series.dt.replace_time_zone(None).cast(pl.Datetime("us"))
    return series.cast(pl.String).str.to_datetime(strict=False, time_unit="us")


def detail_fields(ds: Dataset) -> dict[str, str]:
    """column → the dataset's field of each :data:`DETAILS` concept it holds (L1/L2 only)."""
    out = {}
    for concept, (column, _) in DETAILS.items():
        name = concept_field(ds, concept)
        if name and not ds.field(name).level.sensitive:
            out[column] = name
    return out


def detail_columns(frame: pl.DataFrame, details: dict[str, str]) -> pl.DataFrame:
    """The :data:`DETAILS` columns of ``frame``'s records, typed (null where absent)."""
    types = {"VARCHAR": pl.String, "BIGINT": pl.Int64}
    out = {}
    for column, sql_type in DETAILS.values():
        name = details.get(column)
        if sql_type == "TIMESTAMP":
            values = frame[name] if name else pl.Series([None] * frame.height, dtype=pl.String)
            out[column] = as_timestamp(values)
        elif name:
            out[column] = frame[name].cast(types[sql_type], strict=False)
        else:
            out[column] = pl.Series([None] * frame.height, dtype=types[sql_type])
    return pl.DataFrame(out)
