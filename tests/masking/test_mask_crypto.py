"""Encryption at rest: round trip, column binding, purposes, audit, rotation."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.model import Dataset
from masking.audit import AuditLog
from masking.crypto import (
    column_id,
    decrypt_series,
    encrypt_series,
    is_encrypted,
    protect_frame,
    reveal_frame,
)
from masking.errors import DecryptionError, PurposeError
from masking.keys import KeyRing

IDS = ["11010519491231002X", None, "440524188001010014", ""]


def test_round_trip_nulls_and_format(keyring: KeyRing, audit: AuditLog) -> None:
    s = pl.Series("citizen_id", IDS)
    enc = encrypt_series(s, keyring, column="JD-GAJ-001.citizen_id")
    assert enc.null_count() == 1 and enc[1] is None
    assert all(v.startswith("e1:") for v in enc.drop_nulls())
    assert not any(v in "".join(enc.drop_nulls()) for v in IDS if v)
    assert enc[0] != encrypt_series(s, keyring, column="JD-GAJ-001.citizen_id")[0]  # fresh nonce
    assert is_encrypted(enc) and not is_encrypted(s)
    dec = decrypt_series(
        enc, keyring, column="JD-GAJ-001.citizen_id", purpose="quality_gate", actor="t", audit=audit
    )
    assert dec.to_list() == IDS


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=20))
def test_round_trip_property(keyring: KeyRing, audit: AuditLog, values: list) -> None:
    s = pl.Series("v", values, dtype=pl.String)
    enc = encrypt_series(s, keyring, column="x.v")
    back = decrypt_series(
        enc, keyring, column="x.v", purpose="golden_record", actor="t", audit=audit
    )
    assert back.to_list() == values


def test_ciphertext_bound_to_column(keyring: KeyRing, audit: AuditLog) -> None:
    enc = encrypt_series(pl.Series(["13812345678"]), keyring, column="a.mobile")
    with pytest.raises(DecryptionError, match=r"b\.mobile"):
        decrypt_series(
            enc, keyring, column="b.mobile", purpose="quality_gate", actor="t", audit=audit
        )
    tampered = pl.Series([enc[0][:-2] + ("AA" if enc[0][-2:] != "AA" else "BB")])
    with pytest.raises(DecryptionError):
        decrypt_series(
            tampered, keyring, column="a.mobile", purpose="quality_gate", actor="t", audit=audit
        )


def test_unknown_purpose_refused_and_access_audited(keyring: KeyRing, audit: AuditLog) -> None:
    enc = encrypt_series(pl.Series(["secret-value", None]), keyring, column="a.b")
    with pytest.raises(PurposeError):
        decrypt_series(enc, keyring, column="a.b", purpose="curiosity", actor="eve", audit=audit)
    assert audit.records() == []
    decrypt_series(enc, keyring, column="a.b", purpose="share_grant:g-42", actor="ann", audit=audit)
    (record,) = audit.records()
    assert record["actor"] == "ann" and record["purpose"] == "share_grant:g-42"
    assert record["column"] == "a.b" and record["values"] == 1
    assert "secret-value" not in audit.path.read_text()


def test_rotation_old_ciphertexts_still_decrypt(keyring: KeyRing, audit: AuditLog) -> None:
    old = encrypt_series(pl.Series(["v1"]), keyring, column="a.b")
    keyring.rotate()
    new = encrypt_series(pl.Series(["v2"]), keyring, column="a.b")
    assert old[0].startswith("e1:") and new[0].startswith("e2:")
    both = pl.concat([old, new])
    fresh = KeyRing(keyring.keys_dir)
    out = decrypt_series(both, fresh, column="a.b", purpose="quality_gate", actor="t", audit=audit)
    assert out.to_list() == ["v1", "v2"]


def test_protect_and_reveal_frame(keyring: KeyRing, audit: AuditLog, residents: Dataset) -> None:
    frame = pl.DataFrame(
        {
            "citizen_id": ["11010519491231002X", "440524188001010014"],
            "name": ["张三", "欧阳娜娜"],
            "gender": ["男", "女"],
            "birth_date": [dt.date(1949, 12, 31), dt.date(1880, 1, 1)],
            "community_code": ["110105001001", "110105001002"],
            "mobile": ["13812345678", None],
        }
    )
    protected = protect_frame(frame, residents, keyring)
    for col in ("citizen_id", "name", "birth_date", "mobile"):
        assert is_encrypted(protected[col]), col
    assert protected["gender"].to_list() == ["男", "女"]  # L2 stays
    assert protect_frame(protected, residents, keyring).equals(protected)  # idempotent
    revealed = reveal_frame(protected, residents, keyring, "quality_gate", "pipeline", audit)
    assert revealed.equals(frame)
    assert {r["column"] for r in audit.records()} == {
        column_id(residents, c) for c in ("citizen_id", "name", "birth_date", "mobile")
    }
    with pytest.raises(PurposeError):
        reveal_frame(protected, residents, keyring, "marketing", "pipeline", audit)
