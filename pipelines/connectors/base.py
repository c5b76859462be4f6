"""What every connector produces, and the checks shared by all of them.

A connector turns one landed delivery (bytes on disk) into batches of text
columns named as delivered, each row with its ``_source_row`` (the row number
a person would see in the file), plus the rows it could not parse. A delivery
that cannot be read as a whole raises :class:`DeliveryError` — and only that:
reasons are in the officer's words (see ``tests/reliability``' vocabulary) and
never carry a cell value or the landed file's path.

**One rule for every reason** (:func:`withhold_values`): every reason a connector
gives — a failed delivery, a quarantined row, a note, a failed pull — passes through
it on its way out (:func:`pipelines.connectors.read_batches` and landing's pull
failures). Reasons are worded in English and name columns, rows, byte offsets and
counts; a quoted text that is not one of the catalogue's names for the dataset, any
Chinese text that is not one of them, and anything the leak detectors read as
personal data (citizen IDs, mobiles, cards, e-mails, plates), is replaced by
``‹value withheld›`` — so a careless message, or a header
that is really a person's record, cannot carry a value into the ledger, the
quarantine or the Dagster event log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from catalog.errors import DeliveryError, StreethubError
from catalog.identifiers import HAN
from catalog.model import Dataset, header_key

SOURCE_ROW = "_source_row"
WITHHELD = "‹value withheld›"
MAX_REASON_CHARS = 500
_QUOTED = re.compile(r"'([^'\n]*)'|\"([^\"\n]*)\"")
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_HAN_RUN = re.compile(f"[{HAN}]+")


@dataclass(frozen=True)
class RowProblem:
    """One delivered row that could not be parsed (it goes to quarantine)."""

    source_row: int
    reason: str
    field: str | None = None
    check: str = "parse"


@dataclass
class Parsed:
    """A delivery read into text columns (source names) and its unparseable rows."""

    frame: pl.DataFrame
    problems: list[RowProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return self.frame.height + len(self.problems)


_NAMES: dict[int, tuple[Dataset, frozenset[str]]] = {}


def catalogue_names(dataset: Dataset) -> frozenset[str]:
    """The words a reason about ``dataset`` may quote: its codes, field names, delivered
    column names and labels, and its delivery's settings (sheet, table, records path …)."""
    hit = _NAMES.get(id(dataset))
    if hit is not None and hit[0] is dataset:
        return hit[1]
    if len(_NAMES) > 512:
        _NAMES.clear()
    d = dataset.delivery
    names = {dataset.code, d.kind.value}
    for f in dataset.fields:
        names.update(n for n in (f.name, f.source_name, getattr(f, "label_zh", None)) if n)
    for attr in ("sheet", "table", "records_path", "delimiter", "encoding", "cursor_column"):
        value = getattr(d, attr, None)
        if isinstance(value, str) and value:
            names.add(value)
    _NAMES[id(dataset)] = (dataset, frozenset(names))
    return _NAMES[id(dataset)][1]


def withhold_values(text: str, allowed: Iterable[str] = ()) -> str:
    """The one rule for connectors' reasons (see the module docstring): quoted texts that
    are not ``allowed`` names, and whatever the leak detectors read as personal data,
    become ``‹value withheld›``; the text is cut at ``MAX_REASON_CHARS``."""
    allowed = frozenset(allowed)

    def quoted(m: re.Match[str]) -> str:
        inner = m.group(1) if m.group(1) is not None else m.group(2)
        return m.group(0) if inner in allowed or not inner.strip() else WITHHELD

    out = _QUOTED.sub(quoted, text)
    # catalogue names are set aside while the detectors read the rest (a column named
    # 姓名 is a cue word for them, not a value)
    kept: list[str] = []

    def park(m: re.Match[str]) -> str:
        kept.append(m.group(0))
        return f"\ue000{len(kept) - 1}\ue001"

    names = sorted((n for n in allowed if len(n) > 1), key=len, reverse=True)
    if names:
        out = re.sub("|".join(map(re.escape, names)), park, out)
    from masking.text import scrub  # the leak scanner's detectors (loaded when needed)

    _, findings = scrub(out, use_jieba=False)
    for f in sorted(findings, key=lambda f: f.start, reverse=True):
        out = out[: f.start] + WITHHELD + out[f.end :]
    # reasons are worded in English around catalogue names: any other Chinese is a value
    out = _HAN_RUN.sub(WITHHELD, out)
    out = _PLACEHOLDER.sub(lambda m: kept[int(m.group(1))], out)
    if len(out) > MAX_REASON_CHARS:
        out = out[: MAX_REASON_CHARS - 1] + "…"
    return out


def guarded(parsed: Parsed, allowed: frozenset[str]) -> Parsed:
    """A batch whose problems' reasons and notes have passed :func:`withhold_values`."""
    if not parsed.problems and not parsed.notes:
        return parsed
    memo: dict[str, str] = {}

    def rule(text: str) -> str:
        if text not in memo:
            memo[text] = withhold_values(text, allowed)
        return memo[text]

    problems = [replace(p, reason=rule(p.reason)) for p in parsed.problems]
    return Parsed(parsed.frame, problems, [rule(n) for n in parsed.notes])


def guard_error(exc: StreethubError, allowed: Iterable[str]) -> StreethubError:
    """The error with its message passed through :func:`withhold_values` (in place)."""
    exc.message = withhold_values(exc.message, allowed)
    exc.args = (str(exc),)
    return exc


def guarded_batches(batches: Iterator[Parsed], dataset: Dataset) -> Iterator[Parsed]:
    """A connector's batches with every reason under the one rule, its errors too."""
    allowed = catalogue_names(dataset)
    try:
        for parsed in batches:
            yield guarded(parsed, allowed)
    except StreethubError as exc:
        raise guard_error(exc, allowed) from None


def concat(parts: Iterable[Parsed]) -> Parsed:
    """Batches of one delivery as one (tests, small deliveries); columns may differ."""
    parts = list(parts)
    frames = [p.frame for p in parts]
    frame = (
        pl.concat(frames, how="diagonal_relaxed")
        if frames
        else pl.DataFrame({SOURCE_ROW: pl.Series([], dtype=pl.Int64)})
    )
    return Parsed(
        frame,
        [q for p in parts for q in p.problems],
        list(dict.fromkeys(n for p in parts for n in p.notes)),
    )


def whole_file_failure(
    rows: int, first: RowProblem | None, dataset: str, file: str
) -> DeliveryError:
    """Every record of the delivery was damaged: it fails as a whole, saying how."""
    detail = f"; the first, row {first.source_row}: {first.reason}" if first else ""
    return DeliveryError(
        f"no record of the file could be read ({rows:,} damaged){detail}",
        dataset=dataset,
        file=file,
        row=first.source_row if first else None,
    )


def to_text_frame(columns: dict[str, list[object]], source_rows: list[int]) -> pl.DataFrame:
    """Columns of Python values → a frame of strings (None stays null)."""
    data = {
        name: pl.Series(name, [_as_text(v) for v in values], dtype=pl.String)
        for name, values in columns.items()
    }
    return pl.DataFrame({SOURCE_ROW: pl.Series(SOURCE_ROW, source_rows, dtype=pl.Int64), **data})


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):  # as polars writes a struct: JSON text
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):  # as polars writes a list: its items joined by commas
        return ",".join(
            v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in value
        )
    return str(value)


def stringify(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast every column but ``_source_row`` to text, as the raw zone keeps values."""
    return frame.with_columns(pl.col(c).cast(pl.String) for c in frame.columns if c != SOURCE_ROW)


def split_stray_headers(parsed: Parsed, dataset: Dataset) -> Parsed:
    """Rows that repeat the header (a re-pasted header block) go to quarantine."""
    cols = source_columns(parsed.frame)
    sources = [
        (cols[k][0], f.source_name)
        for f in dataset.fields
        if (k := header_key(f.source_name)) in cols
    ]
    if len(sources) < 2 or parsed.frame.height == 0:
        return parsed
    hits = sum(  # the header as delivered, or as the catalogue spells it
        pl.col(c).str.strip_chars().is_in([c.strip(), s]).fill_null(False).cast(pl.Int32)
        for c, s in sources
    )
    mask = hits >= max(2, (len(sources) + 1) // 2)
    stray = parsed.frame.filter(mask)
    if stray.height == 0:
        return parsed
    problems = parsed.problems + [
        RowProblem(int(r), "row repeats the header (stray header row)", check="stray_header")
        for r in stray[SOURCE_ROW].to_list()
    ]
    return Parsed(parsed.frame.filter(~mask), problems, parsed.notes)


# the lines a hand-kept ledger writes under its records: a total (合计：25人), and who
# filled it in, checked it and when (填表人：…, 审核人：…, 填报日期：…), in whatever cells
# were at hand; a cell that is one of them, in a row whose key holds nothing else, makes
# the row no record
# (polars patterns, matched on a cell with its whitespace taken out)
LEDGER_TOTAL = r"^(?:合计|总计|小计|共计|总合计)(?:[:：].*)?$"
LEDGER_LABEL = (
    r"^(?:填表人|制表人|填报人|审核人|审批人|统计人|核对人|经手人|负责人|单位负责人|联系人"
    r"|填表日期|制表日期|填报日期|统计日期|报送日期|填报单位|制表单位)[:：]"
)


def split_ledger_rows(parsed: Parsed, dataset: Dataset) -> Parsed:
    """A ledger's totals and footer rows (:data:`LEDGER_TOTAL`, :data:`LEDGER_LABEL`) go
    to quarantine as what they are, not as a record that fails every check: one reason
    that names no value (a footer names the clerk and a phone), and nothing of them
    reaches the lake. A row is one only where every key field is blank or the marked cell."""
    cols = source_columns(parsed.frame)
    if parsed.frame.height == 0 or not cols:
        return parsed
    delivered = [c for names in cols.values() for c in names]
    text = {c: pl.col(c).cast(pl.String).str.replace_all(r"\s", "") for c in delivered}
    keys = [cols[k][0] for f in dataset.fields if f.name in dataset.key
            if (k := header_key(f.source_name)) in cols]  # fmt: skip
    keyless = pl.all_horizontal(
        [
            text[c].is_null()
            | (text[c] == "")
            | text[c].str.contains(LEDGER_TOTAL)
            | text[c].str.contains(LEDGER_LABEL)
            for c in keys
        ]
        or [pl.lit(True)]
    )
    # the key's columns first (a record holds its key): every column only of what is left
    left = parsed.frame.filter(keyless.fill_null(False))
    if left.height == 0:
        return parsed
    total = pl.any_horizontal([text[c].str.contains(LEDGER_TOTAL) for c in delivered])
    label = pl.any_horizontal([text[c].str.contains(LEDGER_LABEL) for c in delivered])
    kinds = left.select(
        pl.col(SOURCE_ROW),
        total.fill_null(False).alias("total"),
        label.fill_null(False).alias("label"),
    ).filter(pl.col("total") | pl.col("label"))
    if kinds.height == 0:
        return parsed
    problems = parsed.problems + [
        RowProblem(
            int(row),
            "a ledger's totals row, not a record"
            if is_total
            else "a ledger's footer row (who filled it in, when), not a record",
            check="ledger_row",
        )
        for row, is_total in kinds.select(SOURCE_ROW, "total").iter_rows()
    ]
    mask = pl.col(SOURCE_ROW).is_in(kinds[SOURCE_ROW].implode())
    return Parsed(parsed.frame.filter(~mask), problems, parsed.notes)


HEADER_SEARCH_ROWS = 10  # a header that a title line moved is looked for this far down


def names_required(dataset: Dataset, names: Iterable[object]) -> bool:
    """The names (a header's cells) hold every required column's source as matched
    (:func:`catalog.model.header_key`), or every column's when none is required."""
    fields = [f for f in dataset.fields if f.required] or dataset.fields
    have = {header_key(str(v)) for v in names if v is not None}
    return {header_key(f.source_name) for f in fields} <= have


def source_columns(frame: pl.DataFrame) -> dict[str, list[str]]:
    """Delivered column names as matched (``catalog.model.header_key``) → the frame's
    columns of that name (two when a header names one column twice in two spellings)."""
    out: dict[str, list[str]] = {}
    for c in frame.columns:
        if c != SOURCE_ROW:
            out.setdefault(header_key(c), []).append(c)
    return out


def check_required(
    dataset: Dataset, columns: Iterable[str], file: Path | str, width: int | None = None
) -> None:
    """Fail the delivery when a required column is missing (never quoting other names:
    in a file without a header they are values)."""
    have = set(columns)
    missing = [
        f.source_name
        for f in dataset.fields
        if f.required and header_key(f.source_name) not in have
    ]
    if missing:
        known = {header_key(f.source_name) for f in dataset.fields}
        n = len(have) if width is None else width
        raise guard_error(
            DeliveryError(
                f"missing column: required column(s) {', '.join(missing)} not in the delivery "
                f"(it has {n} column(s), {len(have & known)} of them in the catalogue)",
                dataset=dataset.code,
                file=str(file),
            ),
            catalogue_names(dataset),
        )


def map_to_fields(
    parsed: Parsed, dataset: Dataset, file: Path | str, *, require: bool = True
) -> pl.DataFrame:
    """Rename source columns to the catalogue's field names; check the columns are there.

    A missing required column fails the whole delivery (``require=False``: the caller
    checks over all batches, as JSON records may leave a key out of a whole batch); a
    missing optional one becomes null; columns the catalogue does not know are dropped
    and counted in the notes (their names may be values).
    """
    frame = parsed.frame
    cols = source_columns(frame)
    if require:
        check_required(dataset, cols, file)
    keys = {f.name: header_key(f.source_name) for f in dataset.fields}
    twice = [f.source_name for f in dataset.fields if len(cols.get(keys[f.name], ())) > 1]
    if twice:  # 姓名 and 姓　名: which one holds the names is not ours to guess
        raise guard_error(
            DeliveryError(
                f"the header names column(s) {', '.join(twice)} more than once",
                dataset=dataset.code,
                file=str(file),
            ),
            catalogue_names(dataset),
        )
    known = set(keys.values())
    extra = sum(len(v) for k, v in cols.items() if k not in known)
    if extra:
        parsed.notes.append(f"{extra} column(s) not in the catalogue, not loaded")
    exprs = [pl.col(SOURCE_ROW)]
    for f in dataset.fields:
        if keys[f.name] in cols:
            exprs.append(pl.col(cols[keys[f.name]][0]).cast(pl.String).alias(f.name))
        else:
            exprs.append(pl.lit(None, dtype=pl.String).alias(f.name))
    return frame.select(exprs)
