"""The row gate measured against the simulator's ground truth (tests and benchmarks only).

``truth/<dept>/<dataset>/clean.parquet`` holds the true value of every
delivered record (source columns as text) and ``defects.parquet`` one row per
defect. A row of the gate's output is matched to the truth by the delivered
file (a mapping delivery id → file name) and ``_source_row``.

Per dataset: dirty rows; dirty rows repaired to the truth (an exact copy
dropped as a duplicate counts as repaired); dirty rows quarantined; dirty
rows staged with a value still wrong; clean rows wrongly quarantined (target
0); repaired citizen IDs equal to the truth (target 100 %); cleaning rate =
repaired ÷ dirty rows whose every defect is recoverable (target ≥ 98 %); and
every defect repaired or quarantined except ``wrong_value`` (valid in form,
left for the consistency / accuracy scores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from catalog.model import Catalogue, Dataset, FieldType, PiiKind

CONNECTOR_KINDS = ("stray_header", "broken_line")  # handled before the gate
LEFT_FOR_SCORES = ("wrong_value",)
KEY = ["_file", "_source_row"]


@dataclass
class TruthReport:
    """Figures per dataset (``datasets``) and the defects the gate missed (``missed``)."""

    datasets: pl.DataFrame
    missed: pl.DataFrame
    wrongly_quarantined: pl.DataFrame
    targets: dict[str, float] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, float]:
        s = self.datasets.select(pl.exclude("dataset").sum()).row(0, named=True)
        s["cleaning_rate"] = s["repaired_recoverable"] / max(1, s["dirty_recoverable"])
        s["citizen_id_exact"] = s["citizen_ids_right"] / max(1, s["citizen_ids_repaired"])
        return s

    def problems(self) -> list[str]:
        """Targets not met, as sentences (empty when the gate is good enough)."""
        t = self.totals
        out = []
        if t["clean_rows_quarantined"]:
            out.append(f"{t['clean_rows_quarantined']} clean row(s) wrongly quarantined")
        if t["clean_rows_altered"]:
            out.append(f"{t['clean_rows_altered']} clean row(s) staged with a changed value")
        if t["citizen_id_exact"] < 1:
            out.append(f"repaired citizen IDs right: {t['citizen_id_exact']:.2%} (target 100 %)")
        if t["cleaning_rate"] < 0.98:
            out.append(f"cleaning rate {t['cleaning_rate']:.2%} (target ≥ 98 %)")
        if t["defects_missed"]:
            out.append(f"{t['defects_missed']} defect(s) neither repaired nor quarantined")
        return out


def _as_text(col: str, f_type: FieldType, iso_tz: bool) -> pl.Expr:
    c = pl.col(col)
    if f_type is FieldType.date:
        return c.dt.strftime("%Y-%m-%d")
    if f_type is FieldType.datetime:
        return c.dt.strftime("%Y-%m-%dT%H:%M:%S+08:00" if iso_tz else "%Y-%m-%d %H:%M:%S")
    return c.cast(pl.String)


def _equal(staged: str, truth: str, f_type: FieldType) -> pl.Expr:
    s, t = pl.col(staged), pl.col(truth)
    if f_type is FieldType.decimal:
        same = (s.cast(pl.Float64, strict=False) - t.cast(pl.Float64, strict=False)).abs() < 1e-9
    else:
        same = s == t
    return same.fill_null(False) | (s.is_null() & (t.is_null() | (t == "")))


def _located(frames: list[pl.DataFrame], files: dict[str, str]) -> pl.DataFrame:
    if not frames:
        return pl.DataFrame(schema={"_file": pl.String, "_source_row": pl.Int64})
    frame = pl.concat(frames, how="diagonal_relaxed")
    return frame.with_columns(
        pl.col("_delivery_id").replace_strict(files, default=None).alias("_file")
    )


def evaluate_dataset(
    ref: str,
    dataset: Dataset,
    staged: pl.DataFrame,
    quarantine: pl.DataFrame,
    truth: Path,
    files: dict[str, str],
) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    clean = pl.read_parquet(truth / "clean.parquet")
    all_defects = pl.read_parquet(truth / "defects.parquet")
    defects = all_defects.filter(~pl.col("kind").is_in(CONNECTOR_KINDS))
    staged = _located([staged], files)
    quarantine = _located([quarantine], files)
    by_source = {f.source_name: f for f in dataset.fields}

    # staged values as the truth's text, next to the truth
    cols = [f for f in dataset.fields if f.source_name in clean.columns]
    iso = {
        f.name: f.type is FieldType.datetime
        and clean[f.source_name].drop_nulls().str.contains(r"T.*\+08:00$").any()
        for f in cols
    }
    s_text = staged.select(
        *KEY, *[_as_text(f.name, f.type, iso[f.name]).alias(f"s__{f.name}") for f in cols]
    )
    t_text = clean.select(*KEY, *[pl.col(f.source_name).alias(f"t__{f.name}") for f in cols])
    both = s_text.join(t_text, on=KEY, how="left")
    eq = {f.name: _equal(f"s__{f.name}", f"t__{f.name}", f.type) for f in cols}
    both = both.with_columns(
        pl.all_horizontal(list(eq.values())).alias("_row_right"),
        *[e.alias(f"eq__{n}") for n, e in eq.items()],
    )

    q_rows = quarantine.select(KEY).unique()
    # an exact copy is skipped by the gate (counted, neither staged nor quarantined)
    seen = pl.concat([staged.select(KEY), quarantine.select(KEY)]).unique()
    dup_rows = defects.filter(pl.col("kind") == "duplicate_row").select(KEY).unique()
    dup_rows = dup_rows.join(seen, on=KEY, how="anti")
    q_rows = pl.concat([q_rows, dup_rows]).unique()  # set aside, as a quarantined row is
    rows = defects.group_by(KEY).agg(
        pl.col("recoverable").all().alias("recoverable"),
        pl.col("kind").is_in(["duplicate_row"]).any().alias("is_dup"),
        pl.col("kind").is_in(LEFT_FOR_SCORES).any().alias("left"),
    )
    rows = (
        rows.join(q_rows.with_columns(pl.lit(True).alias("q")), on=KEY, how="left")
        .join(dup_rows.with_columns(pl.lit(True).alias("dq")), on=KEY, how="left")
        .join(both.select(*KEY, "_row_right"), on=KEY, how="left")
        .with_columns(pl.col("q", "dq").fill_null(False))
    )
    repaired = (pl.col("is_dup") & pl.col("dq")) | (
        ~pl.col("is_dup") & ~pl.col("q") & pl.col("_row_right").fill_null(False)
    )
    rows = rows.with_columns(repaired.alias("repaired"))

    # defects one by one: repaired (staged value = truth), quarantined, or missed
    cell = defects.filter(pl.col("field") != "*").with_columns(
        pl.col("field")
        .replace_strict({s: f.name for s, f in by_source.items()}, default=None)
        .alias("name")
    )
    eq_long = (
        both.select(*KEY, *[pl.col(f"eq__{f.name}") for f in cols])
        .unpivot(index=KEY, variable_name="name", value_name="right")
        .with_columns(pl.col("name").str.slice(4))
    )
    cell = (
        cell.join(eq_long, on=[*KEY, "name"], how="left")
        .join(q_rows.with_columns(pl.lit(True).alias("q")), on=KEY, how="left")
        .with_columns(pl.col("q").fill_null(False), pl.col("right").fill_null(False))
    )
    row_kinds = defects.filter(pl.col("field") == "*").join(
        dup_rows.with_columns(pl.lit(True).alias("dq")), on=KEY, how="left"
    )
    missed = pl.concat(
        [
            cell.filter(
                ~pl.col("q") & ~pl.col("right") & ~pl.col("kind").is_in(LEFT_FOR_SCORES)
            ).select(*KEY, "field", "kind"),
            row_kinds.filter(pl.col("dq").is_null()).select(*KEY, "field", "kind"),
        ]
    ).with_columns(pl.lit(ref).alias("dataset"))
    left = cell.filter(pl.col("kind").is_in(LEFT_FOR_SCORES) & ~pl.col("q") & ~pl.col("right"))

    cid_fields = {f.source_name for f in dataset.fields if f.pii is PiiKind.citizen_id}
    cid = cell.filter(
        pl.col("field").is_in(list(cid_fields)) & pl.col("recoverable") & ~pl.col("q")
    )
    # a row dirtied at the connector level (a broken line) is not clean either
    clean_keys = clean.select(KEY).join(all_defects.select(KEY).unique(), on=KEY, how="anti")
    wrong_q = quarantine.join(clean_keys, on=KEY, how="semi").with_columns(
        pl.lit(ref).alias("dataset")
    )
    altered = both.join(clean_keys, on=KEY, how="semi").filter(~pl.col("_row_right"))
    figures = {
        "dataset": ref,
        "rows": clean.height,
        "dirty_rows": rows.height,
        "repaired": int(rows["repaired"].sum()),
        "quarantined": int((rows["q"] & ~rows["repaired"]).sum()),
        "staged_wrong": int((~rows["q"] & ~rows["repaired"]).sum()),
        "dirty_recoverable": int(rows["recoverable"].sum()),
        "repaired_recoverable": int((rows["recoverable"] & rows["repaired"]).sum()),
        "clean_rows_quarantined": wrong_q.select(KEY).unique().height,
        "clean_rows_altered": altered.height,
        "citizen_ids_repaired": cid.height,
        "citizen_ids_right": int(cid["right"].sum()),
        "defects": defects.height,
        "defects_missed": missed.height,
        "left_for_scores": left.height,
    }
    return figures, missed, wrong_q


def evaluate(
    staged: dict[str, pl.DataFrame],
    quarantine: dict[str, pl.DataFrame],
    truth_dir: Path,
    catalogue: Catalogue,
    files: dict[str, str],
) -> TruthReport:
    """Compare the gate's output (keyed ``dept.dataset``) with ``truth_dir``.

    ``files`` maps each ``_delivery_id`` to the delivered file name the truth uses.
    """
    figures, missed, wrong = [], [], []
    for ref in sorted(set(staged) | set(quarantine)):
        dept, ds = catalogue.dataset(ref)
        truth = Path(truth_dir) / dept.code / ds.code
        if not (truth / "clean.parquet").exists():
            continue
        fig, miss, wq = evaluate_dataset(
            ref,
            ds,
            staged.get(ref, pl.DataFrame()),
            quarantine.get(ref, pl.DataFrame()),
            truth,
            files,
        )
        figures.append(fig)
        missed.append(miss)
        wrong.append(wq)
    return TruthReport(
        datasets=pl.DataFrame(figures),
        missed=pl.concat(missed, how="diagonal_relaxed") if missed else pl.DataFrame(),
        wrongly_quarantined=pl.concat(wrong, how="diagonal_relaxed") if wrong else pl.DataFrame(),
    )
