"""The suite's CPU seconds by test and by file, from a run with ``STREETHUB_TEST_CPU=FILE``
(tests/conftest.py): ``python tests/cpu_report.py FILE [N]`` prints the N costliest tests
(setup included: a session fixture counts where it was built) and files."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path


def main(path: str, top: int = 30) -> None:
    tests: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for part in Path(path).parent.glob(Path(path).name + ".*"):
        for line in part.read_text(encoding="utf-8").splitlines():
            node, _phase, cpu, wall = line.split("\t")
            tests[node][0] += float(cpu)
            tests[node][1] += float(wall)
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for node, (cpu, wall) in tests.items():
        files[node.split("::")[0]][0] += cpu
        files[node.split("::")[0]][1] += wall
    total = sum(cpu for cpu, _ in tests.values())
    print(f"{len(tests)} tests, {total:,.0f} CPU s in all")
    for title, rows in (("tests", tests), ("files", files)):
        print(f"\nthe costliest {title} (CPU s, wall s):")
        for name, (cpu, wall) in sorted(rows.items(), key=lambda kv: -kv[1][0])[:top]:
            print(f"{cpu:8.1f} {wall:8.1f}  {name}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:3]))
