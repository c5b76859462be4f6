"""The need model's shared vocabulary: the needs it predicts, its horizons and the frames its
parts hand each other.

Frames (polars):

- **features** — one row per ``(person_id, cutoff)``: ``person_id`` the master resident
  index's pseudonym (``curated.person``), ``cutoff`` the date the features are as of
  (nothing recorded or learned after it), then one numeric or boolean column per feature.
- **labels** — one row per ``(person_id, cutoff)`` with one boolean column per need code:
  whether the need was recorded in the ``HORIZON_DAYS`` days after the cut-off
  (``cutoff < event date <= cutoff + HORIZON_DAYS``).
- **grid counts** — one row per ``(grid_code, category, week_start)`` (``week_start`` a
  Monday) with ``appeal_count`` (:data:`GRID_COUNT`), the number of appeals of that category
  in that cell that week.
"""

from __future__ import annotations

from typing import Final

HORIZON_DAYS: Final = 90
"""A need score is the probability of the need in the 90 days after the cut-off."""

FORECAST_WEEKS: Final = 1
"""The grid forecast is the expected count of the week after the cut-off."""

SEASON_WEEKS: Final = 52
"""The seasonal-naive forecast repeats the count of 52 weeks before."""

NEEDS: Final[dict[str, str]] = {
    "home_care": "居家照护与助餐",
    "health_event": "需随访的健康事件",
    "financial_assistance": "经济救助",
    "emergency_help": "紧急救助",
}
"""The needs scored per resident: code → Chinese label (as a community worker reads it)."""

KEYS: Final = ("person_id", "cutoff")
"""The key of the features and labels frames."""

GRID_KEYS: Final = ("grid_code", "category", "week_start")
"""The key of the grid counts frame."""

GRID_COUNT: Final = "appeal_count"
"""The grid counts frame's count column (a name no dataset has: production code names none)."""
