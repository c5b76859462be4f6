"""JSON documents: a list of records, or an object holding one under ``records_path``.

The document is one value, so it is read whole (landing bounds its size): UTF-8
strictly, nesting depth checked before parsing (``max_json_depth`` for a record,
plus the levels of the envelope), duplicate keys refused. A document cut short
fails as "truncated", a document that is not JSON as "not json"; a record that is
not an object, repeats a key or is over ``max_record_bytes`` is quarantined and the
rest loads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from catalog.errors import DeliveryError
from catalog.model import Dataset
from catalog.settings import Settings
from pipelines.connectors import jsonstrict
from pipelines.connectors.base import Parsed, RowProblem, whole_file_failure
from pipelines.connectors.compressed import open_delivered
from pipelines.connectors.jsonl import records_frame
from pipelines.connectors.records import UTF8_BOM


def read_json(path: Path, dataset: Dataset, settings: Settings) -> Iterator[Parsed]:
    """The records of a landed JSON document, as one batch (see the module docstring)."""
    file = str(path)
    with open_delivered(settings, path, dataset.code, file) as (fh, came):
        data = fh.read()
    start = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    if not data[start:].strip():
        raise DeliveryError("the file is empty", dataset=dataset.code, file=file)
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            msg = f"truncated: the document ends inside a character at byte {start + exc.start}"
        else:
            msg = f"wrong encoding at byte {start + exc.start}: not utf-8 ({exc.reason})"
        raise DeliveryError(msg, dataset=dataset.code, file=file) from None
    path_keys = [k for k in (dataset.delivery.records_path or "").split(".") if k]
    limit = settings.max_json_depth + len(path_keys) + 1
    if jsonstrict.too_deep(data[start:], limit):
        raise DeliveryError(
            f"too deep: the document nests over {limit} levels "
            f"({settings.max_json_depth} allowed within a record)",
            dataset=dataset.code,
            file=file,
        )
    try:
        doc = jsonstrict.loads(text)
    except json.JSONDecodeError as exc:
        cut = not text[exc.pos :].strip() or exc.msg.startswith("Unterminated")
        what = "truncated: the document ends before it is complete" if cut else "not json"
        raise DeliveryError(
            f"{what} ({exc.msg}; line {exc.lineno}, column {exc.colno})",
            dataset=dataset.code,
            file=file,
            row=exc.lineno,
        ) from None
    except ValueError:
        raise DeliveryError(
            "not json: NaN or Infinity is not a JSON value", dataset=dataset.code, file=file
        ) from None
    records = doc
    for key in path_keys:
        if isinstance(records, jsonstrict.Flagged) and key in records.duplicate_keys:
            raise DeliveryError(
                f"duplicate key {key!r} in the document around the records",
                dataset=dataset.code,
                file=file,
            )
        if not isinstance(records, dict):
            raise DeliveryError(
                f"not an object: the document holds a JSON {type(records).__name__} where "
                f"records_path {'.'.join(path_keys)!r} expects an object",
                dataset=dataset.code,
                file=file,
            )
        if key not in records:
            raise DeliveryError(
                f"missing column: records_path {'.'.join(path_keys)!r} is not in the document",
                dataset=dataset.code,
                file=file,
            )
        records = records[key]
    if not isinstance(records, list):
        raise DeliveryError(
            "not an object list: the records are not a JSON list", dataset=dataset.code, file=file
        )
    known = {f.source_name for f in dataset.fields}
    good, rows, problems = [], [], []
    for i, rec in enumerate(records, start=1):
        if not isinstance(rec, dict):
            problems.append(
                RowProblem(
                    i, f"not an object: record {i} is a JSON {type(rec).__name__}", check="json"
                )
            )
            continue
        dups = jsonstrict.duplicate_keys(rec)
        if dups is not None:
            problems.append(
                RowProblem(i, jsonstrict.duplicate_reason(dups, known), check="duplicate_key")
            )
            continue
        encoded = json.dumps(rec, ensure_ascii=False).encode()
        if len(encoded) > settings.max_record_bytes:
            problems.append(
                RowProblem(
                    i,
                    f"too large: the record has {len(encoded):,} bytes, "
                    f"the limit is {settings.max_record_bytes:,}",
                    check="too_large",
                )
            )
            continue
        good.append(encoded)
        rows.append(i)
    if problems and not good:
        raise whole_file_failure(len(problems), problems[0], dataset.code, file)
    yield Parsed(records_frame(good, rows), problems, [came] if came is not None else [])
