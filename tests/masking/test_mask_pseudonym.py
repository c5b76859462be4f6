"""Pseudonyms: deterministic per key, key-dependent, per recipient, normalised, = HMAC."""

from __future__ import annotations

import hmac
import os

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from masking.keys import KeyRing
from masking.pseudonym import (
    PSEUDONYM_HEX,
    KeyedHasher,
    looks_like_pseudonym,
    pseudonym,
    pseudonymise_series,
)


@given(st.lists(st.text(max_size=30), max_size=30), st.binary(min_size=1, max_size=100))
def test_keyed_hasher_equals_hmac(values: list[str], key: bytes) -> None:
    got = KeyedHasher(key).hexdigests([v.encode() for v in values])
    want = [hmac.digest(key, v.encode(), "sha256").hex()[:PSEUDONYM_HEX] for v in values]
    assert got == want


@given(st.text(min_size=1, max_size=30))
def test_key_dependent(value: str) -> None:
    a, b = KeyedHasher(os.urandom(32)), KeyedHasher(os.urandom(32))
    assert a.hexdigests([value.encode()]) != b.hexdigests([value.encode()])


def test_deterministic_joinable_and_normalised(keyring: KeyRing) -> None:
    s1 = pl.Series(["11010519491231002X", "13812345678", None])
    ids = pseudonymise_series(s1, keyring, kind="citizen_id")
    assert ids.null_count() == 1 and all(looks_like_pseudonym(v) for v in ids.drop_nulls())
    again = pseudonymise_series(
        pl.Series([" 11010519491231002x", "１１０１０５１９４９１２３１００２Ｘ"]),
        keyring,
        kind="citizen_id",
    )
    assert again.to_list() == [ids[0], ids[0]]
    # a 15-digit ID is upgraded to 18 first: same person, same pseudonym
    assert pseudonym("110105491231002", keyring, kind="citizen_id") == pseudonym(
        "11010519491231002X", keyring, kind="citizen_id"
    )
    phones = pseudonymise_series(
        pl.Series(["+86 138-1234-5678", "13812345678"]), keyring, kind="mobile"
    )
    assert phones[0] == phones[1]


def test_recipients_cannot_join(keyring: KeyRing) -> None:
    s = pl.Series(["11010519491231002X"])
    hub = pseudonymise_series(s, keyring, kind="citizen_id")[0]
    wjw = pseudonymise_series(s, keyring, kind="citizen_id", recipient="wjw")[0]
    mzj = pseudonymise_series(s, keyring, kind="citizen_id", recipient="mzj")[0]
    assert len({hub, wjw, mzj}) == 3
    assert (
        pseudonymise_series(s, KeyRing(keyring.keys_dir), kind="citizen_id", recipient="wjw")[0]
        == wjw
    )


def test_repr_hides_key() -> None:
    key = os.urandom(32)
    assert key.hex() not in repr(KeyedHasher(key)) and "hidden" in repr(KeyedHasher(key))
