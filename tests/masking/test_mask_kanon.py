"""k-anonymity: check and enforce over quasi-identifiers."""

from __future__ import annotations

import random

import polars as pl
import pytest

from catalog.model import Dataset
from masking.errors import KAnonymityError
from masking.kanon import check_k, enforce_k, quasi_identifiers


def _frame(n: int = 400, seed: int = 1) -> pl.DataFrame:
    rng = random.Random(seed)
    return pl.DataFrame(
        {
            "age": [rng.randint(60, 100) for _ in range(n)],
            "gender": [rng.choice("男女") for _ in range(n)],
            "community_code": [f"110105001{rng.randint(1, 8):03d}" for _ in range(n)],
            "pseudonym": [f"{i:020x}" for i in range(n)],
        }
    )


def test_check_k() -> None:
    df = pl.DataFrame({"a": ["x"] * 5 + ["y"] * 2 + ["z"], "b": ["1"] * 8})
    r = check_k(df, ["a", "b"], k=5)
    assert (r.smallest_class, r.classes_below_k, r.rows_below_k, r.classes) == (1, 2, 3, 3)
    assert r.worst_class == {"a": "z", "b": "1"} and not r.ok
    assert check_k(df, ["b"], k=5).ok


def test_enforce_generalises_then_suppresses() -> None:
    df = _frame()
    before = check_k(df, ["age", "gender", "community_code"], k=5)
    assert not before.ok
    out, report = enforce_k(df, ["age", "gender", "community_code"], k=5, max_suppression=0.05)
    assert report.final is not None and report.final.ok
    assert report.steps and report.rows_before == 400
    assert out.height == 400 - report.suppressed_rows
    assert report.suppressed_rows <= 20
    assert check_k(out, ["age", "gender", "community_code"], k=5).smallest_class >= 5


def test_enforce_refuses_too_much_suppression() -> None:
    df = pl.DataFrame({"gender": ["男"] * 3 + ["女"] * 3}).with_columns(
        pl.Series("code", [f"11010500100{i}" for i in range(6)])
    )
    with pytest.raises(KAnonymityError, match="more than"):
        enforce_k(df, ["gender"], k=10, max_suppression=0.1)


def test_region_codes_climb_to_street(residents: Dataset) -> None:
    df = pl.DataFrame(
        {"community_code": [f"110105001{i:03d}" for i in range(1, 9)] * 3, "gender": ["男"] * 24}
    )
    assert quasi_identifiers(residents, df) == ["gender", "community_code"]
    out, report = enforce_k(df, ["community_code"], k=5, max_suppression=0.0)
    assert set(out["community_code"]) == {"110105001"}
    assert report.steps == ["community_code: street (9 digits)"]
