"""A fresh interpreter for a test that measures a process of its own (its RSS, its allocator's
pages): what it prints when it runs a script with the repository on its path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def printed_figures(script: str, *args: str, words: int = 3, **env: str) -> list[list[str]]:
    """The ``words`` words ``script`` (Python source, run by a fresh interpreter with ``args``)
    prints after each word ``figures``, in order: anything else it prints before them (a
    library's warning, on the same line or not) is passed over. ``env``: set besides the
    test's own environment."""
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    ).stdout.split()
    return [out[at + 1 : at + 1 + words] for at, word in enumerate(out) if word == "figures"]
