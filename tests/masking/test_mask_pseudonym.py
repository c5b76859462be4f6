"""Pseudonyms: deterministic per key, key-dependent, per recipient, normalised, = HMAC."""

from __future__ import annotations

import hmac
import os

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog.settings import Settings
from masking.keys import KeyRing
from masking.pseudonym import (
    PSEUDONYM_HEX,
    PseudonymKey,
    _normalise,
    looks_like_pseudonym,
    normalise_expr,
    pseudonym,
    pseudonym_key,
    pseudonymise_series,
)


def reference(key: bytes, value: str | bytes, digest: str = "sha256") -> str:
    """The documented derivation, with the standard library's HMAC (OpenSSL through
    hashlib: an implementation apart from the one under test for SM3 too)."""
    data = value.encode() if isinstance(value, str) else value
    return hmac.digest(key.hex().encode(), data, digest).hex()[:PSEUDONYM_HEX]


@pytest.fixture
def gm_ring(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> KeyRing:
    monkeypatch.delenv("STREETHUB_MASTER_KEY", raising=False)
    return KeyRing.from_settings(Settings(home=settings.home / "gm", cipher_suite="gm"))


@given(
    st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=40),
    st.binary(min_size=1, max_size=100),
)
def test_pseudonym_equals_standard_hmac(values: list[str | None], key: bytes) -> None:
    got = PseudonymKey(key).hexdigests(pl.Series(values, dtype=pl.String)).to_list()
    assert got == [None if v is None else reference(key, v) for v in values]


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=20))
def test_binary_input_equals_standard_hmac(values: list[bytes]) -> None:
    key = os.urandom(32)
    got = PseudonymKey(key).hexdigests(pl.Series(values, dtype=pl.Binary)).to_list()
    assert got == [reference(key, v) for v in values]


@given(
    st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=40),
    st.binary(min_size=1, max_size=100),
)
def test_gm_pseudonym_equals_standard_hmac_sm3(values: list[str | None], key: bytes) -> None:
    got = PseudonymKey(key, suite="gm").hexdigests(pl.Series(values, dtype=pl.String)).to_list()
    assert got == [None if v is None else reference(key, v, "sm3") for v in values]


@given(st.lists(st.one_of(st.none(), st.binary(max_size=40)), min_size=1, max_size=20))
def test_gm_binary_input_equals_standard_hmac_sm3(values: list[bytes | None]) -> None:
    key = os.urandom(32)
    got = PseudonymKey(key, suite="gm").hexdigests(pl.Series(values, dtype=pl.Binary)).to_list()
    assert got == [None if v is None else reference(key, v, "sm3") for v in values]


def test_the_rings_suite_chooses_the_hmac(keyring: KeyRing, gm_ring: KeyRing) -> None:
    """Same data key, two suites: unrelated pseudonyms; each ring makes its own suite's."""
    s = pl.Series(["11010519491231002X"])
    for ring, digest in ((keyring, "sha256"), (gm_ring, "sm3")):
        key = ring.current("pseudonym").material
        assert pseudonymise_series(s, ring, kind="citizen_id")[0] == reference(key, s[0], digest)
    key = keyring.current("pseudonym").material
    assert PseudonymKey(key, suite="gm").hexdigests(s)[0] != PseudonymKey(key).hexdigests(s)[0]
    # a re-key computes the other suite's pseudonyms with the ring as it stands
    assert pseudonymise_series(s, keyring, kind="citizen_id", suite="gm")[0] == reference(
        key, s[0], "sm3"
    )
    assert "suite=gm" in repr(pseudonym_key(gm_ring))


@given(st.text(min_size=1, max_size=30))
def test_key_dependent(value: str) -> None:
    a, b = PseudonymKey(os.urandom(32)), PseudonymKey(os.urandom(32))
    s = pl.Series([value])
    assert a.hexdigests(s)[0] != b.hexdigests(s)[0]


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


def test_key_never_shown(keyring: KeyRing) -> None:
    """Not in the key's repr, the expression's repr, a query plan or a plugin error."""
    key = os.urandom(32)
    pk = PseudonymKey(key)
    assert "hidden" in repr(pk)
    expr = pk.expr(pl.col("v"))
    lazy = pl.LazyFrame({"v": [1, 2]}).select(expr)
    with pytest.raises(pl.exceptions.PolarsError) as err:
        lazy.collect()  # an integer column is refused by the plugin
    for text in (repr(pk), repr(expr), str(expr), lazy.explain(), str(err.value)):
        assert key.hex() not in text and key.hex()[:16] not in text
    gm = PseudonymKey(key, suite="gm")
    gm_expr = gm.expr(pl.col("v"))
    gm_lazy = pl.LazyFrame({"v": ["a"]}).select(gm_expr)
    for text in (repr(gm), repr(gm_expr), str(gm_expr), gm_lazy.explain()):
        assert key.hex() not in text and key.hex()[:16] not in text


ID_CHARS = st.sampled_from(list("0123456789Xxab -\t\u3000０１９Ｘｘ身"))


@given(st.lists(st.one_of(st.none(), st.text(ID_CHARS, max_size=20)), max_size=30))
def test_id_fast_path_equals_normalising_every_row(values: list[str | None]) -> None:
    s = pl.Series(values, dtype=pl.String)
    every_row = s.to_frame("v").select(normalise_expr(pl.col("v"), "citizen_id")).to_series()
    assert _normalise(s, "citizen_id").to_list() == every_row.to_list()


@pytest.mark.parametrize(
    "series",
    [
        pl.Series("v", [], dtype=pl.String),
        pl.Series("v", [None, None], dtype=pl.String),
        pl.Series("v", [None, None]),  # dtype Null
        pl.Series("v", ["110105194912310021", None], dtype=pl.Categorical),
        pl.Series("v", [13812345678, None]),  # an integer column of phone numbers
    ],
)
def test_edge_columns(series: pl.Series, keyring: KeyRing, gm_ring: KeyRing) -> None:
    for ring in (keyring, gm_ring):
        out = pseudonymise_series(series, ring, kind="citizen_id")
        assert out.dtype == pl.String and out.len() == series.len() and out.name == "v"
        assert out.is_null().to_list() == series.is_null().to_list()
        assert all(looks_like_pseudonym(v) for v in out.drop_nulls())


def test_the_callers_column_is_not_changed(keyring: KeyRing) -> None:
    """Normalising and 15→18 upgrading work on copies (polars' scatter is in place)."""
    values = ["110105491231002", "11010519491231002x", "１１０１０５１９４９１２３１００２Ｘ"]
    series = pl.Series("cid", values)
    out = pseudonymise_series(series, keyring, kind="citizen_id")
    assert series.to_list() == values and out.name == "cid"
    assert out.n_unique() == 1  # the same person three ways
