"""One connector per delivery kind, chosen by each dataset's ``delivery.kind``.

File connectors read a landed file into text columns (``read``); pulled
sources (a database, an HTTP API) are first pulled into JSON Lines bytes that
are landed like a file and then read with the JSON Lines reader.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from catalog.model import ConnectorKind, Dataset
from pipelines.connectors.base import Parsed
from pipelines.connectors.csv import read_csv
from pipelines.connectors.excel import read_excel
from pipelines.connectors.json import read_json
from pipelines.connectors.jsonl import read_jsonl
from pipelines.connectors.parquet import read_parquet

Reader = Callable[[Path, Dataset], Parsed]

READERS: dict[ConnectorKind, Reader] = {
    ConnectorKind.csv: read_csv,
    ConnectorKind.excel: read_excel,
    ConnectorKind.json: read_json,
    ConnectorKind.jsonl: read_jsonl,
    ConnectorKind.parquet: read_parquet,
    # pulled sources are landed as JSON Lines
    ConnectorKind.sql_db: read_jsonl,
    ConnectorKind.http_api: read_jsonl,
}

LANDED_SUFFIX: dict[ConnectorKind, str] = {
    ConnectorKind.csv: ".csv",
    ConnectorKind.excel: ".xlsx",
    ConnectorKind.json: ".json",
    ConnectorKind.jsonl: ".jsonl",
    ConnectorKind.parquet: ".parquet",
    ConnectorKind.sql_db: ".jsonl",
    ConnectorKind.http_api: ".jsonl",
}


def read_delivery(path: Path, dataset: Dataset) -> Parsed:
    """Read one landed delivery with the connector its dataset declares."""
    return READERS[dataset.delivery.kind](path, dataset)
