"""Landing: each delivery copied byte-for-byte, with its SHA-256, source and arrival time.

File deliveries are picked up from ``inbox/<dept>/`` by the dataset's
pattern; databases and HTTP APIs are pulled from the cursor the last landed
delivery ended at. A delivery already landed (same dataset, same hash) is
skipped, so re-running adds nothing.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from catalog.errors import DeliveryError
from catalog.model import FILE_CONNECTORS, ConnectorKind, Dataset
from catalog.settings import Settings
from pipelines.connectors import LANDED_SUFFIX
from pipelines.connectors.http_api import pull_http
from pipelines.connectors.sql_db import Pulled, pull_sql
from pipelines.ingest.ledger import Landed, is_landed, last_cursor, now, record_failure


@dataclass
class LandingResult:
    landed: list[Landed]
    skipped: int  # deliveries seen before (same hash)
    failed: list[str]  # reasons of pulls that failed before anything was landed


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def inbox_files(settings: Settings, dept: str, dataset: Dataset) -> list[Path]:
    """The files in ``inbox/<dept>/`` this dataset's pattern matches, by name."""
    folder = settings.inbox_dir / dept
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(dataset.delivery.pattern or "") if p.is_file())


def _write_atomic(target: Path, data: bytes | None = None, source: Path | None = None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    with open(tmp, "wb") as out:
        if data is not None:
            out.write(data)
        else:
            with open(source, "rb") as src:  # type: ignore[arg-type]
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(target)


def _land(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    dept: str,
    dataset: Dataset,
    *,
    sha: str,
    size: int,
    file_name: str,
    source: str,
    cursor_end: str | None,
    data: bytes | None = None,
    path: Path | None = None,
) -> Landed:
    suffix = LANDED_SUFFIX[dataset.delivery.kind]
    target = settings.landing_dir / dept / dataset.code / f"{sha}{suffix}"
    if not target.exists():
        _write_atomic(target, data=data, source=path)
    delivery_id = f"{dept}.{dataset.code}.{sha[:16]}"
    con.execute(
        "INSERT INTO landing.deliveries VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [
            delivery_id,
            dept,
            dataset.code,
            dataset.delivery.kind.value,
            source,
            file_name,
            str(target),
            sha,
            size,
            cursor_end,
            now(),
        ],
    )
    return Landed(delivery_id, dept, dataset.code, file_name, str(target), sha, size)


def land_files(
    con: duckdb.DuckDBPyConnection, settings: Settings, dept: str, dataset: Dataset
) -> LandingResult:
    result = LandingResult([], 0, [])
    for path in inbox_files(settings, dept, dataset):
        sha = sha256_file(path)
        if is_landed(con, dept, dataset.code, sha):
            result.skipped += 1
            continue
        result.landed.append(
            _land(
                con,
                settings,
                dept,
                dataset,
                sha=sha,
                size=path.stat().st_size,
                file_name=path.name,
                source=str(path),
                cursor_end=None,
                path=path,
            )
        )
    return result


def land_pull(
    con: duckdb.DuckDBPyConnection, settings: Settings, dept: str, dataset: Dataset, **pull_kw
) -> LandingResult:
    """Pull a database table or HTTP API from the last cursor and land what came."""
    cursor = last_cursor(con, dept, dataset.code)
    kind = dataset.delivery.kind
    try:
        pulled: Pulled = (
            pull_sql(settings, dept, dataset, cursor)
            if kind is ConnectorKind.sql_db
            else pull_http(settings, dept, dataset, cursor, **pull_kw)
        )
    except DeliveryError as exc:
        stamp = now().strftime("%Y%m%dT%H%M%S%f")
        record_failure(
            con,
            delivery_id=f"{dept}.{dataset.code}.pull-{stamp}",
            dept=dept,
            dataset=dataset.code,
            reason=str(exc),
        )
        return LandingResult([], 0, [str(exc)])
    if pulled.rows == 0:
        return LandingResult([], 0, [])
    sha = hashlib.sha256(pulled.data).hexdigest()
    if is_landed(con, dept, dataset.code, sha):
        return LandingResult([], 1, [])
    stamp = now().strftime("%Y%m%dT%H%M%S")
    landed = _land(
        con,
        settings,
        dept,
        dataset,
        sha=sha,
        size=len(pulled.data),
        file_name=f"{dataset.code}_pull_{stamp}.jsonl",
        source=pulled.source,
        cursor_end=pulled.cursor_end,
        data=pulled.data,
    )
    return LandingResult([landed], 0, [])


def land(
    con: duckdb.DuckDBPyConnection, settings: Settings, dept: str, dataset: Dataset, **pull_kw
) -> LandingResult:
    """Land whatever is new for one dataset, with the connector its delivery declares."""
    if dataset.delivery.kind in FILE_CONNECTORS:
        return land_files(con, settings, dept, dataset)
    return land_pull(con, settings, dept, dataset, **pull_kw)
