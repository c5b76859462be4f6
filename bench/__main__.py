"""Run every benchmark, or the ones named: ``python -m bench [gate ...]``.

A benchmark is a module of this package with a ``main()`` function.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def benchmarks() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    known = benchmarks()
    names = argv or known
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}")
        return 2
    for name in names:
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
