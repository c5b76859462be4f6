"""A small simulated street, read the way the hub reads it, for the row-gate tests.

Not a test module of its own (no tests): the gate, truth and defect tests import
:func:`street` from here. The simulation runs once per test session, and so does the
catalogue's gate judged against its truth (:func:`street_report`), which several modules
read.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import polars as pl

from catalog.loader import load_catalogue
from catalog.model import Catalogue, ConnectorKind, Dataset, Standardising
from departments.folder import read_manifest, sim_dir_for
from departments.simulate import simulate
from pipelines.connectors import read_delivery
from pipelines.connectors.base import map_to_fields, split_ledger_rows, split_stray_headers
from quality.evaluation import TruthReport, evaluate
from quality.gate import gate
from tests.scratch import scratch_dir

RESIDENTS = 600
SEED = 5
START = dt.date(2026, 11, 20)
LOADED_AT = dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.UTC)


@dataclass
class Street:
    home: Path
    catalogue: Catalogue
    manifest: dict
    raw: dict[str, pl.DataFrame]  # "dept.dataset" → raw frame
    files: dict[str, str]  # delivery id → delivered file name (as the truth names it)

    def dataset(self, ref: str) -> Dataset:
        return self.catalogue.dataset(ref)[1]

    @property
    def sim(self) -> Path:
        """The simulator's own folder (systems, truth, manifest)."""
        return sim_dir_for(self.home)

    @property
    def truth(self) -> Path:
        return self.sim / "truth"


def _pulled_jsonl(home: Path, dept: str, ds: Dataset, entry: dict, out: Path) -> Path:
    """What the hub's pull lands for a database table or an HTTP API: JSON Lines in order."""
    sim = sim_dir_for(home)
    if ds.delivery.kind is ConnectorKind.sql_db:
        con = sqlite3.connect(sim / entry["location"])
        con.row_factory = sqlite3.Row
        cursor = ds.delivery.cursor_column
        key = ds.field(ds.key[0]).source_name
        sql = f'SELECT * FROM "{ds.delivery.table}" ORDER BY "{cursor}", "{key}"'
        records = [dict(r) for r in con.execute(sql)]
        con.close()
    else:
        records = pl.read_parquet(sim / entry["location"]).to_dicts()
    out.write_text(
        "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records),
        encoding="utf-8",
    )
    return out


def read_raw(home: Path, dept: str, ds: Dataset, manifest: dict) -> dict[str, pl.DataFrame]:
    """delivery id → raw frame (text columns by field name + lineage), per delivered file."""
    entry = manifest["departments"][dept][ds.code]
    out = {}
    for file in entry["files"]:
        if ds.delivery.kind in (ConnectorKind.sql_db, ConnectorKind.http_api):
            path = _pulled_jsonl(home, dept, ds, entry, home / f"{dept}__{ds.code}.jsonl")
            ds_read = ds.model_copy(update={"delivery": ds.delivery})
        else:
            path, ds_read = home / "inbox" / dept / file, ds
        parsed = split_ledger_rows(split_stray_headers(read_delivery(path, ds_read), ds), ds)
        frame = map_to_fields(parsed, ds, file)
        delivery_id = f"{dept}.{ds.code}.{file}"
        out[delivery_id] = frame.with_columns(
            pl.lit(delivery_id).alias("_delivery_id"), pl.lit(LOADED_AT).alias("_loaded_at")
        ).select("_delivery_id", "_source_row", "_loaded_at", *[f.name for f in ds.fields])
    return out


@lru_cache(maxsize=4)
def street(
    residents: int = RESIDENTS, seed: int = SEED, days: int = 1, start: dt.date | None = START
) -> Street:
    """Simulate (``start=None``: the simulator's default dates) and read every dataset raw."""
    home = scratch_dir(f"gate_street_{seed}_")
    extra = {"start": start} if start is not None else {}
    simulate(home, residents=residents, seed=seed, days=days, **extra)
    manifest = read_manifest(sim_dir_for(home))
    catalogue = load_catalogue()
    raw, files = {}, {}
    for dept, ds in catalogue.datasets():
        frames = read_raw(home, dept.code, ds, manifest)
        for delivery_id in frames:
            files[delivery_id] = delivery_id.split(".", 2)[2]
        raw[f"{dept.code}.{ds.code}"] = pl.concat(frames.values(), how="vertical")
    return Street(home, catalogue, manifest, raw, files)


def judged(refs: set[str] | None = None, rules: Standardising | None = None) -> TruthReport:
    """The default street's raw rows through the row gate, judged against its truth:
    ``refs`` the datasets (``dept.dataset``; default every one), ``rules`` standardising
    rules in place of each dataset's catalogued ones."""
    s = street()
    staged, quarantine = {}, {}
    for ref, raw in s.raw.items():
        if refs is not None and ref not in refs:
            continue
        ds = s.dataset(ref)
        if rules is not None:
            ds = ds.model_copy(update={"standardising": rules})
        r = gate(raw, ds)
        staged[ref], quarantine[ref] = r.staged, r.quarantine
    return evaluate(staged, quarantine, s.truth, s.catalogue, s.files)


@lru_cache(maxsize=1)
def street_report() -> TruthReport:
    """Every dataset of the default street gated by the catalogue's rules and judged: once
    per session (the evaluation of a whole street costs seconds)."""
    return judged()
