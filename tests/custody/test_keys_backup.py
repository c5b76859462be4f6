"""Key backup: the master key in 2-of-3 Shamir shares, restored into an empty key store;
data encrypted before the loss reads again."""

from __future__ import annotations

import base64
import itertools
import os
import secrets
import stat
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from catalog.settings import Settings
from masking.errors import KeyRingError
from masking.keys import KeyRing
from masking.keys.backup import combine_shares, parse_share, split_master
from masking.keys.store import fingerprint
from tests.cli_text import one_line

COLUMN = "gaj.registered_residents.citizen_id"
IDS = ["11010519491231002X", "440524188001010014", "110101199003071234"]


@pytest.fixture(autouse=True)
def _no_env_master(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STREETHUB_MASTER_KEY", "STREETHUB_MASTER_KEY_NEW", "STREETHUB_KEY_PROVIDER"):
        monkeypatch.delenv(name, raising=False)


def test_any_two_of_three_shares_rebuild_the_key_and_one_does_not() -> None:
    key = secrets.token_bytes(32)
    kid = fingerprint(key)
    shares = split_master(kid, key)
    assert len(shares) == 3 and len(set(shares)) == 3
    for pair in itertools.combinations(shares, 2):
        assert combine_shares(list(pair)) == (kid, key)
        assert combine_shares(list(reversed(pair))) == (kid, key)
    assert combine_shares(shares) == (kid, key)
    with pytest.raises(KeyRingError, match="2 different shares"):
        combine_shares([shares[0]])
    with pytest.raises(KeyRingError, match="2 different shares"):
        combine_shares([shares[1], shares[1]])
    for share in shares:
        body = parse_share(share)[2]
        assert key[:16] not in body and key[16:] not in body
        assert key.hex() not in share and base64.b64encode(key).decode() not in share


def test_damaged_or_mixed_shares_are_refused() -> None:
    key, other = secrets.token_bytes(32), secrets.token_bytes(32)
    shares = split_master(fingerprint(key), key)
    typo = shares[0][:-12] + ("0" if shares[0][-12] != "0" else "1") + shares[0][-11:]
    with pytest.raises(KeyRingError, match="damaged"):
        combine_shares([typo, shares[1]])
    with pytest.raises(KeyRingError, match="different master keys"):
        combine_shares([shares[0], split_master(fingerprint(other), other)[1]])
    with pytest.raises(KeyRingError, match="not a share line"):
        combine_shares(["hello", shares[1]])
    # a share re-labelled with another kid (its check recomputed) does not rebuild it
    from masking.keys.backup import PREFIX, _check

    _, index, body = parse_share(shares[0])
    kid = fingerprint(other)
    forged = f"{PREFIX}:{kid}:{index}/3:{body.hex()}:{_check(kid, index, body.hex())}"
    _, index2, body2 = parse_share(shares[1])
    forged2 = f"{PREFIX}:{kid}:{index2}/3:{body2.hex()}:{_check(kid, index2, body2.hex())}"
    with pytest.raises(KeyRingError, match="do not rebuild"):
        combine_shares([forged, forged2])


def test_backup_then_restore_two_shares_into_an_empty_key_store_reads_the_lake(
    settings: Settings, tmp_path: Path
) -> None:
    from lakehouse.lake import open_lake
    from masking.audit import AuditLog
    from masking.crypto import decrypt_series, encrypt_series
    from masking.pseudonym import pseudonym
    from pipelines.cli_keys import keys_app

    ring = KeyRing.from_settings(settings)
    rows = [f"k:{i}" for i in range(len(IDS))]
    sealed = encrypt_series(pl.Series("citizen_id", IDS), ring, column=COLUMN, rows=rows)
    pseudonyms = [pseudonym(v, ring, kind="citizen_id") for v in IDS]
    table = pl.DataFrame({"row": rows, "citizen_id": sealed, "pid": pseudonyms})
    with open_lake(settings) as con:  # the lake holds the ciphertexts
        con.register("t", table.to_arrow())
        con.execute("CREATE TABLE marts.custody_sample AS SELECT * FROM t")
    runner = CliRunner()
    inside = runner.invoke(keys_app, ["backup", "--out", str(settings.home_abs / "shares")])
    assert inside.exit_code == 1 and "inside the home" in one_line(inside)
    out = tmp_path / "custodians"
    made = runner.invoke(keys_app, ["backup", "--out", str(out)])
    assert made.exit_code == 0, made.output
    files = sorted(out.glob("share-*.txt"))
    assert len(files) == 3
    assert all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in files)

    settings.key_file_abs.unlink()  # the key store is lost
    with pytest.raises(KeyRingError, match="keys restore"):
        KeyRing.from_settings(settings).get("at_rest", 1)
    missing = runner.invoke(keys_app, ["restore", str(tmp_path / "nope.txt"), str(files[0])])
    assert missing.exit_code == 1 and "cannot read the share file" in one_line(missing)
    one = runner.invoke(keys_app, ["restore", str(files[0])])
    assert one.exit_code == 1 and "2 different shares" in one_line(one)
    assert not settings.key_file_abs.exists()
    done = runner.invoke(keys_app, ["restore", str(files[2]), str(files[0])])
    assert done.exit_code == 0, done.output
    assert stat.S_IMODE(os.stat(settings.key_file_abs).st_mode) == 0o600
    again = runner.invoke(keys_app, ["restore", str(files[1]), str(files[2])])
    assert again.exit_code == 1 and "already holds a master key" in one_line(again)

    restored = KeyRing.from_settings(settings)
    audit = AuditLog.from_settings(settings, restored)
    with open_lake(settings, read_only=True) as con:
        back = con.execute("SELECT * FROM marts.custody_sample ORDER BY row").pl()
    plain = decrypt_series(
        back["citizen_id"], restored, column=COLUMN, rows=back["row"].to_list(),
        purpose="quality_scores", actor="test", audit=audit,
    )  # fmt: skip
    assert plain.to_list() == IDS
    assert [pseudonym(v, restored, kind="citizen_id") for v in IDS] == back["pid"].to_list()


def test_restore_for_the_environment_provider_prints_the_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.cli_keys import keys_app

    master = secrets.token_bytes(32)
    monkeypatch.setenv("STREETHUB_MASTER_KEY", base64.b64encode(master).decode())
    runner = CliRunner()
    printed = runner.invoke(keys_app, ["backup"])
    assert printed.exit_code == 0, printed.output
    shares = [line for line in printed.output.splitlines() if line.startswith("streethub-share")]
    assert len(shares) == 3
    monkeypatch.delenv("STREETHUB_MASTER_KEY")
    done = runner.invoke(keys_app, ["restore", "--print"], input="\n".join(shares[1:]) + "\n")
    assert done.exit_code == 0, done.output
    assert base64.b64encode(master).decode() in done.output


def test_no_backup_where_the_provider_keeps_its_key(settings: Settings) -> None:
    from masking.keys.providers import MasterKeyProvider

    class Sealed(MasterKeyProvider):  # a provider whose key never leaves (like an HSM)
        name = "sealed"

        def describe(self) -> str:
            return "a sealed box"

        def kids(self):
            return ["k"]

        def primary(self, *, create: bool):
            return "k"

        def add(self, material=None):
            raise AssertionError

        def retire(self, keep):
            raise AssertionError

        def wrap(self, kid, data, aad, suite):
            return "sealed", data[::-1]

        def unwrap(self, kid, algorithm, blob, aad):
            return blob[::-1]

    ring = KeyRing(settings.keys_dir, provider=Sealed())
    with pytest.raises(KeyRingError, match="cannot leave it"):
        ring.export_master()
