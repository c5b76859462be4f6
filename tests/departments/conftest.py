"""Fixtures: one small simulated street (fixed seed) shared by the department tests."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook

from departments.folder import read_manifest, sim_dir_for
from departments.simulate import simulate
from tests.departments.street import RESIDENTS, SEED, START, as_text, spec_of


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("street")
    simulate(path, residents=RESIDENTS, seed=SEED, days=2, start=START)
    return path


@pytest.fixture(scope="session")
def sim(home) -> Path:
    """The simulator's own folder beside the home: systems, truth, manifest."""
    return sim_dir_for(home)


@pytest.fixture(scope="session")
def manifest(sim) -> dict:
    return read_manifest(sim)


class Delivered:
    """Reads a dataset back the way a person would see it: rows keyed by (file, _source_row).

    A row is a dict source → text, or a str for an unparseable JSON line.
    """

    def __init__(self, home: Path, sim: Path, manifest: dict) -> None:
        self.home, self.sim, self.manifest = home, sim, manifest

    def rows(self, dept: str, code: str) -> dict[tuple[str, int], dict | str]:
        entry = self.manifest["departments"][dept][code]
        out: dict[tuple[str, int], dict | str] = {}
        for file in entry["files"]:
            for row, cells in self._read(dept, code, entry, file):
                out[(file, row)] = cells
        return out

    def _read(self, dept: str, code: str, entry: dict, file: str):
        kind = entry["kind"]
        path = self.home / "inbox" / dept / file
        if kind == "csv":
            spec = spec_of(dept, code)
            text = path.read_bytes().decode(spec.encoding)
            rows = list(csv.reader(io.StringIO(text, newline="")))
            header = rows[0]
            for i, r in enumerate(rows[1:], start=2):
                yield i, dict(zip(header, r, strict=True))
        elif kind == "excel":
            ws = load_workbook(path, read_only=True)[spec_of(dept, code).sheet]
            rows = list(ws.iter_rows(values_only=True))
            header = rows[1]
            for i, r in enumerate(rows[2:], start=3):
                r = list(r) + [None] * (len(header) - len(r))  # read-only mode trims empty cells
                yield i, {h: as_text(v) for h, v in zip(header, r, strict=True)}
        elif kind == "json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            for i, r in enumerate(doc[spec_of(dept, code).records_path], start=1):
                yield i, {k: as_text(v) for k, v in r.items()}
        elif kind == "jsonl":
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                try:
                    yield i, {k: as_text(v) for k, v in json.loads(line).items()}
                except json.JSONDecodeError:
                    yield i, line
        elif kind == "parquet":
            yield from self._table(pq.read_table(path).to_pylist())
        elif kind == "sql_db":
            spec = spec_of(dept, code)
            con = sqlite3.connect(self.sim / entry["location"])
            con.row_factory = sqlite3.Row
            sql = f'SELECT * FROM "{spec.table}" ORDER BY "{spec.cursor}", "{spec.key[0]}"'
            yield from self._table([dict(r) for r in con.execute(sql)])
            con.close()
        elif kind == "http_api":
            yield from self._table(pq.read_table(self.sim / entry["location"]).to_pylist())

    @staticmethod
    def _table(records: list[dict]):
        for i, r in enumerate(records, start=1):
            yield i, {k: as_text(v) for k, v in r.items()}


@pytest.fixture(scope="session")
def delivered(home, sim, manifest) -> Delivered:
    return Delivered(home, sim, manifest)
