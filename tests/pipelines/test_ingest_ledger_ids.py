"""Ledger ids carry a base32 token: no run of it can read as personal data to the scanner."""

import os

import polars as pl

from masking.leaks import scan_frame
from pipelines.ingest.ledger import id_token


def test_ledger_id_tokens_never_read_as_personal_data() -> None:
    ids = [f"gaj.violation_cases.file-{id_token(os.urandom(8))}" for _ in range(20_000)]
    assert all(len(i.rsplit("-", 1)[1]) == 16 for i in ids)
    assert scan_frame(pl.DataFrame({"file_key": ids})).total == 0
    sha = "a" * 64
    assert id_token(sha) == id_token(bytes.fromhex(sha).hex()) != id_token(b"other")
