"""The department tests' street and the helpers their modules share: imported by path
(``tests.departments.street``), not from ``conftest`` — a bare ``conftest`` is whichever
conftest.py pytest imported first (``pytest tests/masking tests/departments`` got
tests/masking's)."""

from __future__ import annotations

import datetime as dt

from departments.simulate import SPECS
from departments.spec import Spec

RESIDENTS = 800
SEED = 11
START = dt.date(2026, 11, 24)


def spec_of(dept: str, code: str) -> Spec:
    return next(s for s in SPECS if (s.dept, s.code) == (dept, code))


def as_text(v: object) -> str:
    return "" if v is None else str(v)
