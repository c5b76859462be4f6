"""What a command printed, read as its user reads it: rich wraps a message at the terminal's
width, wherever a path or a name puts the break (a longer temporary path once moved a break
into the middle of the words a test looked for)."""

from __future__ import annotations

from typer.testing import CliRunner, Result


def one_line(result: Result) -> str:
    """``result``'s output with every run of white space (the console's line breaks
    among them) read as one space."""
    return " ".join(result.output.split())


def said(args: list[str]) -> tuple[int, str]:
    """Run ``streethub <args>``: its exit code and its output on one line."""
    from pipelines.cli import app

    result = CliRunner().invoke(app, args)
    return result.exit_code, one_line(result)
