"""The one exception family of streethub.

Every message names what a data officer needs to find the problem: the
dataset, the file, the row and the field. Messages never carry a sensitive
value; callers pass masked values or none.
"""

from __future__ import annotations

import unicodedata

# characters a name may carry that a terminal or a log reader would act on or hide
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def shown(name: str) -> str:
    """A delivered name as it may be shown (logs, errors, UI): stored as given, shown escaped.

    Control characters (newline, carriage return, ESC of ANSI sequences …), format
    characters (Unicode bidi overrides, zero-width characters), line and paragraph
    separators, lone surrogates (bytes that were not UTF-8) and unassigned or
    private-use code points become ``\\n``, ``\\x1b``, ``\\u202e`` …, so a name can
    neither forge a log line nor move the cursor, clear a terminal or reorder text.
    Printable text, Chinese included, is unchanged; applying it twice changes nothing.
    """
    if name.isprintable():  # the common case: nothing to escape (fast path)
        return name
    out = []
    for ch in name:
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif unicodedata.category(ch) in _UNSAFE:
            code = ord(ch)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
        else:
            out.append(ch)
    return "".join(out)


class StreethubError(Exception):
    """Base of every error streethub raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        dataset: str | None = None,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.dataset = dataset
        self.file = file
        self.row = row
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = [
            f"{label} {value}"
            for label, value in (
                ("file", None if self.file is None else shown(self.file)),
                ("dataset", self.dataset),
                ("row", self.row),
                ("field", self.field),
            )
            if value is not None
        ]
        return f"{', '.join(where)}: {self.message}" if where else self.message


class CatalogError(StreethubError):
    """The data resource catalogue is invalid (one or more problems)."""

    def __init__(self, problems: list[StreethubError]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"the catalogue has {len(problems)} problem(s):\n{lines}")

    def __str__(self) -> str:  # the summary already lists each problem's place
        return self.message


class LakeError(StreethubError):
    """The lake cannot be opened, locked or read as asked."""


class DeliveryError(StreethubError):
    """A delivery cannot be read as a whole (truncated, wrong encoding, source down)."""


class RowError(StreethubError):
    """One delivered row cannot be parsed; it goes to quarantine, the rest loads."""
