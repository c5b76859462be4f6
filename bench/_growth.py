"""The growth curve's arithmetic: least-squares fits, the goals beside them, a chart.

Plain functions over the growth runs of ``bench.ingest`` (dicts with ``residents``,
``rows``, ``run_s``, ``cpu_s``, ``peak_rss_mb``), kept apart so the benchmark module holds
the measuring and this one the fitting; ``bench.ingest`` re-exports them.
"""

from __future__ import annotations

import math
from pathlib import Path

GOALS = {"floor_ratio": 3.0, "fixed_overhead_s": 20.0, "time_exponent": 1.1, "peak_rss_mb": 1024}
OUTSIDE_PHASES = "outside the phases (the interpreter, imports, the catalogue, the run's end)"


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line y = a + b·x: (a, b)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - b * mx, b


def intercept_error(xs: list[float], ys: list[float]) -> float | None:
    """Standard error of the least-squares intercept (None with fewer than three points:
    a line through two points has no residual to judge it by)."""
    n = len(xs)
    if n < 3:
        return None
    a, b = fit(xs, ys)
    mx = sum(xs) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if not sxx:
        return None
    s2 = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True)) / (n - 2)
    return math.sqrt(s2 * sum(x * x for x in xs) / (n * sxx))


def exponents(runs: list[dict], small: dict | None = None) -> dict:
    """Fitted growth over the runs (rows delivered ``x``):

    - the exponents: least-squares slope of log(time) and log(peak RSS) on log(x), over
      ``runs`` (the growth sizes);
    - the fixed overhead: least squares of ``time = a + b·x``, ``a`` (with its standard
      error), for wall time and, when measured, CPU time (which a shared machine disturbs
      less). Over ``runs`` and ``small``, a full first run of a small street (the bench's
      fixed-cost run), when it is given: the marginal cost of a row grows with the street
      (per added resident 1.78 CPU ms from 10,000 to 50,000 residents, 2.13 from 50,000
      to 200,000: the curated build's 0.36 -> 0.57 most), so a line through the growth
      sizes alone reaches the axis below what a small street costs (2026-12-05: 25.1 CPU s
      through 10,000, 50,000 and 200,000 residents, 28.0 with the 1,000-resident run,
      which took 34.7 CPU s itself); ``fixed_overhead_points`` says over how many;
    - where the CPU's fixed overhead sits (``cpu_fixed_overhead_by_phase_s``, when every run
      says its phases' CPU, ``phase_cpu_s``): each phase's own intercept, and that of the CPU
      outside the phases; least squares is linear, so they add up to the whole's ``a``.
    """
    if len(runs) < 2:
        return {}
    rows = [float(r["rows"]) for r in runs]
    logs = [math.log(x) for x in rows]
    # the small run joins the lines only with every figure the growth runs have
    keys = ("rows", "run_s", *(("cpu_s",) if all(r.get("cpu_s") for r in runs) else ()))
    lined = [*runs, small] if small and all(small.get(k) for k in keys) else runs
    points = [float(r["rows"]) for r in lined]
    out: dict = {"fixed_overhead_points": len(lined)}
    for name, key in (("", "run_s"), ("cpu_", "cpu_s")):
        if not all(r.get(key) for r in runs):
            continue
        _, exp = fit(logs, [math.log(float(r[key])) for r in runs])
        ys = [float(r[key]) for r in lined]
        fixed, per_row = fit(points, ys)
        err = intercept_error(points, ys)
        out[f"{name}time_exponent"] = round(exp, 2)
        out[f"{name}fixed_overhead_s"] = round(fixed, 1)
        out[f"{name}fixed_overhead_se_s"] = None if err is None else round(err, 1)
        out[f"{name}marginal_rows_per_s"] = round(1 / per_row) if per_row > 0 else None
    phases = [r.get("phase_cpu_s") or {} for r in lined]
    names = [p for p in phases[0] if all(p in ph for ph in phases)]
    if names and "cpu_fixed_overhead_s" in out:
        by_phase = {p: fit(points, [float(ph[p]) for ph in phases])[0] for p in names}
        outside = [
            float(r["cpu_s"]) - sum(ph[p] for p in names)
            for r, ph in zip(lined, phases, strict=True)
        ]
        by_phase[OUTSIDE_PHASES] = fit(points, outside)[0]
        out["cpu_fixed_overhead_by_phase_s"] = {p: round(a, 1) for p, a in by_phase.items()}
    _, t_exp_residents = fit(
        [math.log(r["residents"]) for r in runs], [math.log(r["run_s"]) for r in runs]
    )
    _, m_exp = fit(logs, [math.log(r["peak_rss_mb"]) for r in runs])
    base, mb_per_row = fit(rows, [r["peak_rss_mb"] for r in runs])
    return out | {
        "time_exponent_over_residents": round(t_exp_residents, 2),
        "rss_exponent": round(m_exp, 2),
        "rss_base_mb": round(base, 1),
        "rss_kb_per_row": round(mb_per_row * 1024, 2),
    }


def chart(runs: list[dict], path: Path) -> None:
    """Wall time and peak RSS against rows delivered, log–log, as a small SVG."""
    w, h, pad = 640, 360, 60
    xs = [r["rows"] for r in runs]
    series = (("run_s", "wall time (s)", "#1f77b4"), ("peak_rss_mb", "peak RSS (MB)", "#d62728"))
    lo_x, hi_x = math.log10(min(xs) / 1.5), math.log10(max(xs) * 1.5)
    ys = [r[k] for r in runs for k, _, _ in series]
    lo_y, hi_y = math.log10(min(ys) / 1.5), math.log10(max(ys) * 1.5)

    def px(x: float) -> float:
        return pad + (math.log10(x) - lo_x) / (hi_x - lo_x) * (w - 2 * pad)

    def py(y: float) -> float:
        return h - pad - (math.log10(y) - lo_y) / (hi_y - lo_y) * (h - 2 * pad)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
        f'<text x="{w / 2}" y="{h - 15}" text-anchor="middle">rows delivered (log)</text>',
        f'<text x="{w / 2}" y="25" text-anchor="middle">streethub run: growth (log–log)</text>',
    ]
    for r in runs:
        x = px(r["rows"])
        parts.append(
            f'<text x="{x:.1f}" y="{h - pad + 15}" text-anchor="middle">'
            f"{r['rows']:,} ({r['residents']:,} res.)</text>"
        )
    for i, (key, label, colour) in enumerate(series):
        pts = " ".join(f"{px(r['rows']):.1f},{py(r[key]):.1f}" for r in runs)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for r in runs:
            x, y = px(r["rows"]), py(r[key])
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
            parts.append(f'<text x="{x + 5:.1f}" y="{y - 5:.1f}" fill="{colour}">{r[key]:,}</text>')
        parts.append(f'<text x="{pad + 10}" y="{pad + 15 * i}" fill="{colour}">{label}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------ main


def fit_lines(fitted: dict, runs: list[dict]) -> list[str]:
    """The fitted growth as sentences, each with its goal: the fixed overhead is the
    intercept of a least-squares line over the points (with its standard error; a small
    street's run among them when :func:`exponents` had one), the exponent the slope of the
    log–log fit over the growth runs; both for wall and, when measured, CPU time."""
    out = []
    for label, p in (("wall", ""), ("CPU", "cpu_")):
        if f"{p}fixed_overhead_s" not in fitted:
            continue
        a, se = fitted[f"{p}fixed_overhead_s"], fitted.get(f"{p}fixed_overhead_se_s")
        rate, exp = fitted[f"{p}marginal_rows_per_s"], fitted[f"{p}time_exponent"]
        pm = f" ± {se}" if se is not None else " (two points: no error to state)"
        ok_a = "met" if 0 <= a < GOALS["fixed_overhead_s"] else "MISSED"
        ok_e = "met" if exp <= GOALS["time_exponent"] else "MISSED"
        n = fitted.get("fixed_overhead_points", len(runs))
        over = f"{n} points" + (
            f" (the {len(runs)} growth runs and a small street's)" if n > len(runs) else ""
        )
        out.append(
            f"  {label} time: least squares {label} = a + b·rows over {over}: "
            f"a = {a}{pm} s (fixed overhead; goal < {GOALS['fixed_overhead_s']:.0f} s: {ok_a}), "
            f"1/b = {rate} rows/s; log–log exponent {exp} (goal ≤ {GOALS['time_exponent']}: {ok_e})"
        )
    by_phase = fitted.get("cpu_fixed_overhead_by_phase_s")
    if by_phase:
        out.append(
            "  the CPU's fixed overhead by phase (each phase's own line; they add up to a): "
            + ", ".join(f"{p} {a} s" for p, a in by_phase.items())
        )
    largest = runs[-1]
    ok = "met" if largest["peak_rss_mb"] < GOALS["peak_rss_mb"] else "MISSED"
    out.append(
        f"  peak RSS at {largest['residents']:,} residents: {largest['peak_rss_mb']} MB (goal < "
        f"{GOALS['peak_rss_mb']} MB: {ok}); RSS exponent {fitted['rss_exponent']}, "
        f"{fitted['rss_kb_per_row']} KB per delivered row above {fitted['rss_base_mb']} MB"
    )
    out.append(f"  wall-time exponent over residents {fitted['time_exponent_over_residents']}")
    return out
