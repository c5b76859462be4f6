"""Pseudonyms: keyed HMAC of the normalised identifier (joinable, not reversible).

A pseudonym is the first :data:`PSEUDONYM_HEX` hex characters (80 bits) of
HMAC-H(K, normalised value), where H is the key ring's suite's hash (SHA-256 under
``intl``, SM3 under 国密 ``gm``) and K is the pseudonym data key written as 64 lowercase
hex characters (the HMAC key is those ASCII bytes: 256 bits of entropy, one 64-byte
block of either hash, so HMAC uses it as it is). Anyone holding the data key can
recompute a pseudonym with any standard HMAC: ``hmac.digest(key.hex().encode(),
value.encode(), "sha256" or "sm3").hex()[:20]``. A pseudonym does not say its suite:
the ring's suite does, and ``streethub keys rekey`` recomputes every pseudonym when it
changes (``pipelines.rekey``).

Deterministic per key, so tables pseudonymised with the same key join; a different key
(``recipient=<department code>`` → key purpose ``recipient:<department code>``) gives
unrelated pseudonyms, so two departments' extracts cannot be joined without the hub.

Why 80 bits is safe: a collision among n identifiers has probability ≈ n²/2⁸¹. For the
whole population of China (1.4·10⁹ — far beyond a street's 10⁵) that is ≈ 8·10⁻⁷;
for a street it is ≈ 4·10⁻¹⁵. Guessing is prevented by the secret key, not the length
(an attacker without the key cannot test candidate IDs at all).

Speed: HMAC-SHA256 runs inside polars, in the Rust ``polars-hash`` plugin (SHA-NI where
the CPU has it), one column at a time with no Python per value: about 10× ``hmac.digest``
per value on one core (``python -m bench pseudonyms``). The key travels inside the
expression, which is never serialised, printed or logged: an expression's repr, a
query plan and a plugin error show only the function name. HMAC-SM3 has no polars
plugin: a batch function runs ``CipherSuite.keyed_mac`` (OpenSSL's SM3 through
``cryptography``, the keyed state copied per value) over the column's values as bytes,
about 5× ``hmac.digest(..., "sm3")`` per value (``python -m bench suites``).
"""

from __future__ import annotations

import re

import polars as pl
import polars_hash  # noqa: F401  (registers the ``chash`` expression namespace)

from catalog.identifiers import halfwidth, phone_canonical, upgrade_id_15
from catalog.model import PiiKind
from masking.errors import KeyRingError
from masking.keys import PSEUDONYM_SCHEME, DataKey, KeyRing
from masking.suite import CipherSuite, Suite, get_suite

PSEUDONYM_HEX = 20
PSEUDONYM_PATTERN = rf"^[0-9a-f]{{{PSEUDONYM_HEX}}}$"
# kinds whose full-width punctuation is content, not a spelling of ASCII
PLAIN_TEXT_KINDS = frozenset({PiiKind.person_name, PiiKind.address, PiiKind.free_text})


class PseudonymKey:
    """One pseudonym data key under one suite, ready to hash columns. ``repr`` hides the key."""

    __slots__ = ("_hmac_key", "suite", "version")

    def __init__(self, key: bytes, version: int = 0, suite: CipherSuite | str = Suite.INTL) -> None:
        self._hmac_key = key.hex()
        self.version = version
        self.suite = suite if isinstance(suite, CipherSuite) else get_suite(suite)

    @classmethod
    def of(cls, data_key: DataKey, suite: CipherSuite | str = Suite.INTL) -> PseudonymKey:
        return cls(data_key.material, data_key.version, suite)

    def __repr__(self) -> str:
        return f"PseudonymKey(suite={self.suite.name.value}, version={self.version}, key=<hidden>)"

    def expr(self, values: pl.Expr, length: int = PSEUDONYM_HEX) -> pl.Expr:
        """HMAC hex digests of a String or Binary expression, cut to ``length``; null stays null."""
        if self.suite.name is Suite.INTL:
            return values.chash.hmac_sha256(key=self._hmac_key).str.slice(0, length)
        mac = self.suite.keyed_mac(self._hmac_key.encode())

        def batch(s: pl.Series) -> pl.Series:
            data = s if s.dtype == pl.Binary else s.cast(pl.String).cast(pl.Binary)
            out = [None if v is None else mac(v) for v in data.to_list()]  # hex in Rust
            return pl.Series(s.name, out, dtype=pl.Binary).bin.encode("hex").str.slice(0, length)

        return values.map_batches(batch, return_dtype=pl.String)

    def hexdigests(self, values: pl.Series, length: int = PSEUDONYM_HEX) -> pl.Series:
        return values.to_frame("v").select(self.expr(pl.col("v"), length)).to_series()


def key_purpose(recipient: str | None) -> str:
    return "pseudonym" if recipient is None else f"recipient:{recipient}"


def pseudonym_key(
    keyring: KeyRing,
    recipient: str | None = None,
    version: int | None = None,
    suite: CipherSuite | str | None = None,
) -> PseudonymKey:
    """The pseudonym key (or a recipient's), current or a given version, under the ring's
    suite (or ``suite``: a re-key computes the new suite's pseudonyms before the ring
    records it)."""
    if keyring.pseudonym_scheme != PSEUDONYM_SCHEME:
        raise KeyRingError(
            f"the key ring in {keyring.keys_dir} made its pseudonyms with scheme "
            f"{keyring.pseudonym_scheme}; this version makes scheme {PSEUDONYM_SCHEME}, and "
            "the two would give one person two pseudonyms. Rebuild this home: "
            "`make clean && make run` (or a new STREETHUB_HOME)."
        )
    purpose = key_purpose(recipient)
    key = keyring.current(purpose) if version is None else keyring.get(purpose, version)
    return PseudonymKey.of(key, keyring.suite if suite is None else suite)


def normalise_expr(expr: pl.Expr, kind: PiiKind | str | None = None) -> pl.Expr:
    """Normalisation before hashing: half-width, trimmed; IDs' x upper-case; phones as staged.

    Full-width → half-width (``catalog.identifiers.halfwidth``) except in names, addresses
    and free text, whose Chinese punctuation is content (the standardiser keeps it too), so
    a value hashes the same delivered and staged.
    """
    e = expr.cast(pl.String)
    kind = PiiKind(kind) if kind is not None else None
    if kind not in PLAIN_TEXT_KINDS:
        e = halfwidth(e)
    e = e.str.strip_chars(" \t\u3000")
    if kind is PiiKind.citizen_id:
        return e.str.replace_all("x", "X", literal=True)
    if kind in (PiiKind.mobile, PiiKind.landline):  # as the standardiser stages a phone
        return pl.coalesce(phone_canonical(e), e)
    if kind in (PiiKind.email, PiiKind.plate):
        return e.str.to_uppercase() if kind is PiiKind.plate else e.str.to_lowercase()
    return e


KEY_SEPARATOR = "|"  # between the fields of a composite business key's text
_KEY_ESCAPE = "\\"
_KEY_EMPTY = _KEY_ESCAPE + "e"  # an empty (not null) field: never the text of a value


def key_text(fields: list[pl.Expr]) -> pl.Expr:
    r"""The text a composite business key is pseudonymised from: each field normalised as
    every pseudonym's text is (:func:`normalise_expr`: half-width, trimmed), its ``\`` and
    ``|`` escaped (``\\``, ``\|``), an empty value written ``\e`` and a null left empty;
    joined by ``|``.

    Injective: two keys share a text only when each field is the same, null for null, so no
    value can imitate a field boundary (joined plainly, ``("a|b", "c")`` and ``("a", "b|c")``
    were one key, and so were a null and an empty field). Normalised field by field:
    half-width applied to the joined text would turn a full-width ``｜`` inside a value into
    a boundary. For a key whose fields hold no ``\`` or ``|`` (nor their full-width forms)
    and none is empty or has spaces at its ends (the standardiser stages no such string)
    it is the plain join that pseudonyms were computed from before 2026-12-07, so those
    pseudonyms stay valid; a lake staged before then with such a key recomputes every
    pseudonym with ``streethub keys rekey`` to its own suite (``pipelines.rekey``).
    """
    parts = []
    for f in fields:
        e = normalise_expr(f, None)
        e = e.str.replace_all(_KEY_ESCAPE, _KEY_ESCAPE * 2, literal=True)
        e = e.str.replace_all(KEY_SEPARATOR, _KEY_ESCAPE + KEY_SEPARATOR, literal=True)
        parts.append(pl.when(e == "").then(pl.lit(_KEY_EMPTY)).otherwise(e).fill_null(""))
    return pl.concat_str(parts, separator=KEY_SEPARATOR)


def _normalise(values: pl.Series, kind: PiiKind | str | None) -> pl.Series:
    """:func:`normalise_expr` over a column; for citizen IDs only the rows that need it.

    An ID with no non-ASCII character, no space or tab and no lower-case x is already
    normal. Those tests are literal scans, a third of the cost of normalising every row.
    """
    frame = values.to_frame("v")
    if kind is None or PiiKind(kind) is not PiiKind.citizen_id:
        return frame.select(normalise_expr(pl.col("v"), kind)).to_series()
    v = pl.col("v")
    dirty = frame.select(
        (v.str.len_bytes() != v.str.len_chars())
        | v.str.contains(" ", literal=True)
        | v.str.contains("\t", literal=True)
        | v.str.contains("x", literal=True)
    ).to_series()
    if not dirty.any():
        return values.rename("v")
    fixed = values.filter(dirty).to_frame("v").select(normalise_expr(v, kind)).to_series()
    return values.rename("v").scatter(dirty.arg_true(), fixed)


def _upgrade_ids(values: pl.Series) -> pl.Series:
    """15-digit IDs → 18, as the standardiser does (only the short ones are computed)."""
    short = values.str.len_chars() == 15
    if not short.any():
        return values
    upgraded = values.filter(short).to_frame("v").select(upgrade_id_15(pl.col("v"))).to_series()
    return values.scatter(short.arg_true(), upgraded)


def pseudonymise_series(
    series: pl.Series,
    keyring: KeyRing,
    *,
    kind: PiiKind | str | None = None,
    recipient: str | None = None,
    version: int | None = None,
    suite: CipherSuite | str | None = None,
) -> pl.Series:
    """Pseudonyms of a column (normalised by ``kind``); 15-digit IDs upgraded to 18 first."""
    norm = _normalise(series.cast(pl.String), kind)
    if kind is not None and PiiKind(kind) is PiiKind.citizen_id:
        norm = _upgrade_ids(norm)
    key = pseudonym_key(keyring, recipient, version, suite)
    return key.hexdigests(norm).alias(series.name)


def pseudonym(
    value: str, keyring: KeyRing, *, kind: PiiKind | str | None = None, recipient: str | None = None
) -> str:
    """The pseudonym of one value (same result as :func:`pseudonymise_series`)."""
    out = pseudonymise_series(pl.Series([value]), keyring, kind=kind, recipient=recipient)[0]
    return str(out)


def looks_like_pseudonym(value: str) -> bool:
    return re.fullmatch(PSEUDONYM_PATTERN, value) is not None


# -- keyed row digests: is a delivered row the one already staged? -------------------------

ROW_DIGEST_HEX = 32  # 128 bits: a changed row taken for an unchanged one is never a concern
_ROW_DOMAIN = "streethub/row-digest/v1\x1e"  # never the bytes of a pseudonymised value


def _canonical(name: str, dtype: pl.DataType) -> pl.Expr:
    """One field of the canonical encoding: ``name US length US value RS``; null → empty.

    Length-prefixed, so no value can imitate another field's boundary; named, so two
    fields swapping values differ; a null field is left out, so a field the catalogue
    adds later (null in older rows) leaves their digests unchanged.
    """
    c = pl.col(name)
    if isinstance(dtype, pl.Datetime):  # microseconds since the epoch (of the instant if zoned)
        text = c.dt.epoch("us").cast(pl.String)
    elif dtype == pl.Date:  # days since the epoch (3× cheaper than ISO text)
        text = c.cast(pl.Int32).cast(pl.String)
    else:
        text = c.cast(pl.String)
    # concat_str is null when the value is: the field is then left out
    return pl.concat_str(
        [pl.lit(f"{name}\x1f"), text.str.len_bytes().cast(pl.String), pl.lit("\x1f"), text,
         pl.lit("\x1e")]
    ).fill_null("")  # fmt: skip


def row_digests(
    frame: pl.DataFrame,
    fields: list[str],
    keyring: KeyRing,
    *,
    version: int | None = None,
    suite: CipherSuite | str | None = None,
) -> pl.Series:
    """Keyed digest (the suite's HMAC under the pseudonym key, 32 hex) of each row's ``fields``.

    Computed on the standardised plaintext values before encryption and stored beside the
    ciphertext, so a delivered row is compared with a staged one digest to digest, never by
    decrypting. Equal values give equal digests (per key); without the key a digest reveals
    nothing and cannot be tested against guesses. Dates are days and datetimes microseconds
    since the epoch; other types as polars casts them to text. Cost: about 2.7 s of one core
    per million rows of ten fields (195 bytes encoded), a third of it the HMAC.
    """
    parts = [pl.lit(_ROW_DOMAIN), *(_canonical(f, frame.schema[f]) for f in fields)]
    key = pseudonym_key(keyring, version=version, suite=suite)
    return (
        frame.select(key.expr(pl.concat_str(parts), ROW_DIGEST_HEX).alias("_row_digest"))
        .to_series()
        .cast(pl.String)
    )
