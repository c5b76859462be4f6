"""What each department delivers: dataset specs (columns, key, form) and shared helpers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from departments.dirt import Col

EXTENSIONS = {"excel": "xlsx", "csv": "csv", "json": "json", "jsonl": "jsonl", "parquet": "parquet"}


@dataclass(frozen=True)
class Spec:
    dept: str
    code: str
    form: str  # sql_db, excel, csv, json, jsonl, parquet, http_api
    cols: tuple[Col, ...]
    key: tuple[str, ...]  # source names of the business key
    build: Callable  # World -> list[dict] of clean records keyed by source name
    cursor: str | None = None  # sql_db / http_api incremental cursor column
    table: str | None = None  # sql_db
    encoding: str | None = None  # csv
    title: str | None = None  # excel: title row, formatted with year / month
    sheet: str = "Sheet1"
    records_path: str | None = None  # json
    authoritative: bool = False  # its person values are the truth others disagree with

    @property
    def sources(self) -> list[str]:
        return [c.source for c in self.cols]

    def file_name(self, day: dt.date) -> str:
        return f"{self.code}_{day:%Y%m%d}.{EXTENSIONS[self.form]}"


def cols(*specs: str) -> tuple[Col, ...]:
    """Columns from ``"source:role"`` strings; a trailing ``!`` marks a required column."""
    out = []
    for s in specs:
        source, _, role = s.rpartition(":")
        required = role.endswith("!")
        out.append(Col(source, role.rstrip("!"), required))
    return tuple(out)


def D(d: dt.date | None) -> str | None:
    return None if d is None else d.isoformat()


def T(t: dt.datetime | None) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%d %H:%M:%S")
