"""Consistency and accuracy find their authority in the catalogue, whatever it is called.

Small generated frames: a register (the person key's authoritative dataset) and a dataset
that refers to it. The same frames are scored against the shipped catalogue, a copy where
the register's department has another code, and a copy that declares no authority.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from catalog.authority import authoritative_datasets, key_authorities, person_key, person_registers
from catalog.loader import load_catalogue
from catalog.model import Catalogue
from catalog.settings import CATALOG_DIR
from quality.scores import score_datasets
from quality.scores_authority import comparisons, no_authority_detail, undeclared

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
LOADED = NOW - dt.timedelta(hours=1)
QUARANTINE = pl.DataFrame(
    schema={
        "dept": pl.String,
        "dataset": pl.String,
        "delivery_id": pl.String,
        "source_row": pl.Int64,
        "field": pl.String,
        "check_name": pl.String,
    }
)


def catalogue_variant(tmp: Path, variant: str) -> Catalogue:
    """``shipped``; ``renamed`` (the person key's authority gets the code ``authority``);
    ``no_authority`` (that department marks no field authoritative)."""
    shipped = load_catalogue(CATALOG_DIR)
    if variant == "shipped":
        return shipped
    owner = key_authorities(shipped)[person_key(shipped)].dept
    d = tmp / f"catalogue-{variant}"
    shutil.copytree(CATALOG_DIR, d)
    path = d / f"{owner}.yaml"
    text = path.read_text(encoding="utf-8")
    if variant == "renamed":
        path.unlink()
        path = d / "authority.yaml"
        text = re.sub(rf"(?m)^code: {owner}$", "code: authority", text)
    else:
        text = re.sub(r"authoritative: true,\s*", "", text)
    path.write_text(text, encoding="utf-8")
    return load_catalogue(d)


def citizen_ids(n: int, start: int = 0) -> list[str]:
    """Distinct 18-character strings shaped like citizen IDs (check digits not needed here)."""
    return [f"1101051949{(start + i) % 10_000:04d}{i % 1000:03d}X"[:18] for i in range(n)]


def frame(rows: dict[str, list], delivery: str) -> pl.DataFrame:
    n = len(next(iter(rows.values())))
    return pl.DataFrame(rows).with_columns(
        pl.lit(delivery).alias("_delivery_id"),
        pl.int_range(1, n + 1, dtype=pl.Int64).alias("_source_row"),
        pl.lit(LOADED, dtype=pl.Datetime("us", "UTC")).alias("_loaded_at"),
    )


def person_world(cat: Catalogue, n: int = 40, unknown: int = 4, wrong: int = 3):
    """(register key, referring dataset key, staged frames, deliveries) for ``cat``, which
    must declare a person key.

    The register holds ``n`` persons; the referring dataset (the first non-register
    dataset keyed by the person key) holds the first ``n - unknown`` of them plus
    ``unknown`` persons the register does not know, ``wrong`` of the known ones with a
    birth date that disagrees with the register.
    """
    (reg, *_) = person_registers(cat)  # the catalogue must declare one
    key = person_key(cat)
    reg_dept, reg_ds, reg_field = reg.dept, reg.dataset, reg.field
    ids = citizen_ids(n)
    births = [dt.date(1950, 1, 1) + dt.timedelta(days=97 * i) for i in range(n)]
    reg_fields = {f.concept: f.name for f in reg_ds.fields if f.concept}
    register = frame({reg_field: ids, reg_fields["person.birth_date"]: births}, f"{reg_dept}-d1")
    other_dept, other = next(
        (d.code, ds)
        for d, ds in cat.datasets()
        if d.code != reg_dept
        and len([f for f in ds.fields if f.concept == key]) == 1
        and any(f.concept == "person.birth_date" for f in ds.fields)
    )
    o_fields = {f.concept: f.name for f in other.fields if f.concept}
    their_ids = ids[: n - unknown] + citizen_ids(unknown, start=5000)
    their_births = births[: n - unknown] + births[:unknown]
    their_births = [
        b + dt.timedelta(days=1) if i < wrong else b for i, b in enumerate(their_births)
    ]
    referring = frame(
        {o_fields[key]: their_ids, o_fields["person.birth_date"]: their_births},
        f"{other_dept}-d1",
    )
    staged = {(reg_dept, reg_ds.code): register, (other_dept, other.code): referring}
    deliveries = pl.DataFrame(
        [
            {"delivery_id": f"{d}-d1", "dept": d, "dataset": c, "arrived_at": LOADED}
            for d, c in staged
        ]
    )
    return (reg_dept, reg_ds.code), (other_dept, other.code), staged, deliveries


def _scores(cat: Catalogue, staged, deliveries) -> pl.DataFrame:
    accounts = pl.DataFrame(
        [
            {
                "dept": d,
                "dataset": c,
                "rows_read": f.height,
                "rows_loaded": f.height,
                "status": "ok",
            }
            for (d, c), f in staged.items()
        ]
    )
    return score_datasets(cat, staged, QUARANTINE, accounts, deliveries, NOW)


def _get(sc: pl.DataFrame, key: tuple[str, str], dim: str) -> dict:
    return sc.filter(
        (pl.col("dept") == key[0]) & (pl.col("dataset") == key[1]) & (pl.col("dimension") == dim)
    ).row(0, named=True)


@pytest.mark.parametrize("variant", ["shipped", "renamed"])
def test_consistency_and_accuracy_against_the_declared_authority(
    tmp_path: Path, variant: str
) -> None:
    cat = catalogue_variant(tmp_path, variant)
    reg, other, staged, deliveries = person_world(cat, n=40, unknown=4, wrong=3)
    sc = _scores(cat, staged, deliveries)
    cons = _get(sc, other, "consistency")
    # 36 persons matched, 3 of them with another birth date
    assert (cons["numerator"], cons["denominator"]) == (33.0, 36.0)
    assert "36/40 rows matched" in cons["detail"]
    acc = _get(sc, other, "accuracy")
    assert acc["score"] == pytest.approx(33 / 36)
    assert f"{reg[0]}.{reg[1]}" in acc["detail"]
    if variant == "renamed":
        assert reg[0] == "authority" and "gaj" not in cons["detail"] + acc["detail"]
    # the register itself: key validity
    assert "authoritative source" in _get(sc, reg, "accuracy")["detail"]
    assert no_authority_detail(cat, cat.dataset(f"{other[0]}.{other[1]}")[1]) is None


def test_no_authority_declared_still_scores(tmp_path: Path) -> None:
    shipped = catalogue_variant(tmp_path, "shipped")
    cat = catalogue_variant(tmp_path, "no_authority")
    _, other, staged, deliveries = person_world(shipped, n=20, unknown=2, wrong=1)
    assert not [c for c in comparisons(cat) if c.concept.startswith("person.")]
    sc = _scores(cat, staged, deliveries)
    for key in staged:
        # a dataset still authoritative for an attribute of its own (a care level) is scored
        # on its key's validity; every other one says why accuracy cannot be measured
        own = key in authoritative_datasets(cat)
        for dim in ("consistency", "accuracy") if not own else ("consistency",):
            row = _get(sc, key, dim)
            assert row["score"] is None
            assert row["detail"].startswith("n/a: no authority declared for ")
            assert "person.citizen_id" in row["detail"]
        if own:
            assert "authoritative source" in _get(sc, key, "accuracy")["detail"]
        # the other dimensions are still measured
        assert _get(sc, key, "completeness")["score"] is not None
        assert _get(sc, key, "timeliness")["score"] == 1.0
    _, ds = cat.dataset(f"{other[0]}.{other[1]}")
    assert "person.birth_date" in undeclared(cat, ds)
    # other entities keep their authority
    assert (
        key_authorities(cat)["merchant.credit_code"]
        == key_authorities(shipped)["merchant.credit_code"]
    )
