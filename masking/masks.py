"""Display masks (polars expressions) and the catalogue-driven ``apply_masking``.

Presets (ARCHITECTURE.md "display masks used by Chinese government apps"):

| kind | example | keeps |
|---|---|---|
| citizen ID | 110105********002X | first 6, last 4 |
| identity document | 110105**********2X01 / E1*****78 | 15+ characters: first 6, last 4 (no more than an ID shows); 8–14: first 2, last 2 |
| mobile | 138****5678 | first 3, last 4 (after +86 / separators are removed) |
| landline | 010****5678 | first 3, last 4 |
| name | 张* / 欧阳* | the surname (compound surnames when the name has ≥ 3 characters) |
| address | 北京市朝阳区建外街道秀水社区 | up to the community (社区/小区/村/居委会); below it dropped |
| bank card | ***************1234 | last 4 |
| plate | 京A·***12 | province + issuing letter, last 2 |
| e-mail | a***@example.com | first character, domain |

A value too short for its preset is masked whole (``*`` per character): a mask never
shows more than its preset allows.
"""

from __future__ import annotations

import polars as pl

from catalog.identifiers import halfwidth, mobile_digits
from catalog.model import Dataset, MaskingRule, PiiKind
from masking import generalise as gen
from masking.errors import MaskingError
from masking.names import COMPOUND_SURNAMES
from masking.pseudonym import PSEUDONYM_PATTERN

_STAR = "*"


def _stars(expr: pl.Expr) -> pl.Expr:
    return expr.str.replace_all(r"(?s).", _STAR)


def _keep(expr: pl.Expr, first: int, last: int, min_len: int) -> pl.Expr:
    """Keep ``first`` and ``last`` characters, star the middle; all stars when too short."""
    n = expr.str.len_chars()
    middle = _stars(expr.str.slice(first, n - first - last))
    kept = pl.concat_str([expr.str.slice(0, first), middle, expr.str.slice(n - last, last)])
    return pl.when(n >= min_len).then(kept).otherwise(_stars(expr))


def _clean(expr: pl.Expr) -> pl.Expr:
    return halfwidth(expr.cast(pl.String)).str.strip_chars()


def mask_id(expr: pl.Expr) -> pl.Expr:
    """Citizen ID → 110105********002X (first 6, last 4)."""
    return _keep(_clean(expr).str.to_uppercase(), 6, 4, 15)


def mask_document(expr: pl.Expr) -> pl.Expr:
    """Identity-document number (居住证, 残疾人证, 护照 …) → 110105**********2X01 or E1*****78.

    A long number often carries a citizen ID (残疾人证号 = ID + 2 digits), so from 15
    characters it keeps what an ID mask keeps (first 6, last 4); a passport-length number
    (8–14) keeps first 2 and last 2; a shorter one is starred whole.
    """
    value = _clean(expr).str.to_uppercase()
    n = value.str.len_chars()
    return pl.when(n >= 15).then(_keep(value, 6, 4, 15)).otherwise(_keep(value, 2, 2, 8))


def _digits(expr: pl.Expr) -> pl.Expr:
    return _clean(expr).str.replace_all(r"\D", "")


def mask_mobile(expr: pl.Expr) -> pl.Expr:
    """Mobile (or landline) → 138****5678; +86 / 0086 and separators removed first."""
    d = pl.coalesce(mobile_digits(_clean(expr)), _digits(expr))
    return pl.concat_str([d.str.slice(0, 3), pl.lit("****"), d.str.slice(-4)]).pipe(
        lambda kept: pl.when(d.str.len_chars() >= 10).then(kept).otherwise(_stars(d))
    )


def mask_name(expr: pl.Expr) -> pl.Expr:
    """Name → surname + ``*`` (张*, 欧阳*); one-character names → ``*``."""
    name = _clean(expr).str.replace_all(r"\s", "")
    n = name.str.len_chars()
    compound = (n >= 3) & name.str.slice(0, 2).is_in(sorted(COMPOUND_SURNAMES))
    surname = pl.when(compound).then(name.str.slice(0, 2)).otherwise(name.str.slice(0, 1))
    return pl.when(n >= 2).then(pl.concat_str([surname, pl.lit(_STAR)])).otherwise(_stars(name))


ADDRESS_LEVEL = r"^(.*(?:社区|小区|村委会|居委会|村|家园|花园|公寓|新村|里))"
_BELOW = (
    r"[0-9一二三四五六七八九十百零甲乙丙丁A-Za-z]+\s*(?:号院|号楼|号|栋|幢|座|楼|单元|层|室|户).*$"
)


def mask_address(expr: pl.Expr) -> pl.Expr:
    """Address → cut to the community: building / unit / room below it dropped."""
    addr = _clean(expr).str.replace(_BELOW, "").str.replace(r"\d.*$", "")
    community = addr.str.extract(ADDRESS_LEVEL, 1)
    return pl.when(community.is_not_null()).then(community).otherwise(addr)


def mask_bank_card(expr: pl.Expr) -> pl.Expr:
    """Bank card → stars + last 4."""
    return _keep(_digits(expr), 0, 4, 12)


def mask_plate(expr: pl.Expr) -> pl.Expr:
    """Plate 京A12345 / 京AD12345 → 京A·***45."""
    p = _clean(expr).str.replace_all(r"[·•\s.\-]", "").str.to_uppercase()
    n = p.str.len_chars()
    kept = pl.concat_str(
        [p.str.slice(0, 2), pl.lit("·"), _stars(p.str.slice(2, n - 4)), p.str.slice(n - 2, 2)]
    )
    return pl.when(n >= 6).then(kept).otherwise(_stars(p))


def mask_email(expr: pl.Expr) -> pl.Expr:
    """E-mail → a***@domain."""
    e = _clean(expr)
    parts = e.str.extract_groups(r"^(?P<first>[^@])[^@]*@(?P<domain>[^@]+)$")
    masked = pl.concat_str(
        [parts.struct.field("first"), pl.lit("***@"), parts.struct.field("domain")]
    )
    return pl.when(parts.struct.field("domain").is_not_null()).then(masked).otherwise(_stars(e))


DISPLAY_MASKS = {
    MaskingRule.mask_id: mask_id,
    MaskingRule.mask_document: mask_document,
    MaskingRule.mask_mobile: mask_mobile,
    MaskingRule.mask_name: mask_name,
    MaskingRule.mask_address: mask_address,
    MaskingRule.mask_bank_card: mask_bank_card,
    MaskingRule.mask_email: mask_email,
    MaskingRule.mask_plate: mask_plate,
}
KIND_MASKS = {
    PiiKind.citizen_id: mask_id,
    PiiKind.id_document: mask_document,
    PiiKind.mobile: mask_mobile,
    PiiKind.landline: mask_mobile,
    PiiKind.person_name: mask_name,
    PiiKind.address: mask_address,
    PiiKind.bank_card: mask_bank_card,
    PiiKind.email: mask_email,
    PiiKind.plate: mask_plate,
    PiiKind.birth_date: gen.to_year,
}
# kinds a single value may be shown as-is (not personal, or organisational)
_UNMASKED_KINDS = {PiiKind.none, PiiKind.credit_code}


def mask_value(value: str | None, pii_kind: PiiKind | str) -> str | None:
    """Mask one value for display or storage (e.g. a quarantined cell)."""
    if value is None:
        return None
    return mask_values(pl.Series([str(value)], dtype=pl.String), pii_kind)[0]


def _scrubbed(text: pl.Series) -> pl.Series:
    """Values the catalogue says hold nothing personal, with whatever personal information
    they hold by its form masked (the scrubber's rules without jieba: a name only after a
    cue word); the pre-filter leaves the others untouched, unread."""
    from masking.leaks import may_hold_personal
    from masking.text import scrub

    picked = may_hold_personal(text)
    if not picked.any():
        return text
    fixed = {v: scrub(v, use_jieba=False)[0] for v in text.filter(picked).unique().to_list()}
    return text.replace(fixed)


def mask_values(values: pl.Series, pii_kind: PiiKind | str) -> pl.Series:
    """:func:`mask_value` of every value of a column (nulls stay null), in one polars pass."""
    kind = PiiKind(pii_kind)
    text = values.cast(pl.String)
    if kind in _UNMASKED_KINDS:  # shown, but not what personal information it holds: a
        return _scrubbed(text)  # quarantined value may be a footer's 联系电话：139…
    if kind is PiiKind.free_text:
        from masking.text import scrub

        scrubbed = [None if v is None else scrub(v)[0] for v in text.to_list()]
        return pl.Series(values.name, scrubbed, dtype=pl.String)
    fn = KIND_MASKS.get(kind)
    # health, financial, identity, location …: nothing of it is shown
    masked = pl.lit("***") if fn is None else fn(pl.col("v")).fill_null("***")
    out = pl.when(pl.col("v").is_not_null()).then(masked).cast(pl.String)
    return text.to_frame("v").select(out.alias(values.name)).to_series()


def _rule_expr(rule: MaskingRule, name: str, dtype: pl.DataType) -> pl.Expr | None:
    col = pl.col(name)
    if rule in DISPLAY_MASKS:
        return DISPLAY_MASKS[rule](col)
    if rule is MaskingRule.suppress:
        return pl.lit(None, dtype=dtype)
    if rule is MaskingRule.generalise_age:
        return gen.age_band(col)
    if rule is MaskingRule.generalise_year:
        return gen.to_year(col)
    if rule is MaskingRule.generalise_month:
        return gen.to_month(col)
    if rule is MaskingRule.generalise_grid:
        return gen.to_grid(col, gen.axis_of(name))
    if rule is MaskingRule.generalise_flag:
        return gen.holds_value(col)
    return None


def _all_pseudonyms(column: pl.Series) -> bool:
    values = column.cast(pl.String).drop_nulls()
    return len(values) > 0 and bool(values.str.contains(PSEUDONYM_PATTERN).all())


def apply_masking(
    frame: pl.DataFrame,
    dataset: Dataset,
    overrides: dict[str, MaskingRule] | None = None,
    recipient: str | None = None,
    *,
    keyring=None,
) -> pl.DataFrame:
    """Apply each catalogued field's masking rule (or its per-grant override).

    ``pseudonymise`` uses the hub's pseudonym key, or the recipient's own key when
    ``recipient`` is given; ``encrypt`` leaves ciphertexts as they are. Columns of the
    frame that the dataset does not list are left unchanged. ``keyring`` defaults to
    the one under ``Settings().keys_dir``.
    """
    overrides = {k: MaskingRule(v) for k, v in (overrides or {}).items()}
    known = {f.name for f in dataset.fields}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise MaskingError(
            f"override names unknown field(s): {', '.join(unknown)}", dataset=dataset.code
        )
    exprs: list[pl.Expr] = []
    series: list[pl.Series] = []
    for f in dataset.fields:
        if f.name not in frame.columns:
            continue
        rule = overrides.get(f.name, f.masking)
        column = frame[f.name]
        if rule is MaskingRule.none:
            continue
        from masking.crypto import is_encrypted

        if is_encrypted(column) and rule is not MaskingRule.encrypt:
            raise MaskingError(
                f"column is encrypted; reveal it before applying {rule.value}",
                dataset=dataset.code,
                field=f.name,
            )
        if rule in (MaskingRule.pseudonymise, MaskingRule.encrypt):
            from masking.crypto import column_id, encrypt_series
            from masking.keys import KeyRing
            from masking.pseudonym import pseudonymise_series

            keyring = keyring or KeyRing.from_settings()
            if rule is MaskingRule.encrypt:
                if not is_encrypted(column):
                    series.append(
                        encrypt_series(column, keyring, column=column_id(dataset, f.name))
                    )
            elif not _all_pseudonyms(column):
                series.append(pseudonymise_series(column, keyring, kind=f.pii, recipient=recipient))
            elif recipient is not None:
                raise MaskingError(
                    "column already holds pseudonyms; a recipient's pseudonyms need the "
                    "source values",
                    dataset=dataset.code,
                    field=f.name,
                )  # hub pseudonyms (curated zone) are left as they are
        elif rule is MaskingRule.scrub_text:
            from masking.text import scrub_series

            series.append(scrub_series(column.cast(pl.String)))
        else:
            exprs.append(_rule_expr(rule, f.name, column.dtype).alias(f.name))
    out = frame.with_columns(series) if series else frame
    return out.with_columns(exprs) if exprs else out
