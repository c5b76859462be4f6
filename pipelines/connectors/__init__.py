"""One connector per delivery kind, chosen by each dataset's ``delivery.kind``.

File connectors read a landed file into batches of text columns
(:func:`read_batches`; :func:`read_delivery` gathers them for small files and
tests); pulled sources (a database, an HTTP API) are first pulled into JSON Lines
bytes that are landed like a file and then read with the JSON Lines reader. Limits
(record size, JSON depth, xlsx archive sizes) come from the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from catalog.model import ConnectorKind, Dataset
from catalog.settings import Settings, get_settings
from pipelines.connectors.base import Parsed, concat, guarded_batches
from pipelines.connectors.csv import read_csv
from pipelines.connectors.excel import read_excel
from pipelines.connectors.json import read_json
from pipelines.connectors.jsonl import read_jsonl
from pipelines.connectors.parquet import read_parquet

Reader = Callable[[Path, Dataset, Settings], Iterator[Parsed]]

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


# kinds whose records may leave a column out: required columns are checked over all batches
OPEN_COLUMNS = frozenset(
    {ConnectorKind.json, ConnectorKind.jsonl, ConnectorKind.sql_db, ConnectorKind.http_api}
)


def read_batches(
    path: Path, dataset: Dataset, settings: Settings | None = None
) -> Iterator[Parsed]:
    """Read one landed delivery, batch by batch, with the connector its dataset declares.

    Raises only :class:`~catalog.errors.DeliveryError` on purpose; the caller
    (``raw.load_delivery``) accounts for anything else as a failed delivery too. Every
    reason, of a row or of the delivery, has passed the one rule
    (:func:`~pipelines.connectors.base.withhold_values`).
    """
    reader = READERS[dataset.delivery.kind]
    return guarded_batches(reader(path, dataset, settings or get_settings()), dataset)


def read_delivery(path: Path, dataset: Dataset, settings: Settings | None = None) -> Parsed:
    """Read one landed delivery whole (all batches gathered): for tests and small files."""
    return concat(read_batches(path, dataset, settings))
