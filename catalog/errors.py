"""The one exception family of streethub.

Every message names what a data officer needs to find the problem: the
dataset, the file, the row and the field. Messages never carry a sensitive
value; callers pass masked values or none.
"""

from __future__ import annotations


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
                ("file", self.file),
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
