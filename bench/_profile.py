"""py-spy samples of a server process and their summary (``bench/share.py``'s profile)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

OURS = ("share_api", "masking", "lakehouse", "catalog")  # the packages the profile follows


@contextlib.contextmanager
def sampled(pid: int, out: Path, seconds: float, *, wall: bool) -> Iterator[None]:
    """py-spy samples process ``pid`` for ``seconds`` into ``out`` (collapsed stacks): the
    thread holding the GIL (CPU: what a second worker would share), or with ``wall`` every
    thread, waiting ones too (where a request's time goes)."""
    spy = Path(sys.executable).parent / "py-spy"
    cmd = [str(spy), "record", "--pid", str(pid), "--duration", str(int(seconds))]
    cmd += ["--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"]
    cmd += ["--idle"] if wall else ["--gil"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        try:
            _, err = proc.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode and not out.exists():
            out.write_text(f"# py-spy failed ({proc.returncode}): {err.decode()[-500:]}\n")


def _frame(frame: str) -> tuple[str, str]:
    """(``function (module file)``, the top-level package) of a py-spy frame
    ``function (path/file.py:line)``."""
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({path})", path.split("/", 1)[0] if "/" in path else path


def summarise_profile(raw: Path, title: str = "", *, within: str = "", top: int = 25) -> str:
    """py-spy's collapsed stacks as four tables, each entry with its share of the samples:
    packages on the stack, functions of :data:`OURS` on the stack, functions on the stack,
    leaf functions. ``within``: only the
    samples with a frame of that function (e.g. the request handler)."""
    tables: dict[str, dict[str, int]] = {"package": {}, "ours": {}, "inclusive": {}, "self": {}}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        if within and not any(f.startswith(within + " (") for f, _ in frames):
            continue
        n = int(count)
        total += n
        for key, names in (
            ("package", {p for _, p in frames}),
            ("ours", {f for f, p in frames if p in OURS}),
            ("inclusive", {f for f, _ in frames}),
            ("self", {frames[-1][0]}),
        ):
            for name in names:
                tables[key][name] = tables[key].get(name, 0) + n
    if not total:
        return f"{title}: no samples\n" + raw.read_text(errors="replace")[:2000]
    lines = [f"{title}: {total} samples"]
    for key, head in (
        ("package", "packages on the stack"),
        ("ours", f"functions of {', '.join(OURS)} on the stack"),
        ("inclusive", "functions on the stack"),
        ("self", "functions at the leaf (self)"),
    ):
        lines += ["", head]
        for name, n in sorted(tables[key].items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"  {n / total:6.1%}  {name}")
    return "\n".join(lines)
