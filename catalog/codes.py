"""Code tables (代码表): what a department's system writes for a field's values.

Business systems store many enumerated fields as codes of a national standard, not as the
words the catalogue lists: the household registry's 性别 as GB/T 2261.1's ``1`` and ``2``,
its exports as the standard's names 男性 and 女性. A field that lists its ``allowed_values``
may say which codes its department writes (``codes:`` in the catalogue): the name of a
table here, or a mapping of its own (a department's status codes ``01``, ``02`` …). The
standardiser stages each code as the value it stands for (repair kind ``coded_value``); a
code that stands for no value (GB/T 2261.1's 0 未知的性别) is staged as null, as a
placeholder is. A code is matched as a placeholder is: trimmed, in half- or full-width, in
any letter case.

The tables are opt-in per field because the standards are not universal: some systems write
female as 0. A table lists the standard's codes and the names it gives them; nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

Codes = Mapping[str, str | None]
"""Delivered code or name → the catalogue's value it stands for (None: no value)."""

CODE_TABLES: Mapping[str, Codes] = MappingProxyType(
    {
        # GB/T 2261.1-2003 人的性别代码: 0 未知的性别, 1 男性, 2 女性, 9 未说明的性别
        "GB/T 2261.1": MappingProxyType(
            {
                "0": None,
                "1": "男",
                "2": "女",
                "9": None,
                "未知的性别": None,
                "男性": "男",
                "女性": "女",
                "未说明的性别": None,
            }
        ),
    }
)


def code_table(name: str) -> Codes:
    """The named table; a KeyError naming the tables there are when there is none."""
    try:
        return CODE_TABLES[name]
    except KeyError:
        known = ", ".join(sorted(CODE_TABLES))
        raise KeyError(f"no code table {name!r} (there are: {known})") from None


__all__ = ["CODE_TABLES", "Codes", "code_table"]
