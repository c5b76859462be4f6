"""Generate one street's deliveries from every department, with the ground truth for tests.

The departments drop their files into the hub's inbox; everything else is theirs, in the
simulator's own folder ``sim`` beside the hub's home (default ``<home>.departments``):

home/inbox/<dept>/<file>                         file deliveries (the hub's inbox)
sim/systems/gaj/registry.sqlite                  police registry (tables hukou, juzhuzheng)
sim/systems/<dept>/<dataset>.parquet             data behind the HTTP APIs (rsj, rx)
sim/api_token                                    bearer token of the HTTP APIs (0600)
sim/truth/<dept>/<dataset>/clean.parquet         true values of every delivered record, and
                                                 who it is about (_person, _unit, _merchant)
sim/truth/<dept>/<dataset>/defects.parquet       one row per injected defect
sim/truth/<dept>/<dataset>/text_pii.parquet      PII hidden in free-text fields
sim/manifest.json                                files with their SHA-256, rows, defect counts
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import polars as pl

from departments import addresses, callers, history, iot, needs, writers
from departments.dialects import endpoints
from departments.dirt import RATES, RECOVERABLE, Dirtier, Item
from departments.folder import MANIFEST_FILE, SYSTEMS_DIR, ensure_token, sim_dir_for, truth_dir
from departments.outcomes import OUTCOME_SPECS
from departments.spec import Spec
from departments.specs import SPECS
from departments.world import STREET_CODE, STREET_NAME, World, build_world

IOT_DAILY = {"sensor_readings": iot.sensor_readings, "door_access_events": iot.door_access_events}
# the departments' systems keep Beijing time (UTC+8): their "today" is Beijing's, whatever
# clock the machine simulating them keeps (the hub's own rule: catalog/days.py)
DEPARTMENTS_CLOCK = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
DEPARTMENTS = ("gaj", "mzj", "wjw", "rsj", "cgj", "zjj", "jyj", "scjg", "yjj", "rx", "wg", "iot")
# how a hub's landed delivery is matched to what the simulator delivered (in the manifest)
MATCHING = (
    "a file delivery by the SHA-256 of its bytes (`sha256`: file → hash); a pull from a "
    "system by its source: a SQLite URL whose path ends with the database's path in the "
    "simulator's folder (`system.database`, relative: the folder may be moved or copied) "
    "with `#<table>`, or an HTTP API URL on the loopback host whose path is `system.endpoint`"
)
# who or what a record is about, in truth (a builder sets the keys that apply to its
# dataset; a dataset's clean.parquet has the columns its builder set): the subject's
# true citizen ID (null: no resident), the housing unit id its address names, the
# merchant's credit code; how a reporter's name and mobile differ from the registry's
# (departments.callers)
TRUTH_COLUMNS = ("_person", "_unit", "_merchant", "_name_variant", "_mobile_variant")
DEFECT_SCHEMA = {"_file": pl.String, "_source_row": pl.Int64, "field": pl.String,
                 "kind": pl.String, "delivered": pl.String, "truth": pl.String,
                 "recoverable": pl.Boolean}  # fmt: skip


def _str(v: object) -> str | None:
    return None if v is None else str(v)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Truth:
    """Collects clean rows, defects and text PII of one dataset."""

    def __init__(self, spec_key: list[str], columns: list[str]) -> None:
        self.key, self.columns = spec_key, columns
        self.identities: list[str] = []  # the TRUTH_COLUMNS the records carry
        self.clean: list[dict] = []
        self.defects: list[dict] = []
        self.pii: list[dict] = []
        self.rows: dict[str, int] = {}
        self.records: dict[str, int] = {}

    def add_items(self, file: str, items: list[Item], first_row: int, pii: dict) -> None:
        self.rows[file] = len(items)
        self.records[file] = sum(1 for it in items if it.clean is not None)
        for offset, item in enumerate(items):
            row = first_row + offset
            if item.clean is not None:
                rec = {c: _str(item.clean.get(c)) for c in self.columns}
                for c in TRUTH_COLUMNS:
                    if c in item.clean:
                        rec[c] = item.clean[c]
                        if c not in self.identities:
                            self.identities.append(c)
                rec.update(_file=file, _source_row=row,
                           _key="|".join(_str(item.clean.get(k)) or "" for k in self.key))  # fmt: skip
                self.clean.append(rec)
                for field, kind, value in pii.get(id(item.clean), ()):
                    self.pii.append({"_file": file, "_source_row": row, "field": field,
                                     "kind": kind, "value": value})  # fmt: skip
            for d in item.defects:
                self.defects.append({"_file": file, "_source_row": row, "field": d.field,
                                     "kind": d.kind, "delivered": d.delivered, "truth": d.truth,
                                     "recoverable": d.recoverable})  # fmt: skip

    def write(self, folder: Path) -> dict:
        folder.mkdir(parents=True, exist_ok=True)
        schema = {c: pl.String for c in self.columns}
        schema.update(_file=pl.String, _source_row=pl.Int64, _key=pl.String)
        schema.update({c: pl.String for c in TRUTH_COLUMNS if c in self.identities})
        pl.DataFrame(self.clean, schema=schema).write_parquet(folder / "clean.parquet")
        pl.DataFrame(self.defects, schema=DEFECT_SCHEMA, orient="row").write_parquet(
            folder / "defects.parquet"
        )
        if self.pii:
            pii_schema = {"_file": pl.String, "_source_row": pl.Int64, "field": pl.String,
                          "kind": pl.String, "value": pl.String}  # fmt: skip
            pl.DataFrame(self.pii, schema=pii_schema, orient="row").write_parquet(
                folder / "text_pii.parquet"
            )
        kinds = Counter(d["kind"] for d in self.defects)
        return {"rows": self.rows, "records": self.records,
                "defects": dict(sorted(kinds.items()))}  # fmt: skip


def _deliver_spec(
    inbox_dir: Path, sim: Path, spec: Spec, records: list[dict], seed: int, last_day: dt.date
) -> dict:
    pii = {id(r): r.pop("_pii") for r in records if "_pii" in r}
    form = spec.form
    rng = random.Random(f"{seed}:{spec.dept}:{spec.code}")
    items = Dirtier(rng, form, spec.authoritative).deliver(spec.cols, records)
    truth = _Truth(list(spec.key), spec.sources)
    entry: dict = {"kind": form, "key": list(spec.key)}
    if form == "sql_db":
        items = writers.extraction_order(spec, items)
        db = sim / SYSTEMS_DIR / spec.dept / "registry.sqlite"
        db.parent.mkdir(parents=True, exist_ok=True)
        first = writers.write_sqlite(db, spec, items)
        file = "registry.sqlite"
        entry.update(location=str(db.relative_to(sim)), table=spec.table, cursor=spec.cursor)
        # relative to the folder, which may be copied or moved: connect.connection_env
        # resolves it against where the folder is when its systems are reached
        entry["system"] = {"database": entry["location"], "table": spec.table}
    elif form == "http_api":
        items = writers.extraction_order(spec, items)
        store = sim / SYSTEMS_DIR / spec.dept / f"{spec.code}.parquet"
        store.parent.mkdir(parents=True, exist_ok=True)
        first = writers.write_parquet(store, spec, items)
        file = "api"
        served = endpoints(spec.dept, spec.code)  # the paths of each dialect it speaks
        entry.update(location=str(store.relative_to(sim)), cursor=spec.cursor,
                     endpoint=served["reference"])  # fmt: skip
        entry["system"] = {"endpoint": served["reference"], "endpoints": sorted(served.values())}
    else:
        inbox = inbox_dir / spec.dept
        inbox.mkdir(parents=True, exist_ok=True)
        file = spec.file_name(last_day)
        path = inbox / file
        if form == "csv":
            first = writers.write_csv(path, spec, items)
        elif form == "excel":
            title = spec.title.format(street=STREET_NAME, y=last_day.year, m=last_day.month)
            first = writers.write_excel(path, spec, items, title)
        elif form == "json":
            first = writers.write_json(path, spec, items)
        elif form == "jsonl":
            first = writers.write_jsonl(path, items)
        else:
            first = writers.write_parquet(path, spec, items)
    truth.add_items(file, items, first, pii)
    entry["files"] = [file]
    if form not in ("sql_db", "http_api"):
        entry["sha256"] = {file: sha256_file(inbox / file)}
    entry.update(truth.write(truth_dir(sim) / spec.dept / spec.code))
    return entry


def _deliver_iot(
    inbox_dir: Path,
    sim: Path,
    w: World,
    name: str,
    seed: int,
    files: list[list[dt.date]],
    make: Callable | None = None,
) -> dict:
    """IoT deliveries: a file for each group of days (usually one day; a history's
    backfill a week), named by its last day."""
    make = make or IOT_DAILY[name]
    inbox = inbox_dir / "iot"
    inbox.mkdir(parents=True, exist_ok=True)
    clean_frames, defects, rows, records, names, hashes = [], [], {}, {}, [], {}
    for group in files:
        file = f"{name}_{group[-1]:%Y%m%d}.jsonl"
        lines, clean = [], []
        for day in group:
            day_lines, day_clean, found = make(w, day, seed)
            for rec in (*day_clean, *found):
                rec["_source_row"] += len(lines)
                rec["_file"] = file
            lines += day_lines
            clean += day_clean
            defects.extend(found)
        (inbox / file).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        names.append(file)
        hashes[file] = sha256_file(inbox / file)
        rows[file], records[file] = len(lines), len(clean)
        frame = pl.DataFrame(clean, infer_schema_length=None)
        clean_frames.append(frame.with_columns(
            pl.col(c).cast(pl.String) for c in frame.columns if c != "_source_row"))  # fmt: skip
    key = "device_id|ts" if name == "sensor_readings" else "event_id"
    clean_df = pl.concat(clean_frames).with_columns(
        _key=pl.concat_str([pl.col(k) for k in key.split("|")], separator="|")
    )
    for d in defects:
        d["recoverable"] = RECOVERABLE[d["kind"]]
    folder = truth_dir(sim) / "iot" / name
    folder.mkdir(parents=True, exist_ok=True)
    clean_df.write_parquet(folder / "clean.parquet")
    pl.DataFrame(defects, schema=DEFECT_SCHEMA, orient="row").write_parquet(
        folder / "defects.parquet"
    )
    kinds = Counter(d["kind"] for d in defects)
    return {"kind": "jsonl", "key": key.split("|"), "files": names, "sha256": hashes,
            "rows": rows, "records": records, "defects": dict(sorted(kinds.items()))}  # fmt: skip


def _reset(inbox_dir: Path, sim: Path) -> None:
    """Remove earlier simulator output (keeps the API token)."""
    (sim / MANIFEST_FILE).unlink(missing_ok=True)
    shutil.rmtree(truth_dir(sim), ignore_errors=True)
    shutil.rmtree(sim / SYSTEMS_DIR, ignore_errors=True)
    for dept in DEPARTMENTS:
        shutil.rmtree(inbox_dir / dept, ignore_errors=True)


def simulate(
    home: Path,
    residents: int = 20_000,
    seed: int = 7,
    days: int = 3,
    start: dt.date | None = None,
    progress: Callable[[str], None] | None = None,
    sim_dir: Path | None = None,
    history_days: int | None = None,
    register_days: int | None = None,
) -> dict:
    """Generate every department's deliveries: files into ``home/inbox``, the systems and
    the truth into ``sim_dir`` (default :func:`sim_dir_for` ``(home)``); return the manifest
    (also written to ``sim_dir/manifest.json``, last: a folder with a manifest holds a
    whole street).

    ``history_days`` (departments/NEEDS.md): deliver the need model's inputs over that many
    days ending on the last day — door events a file a day, health checks and follow-ups,
    12345 appeals (one year further back), the four need outcomes — with the need truth.
    Without it every dataset is as it always was and the outcome registers hold the last
    ``register_days`` days (default ``history.REGISTER_DAYS``: too few for the need model
    to train)."""
    say = progress or (lambda _msg: None)
    home = Path(home).expanduser().resolve()
    sim = Path(sim_dir).expanduser().resolve() if sim_dir is not None else sim_dir_for(home)
    inbox_dir = home / "inbox"
    started = time.perf_counter()
    start = start or dt.datetime.now(DEPARTMENTS_CLOCK).date() - dt.timedelta(days=days - 1)
    day_list = [start + dt.timedelta(days=i) for i in range(days)]
    last_day = day_list[-1]
    _reset(inbox_dir, sim)
    home.mkdir(parents=True, exist_ok=True)
    sim.mkdir(parents=True, exist_ok=True, mode=0o700)
    ensure_token(sim)
    say(f"building the street: {residents} residents, seed {seed}")
    w = build_world(residents, seed, last_day)
    manifest: dict = {
        "seed": seed, "residents": residents, "days": days, "start": start.isoformat(),
        "end": last_day.isoformat(), "street": {"code": STREET_CODE, "name": STREET_NAME,
        "communities": {c.code: f"{c.name}社区" for c in w.communities}},
        "rates": RATES, "reporting": {ds: r.as_dict() for ds, r in callers.REPORTING.items()},
        "addresses": addresses.ADDRESS_RATES, "matching": MATCHING,
        "departments": {d: {} for d in DEPARTMENTS},
    }  # fmt: skip
    records = {(s.dept, s.code): s.build(w) for s in SPECS if s not in OUTCOME_SPECS}
    first = last_day - dt.timedelta(days=history.process_days(history_days, register_days) - 1)
    w.needs = needs.run(w, records, first, last_day)
    records.update({(s.dept, s.code): s.build(w) for s in OUTCOME_SPECS})
    door_days = {}
    if history_days:
        say(f"history of {history_days} days")
        door_days = history.replace_records(w, records, history_days, days)
    for spec in SPECS:
        entry = _deliver_spec(inbox_dir, sim, spec, records[(spec.dept, spec.code)], seed,
                              last_day)  # fmt: skip
        manifest["departments"][spec.dept][spec.code] = entry
        say(f"{spec.dept}.{spec.code}: {sum(entry['rows'].values())} rows")
    for name in IOT_DAILY:
        if name in door_days:
            make, groups = door_days[name]
            entry = _deliver_iot(inbox_dir, sim, w, name, seed, groups, make)
        else:
            entry = _deliver_iot(inbox_dir, sim, w, name, seed, [[d] for d in day_list])
        manifest["departments"]["iot"][name] = entry
        say(f"iot.{name}: {sum(entry['rows'].values())} rows in {len(entry['files'])} files")
    manifest["needs"] = history.write_truth(w, truth_dir(sim), history_days)
    (sim / MANIFEST_FILE).write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    say(f"done in {time.perf_counter() - started:.1f} s")
    return manifest
