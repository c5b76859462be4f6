"""JSON documents: a list of records, or an object holding one under ``records_path``."""

from __future__ import annotations

import json
from pathlib import Path

from catalog.errors import DeliveryError
from catalog.model import Dataset
from pipelines.connectors.base import Parsed, RowProblem
from pipelines.connectors.csv import decode
from pipelines.connectors.jsonl import records_frame


def read_json(path: Path, dataset: Dataset) -> Parsed:
    text = decode(path.read_bytes(), "utf-8", path, dataset.code).removeprefix("\ufeff")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeliveryError(
            f"not valid JSON ({exc.msg} at column {exc.colno}); truncated delivery?",
            dataset=dataset.code,
            file=str(path),
            row=exc.lineno,
        ) from None
    records = doc
    path_key = dataset.delivery.records_path
    if path_key:
        for key in path_key.split("."):
            if not isinstance(records, dict) or key not in records:
                raise DeliveryError(
                    f"records_path {path_key!r} not found in the document",
                    dataset=dataset.code,
                    file=str(path),
                )
            records = records[key]
    if not isinstance(records, list):
        raise DeliveryError("expected a list of records", dataset=dataset.code, file=str(path))
    good, rows, problems = [], [], []
    for i, rec in enumerate(records, start=1):
        if isinstance(rec, dict):
            good.append(json.dumps(rec, ensure_ascii=False).encode())
            rows.append(i)
        else:
            problems.append(RowProblem(i, "record is not a JSON object", check="json"))
    return Parsed(records_frame(good, rows), problems)
