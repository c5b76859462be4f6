"""Run every benchmark, or the ones named: ``python -m bench [gate ...]``.

A benchmark is a module of this package with a ``main()`` function. After the ingest
and incremental benchmarks, the goals of issue 10 ("Any street") are printed together,
each figure beside its goal, from their results files; after the share benchmark, issue
14's (Share service) likewise.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ONE_OF_MANY = "STREETHUB_BENCH_ONE_OF_MANY"  # set in the children of a run of several


def benchmarks() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name
        for m in pkgutil.iter_modules([str(here)])
        if not m.name.startswith("_") and m.name != "streets"  # the street cache, no bench
    )


def goals(results: Path = RESULTS) -> list[str]:
    """Issue 10's goals as lines ``figure: value (goal …: met/MISSED)``, from the ingest and
    incremental results present in ``results`` (none: nothing measured yet)."""
    lines = []
    ingest, incremental = results / "ingest.json", results / "incremental.json"
    if ingest.exists():
        figures = json.loads(ingest.read_text(encoding="utf-8"))
        goal, floor = figures["goals"], figures.get("floor_vs_ingest")
        if floor:
            ratio = floor["ratio_files"]
            verdict = "met" if ratio <= goal["floor_ratio"] else "MISSED"
            lines.append(
                f"ingest against the DuckDB floor ({floor['residents']:,} residents): {ratio}× "
                f"(goal ≤ {goal['floor_ratio']}×: {verdict})"
            )
        growth = figures.get("growth") or []
        from bench._growth import exponents, fit_lines

        # fitted again: results of an older bench lack some fits
        fitted = exponents(growth, figures.get("fixed_cost"))
        if fitted:
            lines.append(
                "growth ("
                + ", ".join(f"{r['residents']:,}" for r in growth)
                + " residents; a quick bench measures small streets only):"
            )
            lines += fit_lines(fitted, growth)
        fixed = figures.get("fixed_cost")
        if fixed:
            from bench._costs import DUCKLAKE

            counted = fixed.get("lake_statements")
            sampled = fixed.get("sampled_profile") or {}
            if sampled.get("total"):  # DuckLake's catalogue as a share of a sampled run
                share = sum(sampled.get(kind, 0.0) for kind in DUCKLAKE) / sampled["total"]
                catalogue = f", DuckLake's catalogue (reads, commits) {share:.0%} of its samples"
            elif counted and "catalogue_ms" in counted:  # results before 2026-12-05
                catalogue = f", DuckLake's catalogue queries {counted['catalogue_ms'] / 1000:.1f} s"
            else:
                catalogue = ""
            lines.append(
                f"fixed cost, a street of {fixed['residents']:,} residents: {fixed['cpu_s']} CPU s "
                f"({fixed.get('dagster_steps', '?')} Dagster steps), peak {fixed['peak_rss_mb']} MB"
                + (
                    f"; {counted['statements']:,} statements on the lake, {counted['ours']:,} "
                    "of them ours" + catalogue
                    if counted
                    else ""
                )
            )
            floor = fixed.get("stack_floor")
            if floor:  # bench/_stack_floor.py, measured beside the fixed-cost run
                from bench._stack_floor import floor_line

                overhead = fitted.get("cpu_fixed_overhead_s")
                left = (
                    f"; the fixed overhead less that: {overhead - floor['cpu_s']:.1f} CPU s "
                    f"of ours, where the goal leaves {goal['fixed_overhead_s'] - floor['cpu_s']:.1f} s"
                    if overhead is not None
                    else ""
                )
                lines.append(f"  {floor_line(floor)}{left}")
    if incremental.exists():
        f = json.loads(incremental.read_text(encoding="utf-8"))
        for key, label in (("no_op", "no-op run"), ("daily", "daily-delivery run")):
            frac, goal = f[f"{key}_cpu_fraction"], f["goals"][f"{key}_fraction"]
            lines.append(
                f"{label} ({f['residents']:,} residents): {frac:.1%} of the first run's CPU, "
                f"wall {f[f'{key}_fraction']:.1%} (goal ≤ {goal:.0%}: "
                f"{'met' if frac <= goal else 'MISSED'})"
            )
    return lines


def compile_tree(root: Path = Path(__file__).parent.parent) -> None:
    """Our modules in ``root`` compiled to bytecode, as ``make bytecode`` does before a run:
    a benchmark run from a fresh checkout (a worktree) would otherwise measure every child
    compiling them from source where PYTHONDONTWRITEBYTECODE is set."""
    import compileall
    import tomllib

    # the packages pyproject.toml installs (their patterns, ``catalog*``: the package and
    # its subpackages), and the benchmarks
    found = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    include = found["tool"]["setuptools"]["packages"]["find"]["include"]
    for name in [*{pattern.rstrip("*").rstrip(".") for pattern in include}, "bench"]:
        compileall.compile_dir(str(root / name), quiet=2, workers=0)


def main(argv: list[str]) -> int:
    compile_tree()
    known = benchmarks()
    names = argv or known
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}")
        return 2
    if len(names) == 1:
        importlib.import_module(f"bench.{names[0]}").main()
    else:
        # each benchmark in a child of its own: a benchmark that grew this process (the
        # row gate's million rows) leaves it no larger for the next (their measured
        # children are started by a launcher, bench._spawn: none of it is in their peaks)
        child = {**os.environ, ONE_OF_MANY: "1"}  # the summaries below are this process's
        for name in names:
            code = subprocess.run(
                [sys.executable, "-m", "bench", name], check=False, env=child
            ).returncode
            if code:
                print(f"benchmark {name} failed (exit code {code})")
                return code
    if os.environ.get(ONE_OF_MANY):  # a child of a run of several: its parent sums up once,
        return 0  # after all of them (a child's summary would show the others' old figures)
    share = RESULTS / "share.json" if "share" in names else None
    if share is not None and share.exists():
        print("\nissue 14 (Share service), the goals of make bench:")
        for line in json.loads(share.read_text(encoding="utf-8")).get("verdicts", []):
            print(f"  {line}")
    files = RESULTS / "share_files.json"  # bench/share_files.py (issue 14's downloads)
    if "share_files" in names and files.exists():
        print("\nissue 14 (Share service), downloads from materialised files:")
        print(
            "\n".join(f"  {v}" for v in json.loads(files.read_text(encoding="utf-8"))["verdicts"])
        )
    sharing = RESULTS / "delta_sharing.json"  # bench/delta_sharing.py (issue 15)
    if "delta_sharing" in names and len(names) > 1 and sharing.exists():  # else printed
        print("\nissue 15 (Delta Sharing), the official client against a local read:")
        for line in json.loads(sharing.read_text(encoding="utf-8"))["verdicts"]:
            print(f"  {line}")
    if {"ingest", "incremental"} & set(names):
        print("\nissue 10 (Any street), the goals:")
        for line in goals():
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
