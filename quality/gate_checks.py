"""The row gate's checks, generated from the catalogue: one polars expression each.

A :class:`RowCheck` says whether a row passes (True), fails (False) or is not
judged (null), and how to explain a failure to a data officer. The pandera
schema (``quality.schema``) and the plain-mask engine of the gate both use
these, so the two can never disagree about what a check means.

Named checks (``FieldSpec.checks``) live in :data:`NAMED_CHECKS`; a catalogue
entry naming an unknown check fails loudly here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from catalog import identifiers as ids
from catalog.errors import CatalogError, StreethubError
from catalog.model import Dataset, FieldSpec, FieldType, PiiKind
from catalog.street import Street, get_street
from quality import validators as v
from quality.standardise import missing_col

RAW_PREFIX = "_raw__"


@dataclass(frozen=True)
class RowCheck:
    """One check of one field (``field`` None: a row-level check)."""

    name: str
    field: str | None
    passes: pl.Expr  # True pass · False fail · null not judged (counts as a pass)
    reason: pl.Expr  # a sentence, evaluated on failing rows only
    needs_raw: bool = False  # reads the delivered text (``_raw__<field>``)


def raw_col(name: str) -> pl.Expr:
    return pl.col(f"{RAW_PREFIX}{name}")


def _fmt(e: pl.Expr) -> pl.Expr:
    return e.cast(pl.String)


def _labelled(f: FieldSpec, c: pl.Expr) -> pl.Expr:
    """ "label value" for an L1/L2 field; the label alone for L3/L4.

    A reason is stored in the clear (quarantine, scorecard, report, check metadata),
    so it never carries a value the catalogue says is sensitive: a data officer reads
    the value masked in ``value_masked``, or decrypts the raw row with authority.
    """
    if f.level.sensitive:
        return pl.lit(f.label_zh)
    return pl.format("{} {}", pl.lit(f.label_zh), _fmt(c))


def person_id_field(dataset: Dataset) -> FieldSpec | None:
    """The row's own citizen ID (gender, birth date and identity documents are checked
    against it): the citizen-ID field that carries a concept (the subject of the row, as
    the catalogue links it to other departments), else the one named ``citizen_id``, else
    the first."""
    candidates = [f for f in dataset.fields if f.pii is PiiKind.citizen_id]
    linked = [f for f in candidates if f.concept is not None]
    named = [f for f in candidates if f.name == "citizen_id"]
    return (linked or named or candidates or [None])[0]


def _wrong_check_char(f: FieldSpec, what: str, c: pl.Expr, expected: pl.Expr) -> pl.Expr:
    """ "<label> check digit is 3 but should be X": the 18th character against the computed."""
    return pl.format(
        f"{{}} {what} is {{}} but should be {{}}", pl.lit(f.label_zh), c.str.slice(17, 1), expected
    )


_SCIENTIFIC = r"^[1-9](?:\.[0-9]+)?E\+?1[4-7]$"  # an 18-digit number as a spreadsheet writes it


def _citizen_id_checksum(ds: Dataset, f: FieldSpec, street: Street) -> RowCheck:
    c = pl.col(f.name)
    form = c.str.contains(ids.ID18)
    check_ok = ids.citizen_id_check_ok(c)
    date_ok = ids.id_birth_date(c).is_not_null()
    scientific = c.str.contains(_SCIENTIFIC)
    # a number a spreadsheet wrote in scientific notation fails here too, pattern or not:
    # this check's reason says how to get its digits back
    passes = pl.when(form).then(check_ok & date_ok).when(scientific).then(False)
    if f.pattern is None:  # nothing else catches a malformed number
        passes = passes.otherwise(pl.when(c.is_not_null()).then(False))
    # a spreadsheet that stored the ID as a number kept 15 significant digits and wrote it
    # back as 1.10105E+17, or as 18 digits ending in 000: the digits are lost, and what the
    # officer needs to know is how to get them (the column exported as text)
    as_text = (
        "ask the department for the column as text (a spreadsheet keeps 15 digits of a number)"
    )
    reason = (
        pl.when(scientific)
        .then(
            pl.lit(
                f"{f.label_zh} was stored as a number and written in scientific notation: its last digits are lost; {as_text}"
            )
        )
        .when(~form)
        .then(
            pl.format(
                "{} is not an 18-character ID number ({} characters)",
                pl.lit(f.label_zh),
                _fmt(c.str.len_chars()),
            )
        )
        .when(~check_ok & c.str.ends_with("000"))
        .then(
            pl.format(
                "{}; its last three digits are 000, as when the ID was stored as a number: {}",
                _wrong_check_char(f, "check digit", c, ids.id_check_char(c)),
                pl.lit(as_text),
            )
        )
        .when(~check_ok)
        .then(_wrong_check_char(f, "check digit", c, ids.id_check_char(c)))
        .otherwise(pl.format("{} carries an impossible birth date", pl.lit(f.label_zh)))
    )
    return RowCheck("citizen_id_checksum", f.name, passes, reason)


def _id_partner(ds: Dataset, f: FieldSpec, check: str) -> FieldSpec:
    pid = person_id_field(ds)
    if pid is None:
        msg = f"check {check} needs a citizen ID field in the dataset"
        raise CatalogError([StreethubError(msg, dataset=ds.code, field=f.name)])
    return pid


def _gender_matches(ds: Dataset, f: FieldSpec, street: Street) -> RowCheck:
    pid = _id_partner(ds, f, "gender_matches_citizen_id")
    cid = pl.col(pid.name)
    expected = ids.id_gender(cid)
    passes = pl.when(ids.citizen_id_valid(cid) & pl.col(f.name).is_in(["男", "女"])).then(
        pl.col(f.name) == expected
    )
    if f.level.sensitive:  # the ID's sequence digit says no more than the gender field
        reason = pl.lit(f"{f.label_zh} disagrees with the sequence digit of the {pid.label_zh}")
    else:
        reason = pl.format(
            "{} is {} but the {} is a {}'s (sequence digit {})",
            pl.lit(f.label_zh),
            pl.col(f.name),
            pl.lit(pid.label_zh),
            pl.when(expected == "男").then(pl.lit("man")).otherwise(pl.lit("woman")),
            pl.when(expected == "男").then(pl.lit("odd")).otherwise(pl.lit("even")),
        )
    return RowCheck("gender_matches_citizen_id", f.name, passes, reason)


def _birth_matches(ds: Dataset, f: FieldSpec, street: Street) -> RowCheck:
    pid = _id_partner(ds, f, "birth_date_matches_citizen_id")
    cid = pl.col(pid.name)
    passes = pl.when(ids.citizen_id_valid(cid) & pl.col(f.name).is_not_null()).then(
        pl.col(f.name) == ids.id_birth_date(cid)
    )
    reason = pl.lit(f"{f.label_zh} disagrees with the birth date in the {pid.label_zh}")
    return RowCheck("birth_date_matches_citizen_id", f.name, passes, reason)


def _embeds_citizen_id(ds: Dataset, f: FieldSpec, street: Street) -> RowCheck:
    """An identity document numbered after its holder's citizen ID (第二代残疾人证号 …)
    starts with the row's own citizen ID; judged when that ID is valid."""
    pid = _id_partner(ds, f, "embeds_citizen_id")
    cid, doc = pl.col(pid.name), pl.col(f.name)
    passes = pl.when(ids.citizen_id_valid(cid) & doc.is_not_null()).then(
        doc.str.slice(0, 18) == cid
    )
    reason = pl.lit(f"{f.label_zh} does not carry the row's own {pid.label_zh}")
    return RowCheck("embeds_citizen_id", f.name, passes, reason)


def _credit_code_checksum(ds: Dataset, f: FieldSpec, street: Street) -> RowCheck:
    c = pl.col(f.name)
    form = c.str.contains(ids.USCC)
    passes = pl.when(form).then(c.str.slice(17, 1) == ids.uscc_check_char(c))
    if f.pattern is None:
        passes = passes.otherwise(pl.when(c.is_not_null()).then(False))
    reason = (
        pl.when(form)
        .then(_wrong_check_char(f, "check character", c, ids.uscc_check_char(c)))
        .otherwise(pl.lit(f"{f.label_zh} is not an 18-character credit code"))
    )
    return RowCheck("credit_code_checksum", f.name, passes, reason)


def _luhn(ds: Dataset, f: FieldSpec, street: Street) -> RowCheck:
    passes = ids.luhn_valid(pl.col(f.name))
    return RowCheck("luhn", f.name, passes, pl.lit(f"{f.label_zh} fails the Luhn check digit"))


def _coordinates(ds: Dataset, f: FieldSpec, street: Street) -> RowCheck:
    is_lat = "lat" in f.name or f.label_zh.startswith("纬")
    x0, y0, x1, y1 = street.bbox
    lo, hi = (y0, y1) if is_lat else (x0, x1)
    lo, hi = lo - street.bbox_margin_deg, hi + street.bbox_margin_deg
    c = pl.col(f.name)
    reason = pl.format(
        "{} lies outside {} ({}–{})",
        _labelled(f, c),
        pl.lit(street.name),
        pl.lit(f"{lo:.3f}"),
        pl.lit(f"{hi:.3f}"),
    )
    return RowCheck("coordinates_in_street", f.name, c.is_between(lo, hi), reason)


def _community_code(ds: Dataset, f: FieldSpec, street: Street) -> RowCheck:
    c = pl.col(f.name)
    reason = pl.format("{} is not a community of {}", _labelled(f, c), pl.lit(street.name))
    return RowCheck("community_code", f.name, c.is_in(street.community_codes), reason)


def _community_name(ds: Dataset, f: FieldSpec, street: Street) -> RowCheck:
    c = pl.col(f.name)
    reason = pl.format("{} is not a community of {}", _labelled(f, c), pl.lit(street.name))
    return RowCheck("community_name", f.name, c.is_in(street.community_names), reason)


def _region_code(ds: Dataset, f: FieldSpec, street: Street) -> RowCheck:
    c = pl.col(f.name)
    reason = pl.format("{} is not a known region code", _labelled(f, c.str.slice(0, 6)))
    return RowCheck("region_code", f.name, v.region_code_valid(c), reason)


def _mobile(ds: Dataset, f: FieldSpec, street: Street) -> RowCheck:
    reason = pl.lit(f"{f.label_zh} is not an 11-digit mobile number")
    return RowCheck("mobile", f.name, v.mobile_valid(pl.col(f.name)), reason)


CheckBuilder = Callable[[Dataset, FieldSpec, Street], RowCheck]
NAMED_CHECKS: dict[str, CheckBuilder] = {
    "citizen_id_checksum": _citizen_id_checksum,
    "gender_matches_citizen_id": _gender_matches,
    "birth_date_matches_citizen_id": _birth_matches,
    "embeds_citizen_id": _embeds_citizen_id,
    "credit_code_checksum": _credit_code_checksum,
    "luhn": _luhn,
    "coordinates_in_street": _coordinates,
    "region_code": _region_code,
    "mobile": _mobile,
    "community_code": _community_code,
    "community_name": _community_name,
}


def wants_mojibake_check(f: FieldSpec) -> bool:
    """Names and free text: where garbled UTF-8-read-as-GBK text turns up."""
    if f.type is FieldType.text:
        return True
    return f.type is FieldType.string and (
        f.pii is PiiKind.person_name or f.name == "name" or f.name.endswith("_name")
    )


def required_check(f: FieldSpec) -> RowCheck:
    """Blank (or a missing-value placeholder) where the catalogue requires a value (an
    unreadable value is reported as such)."""
    blank = (raw_col(f.name).str.strip_chars().str.len_bytes().fill_null(0) == 0) | missing_col(f)
    passes = pl.col(f.name).is_not_null() | ~blank
    return RowCheck("required", f.name, passes, pl.lit(f"{f.label_zh} is required but blank"), True)


def unparseable_check(f: FieldSpec) -> RowCheck:
    """Delivered, but standardisation could not read it as the catalogue's type."""
    delivered = raw_col(f.name).str.strip_chars().str.len_bytes().fill_null(0) > 0
    delivered = delivered & ~missing_col(f)
    passes = pl.col(f.name).is_not_null() | ~delivered
    what = {
        FieldType.date: "a date",
        FieldType.datetime: "a date and time",
        FieldType.integer: "a whole number",
        FieldType.decimal: "a number",
        FieldType.boolean: "yes/no",
    }.get(f.type, "text")
    reason = pl.lit(f"{f.label_zh} cannot be read as {what}")
    return RowCheck("unparseable", f.name, passes, reason, True)


def field_checks(ds: Dataset, f: FieldSpec, street: Street | None = None) -> list[RowCheck]:
    """Form checks (pattern, allowed values, range) then the named checks of one field."""
    street = street or get_street()
    c = pl.col(f.name)
    out: list[RowCheck] = []
    if f.pattern is not None:
        out.append(
            RowCheck(
                "pattern",
                f.name,
                c.str.contains(f.pattern),
                pl.lit(f"{f.label_zh} does not have the expected form ({f.pattern})"),
            )
        )
    if f.allowed_values is not None:
        allowed = "、".join(f.allowed_values)
        out.append(
            RowCheck(
                "allowed_values",
                f.name,
                c.cast(pl.String).is_in(f.allowed_values),
                pl.format("{} is not one of {}", _labelled(f, c), pl.lit(allowed)),
            )
        )
    if f.range is not None:
        lo = -float("inf") if f.range.min is None else f.range.min
        hi = float("inf") if f.range.max is None else f.range.max
        out.append(
            RowCheck(
                "range",
                f.name,
                c.is_between(lo, hi),
                pl.format(
                    "{} is outside {}–{}",
                    _labelled(f, c),
                    pl.lit(f"{f.range.min:g}" if f.range.min is not None else "−∞"),
                    pl.lit(f"{f.range.max:g}" if f.range.max is not None else "∞"),
                ),
            )
        )
    for name in f.checks:
        if name not in NAMED_CHECKS:
            msg = f"unknown check {name!r} (known: {', '.join(sorted(NAMED_CHECKS))})"
            raise CatalogError([StreethubError(msg, dataset=ds.code, field=f.name)])
        out.append(NAMED_CHECKS[name](ds, f, street))
    if wants_mojibake_check(f):
        out.append(
            RowCheck(
                "mojibake",
                f.name,
                ~v.mojibake(c),
                pl.lit(f"{f.label_zh} is garbled (UTF-8 text read as GBK): ask for a re-delivery"),
            )
        )
    return out


def row_checks(
    ds: Dataset, street: Street | None = None, *, with_raw: bool = True
) -> list[RowCheck]:
    """Every row-level check of a dataset, in reporting order."""
    street = street or get_street()
    out: list[RowCheck] = []
    for f in ds.fields:
        if with_raw:
            out.append(unparseable_check(f))
            if f.required:
                out.append(required_check(f))
        out.extend(field_checks(ds, f, street))
    return out
