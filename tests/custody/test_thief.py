"""The thief test: someone copies the home directory, as a thief with read access would.

After a small ingest (every dataset of a small simulated street landed, loaded into raw
and staged, sensitive values encrypted, business keys pseudonymised, decryptions audited,
a checkpoint signed), the home is copied elsewhere and opened with no key provider (no
``STREETHUB_MASTER_KEY``, another user's config folder). From the copy alone:

- no L3/L4 value of the lake decrypts, no landed file opens, and no 32-byte string found
  anywhere in the copy unwraps a data key of the ring (the attack issue 11 describes);
- no pseudonym can be recomputed (the pseudonym key is not in the copy in any encoding);
- an audit record forged in the copy (with a key ring the thief makes himself) and put
  back does not verify: the first forged record is named.

Positive control: the same copy with the owner's key provider decrypts, opens, recomputes
every pseudonym and verifies.
"""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from cryptography.exceptions import InvalidTag

from catalog.errors import StreethubError
from catalog.loader import load_catalogue
from catalog.model import Catalogue
from catalog.settings import Settings
from lakehouse.lake import open_lake, tables_in
from masking.errors import KeyRingError
from masking.keys import KeyRing
from masking.suite import NONCE_BYTES, get_suite

RESIDENTS = 150
RESIDENTS_TABLE = "gaj__registered_residents"
PURPOSE = "quality_scores"
NO_PROVIDER = ("STREETHUB_MASTER_KEY", "STREETHUB_MASTER_KEY_NEW", "STREETHUB_KEY_PROVIDER")
NO_PROVIDER += ("STREETHUB_KEY_FILE", "STREETHUB_PKCS11_PIN")


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory, cat: Catalogue) -> Settings:
    """The owner's home after a small ingest of every dataset (never changed by a test)."""
    from masking.audit import AuditLog
    from tests.streets import ingest_and_stage

    with pytest.MonkeyPatch.context() as mp:
        for name in NO_PROVIDER:
            mp.delenv(name, raising=False)
        home = tmp_path_factory.mktemp("owner") / "home"
        settings = ingest_and_stage(home, cat, residents=RESIDENTS, seed=31)
        AuditLog.from_settings(settings).checkpoint()
    return Settings(home=home)


@pytest.fixture
def stolen(street: Settings, tmp_path: Path) -> Settings:
    """A copy of the owner's home only (not its key file, not its witness)."""
    home = tmp_path / "thief" / "home"
    shutil.copytree(street.home_abs, home)
    return Settings(home=home)


@pytest.fixture
def owner_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in NO_PROVIDER:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def as_thief(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key provider: nothing in the environment, another user's (empty) config folder."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "thief" / "config"))


def _protected_tables(settings: Settings, cat: Catalogue) -> dict[tuple[str, str], tuple]:
    """(zone, table) → (dataset, its L3/L4 columns, the frame) for raw and staged."""
    datasets = {f"{dept.code}__{ds.code}": ds for dept, ds in cat.datasets()}
    out = {}
    with open_lake(settings, read_only=True) as con:
        for zone, table in sorted(tables_in(con)):
            ds = datasets.get(table)
            if zone not in ("raw", "staged") or ds is None:
                continue
            frame = con.execute(f'SELECT * FROM {zone}."{table}"').pl()
            sensitive = [f.name for f in ds.fields if f.level.sensitive and f.name in frame]
            if sensitive and frame.height:
                out[(zone, table)] = (ds, sensitive, frame)
    return out


def _landed_files(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.landing_dir.rglob("*") if p.is_file())


def _owner_keys(settings: Settings) -> list[bytes]:
    """Every data key version and the master key (read with the owner's provider)."""
    ring = KeyRing.from_settings(settings)
    keys = [ring.get(p, v).material for p in ring.purposes() for v in ring.versions(p)]
    return [*keys, ring.provider.export(ring.master_kid)]


def _home_bytes(settings: Settings) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(settings.home_abs.rglob("*")) if p.is_file())


B64_32 = re.compile(rb"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=")
HEX_32 = re.compile(rb"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


def _candidate_keys(blob: bytes) -> set[bytes]:
    """Every 32-byte value written in base64 or hex anywhere in the copy."""
    found = {base64.b64decode(m) for m in B64_32.findall(blob)}
    return found | {bytes.fromhex(m.decode()) for m in HEX_32.findall(blob)}


def test_the_copy_alone_decrypts_nothing(
    street: Settings, stolen: Settings, cat: Catalogue, owner_env, tmp_path: Path
) -> None:
    import json

    from pipelines.ingest.landing import open_landed
    from pipelines.protection import Protection

    tables = _protected_tables(stolen, cat)
    assert {("raw", RESIDENTS_TABLE), ("staged", RESIDENTS_TABLE)} <= set(tables)
    values = sum(frame[c].drop_nulls().len() for _, cols, frame in tables.values() for c in cols)
    assert values > 5 * RESIDENTS
    landed = _landed_files(stolen)
    assert landed
    owner_keys = _owner_keys(street)  # read before the thief's environment is set

    as_thief(owner_env, tmp_path)
    for ds, _, frame in tables.values():
        with pytest.raises(KeyRingError, match="keys restore"):
            Protection.from_settings(stolen).reveal(frame, ds, PURPOSE)
    for path in landed:
        with pytest.raises(StreethubError), open_landed(stolen, path) as fh:
            fh.read()
    assert not stolen.key_file_abs.exists()

    # no project code: every 32-byte string in the copy tried as the master key against
    # every wrapped data key (what keys/master.json + keyring.json allowed before)
    blob = _home_bytes(stolen)
    for key in owner_keys:
        for form in (key, key.hex().encode(), key.hex().upper().encode(),
                     base64.b64encode(key), base64.urlsafe_b64encode(key)):  # fmt: skip
            assert form not in blob
    ring = json.loads((stolen.keys_dir / "keyring.json").read_text())
    wrapped = [
        (e, f"streethub-key|{e['suite']}|{p}|{v}".encode())
        for p, vs in ring["keys"].items()
        for v, e in vs.items()
    ]
    candidates = _candidate_keys(blob)
    assert candidates  # the copy is full of hashes and digests: they are all tried
    opened = 0
    for candidate in candidates:
        for suite in ("intl", "gm"):
            aead = get_suite(suite).aead(candidate)
            for entry, aad in wrapped:
                data = base64.b64decode(entry["wrapped"])
                try:
                    aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], aad)
                    opened += 1
                except InvalidTag:  # the expected outcome
                    continue
    assert opened == 0

    # positive control: the same copy with the owner's key provider
    owner_env.undo()
    for (zone, table), (ds, cols, frame) in tables.items():
        revealed = Protection.from_settings(stolen).reveal(frame, ds, PURPOSE)
        for c in cols:
            plain = revealed[c].drop_nulls().cast(pl.String)
            assert not plain.str.contains(r"^[as]\d+:").any(), (zone, table, c)
    for path in landed:
        with open_landed(stolen, path) as fh:
            assert fh.read()


def test_the_copy_alone_recomputes_no_pseudonym(
    street: Settings, stolen: Settings, cat: Catalogue, owner_env, tmp_path: Path
) -> None:
    from pipelines.protection import Protection

    _, ds = cat.dataset("gaj.registered_residents")
    with open_lake(stolen, read_only=True) as con:
        frame = con.execute(f"SELECT * FROM staged.{RESIDENTS_TABLE}").pl()
    assert frame.height > RESIDENTS // 2
    stored = frame["_key_pid"]
    plain = Protection.from_settings(stolen).reveal(frame, ds, PURPOSE)  # owner: control
    assert Protection.from_settings(stolen).key_pid(plain, ds).to_list() == stored.to_list()

    as_thief(owner_env, tmp_path)
    with pytest.raises(KeyRingError, match="keys restore"):
        Protection.from_settings(stolen).key_pid(plain, ds)
    # the thief knowing every plaintext still cannot make the pseudonyms: a ring of his own
    # (a new master, new keys) gives others, and the copy holds the real key in no form
    (stolen.keys_dir / "keyring.json").unlink()
    forged = Protection.from_settings(stolen).key_pid(plain, ds)
    assert not set(forged.to_list()) & set(stored.to_list())
    owner_env.undo()
    ring = KeyRing.from_settings(street)
    key = ring.get("pseudonym", ring.versions("pseudonym")[0]).material
    blob = _home_bytes(stolen)
    assert all(form not in blob for form in (key, key.hex().encode(), base64.b64encode(key)))


def test_an_audit_record_forged_in_the_copy_does_not_verify(
    street: Settings, stolen: Settings, owner_env, tmp_path: Path
) -> None:
    from masking.audit import AuditLog

    witnessed = stolen.model_copy(update={"witness_dir": street.witness_dir_abs})
    before = AuditLog.from_settings(witnessed).verify()  # owner: the copy verifies
    assert before.ok and before.records > 0, before.problems

    as_thief(owner_env, tmp_path)
    with pytest.raises(KeyRingError):
        AuditLog.from_settings(stolen).append("decrypt", "pipelines", purpose=PURPOSE, values=1)
    # a ring of the thief's own: the records and checkpoint look right but are his
    (stolen.keys_dir / "keyring.json").unlink()
    thief_log = AuditLog.from_settings(stolen)
    forged = thief_log.append("decrypt", "pipelines", purpose=PURPOSE, values=1)
    thief_log.checkpoint()
    assert forged["seq"] == before.records + 1

    # put back into the owner's home (a second copy, the module street stays clean)
    owner_env.undo()
    back = Settings(home=tmp_path / "owner-again" / "home", witness_dir=street.witness_dir_abs)
    shutil.copytree(street.home_abs, back.home_abs)
    shutil.rmtree(back.audit_dir)
    shutil.copytree(stolen.audit_dir, back.audit_dir)
    result = AuditLog.from_settings(back).verify()
    assert not result.ok
    assert result.first_bad == forged["seq"], result.problems
