"""Row binding through ``Protection`` (what raw and staged write): a ciphertext moved to
another row, column or dataset, or a staged row given another key pseudonym, no longer
decrypts — under both suites; the row identity comes from the frame's lineage columns."""

from __future__ import annotations

import polars as pl
import pytest

from catalog.loader import get_catalogue
from catalog.model import Dataset
from catalog.settings import Settings
from masking.errors import DecryptionError
from pipelines.protection import Protection

IDS = ["11010519491231002X", "440524188001010014", "110101199003071234"]
NAMES = ["张三", "欧阳娜娜", "李四"]


@pytest.fixture(params=["intl", "gm"])
def protection(request: pytest.FixtureRequest, settings: Settings) -> Protection:
    home = Settings(home=settings.home / request.param, cipher_suite=request.param)
    return Protection.from_settings(home.ensure_dirs(), actor="test:rows")


@pytest.fixture
def residents() -> Dataset:
    return get_catalogue().dataset("gaj.registered_residents")[1]


def _raw(delivery: str = "dlv-1") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "_delivery_id": [delivery] * 3,
            "_source_row": [1, 2, 3],
            "citizen_id": IDS,
            "name": NAMES,
            "gender": ["男", "女", "男"],
        }
    )


def _swap(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    values = frame[column].to_list()
    return frame.with_columns(pl.Series(column, [values[1], values[0], values[2]]))


def test_raw_values_bound_to_delivery_and_source_row(
    protection: Protection, residents: Dataset
) -> None:
    enc = protection.protect(_raw(), residents)
    prefix = "a1:" if protection.keyring.suite.name.value == "intl" else "s1:"
    assert enc["citizen_id"].str.starts_with(prefix).all() and enc["gender"][0] == "男"
    assert protection.reveal_text(enc, residents, "quality_gate").equals(_raw())
    with pytest.raises(DecryptionError, match=r"row 0, field citizen_id"):
        protection.reveal_text(_swap(enc, "citizen_id"), residents, "quality_gate")
    moved = enc.with_columns(pl.col("_source_row") + 10)  # the same values, other rows
    with pytest.raises(DecryptionError):
        protection.reveal_text(moved, residents, "quality_gate")
    other = enc.with_columns(pl.lit("dlv-2").alias("_delivery_id"))  # another delivery
    with pytest.raises(DecryptionError):
        protection.reveal_text(other, residents, "quality_gate")
    crossed = enc.with_columns(pl.col("citizen_id").alias("name"))  # another column
    with pytest.raises(DecryptionError, match=r"field name"):
        protection.reveal_text(crossed, residents, "quality_gate")


def test_staged_values_bound_to_the_key_pseudonym(
    protection: Protection, residents: Dataset
) -> None:
    staged = _raw().with_columns(protection.key_pid(_raw(), residents).alias("_key_pid"))
    enc = protection.protect(staged, residents)
    assert protection.reveal(enc, residents, "quality_scores")["name"].to_list() == NAMES
    # the lineage may change (a later delivery re-stages a row): the key binds, not the row
    relined = enc.with_columns(pl.lit("dlv-9").alias("_delivery_id"), pl.col("_source_row") * 7)
    assert protection.reveal(relined, residents, "quality_scores")["name"].to_list() == NAMES
    with pytest.raises(DecryptionError, match=r"row 0, field name"):
        protection.reveal(_swap(enc, "name"), residents, "quality_scores")
    # a row given another person's key pseudonym: its values no longer decrypt
    with pytest.raises(DecryptionError):
        protection.reveal(_swap(enc, "_key_pid"), residents, "quality_scores")


def test_a_frame_without_its_identity_is_refused(
    protection: Protection, residents: Dataset
) -> None:
    enc = protection.protect(_raw(), residents)
    with pytest.raises(DecryptionError, match=r"no row identity.*_key_pid.*_delivery_id"):
        protection.reveal(enc.select("citizen_id"), residents, "quality_scores")
    with pytest.raises(DecryptionError, match=r"no row identity"):
        protection.protect(_raw().select("name"), residents)
    # a frame without a sensitive column needs none
    assert protection.protect(_raw().select("gender"), residents).equals(_raw().select("gender"))


def test_a_delivered_value_shaped_like_a_ciphertext_is_encrypted(
    protection: Protection, residents: Dataset
) -> None:
    """The catalogue says a column is encrypted, never a value's shape: a delivered name
    that looks like a stored ciphertext (old ``e1:`` or either suite's) is encrypted."""
    import base64
    import os

    looks = [
        f"{p}1:" + base64.urlsafe_b64encode(os.urandom(40)).decode().rstrip("=")
        for p in ("e", "a", "s")
    ]
    raw = _raw().with_columns(pl.Series("name", looks))
    enc = protection.protect(raw, residents)
    assert not set(enc["name"]) & set(looks)
    assert protection.reveal_text(enc, residents, "quality_gate")["name"].to_list() == looks
    # and a plain value that reached an encrypted column is refused, not passed through
    planted = enc.with_columns(pl.Series("name", [enc["name"][0], "王五", enc["name"][2]]))
    with pytest.raises(DecryptionError, match=r"row 1, field name: value is not a ciphertext"):
        protection.reveal_text(planted, residents, "quality_gate")
