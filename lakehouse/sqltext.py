"""SQL text the engine takes no parameter for (``ATTACH``, ``SET``, ``LOAD``, ``COMMENT
ON``, a table function's arguments): the one rule for writing a string into it."""

from __future__ import annotations


def sql_literal(text: str) -> str:
    """``text`` as a SQL string literal: quoted, each quote doubled. For what comes from
    settings, the catalogue or the hub itself (a path, a URL, a description); a value a
    user sends is a parameter, never this."""
    return "'" + text.replace("'", "''") + "'"
