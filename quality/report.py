"""The data quality report (数据质量报告): one self-contained HTML page, and a CLI table.

The page carries its own CSS and an inline SVG heat map: no script, no external URL, no
CDN (Great Expectations' own Data Docs pull theirs from CDNs this network cannot reach).
Labels are Chinese with English. Only scores, counts and check names are shown — never a
field value.
"""

from __future__ import annotations

import datetime as dt
from html import escape

import polars as pl
from rich.table import Table

from quality.scores import DIMENSION_LABELS, DIMENSIONS

CSS = """
body{font-family:"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;margin:24px;color:#1f2933}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #d9e2ec}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #d9e2ec;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td{background:#fde8e8}tr.dept td{font-weight:bold;background:#f7fafc}
.bar{display:inline-block;height:10px;background:#d64545;vertical-align:middle}
.muted{color:#7b8794}.ok{color:#2f8132}.bad{color:#b42318}
"""


def _colour(score: float | None) -> str:
    """Red (0) → amber → green (1); grey when there is no score."""
    if score is None:
        return "#e4e7eb"
    s = max(0.0, min(1.0, score))
    # scores that matter live between 0.8 and 1: stretch that range
    t = max(0.0, (s - 0.8) / 0.2)
    r = int(214 + (47 - 214) * t)
    g = int(69 + (129 - 69) * t)
    b = int(69 + (50 - 69) * t)
    return f"#{r:02x}{g:02x}{b:02x}"


def _fmt(score: float | None) -> str:
    return "—" if score is None else f"{100 * score:.1f}"


def _table(frame: pl.DataFrame, headers: dict[str, str], row_class=None) -> str:
    cols = [c for c in headers if c in frame.columns]
    head = "".join(f"<th>{escape(headers[c])}</th>" for c in cols)
    body = []
    for row in frame.iter_rows(named=True):
        cls = row_class(row) if row_class else ""
        cells = []
        for c in cols:
            v = row[c]
            num = isinstance(v, int | float) and not isinstance(v, bool)
            text = f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
            cells.append(f"<td{' class=num' if num else ''}>{escape(text)}</td>")
        body.append(f'<tr class="{cls}">{"".join(cells)}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def heatmap_svg(scorecard: pl.DataFrame) -> str:
    """Departments × six dimensions, one coloured cell per department score."""
    dept_rows = scorecard.filter(pl.col("dataset") == "*")
    depts = sorted(dept_rows["dept"].unique().to_list())
    scores = {(r["dept"], r["dimension"]): r["score"] for r in dept_rows.iter_rows(named=True)}
    cw, ch, left, top = 120, 26, 70, 44
    width, height = left + cw * len(DIMENSIONS) + 10, top + ch * len(depts) + 10
    parts = [
        f'<svg role="img" aria-label="quality heat map" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-size="12">'
    ]
    for j, dim in enumerate(DIMENSIONS):
        zh, en = DIMENSION_LABELS[dim].split(" ", 1)
        x = left + j * cw + cw / 2
        parts.append(f'<text x="{x}" y="18" text-anchor="middle">{escape(zh)}</text>')
        parts.append(
            f'<text x="{x}" y="34" text-anchor="middle" fill="#52606d">{escape(en)}</text>'
        )
    for i, dept in enumerate(depts):
        y = top + i * ch
        parts.append(f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">{escape(dept)}</text>')
        for j, dim in enumerate(DIMENSIONS):
            s = scores.get((dept, dim))
            x = left + j * cw
            parts.append(
                f'<rect x="{x + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" '
                f'fill="{_colour(s)}"><title>{escape(dept)} {escape(dim)}: {_fmt(s)}</title></rect>'
            )
            fill = "#1f2933" if s is None or s >= 0.9 else "#ffffff"
            parts.append(
                f'<text x="{x + cw / 2}" y="{y + 17}" text-anchor="middle" fill="{fill}">'
                f"{_fmt(s)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _score_table(scorecard: pl.DataFrame, issues: pl.DataFrame | None) -> str:
    wide = (
        scorecard.select("dept", "dataset", "dimension", "score")
        .pivot(on="dimension", index=["dept", "dataset"], values="score")
        .with_columns((pl.col("dataset") == "*").alias("_dept"))
        .sort("dept", "_dept", "dataset", descending=[False, True, False])
    )
    if issues is not None and not issues.is_empty():
        wide = wide.join(
            issues.select("dept", "dataset", "open", "resolved"), on=["dept", "dataset"], how="left"
        )
    dims = [d for d in DIMENSIONS if d in wide.columns]
    head = ["部门 dept", "数据集 dataset"] + [DIMENSION_LABELS[d] for d in dims]
    has_issues = "open" in wide.columns
    if has_issues:
        head += ["待纠错 open issues", "已纠正 resolved"]
    rows = []
    for r in wide.iter_rows(named=True):
        cells = [escape(r["dept"]), escape("（部门）department" if r["_dept"] else r["dataset"])]
        for d in dims:
            s = r[d]
            cells.append(f'<td class=num style="background:{_colour(s)}33">{_fmt(s)}</td>')
        row = "".join(f"<td>{c}</td>" for c in cells[:2]) + "".join(cells[2:])
        if has_issues:
            row += "".join(
                f"<td class=num>{'' if r[k] is None else r[k]}</td>" for k in ("open", "resolved")
            )
        rows.append(f'<tr class="{"dept" if r["_dept"] else ""}">{row}</tr>')
    thead = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{thead}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _details_table(scorecard: pl.DataFrame) -> str:
    detail = scorecard.filter(pl.col("dataset") != "*").select(
        "dept", "dataset", "dimension", "score", "numerator", "denominator", "detail"
    )
    return _table(
        detail.with_columns(pl.col("score").map_elements(_fmt, return_dtype=pl.String)),
        {
            "dept": "部门 dept",
            "dataset": "数据集 dataset",
            "dimension": "维度 dimension",
            "score": "得分 score %",
            "numerator": "分子 numerator",
            "denominator": "分母 denominator",
            "detail": "说明 detail",
        },
    )


def _expectations_table(expectations: pl.DataFrame) -> str:
    if expectations is None or expectations.is_empty():
        return '<p class="muted">无 none</p>'
    ordered = expectations.sort("success", "dept", "dataset", "expectation", nulls_last=True)
    failed = int((~ordered["success"]).sum())
    summary = (
        f"<p>{ordered.height} 项期望 expectations, "
        f'<span class="{"bad" if failed else "ok"}">{failed} 未通过 failed</span></p>'
    )
    return summary + _table(
        ordered.with_columns(
            pl.when(pl.col("success"))
            .then(pl.lit("✓ 通过 pass"))
            .otherwise(pl.lit("✗ 未通过 fail"))
        ),
        {
            "success": "结果 result",
            "dept": "部门 dept",
            "dataset": "数据集 dataset",
            "expectation": "期望 expectation",
            "column": "字段 column",
            "observed": "观测 observed",
            "detail": "说明 detail",
        },
        row_class=lambda r: "" if r["success"] == "✓ 通过 pass" else "fail",
    )


def summarise_quarantine(quarantine: pl.DataFrame) -> pl.DataFrame:
    """Quarantine rows → (dept, dataset, check_name, rows, cells) for the report."""
    return (
        quarantine.group_by("dept", "dataset", "check_name")
        .agg(
            pl.struct("delivery_id", "source_row").n_unique().alias("rows"),
            pl.len().alias("cells"),
        )
        .sort("rows", descending=True)
    )


def _quarantine_table(summary: pl.DataFrame) -> str:
    if summary is None or summary.is_empty():
        return '<p class="muted">无隔离行 nothing quarantined</p>'
    if "rows" not in summary.columns:
        summary = summarise_quarantine(summary)
    top = max(int(summary["rows"].max() or 1), 1)
    body = []
    for r in summary.sort("dept", "dataset", "rows", descending=[False, False, True]).iter_rows(
        named=True
    ):
        width = max(1, int(200 * r["rows"] / top))
        body.append(
            f"<tr><td>{escape(str(r['dept']))}</td><td>{escape(str(r['dataset']))}</td>"
            f"<td>{escape(str(r['check_name']))}</td><td class=num>{r['rows']}</td>"
            f'<td><span class="bar" style="width:{width}px"></span></td></tr>'
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("部门 dept", "数据集 dataset", "检查 check", "行数 rows", "")
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _truth_table(truth_figures: dict | None) -> str:
    if not truth_figures:
        return ""
    rows = []
    for name, value in truth_figures.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        rows.append(f"<tr><td>{escape(str(name))}</td><td class=num>{escape(text)}</td></tr>")
    return (
        "<h2>对照真值 Against the simulator's ground truth</h2>"
        "<table><thead><tr><th>指标 figure</th><th>值 value</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render_report(
    scorecard: pl.DataFrame,
    expectations: pl.DataFrame,
    truth_figures: dict | None,
    quarantine_summary: pl.DataFrame,
    title: str,
    *,
    issues: pl.DataFrame | None = None,
) -> str:
    """The whole report as one HTML string (inline CSS and SVG; no external reference).

    ``quarantine_summary``: ``summarise_quarantine(quarantine)`` (or the raw quarantine
    frame); ``issues``: ``corrections.issue_counts(issues)`` to show open / resolved issues.
    """
    computed = scorecard["computed_at"].max() if "computed_at" in scorecard.columns else None
    stamp = (computed or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>{escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="muted">数据质量报告 Data quality report · 生成于 computed {escape(stamp)}</p>
<h2>各部门六维质量 Six dimensions per department</h2>
{heatmap_svg(scorecard)}
<h2>数据集评分 Scorecard per dataset (%)</h2>
{_score_table(scorecard, issues)}
<h2>数据集级校验 Dataset expectations (Great Expectations; failures first)</h2>
{_expectations_table(expectations)}
<h2>隔离原因 Quarantine by dataset and check</h2>
{_quarantine_table(quarantine_summary)}
{_truth_table(truth_figures)}
<h2>评分说明 Score details</h2>
{_details_table(scorecard)}
</body></html>
"""


def scorecard_text(scorecard: pl.DataFrame) -> Table:
    """The scorecard for the CLI: one row per dataset (department rows in bold)."""
    table = Table(title="数据质量评分 Quality scorecard (%)")
    table.add_column("部门 dept")
    table.add_column("数据集 dataset")
    for d in DIMENSIONS:
        table.add_column(DIMENSION_LABELS[d], justify="right")
    wide = (
        scorecard.select("dept", "dataset", "dimension", "score")
        .pivot(on="dimension", index=["dept", "dataset"], values="score")
        .with_columns((pl.col("dataset") == "*").alias("_dept"))
        .sort("dept", "_dept", "dataset", descending=[False, True, False])
    )
    for r in wide.iter_rows(named=True):
        cells = []
        for d in DIMENSIONS:
            s = r.get(d)
            style = (
                "dim" if s is None else ("green" if s >= 0.99 else "yellow" if s >= 0.9 else "red")
            )
            cells.append(f"[{style}]{_fmt(s)}[/{style}]")
        table.add_row(
            r["dept"],
            "*" if r["_dept"] else r["dataset"],
            *cells,
            style="bold" if r["_dept"] else None,
        )
    return table
