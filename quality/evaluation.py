"""Ground-truth evaluation: the row gate measured against what the simulator delivered.

The one module of the hub that knows the simulator's files. The production path
(ingest, gate, scorecard, leaks) never calls it; the main job and ``streethub quality
report`` do, after the run, and only when the simulator's folder (``settings.sim_dir_abs``)
holds a manifest. Evaluation covers the landed deliveries the manifest lists: a file
delivery by the SHA-256 of its bytes, a pull by its source (a SQLite database whose path
ends with the one the manifest names in the simulator's folder, the table its own, or an
HTTP API URL on the loopback host with one of the paths the system serves the dataset at) —
deliveries from anyone else are not evaluated.

``truth/<dept>/<dataset>/clean.parquet`` (in the simulator's folder) holds the true value
of every delivered record (source columns as text) and ``defects.parquet`` one row per
defect. A row of the gate's output is matched to the truth by the delivered file (a
mapping delivery id → file name as the truth names it) and ``_source_row``.

Links (:func:`evaluate_links`): pairwise precision and recall of the master index's person
and house links (``curated.person_mentions`` / ``house_mentions``) against the truth's
``_person`` / ``_unit`` of each staged record, mapped through its ``_key_pid``,
``_delivery_id`` and ``_source_row``; pairs counted from cluster sizes.

Per dataset: dirty rows; dirty rows repaired to the truth (an exact copy
dropped as a duplicate counts as repaired); dirty rows quarantined; dirty
rows staged with a value still wrong; clean rows wrongly quarantined (target
0); repaired citizen IDs equal to the truth (target 100 %); cleaning rate =
repaired ÷ dirty rows whose every defect is recoverable (target ≥ 98 %); and
every defect repaired or quarantined except ``wrong_value`` (valid in form,
left for the consistency / accuracy scores).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlsplit

import polars as pl

from catalog.authority import key_authorities
from catalog.model import Catalogue, Dataset, FieldSpec, FieldType, PiiKind

MANIFEST_FILE = "manifest.json"  # in the simulator's folder
TRUTH_DIR = "truth"
PULLED = {"sql_db": "registry.sqlite", "http_api": "api"}  # how the truth names a pull
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
CONNECTOR_KINDS = ("stray_header", "broken_line", "ledger_row")  # handled before the gate
LEFT_FOR_SCORES = ("wrong_value",)
KEY = ["_file", "_source_row"]
# defects whose delivered value lost the truth, so the right outcome is the catalogue's
# documented rule (catalog.model.Standardising) or a quarantine: a month-only date stages
# the month's first day, an "unknown" date (1900-01-01) stages null
POLICY_TRUTH = {
    "month_precision": lambda t: t.str.slice(0, 8) + "01",
    "unknown_date": lambda t: pl.lit(None, dtype=pl.String),
}


def policy_truth(clean: pl.DataFrame, defects: pl.DataFrame) -> pl.DataFrame:
    """The truth with each :data:`POLICY_TRUTH` defect's cell set to what the rule stages."""
    hits = defects.filter(pl.col("kind").is_in(list(POLICY_TRUTH)))
    for (column, kind), rows in hits.group_by("field", "kind"):
        if column not in clean.columns:
            continue
        hit = rows.select(KEY).unique().with_columns(pl.lit(True).alias("_policy"))
        clean = (
            clean.join(hit, on=KEY, how="left")
            .with_columns(
                pl.when(pl.col("_policy"))
                .then(POLICY_TRUTH[kind](pl.col(column)))
                .otherwise(pl.col(column))
                .alias(column)
            )
            .drop("_policy")
        )
    return clean


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
        # nothing to repair (no recoverable dirty row, no repaired ID) misses no target
        recoverable, repaired = s["dirty_recoverable"], s["citizen_ids_repaired"]
        s["cleaning_rate"] = s["repaired_recoverable"] / recoverable if recoverable else 1.0
        s["citizen_id_exact"] = s["citizen_ids_right"] / repaired if repaired else 1.0
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


PART_ROWS = 50_000  # source rows of one delivered file judged at a time (bounds the peak)


class StagedPart(Protocol):
    """A staged table read in parts (revealed, the catalogue's types): the rows of the
    deliveries ``delivery_ids`` whose ``_source_row`` is in ``[lo, hi)`` (an end None:
    open), with ``_delivery_id``, ``_source_row`` and the ``columns`` asked for. The main
    job's reads only that part of the lake's table; a frame in memory is one through
    :func:`frame_parts`."""

    def __call__(
        self, columns: list[str], delivery_ids: list[str], lo: int | None, hi: int | None
    ) -> pl.DataFrame: ...


Staged = pl.DataFrame | StagedPart


def frame_parts(frame: pl.DataFrame) -> StagedPart:
    """A staged frame held in memory, as a :class:`StagedPart`."""

    def part(
        columns: list[str], delivery_ids: list[str], lo: int | None, hi: int | None
    ) -> pl.DataFrame:
        if "_delivery_id" not in frame.columns:  # no staged table: nothing staged
            return pl.DataFrame(schema={"_delivery_id": pl.String, "_source_row": pl.Int64})
        return frame.filter(pl.col("_delivery_id").is_in(delivery_ids), in_rows(lo, hi)).select(
            "_delivery_id", "_source_row", *columns
        )

    return part


def in_rows(lo: int | None, hi: int | None) -> pl.Expr:
    """``_source_row`` in ``[lo, hi)`` (an end None: open)."""
    row = pl.col("_source_row")
    return (row >= lo if lo is not None else pl.lit(True)) & (
        row < hi if hi is not None else pl.lit(True)
    )


def _located(frame: pl.DataFrame, files: dict[str, str]) -> pl.DataFrame:
    if "_delivery_id" not in frame.columns:  # nothing quarantined
        return pl.DataFrame(schema={"_file": pl.String, "_source_row": pl.Int64})
    return frame.with_columns(
        pl.col("_delivery_id").replace_strict(files, default=None).alias("_file")
    )


def _parts(clean: Path, name: str, part_rows: int) -> list[tuple[int | None, int | None]]:
    """Source-row ranges ``[lo, hi)`` that split one file into parts of ``part_rows`` rows
    of its truth (the first and last ranges open: every row falls in exactly one)."""
    last = (
        pl.scan_parquet(clean)
        .filter(pl.col("_file") == name)
        .select(pl.col("_source_row").max())
        .collect()
        .item()
    )
    if last is None or last < part_rows:
        return [(None, None)]
    bounds = list(range(part_rows, last + 1, part_rows))
    return list(zip([None, *bounds], [*bounds, None], strict=True))


def _iso_datetimes(clean: Path, name: str, fields: list[FieldSpec]) -> dict[str, bool]:
    """Per datetime field: whether the file's truth spells it ISO with +08:00 (decided
    over the whole file, whichever part is judged)."""
    dts = [f for f in fields if f.type is FieldType.datetime]
    if not dts:
        return {}
    found = (
        pl.scan_parquet(clean)
        .filter(pl.col("_file") == name)
        .select(
            pl.col(f.source_name).drop_nulls().str.contains(r"T.*\+08:00$").any().alias(f.name)
            for f in dts
        )
        .collect()
    )
    return {k: bool(v) for k, v in found.row(0, named=True).items()}


def _staged_part(part: pl.DataFrame | None, cols: list[FieldSpec], name: str) -> pl.DataFrame:
    """A part of the staged rows, located (``_file``), with every judged column."""
    if part is None or not all(f.name in part.columns for f in cols):
        empty = {FieldType.date: pl.Date(), FieldType.datetime: pl.Datetime()}
        schema = {"_file": pl.String, "_source_row": pl.Int64}
        return pl.DataFrame(schema=schema | {f.name: empty.get(f.type, pl.String()) for f in cols})
    return part.select(
        pl.lit(name, dtype=pl.String).alias("_file"), "_source_row", *[f.name for f in cols]
    )


def evaluate_dataset(
    ref: str,
    dataset: Dataset,
    staged: Staged,
    quarantine: pl.DataFrame,
    truth: Path,
    files: dict[str, str],
    covered: set[str] | None = None,
    part_rows: int | None = None,
) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    """One dataset's figures; ``staged`` a frame or a :class:`StagedPart`; ``covered``: the
    delivered files to judge (default: every file in ``files``); ``part_rows``: default
    :data:`PART_ROWS`.

    Judged one part of one delivered file at a time (every figure is a count over rows
    keyed by file and source row, so they add up): ``part_rows`` source rows of one
    file's truth, and the staged rows of the same deliveries and source rows, only the
    columns the truth has. At 200,000 residents the IoT readings are 1.7 million rows in
    three files: the whole staged table, revealed, was the evaluation's peak."""
    covered = sorted(covered if covered is not None else set(files.values()))
    part_rows = part_rows or PART_ROWS
    read = frame_parts(staged) if isinstance(staged, pl.DataFrame) else staged
    clean = truth / "clean.parquet"
    schema = pl.read_parquet_schema(clean)
    cols = [f for f in dataset.fields if f.source_name in schema]
    quarantine = _located(quarantine, files)
    figures: dict | None = None
    missed, wrong = [], []
    for name in covered or [None]:  # None: no file, the figures of nothing (all zero)
        judged = [name] if name is not None else []
        ids = sorted(d for d, f in files.items() if f == name)
        parts = _parts(clean, name, part_rows) if name is not None else [(None, None)]
        iso = _iso_datetimes(clean, name, cols) if name is not None else {}
        for lo, hi in parts:
            part = read([f.name for f in cols], ids, lo, hi) if ids else None
            fig, miss, wq = _evaluate_files(
                ref,
                dataset,
                _staged_part(part, cols, name),
                quarantine.filter(pl.col("_file").is_in(judged), in_rows(lo, hi)),
                truth,
                judged,
                (lo, hi),
                iso,
            )
            if figures is None:
                figures = fig
            else:
                figures = {k: v if k == "dataset" else figures[k] + v for k, v in fig.items()}
            missed.append(miss)
            wrong.append(wq)
    assert figures is not None
    return (
        figures,
        pl.concat(missed, how="diagonal_relaxed"),
        pl.concat(wrong, how="diagonal_relaxed"),
    )


def _read_truth(path: Path, judged: list[str], rows: tuple[int | None, int | None]) -> pl.DataFrame:
    """The truth rows of the ``judged`` files with source rows in ``rows`` (a filtered
    scan, not the whole file)."""
    return pl.scan_parquet(path).filter(pl.col("_file").is_in(judged), in_rows(*rows)).collect()


def _evaluate_files(
    ref: str,
    dataset: Dataset,
    staged: pl.DataFrame,
    quarantine: pl.DataFrame,
    truth: Path,
    judged: list[str],
    rows: tuple[int | None, int | None],
    iso: dict[str, bool],
) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    """:func:`evaluate_dataset`'s figures for the delivered files ``judged``, source rows in
    ``rows`` (``staged`` and ``quarantine`` located, ``_file``, holding those rows only);
    ``iso``: the datetime fields the files' truth spells ISO with +08:00."""
    clean = _read_truth(truth / "clean.parquet", judged, rows)
    all_defects = _read_truth(truth / "defects.parquet", judged, rows)
    defects = all_defects.filter(~pl.col("kind").is_in(CONNECTOR_KINDS))
    clean = policy_truth(clean, defects)
    by_source = {f.source_name: f for f in dataset.fields}

    # staged values as the truth's text, next to the truth
    cols = [f for f in dataset.fields if f.source_name in clean.columns]
    s_text = staged.select(
        *KEY,
        *[_as_text(f.name, f.type, iso.get(f.name, False)).alias(f"s__{f.name}") for f in cols],
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
    # each defective cell judged by its own field's comparison, picked per row: joining the
    # defects to an unpivot of every cell of the file (rows × fields) took over a gigabyte
    # on the IoT readings of a 200,000-resident street
    eq_cols = [f"eq__{f.name}" for f in cols]
    right = pl.lit(None, dtype=pl.Boolean)
    for f in cols:
        right = pl.when(pl.col("name") == f.name).then(pl.col(f"eq__{f.name}")).otherwise(right)
    cell = (
        cell.join(both.select(*KEY, *eq_cols), on=KEY, how="left")
        .with_columns(right.alias("right"))
        .drop(eq_cols)
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
    staged: Mapping[str, Staged],
    quarantine: dict[str, pl.DataFrame],
    truth_dir: Path,
    catalogue: Catalogue,
    files: dict[str, str],
    covered: dict[str, set[str]] | None = None,
    known: Mapping[str, dict] | None = None,
) -> TruthReport:
    """Compare the gate's output (keyed ``dept.dataset``) with ``truth_dir``.

    ``files`` maps each ``_delivery_id`` to the delivered file name the truth uses;
    ``covered`` (by ``dept.dataset``) the files judged per dataset (default: all of them);
    ``known`` (by ``dept.dataset``) a dataset's figures from an earlier evaluation of the
    same rows: taken as they are, the dataset not read (its missed and wrongly quarantined
    rows are then not listed).
    """
    figures, missed, wrong = [], [], []
    known = known or {}
    for ref in sorted(set(staged) | set(quarantine)):
        dept, ds = catalogue.dataset(ref)
        truth = Path(truth_dir) / dept.code / ds.code
        if not (truth / "clean.parquet").exists():
            continue
        if ref in known:
            figures.append(known[ref])
            continue
        fig, miss, wq = evaluate_dataset(
            ref,
            ds,
            staged.get(ref, pl.DataFrame()),
            quarantine.get(ref, pl.DataFrame()),
            truth,
            files,
            None if covered is None else covered.get(ref, set()),
        )
        figures.append(fig)
        missed.append(miss)
        wrong.append(wq)
    return TruthReport(
        datasets=pl.DataFrame(figures),
        missed=pl.concat(missed, how="diagonal_relaxed") if missed else pl.DataFrame(),
        wrongly_quarantined=pl.concat(wrong, how="diagonal_relaxed") if wrong else pl.DataFrame(),
    )


def read_manifest(sim_dir: Path) -> dict | None:
    """The simulator's manifest in its folder, or None (no simulator: nothing to evaluate)."""
    path = Path(sim_dir) / MANIFEST_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def manifest_rows(manifest: dict) -> dict[tuple[str, str], int]:
    """Rows delivered per (dept, dataset) by the simulator's own count."""
    return {
        (dept, code): sum(int(n) for n in entry.get("rows", {}).values())
        for dept, datasets in manifest.get("departments", {}).items()
        for code, entry in datasets.items()
    }


def expected_rows(sim_dir: Path, departments: Iterable[str] | None = None) -> dict[str, int] | None:
    """Rows per department by the simulator's own count (None when it simulated nothing).

    ``departments``: count only these (a hub's catalogue): a department its catalogue does
    not describe is not read by design (not onboarded), so its rows are not rows it lost.
    """
    manifest = read_manifest(sim_dir)
    if manifest is None:
        return None
    wanted = None if departments is None else set(departments)
    out: dict[str, int] = {}
    for (dept, _), n in manifest_rows(manifest).items():
        if wanted is None or dept in wanted:
            out[dept] = out.get(dept, 0) + n
    return out


def _pulled_from(entry: dict, source: str | None) -> bool:
    """Whether a pull's source is the simulated system of a manifest entry."""
    system = entry.get("system") or {}
    if not source:
        return False
    if "database" in system:  # relative to the folder: matched wherever it was pulled from
        url, _, table = source.rpartition("#")
        if not url.startswith("sqlite:") or table != system.get("table"):
            return False
        named = PurePosixPath(system["database"]).parts
        return PurePosixPath(url.removeprefix("sqlite:")).parts[-len(named) :] == named
    if "db_url" in system:  # a street simulated before the manifest named it relatively
        return source == f"{system['db_url']}#{system.get('table', '')}"
    if "endpoint" in system:  # any path its dialects serve it at (an older street names one)
        served = system.get("endpoints", [system["endpoint"]])
        url = urlsplit(source)
        return url.hostname in LOOPBACK and url.path in served
    return False


def matched_files(manifest: dict, deliveries: pl.DataFrame) -> dict[str, str]:
    """Landed deliveries the simulator made: delivery id → the file name its truth uses.

    ``deliveries`` has ``delivery_id, dept, dataset, sha256, source`` (the landing ledger).
    A file delivery matches by its SHA-256, a pull by its source (see the module docstring).
    """
    by_hash: dict[str, str] = {}
    entries = manifest.get("departments", {})
    for datasets in entries.values():
        for entry in datasets.values():
            by_hash |= {h: f for f, h in (entry.get("sha256") or {}).items()}
    out: dict[str, str] = {}
    for delivery_id, dept, code, sha256, source in deliveries.select(
        "delivery_id", "dept", "dataset", "sha256", "source"
    ).iter_rows():
        entry = entries.get(dept, {}).get(code)
        if entry is None:
            continue
        if sha256 in by_hash and by_hash[sha256] in entry.get("files", ()):
            out[delivery_id] = by_hash[sha256]
        elif entry.get("kind") in PULLED and _pulled_from(entry, source):
            out[delivery_id] = PULLED[entry["kind"]]
    return out


def simulated_files(sim_dir: Path, deliveries: pl.DataFrame) -> dict[str, str] | None:
    """:func:`matched_files` of the simulator's manifest in ``sim_dir``: None when there is
    no manifest or none of its deliveries landed (nothing to evaluate)."""
    manifest = read_manifest(sim_dir)
    if manifest is None:
        return None
    return matched_files(manifest, deliveries) or None


def wrong_values_caught(
    truth_dir: Path,
    cat: Catalogue,
    files: dict[str, str],
    quarantine: pl.DataFrame,
    disagreements: pl.DataFrame | None,
    covered: dict[str, set[str]] | None = None,
) -> dict[str, float]:
    """Valid-but-wrong values (simulator kind ``wrong_value``): how each was caught.

    The gate quarantines those its row contradicts (a birth date that disagrees with the
    row's own citizen ID); consistency/accuracy flag those that disagree with the
    authoritative department; the rest cannot be checked (no person key, or a person
    the registry does not know). Only the files in ``files`` count (or, by
    ``dept.dataset``, those in ``covered``).
    """
    key = ["dept", "dataset", "_file", "_source_row"]
    parts = []
    for d, ds in cat.datasets():
        path = Path(truth_dir) / d.code / ds.code / "defects.parquet"
        judged = set(files.values()) if covered is None else covered.get(f"{d.code}.{ds.code}")
        if path.exists() and judged:
            source = {f.source_name: f.name for f in ds.fields}
            parts.append(
                pl.read_parquet(path)
                .filter((pl.col("kind") == "wrong_value") & pl.col("_file").is_in(sorted(judged)))
                .select(
                    pl.lit(d.code).alias("dept"),
                    pl.lit(ds.code).alias("dataset"),
                    "_file",
                    "_source_row",
                    pl.col("field").replace_strict(source, default=None).alias("field"),
                )
            )
    wrong = pl.concat(parts) if parts else pl.DataFrame()
    if wrong.is_empty():
        return {"wrong_values": 0.0, "wrong_values_quarantined": 0.0, "wrong_values_flagged": 0.0}

    def located(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(
            pl.col("delivery_id").replace_strict(files, default=None).alias("_file"),
            pl.col("source_row").alias("_source_row"),
        )

    in_quarantine = wrong.join(located(quarantine).select(key).unique(), on=key, how="semi")
    rest = wrong.join(in_quarantine, on=[*key, "field"], how="anti")
    flagged = 0
    if disagreements is not None and disagreements.height:
        flags = located(disagreements).select(*key, "field").unique()
        flagged = rest.join(flags, on=[*key, "field"], how="semi").height
    return {
        "wrong_values": float(wrong.height),
        "wrong_values_quarantined": float(in_quarantine.height),
        "wrong_values_flagged": float(flagged),
    }


@dataclass
class Evaluation:
    """The figures against the truth (totals) and the targets missed, as sentences."""

    totals: dict[str, float]
    problems: list[str]
    deliveries: int  # landed deliveries evaluated
    datasets: dict[str, dict] = field(default_factory=dict)  # dept.dataset → its figures
    # entity → {"all" | "fallback": its links' figures} (:func:`evaluate_links`), when the
    # curated mention tables were there to judge
    links: dict[str, dict[str, LinkScore]] = field(default_factory=dict)

    def judge_links(self, links: dict[str, dict[str, LinkScore]]) -> None:
        """Keep ``links``; a precision or recall under :data:`LINK_TARGETS` is a problem."""
        self.links = links
        for entity, scores in sorted(links.items()):
            score, target = scores["all"], LINK_TARGETS[entity]
            for figure in ("precision", "recall"):
                if getattr(score, figure) < target:
                    self.problems.append(
                        f"{entity} links: {figure} {getattr(score, figure):.2%} "
                        f"(target ≥ {target:.0%})"
                    )

    def link_lines(self) -> list[str]:
        """One line an entity: ``person links: precision 99.91 % recall 99.40 % …``."""
        out = []
        for entity, scores in sorted(self.links.items()):
            s = scores["all"]
            line = (
                f"{entity} links: precision {s.precision:.2%} recall {s.recall:.2%} "
                f"({s.records:,} records, {s.true_pairs:,} true pairs, "
                f"{s.linked_pairs:,} linked)"
            )
            fallback = scores.get("fallback")
            if fallback is not None and (fallback.true_pairs or fallback.linked_pairs):
                line += (
                    f"; pairs with a record linked without the key: precision "
                    f"{fallback.precision:.2%} recall {fallback.recall:.2%}"
                )
            out.append(line)
        return out


class _ByRef(Mapping[str, pl.DataFrame]):
    """``staged`` keyed ``dept.dataset``, each frame read as it is asked for: the staged
    tables are read one at a time, never all at once. Not filtered to the simulator's
    deliveries: :func:`evaluate_dataset` judges file by file, and a row of anyone else's
    delivery has no file (a filtered copy of the largest table was the evaluation's peak)."""

    def __init__(self, staged: Mapping[tuple[str, str], pl.DataFrame]) -> None:
        self.staged = staged
        self.refs = {f"{d}.{c}": (d, c) for d, c in staged}

    def __getitem__(self, ref: str) -> pl.DataFrame:
        return self.staged[self.refs[ref]]

    def __contains__(self, ref: object) -> bool:  # Mapping's would read the table
        return ref in self.refs

    def __iter__(self) -> Iterator[str]:
        return iter(self.refs)

    def __len__(self) -> int:
        return len(self.refs)


def evaluate_lake(
    sim_dir: Path,
    cat: Catalogue,
    staged: Mapping[tuple[str, str], pl.DataFrame],
    quarantine: pl.DataFrame,
    deliveries: pl.DataFrame,
    disagreements: pl.DataFrame | None = None,
    known: Mapping[str, dict] | None = None,
) -> Evaluation | None:
    """The lake's staged rows and quarantine against the simulator's truth, for the landed
    deliveries its manifest lists (None when there is no manifest or none of them landed).

    ``staged`` keyed ``(dept, dataset)`` (revealed), ``quarantine`` as ``quarantine.rows``
    (``dept, dataset, delivery_id, source_row`` are the columns used), ``deliveries`` as
    ``landing.deliveries``, ``disagreements`` as the scorecard wrote them (``dept, dataset,
    delivery_id, source_row, field`` used);
    ``known``: figures of datasets whose rows an earlier evaluation judged (see
    :func:`evaluate`).
    """
    files = simulated_files(sim_dir, deliveries)
    if files is None:
        return None
    ours = pl.col("_delivery_id").is_in(list(files))
    frames = _ByRef(staged)
    q = quarantine.rename({"delivery_id": "_delivery_id", "source_row": "_source_row"})
    q = q.filter(ours)
    empty = q.clear().drop("dept", "dataset")
    quarantined = {ref: empty for ref in frames}
    quarantined |= {
        f"{d}.{c}": g.drop("dept", "dataset")
        for (d, c), g in q.group_by("dept", "dataset")
        if f"{d}.{c}" in frames
    }
    covered: dict[str, set[str]] = {}
    for delivery_id, dept, code in deliveries.select("delivery_id", "dept", "dataset").iter_rows():
        if delivery_id in files:
            covered.setdefault(f"{dept}.{code}", set()).add(files[delivery_id])
    truth = Path(sim_dir) / TRUTH_DIR
    report = evaluate(frames, quarantined, truth, cat, files, covered, known)
    totals = {k: float(v) for k, v in report.totals.items()}
    totals |= wrong_values_caught(truth, cat, files, quarantine, disagreements, covered)
    per_dataset = {r["dataset"]: r for r in report.datasets.iter_rows(named=True)}
    return Evaluation(totals, report.problems(), len(files), per_dataset)


# --- links: the master index's mentions against the truth's identities ----------------------

# entity → (the truth's identity column, the mention table's cluster column): the true
# citizen ID of a record's subject, the true housing unit its address names
LINK_TRUTH = {"person": ("_person", "person_id"), "house": ("_unit", "house_id")}
LINK_TARGETS = {"person": 0.99, "house": 0.98}  # precision and recall, both (issue 12)


@dataclass(frozen=True)
class LinkScore:
    """Pairwise figures of one linkage against the truth: a pair of records is linked when
    both are mentions of one cluster, true when both concern one true identity; ``right``
    pairs are both. A record without a true identity (an outsider, a visitor) is no one
    else's, a record without a mention is linked to nobody."""

    records: int  # records judged: a true identity or a link, or both
    true_pairs: int
    linked_pairs: int
    right_pairs: int

    @property
    def precision(self) -> float:
        return self.right_pairs / self.linked_pairs if self.linked_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.right_pairs / self.true_pairs if self.true_pairs else 1.0

    def minus(self, part: LinkScore) -> LinkScore:
        """The pairs not within ``part`` (a subset of these records): the pairs that
        involve at least one record outside it."""
        return LinkScore(
            self.records - part.records,
            self.true_pairs - part.true_pairs,
            self.linked_pairs - part.linked_pairs,
            self.right_pairs - part.right_pairs,
        )


class PairCounts:
    """Cluster sizes over the judged records added a part at a time (one dataset's), so
    that the pairs of clusters spanning datasets are counted without holding every judged
    record at once (1.1 million at 200,000 residents): the parts wait until they hold
    :attr:`MERGE_ROWS` records, then their records are counted by (cluster, true identity),
    a null one included, and merged into the counts so far. The sizes by true identity, by
    cluster and by both are sums of those counts, taken once when scored (three sizes kept
    and each merged was the truth evaluation's peak at 200,000 residents)."""

    MERGE_ROWS = 400_000  # records of the parts waiting before they are merged

    def __init__(self) -> None:
        self.counts = pl.DataFrame()  # linked, truth, len: records of each pair of values
        self.waiting: list[pl.DataFrame] = []

    def add(self, judged: pl.DataFrame, linked: str = "linked", truth: str = "truth") -> PairCounts:
        """Count a part: one row per record (``linked``: its cluster, null when not linked;
        ``truth``: its true identity, null when none); no record in two parts."""
        self.waiting.append(
            judged.select(pl.col(linked).alias("linked"), pl.col(truth).alias("truth"))
        )
        if sum(w.height for w in self.waiting) >= self.MERGE_ROWS:
            self._merge()
        return self

    def _merge(self) -> None:
        if not self.waiting:
            return
        frame = pl.concat(self.waiting)
        self.waiting = []
        part = frame.group_by("linked", "truth").agg(pl.len().cast(pl.Int64))
        del frame
        if self.counts.width:
            part = (
                pl.concat([self.counts, part]).group_by("linked", "truth").agg(pl.col("len").sum())
            )
        self.counts = part

    def score(self) -> LinkScore:
        """The :class:`LinkScore` of every record added: n records of one cluster give
        n(n-1)/2 pairs, never enumerated."""
        self._merge()
        if not self.counts.width:
            return LinkScore(0, 0, 0, 0)
        counts = self.counts

        def pairs(columns: list[str]) -> int:
            n = counts.drop_nulls(columns).group_by(columns).agg(pl.col("len").sum())["len"]
            return int((n * (n - 1) // 2).sum())

        judged = counts.filter(pl.col("linked").is_not_null() | pl.col("truth").is_not_null())
        records = int(judged["len"].sum())
        return LinkScore(records, pairs(["truth"]), pairs(["linked"]), pairs(["linked", "truth"]))


def pair_counts(judged: pl.DataFrame, linked: str = "linked", truth: str = "truth") -> LinkScore:
    """:class:`LinkScore` of a frame of one row per record (:meth:`PairCounts.add`)."""
    return PairCounts().add(judged, linked, truth).score()


class Mentions(Protocol):
    """An entity's mention table read a dataset at a time (``curated.person_mentions``
    holds a row per linked record: 1.1 million at 200,000 residents)."""

    def named(self) -> set[tuple[str, str]]:
        """(dept, dataset) of the records it mentions."""
        ...

    def of(self, dept: str, dataset: str) -> pl.DataFrame:
        """That dataset's mentions: ``key_pid`` and the entity's cluster column."""
        ...


class FrameMentions:
    """:class:`Mentions` of a whole mention table in memory (``dept, dataset, key_pid`` and
    the cluster column)."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame

    def named(self) -> set[tuple[str, str]]:
        return set(zip(self.frame["dept"], self.frame["dataset"], strict=True))

    def of(self, dept: str, dataset: str) -> pl.DataFrame:
        return self.frame.filter((pl.col("dept") == dept) & (pl.col("dataset") == dataset))


def _as_mentions(mentions: pl.DataFrame | Mentions) -> Mentions:
    return FrameMentions(mentions) if isinstance(mentions, pl.DataFrame) else mentions


def judged_parts(
    mentions: pl.DataFrame | Mentions,
    staged_keys: Mapping[tuple[str, str], pl.DataFrame],
    truth_dir: Path,
    files: dict[str, str],
    entity: str,
    skip: set[tuple[str, str]] = frozenset(),
) -> Iterator[tuple[tuple[str, str], pl.DataFrame]]:
    """A dataset at a time, as it is asked for: ``(dept, dataset)`` and one row per staged
    record of the simulator's deliveries (``dept, dataset, linked, truth``), for every
    dataset whose truth names the ``entity`` (:data:`LINK_TRUTH`) but those in ``skip``;
    ``staged_keys`` and ``mentions`` are read only for the datasets judged.

    ``mentions``: ``dept, dataset, key_pid`` and the entity's cluster column (one row per
    mentioned staged record); ``staged_keys`` by ``(dept, dataset)``: the staged rows'
    ``_key_pid, _delivery_id, _source_row``; ``files``: delivery id → the truth's file.
    A staged row is mapped to its truth by the delivered file and ``_source_row`` (as the
    row gate's figures are), to its mention by ``_key_pid``."""
    identity = LINK_TRUTH[entity][0]
    mentions = _as_mentions(mentions)
    for dept, code in sorted(staged_keys):
        clean = Path(truth_dir) / dept / code / "clean.parquet"
        if (dept, code) in skip or not clean.exists():
            continue
        if identity not in pl.read_parquet_schema(clean):
            continue
        part = _judged(mentions, (dept, code), staged_keys, clean, files, entity)
        yield (dept, code), part
        del part


def _row_ids(files: dict[str, str]) -> dict[str, int]:
    """Each truth file name → a number: a record is keyed by one integer (the file's number
    and its source row), not by a file name and a row (a string key made the joins of the
    largest dataset hold several times its frames)."""
    return {name: i for i, name in enumerate(sorted(set(files.values())))}


def _row_id(file_number: pl.Expr) -> pl.Expr:
    """One integer per (file, source row): the file's number in the high bits."""
    return (file_number.cast(pl.Int64) * 2**40 + pl.col("_source_row")).alias("_row")


def _judged(
    mentions: Mentions,
    ref: tuple[str, str],
    staged_keys: Mapping[tuple[str, str], pl.DataFrame],
    clean: Path,
    files: dict[str, str],
    entity: str,
) -> pl.DataFrame:
    """One dataset's part of :func:`judged_parts` (its keys read from ``staged_keys``,
    ``clean``: its truth), made in a function of its own: what it is made from is freed when
    it returns, not held by the generator while the part is counted. The staged keys are
    joined to their links first and let go, then to the truth, so that the dataset's keys,
    links and truth are never held all at once."""
    identity, cluster = LINK_TRUTH[entity]
    dept, code = ref
    numbers = _row_ids(files)
    keys = staged_keys[ref]
    located = keys.filter(pl.col("_delivery_id").is_in(list(files))).select(
        pl.col("_key_pid").cast(pl.String),
        pl.col("_delivery_id").replace_strict(files, default=None).alias("_file"),
        "_source_row",
    )
    del keys
    judged = located["_file"].unique().to_list()
    located = located.select(
        "_key_pid", _row_id(pl.col("_file").replace_strict(numbers, default=None))
    )
    linked = (
        mentions.of(dept, code)
        .select(
            pl.col("key_pid").cast(pl.String).alias("_key_pid"),
            pl.col(cluster).cast(pl.String).alias("linked"),
        )
        .unique("_key_pid", keep="first")
    )
    located = located.join(linked, on="_key_pid", how="left").select("_row", "linked")
    del linked
    truth = (
        pl.scan_parquet(clean)
        .filter(pl.col("_file").is_in(judged))
        .select(
            _row_id(pl.col("_file").replace_strict(numbers, default=None)),
            pl.col(identity).cast(pl.String).alias("truth"),
        )
        .collect()
    )
    rows = located.join(truth, on="_row", how="left")
    return rows.select(
        pl.lit(dept).alias("dept"),
        pl.lit(code).alias("dataset"),
        pl.col("linked").cast(pl.String),
        "truth",
    )


def keyed_datasets(catalogue: Catalogue, entity: str) -> set[tuple[str, str]]:
    """(dept, dataset) of the datasets carrying an entity key of ``entity`` (a concept an
    authoritative dataset is keyed by: ``person.citizen_id``, ``house.unit_id``): their
    records link exactly, the others' only by a fallback."""
    keys = {c for c, a in key_authorities(catalogue).items() if a.entity == entity}
    return {
        (d.code, ds.code)
        for d, ds in catalogue.datasets()
        if any(f.concept in keys for f in ds.fields)
    }


def link_scores(
    judged: pl.DataFrame, keyed: set[tuple[str, str]] | None = None
) -> dict[str, LinkScore]:
    """``all``: the figures over every judged record (:func:`judged_parts`); with
    ``keyed`` (:func:`keyed_datasets`) also ``fallback``: the pairs that involve a record
    of a dataset without the entity key (a 12345 caller, an incident reporter)."""
    parts = judged.partition_by(["dept", "dataset"], as_dict=True, maintain_order=True)
    return _scores(iter(parts.items()), keyed)  # type: ignore[arg-type]


def _scores(
    parts: Iterator[tuple[tuple[str, str], pl.DataFrame]],
    keyed: set[tuple[str, str]] | None = None,
) -> dict[str, LinkScore]:
    """:func:`link_scores` of judged records a dataset at a time."""
    every, exact = PairCounts(), PairCounts()
    for ref, frame in parts:
        every.add(frame)
        if keyed is not None and ref in keyed:
            exact.add(frame)
    out = {"all": every.score()}
    if keyed is not None:
        out["fallback"] = out["all"].minus(exact.score())
    return out


def evaluate_links(
    sim_dir: Path,
    cat: Catalogue,
    deliveries: pl.DataFrame,
    staged_keys: Mapping[tuple[str, str], pl.DataFrame],
    mentions: Mapping[str, pl.DataFrame | Mentions],
) -> dict[str, dict[str, LinkScore]] | None:
    """Pairwise precision and recall of each entity's links (``mentions`` by entity:
    ``person`` as ``curated.person_mentions``, ``house`` as ``curated.house_mentions``,
    a frame or read a dataset at a time) against the simulator's truth, over the landed
    deliveries its manifest lists (None without a manifest or a matched delivery); an
    entity register the mentions do not name is not judged (:func:`registers`).
    ``deliveries`` as ``landing.deliveries``; ``staged_keys`` as in :func:`judged_parts`.
    Counted a dataset at a time (:class:`PairCounts`)."""
    files = simulated_files(sim_dir, deliveries)
    if files is None:
        return None
    truth = Path(sim_dir) / TRUTH_DIR
    out = {}
    for entity, table in mentions.items():
        if entity not in LINK_TRUTH:
            continue
        table = _as_mentions(table)
        skip = registers(cat, entity) - table.named()
        parts = judged_parts(table, staged_keys, truth, files, entity, skip)
        out[entity] = _scores(parts, keyed_datasets(cat, entity))
    return out


def registers(catalogue: Catalogue, entity: str) -> set[tuple[str, str]]:
    """(dept, dataset) of the entity's registers: the authoritative datasets keyed by an
    entity key (the household registry, the housing-unit register). A register whose rows
    the mention table does not name is the entities themselves (``curated.house`` is the
    unit register), not mentions: it is not judged."""
    return {
        (a.dept, a.dataset.code) for a in key_authorities(catalogue).values() if a.entity == entity
    }


NEED_TRUTH = ("probabilities", "elderly_events", "grid_expected")  # truth/needs/<name>.parquet


def read_need_truth(sim_dir: Path) -> dict[str, pl.DataFrame] | None:
    """The simulator's need truth (departments/NEEDS.md), each frame by its name in
    :data:`NEED_TRUTH`, residents by their true citizen ID (``_person``); None when the
    folder holds none (a street simulated without history, or no simulator)."""
    folder = Path(sim_dir) / TRUTH_DIR / "needs"
    paths = {name: folder / f"{name}.parquet" for name in NEED_TRUTH}
    if not all(p.exists() for p in paths.values()):
        return None
    return {name: pl.read_parquet(p) for name, p in paths.items()}
