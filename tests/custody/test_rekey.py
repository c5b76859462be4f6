"""``streethub keys rekey``: a staged street moved from the international suite to 国密 and
back — every value re-encrypted and still the same, every pseudonym recomputed with the new
suite's HMAC (and everything keyed by one), audited; an interrupted re-key leaves the lake
readable, stops the pipelines, and finishes when run again."""

from __future__ import annotations

import hmac
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from catalog.loader import load_catalogue
from catalog.model import Catalogue, PiiKind
from catalog.settings import Settings
from lakehouse.lake import close_idle, open_lake, tables_in
from masking.audit import AuditLog
from masking.crypto import ciphertext_suite, protected_fields
from masking.keys import KeyRing
from masking.suite import Suite
from pipelines.connectors.http_api import RetryPolicy
from pipelines.protection import Protection
from pipelines.rekey import RekeyError, pending, rekey
from tests.streets import copy_home

FAST = RetryPolicy(attempts=12, base_delay_s=0.01, max_delay_s=0.05, timeout_s=5)
ISSUES = "quarantine.issues"


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="module")
def street(
    staged_street: Settings, tmp_path_factory: pytest.TempPathFactory, cat: Catalogue
) -> Path:
    """The session's staged street (international suite), on a copy with issues keyed by
    pseudonyms (one per quarantined record, as the correction loop opens them)."""
    settings = copy_home(staged_street.home, tmp_path_factory.mktemp("rekey"))
    with open_lake(settings) as con:
        con.execute(
            f"CREATE TABLE {ISSUES} AS SELECT 'iss-' || row_number() OVER () AS issue_id, "
            "dept, dataset, key_pid, 'open' AS status FROM (SELECT DISTINCT dept, dataset, "
            "key_pid FROM quarantine.rows WHERE key_pid IS NOT NULL)"
        )
    close_idle()
    return settings.home


def _revealed(settings: Settings, cat: Catalogue) -> dict[str, pl.DataFrame]:
    """Every raw and staged table in the clear (lineage order), read with the ring as it
    stands (whatever its suite): what the re-key must leave unchanged."""
    ring = KeyRing.from_settings(settings, enforce_suite=False)
    reader = Protection(ring, AuditLog.from_settings(settings, ring), "test:rekey")
    tables = {t: ds for d, ds in cat.datasets() for t in [f"{d.code}__{ds.code}"]}
    out = {}
    with open_lake(settings, read_only=True) as con:
        for zone, table in sorted(tables_in(con)):
            if zone not in ("raw", "staged"):
                continue
            frame = con.execute(
                f'SELECT * FROM {zone}."{table}" ORDER BY _delivery_id, _source_row'
            ).pl()
            frame = reader.reveal_text(frame, tables[table], "rekey")
            pids = [c for c in frame.columns if c.startswith("_pid_")]  # recomputed too
            out[f"{zone}.{table}"] = frame.drop("_key_pid", "_row_digest", *pids, strict=False)
    return out


def _sensitive_values(settings: Settings, cat: Catalogue) -> list[str]:
    tables = {f"{d.code}__{ds.code}": ds for d, ds in cat.datasets()}
    values: list[str] = []
    with open_lake(settings, read_only=True) as con:
        for zone, table in tables_in(con):
            if zone in ("raw", "staged"):
                frame = con.execute(f'SELECT * FROM {zone}."{table}"').pl()
                for name in protected_fields(frame, tables[table]):
                    values += frame[name].drop_nulls().to_list()
    return values


def _all_pids(settings: Settings) -> set[str]:
    """Every key pseudonym stored in the lake: staged, quarantined records, issues."""
    pids: set[str] = set()
    with open_lake(settings, read_only=True) as con:
        for zone, table in tables_in(con, "staged"):
            pids |= set(con.execute(f'SELECT _key_pid FROM {zone}."{table}"').pl()["_key_pid"])
        for table in ("quarantine.rows", ISSUES):
            pids |= set(con.execute(f"SELECT key_pid FROM {table}").pl()["key_pid"])
    return pids - {None}


def _landed_suites(settings: Settings) -> list[Suite]:
    """The suite each landed file is encrypted under (its header)."""
    from masking.stream import HEADER_BYTES, Header, is_encrypted

    suites = []
    for path in sorted(settings.landing_dir.rglob("*")):
        if path.is_file():
            head = path.read_bytes()[:HEADER_BYTES]
            assert is_encrypted(head), path.name
            suites.append(Header.parse(head).suite)
    return suites


def _hmac_pid(key: bytes, value: str, digest: str) -> str:
    return hmac.digest(key.hex().encode(), value.encode(), digest).hex()[:20]


def test_rekey_to_gm_and_back(street: Path, tmp_path: Path, cat: Catalogue) -> None:
    settings = copy_home(street, tmp_path)
    before = _revealed(settings, cat)
    with open_lake(settings, read_only=True) as con:
        issues_before = con.execute(f"SELECT count(*) FROM {ISSUES}").fetchone()[0]
        q_before = con.execute(
            "SELECT count(*) FROM quarantine.rows WHERE key_pid IS NOT NULL"
        ).fetchone()[0]
    assert issues_before > 0 and q_before > 0
    old_pids = _all_pids(settings)
    assert {ciphertext_suite(v)[0] for v in _sensitive_values(settings, cat)} == {Suite.INTL}

    landed = len(_landed_suites(settings))
    assert landed > 10 and set(_landed_suites(settings)) == {Suite.INTL}
    report = rekey(settings, "gm", "test:officer")
    assert report.landed_files == landed and not report.landed_failed
    assert set(_landed_suites(settings)) == {Suite.GM}  # landed files follow the suite

    ring = KeyRing.from_settings(settings, enforce_suite=False)
    assert ring.suite.name is Suite.GM and pending(settings) is None
    at_rest, pid_key = ring.current("at_rest"), ring.current("pseudonym")
    assert at_rest.version == 2 and pid_key.version == 2
    assert {ciphertext_suite(v) for v in _sensitive_values(settings, cat)} == {(Suite.GM, 2)}
    assert report.from_suite == "intl" and report.suite == "gm"
    assert len(report.datasets) == len(cat.datasets())
    after = _revealed(settings, cat)
    assert after.keys() == before.keys()
    for name, frame in before.items():
        assert after[name].equals(frame), name  # every value the same, in the same rows

    # key pseudonyms: HMAC-SM3 under the new pseudonym key, of the staged plaintext key
    _, residents = cat.dataset("gaj.registered_residents")
    (key_field,) = residents.key
    assert residents.field(key_field).pii is PiiKind.citizen_id
    ring_gm = KeyRing.from_settings(Settings(home=settings.home, cipher_suite="gm"))
    reader = Protection(ring_gm, AuditLog.from_settings(settings, ring_gm), "test:rekey")
    with open_lake(settings, read_only=True) as con:
        staged = con.execute("SELECT * FROM staged.gaj__registered_residents").pl()
        issues = con.execute(f"SELECT key_pid FROM {ISSUES}").pl()
        quarantined = con.execute(
            "SELECT key_pid FROM quarantine.rows WHERE key_pid IS NOT NULL"
        ).pl()
    plain = reader.reveal(staged, residents, "quality_scores")
    want = [_hmac_pid(pid_key.material, v, "sm3") for v in plain[key_field]]
    assert plain["_key_pid"].to_list() == want
    # everything keyed by a pseudonym follows: issues and quarantined records
    assert issues.height == issues_before and quarantined.height == q_before
    new_pids = _all_pids(settings)
    assert not new_pids & old_pids  # no pseudonym of the old suite is left anywhere
    assert len(new_pids) == len(old_pids)  # one new pseudonym for each old one

    # audited: start, one record per dataset, done; the chain verifies across the change
    audit = AuditLog.from_settings(settings, ring_gm)
    actions = [r["action"] for r in audit.records() if r["action"].startswith("keys.rekey")]
    assert actions[0] == "keys.rekey.start" and actions[-1] == "keys.rekey.done"
    assert actions.count("keys.rekey.dataset") == len(cat.datasets())
    assert audit.verify().ok

    # the pipelines now run under 国密; the international setting is refused with the way
    with pytest.raises(Exception, match=r"keys rekey --suite intl"):
        KeyRing.from_settings(Settings(home=settings.home, cipher_suite="intl")).current("at_rest")

    # and back: values the same once more, pseudonyms HMAC-SHA256 under a third key
    rekey(settings, "intl", "test:officer")
    ring = KeyRing.from_settings(settings, enforce_suite=False)
    assert ring.suite.name is Suite.INTL
    assert {ciphertext_suite(v) for v in _sensitive_values(settings, cat)} == {(Suite.INTL, 3)}
    again = _revealed(settings, cat)
    for name, frame in before.items():
        assert again[name].equals(frame), name


def test_interrupted_rekey_reads_refuses_the_pipelines_and_finishes(
    street: Path, tmp_path: Path, cat: Catalogue
) -> None:
    settings = copy_home(street, tmp_path)
    before = _revealed(settings, cat)
    committed: list[str] = []

    class Crash(Exception):
        pass

    def crash_after_three(ref: str) -> None:
        committed.append(ref)
        if len(committed) == 3:
            raise Crash(ref)

    with pytest.raises(Crash):
        rekey(settings, "gm", "test:officer", step=crash_after_three)
    target = pending(settings)
    assert target is not None and target.suite == "gm"
    suites = {ciphertext_suite(v)[0] for v in _sensitive_values(settings, cat)}
    assert suites == {Suite.INTL, Suite.GM}  # half-way: both suites in the lake
    for name, frame in _revealed(settings, cat).items():
        assert frame.equals(before[name]), name  # and every value still reads
    with pytest.raises(RekeyError, match=r"unfinished.*keys rekey --suite gm"):
        Protection.from_settings(settings)
    with pytest.raises(RekeyError, match=r"finish it first"):
        rekey(settings, "intl", "test:officer")

    result = CliRunner().invoke(
        __import__("pipelines.cli", fromlist=["app"]).app,
        ["keys", "rekey", "--suite", "gm"],
        env={"STREETHUB_HOME": str(settings.home)},
    )
    assert result.exit_code == 0, result.output
    assert "re-keyed from intl to gm" in result.output
    assert "3 datasets re-keyed by the interrupted run" in result.output
    assert pending(settings) is None
    ring = KeyRing.from_settings(settings, enforce_suite=False)
    assert ring.suite.name is Suite.GM
    assert {ciphertext_suite(v) for v in _sensitive_values(settings, cat)} == {(Suite.GM, 2)}
    for name, frame in _revealed(settings, cat).items():
        assert frame.equals(before[name]), name
    Protection.from_settings(Settings(home=settings.home, cipher_suite="gm"))  # runs again


def test_rekey_to_the_same_suite_binds_old_column_only_values_to_their_rows(
    street: Path, tmp_path: Path, cat: Catalogue
) -> None:
    """A lake written before rows were bound (``e<v>:``, AAD = the column): the values read,
    and a re-key to the suite in use rewrites them bound to their rows."""
    import base64
    import os

    from masking.crypto import column_id
    from masking.suite import get_suite

    settings = copy_home(street, tmp_path)
    _, residents = cat.dataset("gaj.registered_residents")
    table = "gaj__registered_residents"
    ring = KeyRing.from_settings(settings)
    key = ring.current("at_rest")
    aead = get_suite("intl").aead(key.material)

    def legacy(value: str | None, column: str) -> str | None:
        if value is None:
            return None
        nonce = os.urandom(12)
        blob = nonce + aead.encrypt(nonce, value.encode(), column.encode())
        return f"e{key.version}:" + base64.urlsafe_b64encode(blob).decode().rstrip("=")

    reader = Protection.from_settings(settings, actor="test:rekey")
    with open_lake(settings) as con:
        frame = con.execute(f"SELECT * FROM staged.{table}").pl()
        plain = reader.reveal_text(frame, residents, "rekey")
        old = frame.with_columns(
            pl.Series(name, [legacy(v, column_id(residents, name)) for v in plain[name]])
            for name in protected_fields(frame, residents)
        )
        con.execute(f"DELETE FROM staged.{table}")
        con.register("old", old.to_arrow())
        con.execute(f"INSERT INTO staged.{table} BY NAME SELECT * FROM old")
        con.unregister("old")
    before = _revealed(settings, cat)
    assert before[f"staged.{table}"]["name"].to_list()  # the old values read
    assert any(v.startswith("e") for v in _sensitive_values(settings, cat))

    rekey(settings, "intl", "test:officer")
    assert {ciphertext_suite(v) for v in _sensitive_values(settings, cat)} == {(Suite.INTL, 2)}
    assert not any(v.startswith("e") for v in _sensitive_values(settings, cat))
    for name, frame in _revealed(settings, cat).items():
        assert frame.equals(before[name]), name


def test_rekey_moves_the_cells_sealed_in_raw(street: Path, tmp_path: Path, cat: Catalogue) -> None:
    """A footer's phone a delivery put in a clear column is sealed in its raw cell
    (``masking.cells``): a re-key to 国密 rewrites it under the new suite, still the same."""
    from masking.cells import clear_fields

    settings = copy_home(street, tmp_path)
    _, elderly = cat.dataset("mzj.elderly_alone")
    table = "mzj__elderly_alone"
    writer = Protection.from_settings(settings, actor="test:rekey")
    with open_lake(settings) as con:
        row = con.execute(f"SELECT * FROM raw.{table} LIMIT 1").pl()
        plain = writer.reveal_text(row, elderly, "rekey").with_columns(
            pl.lit("footer").alias("_delivery_id"),
            pl.lit("联系电话：13911112222").alias("community_name"),
        )
        con.register("footer", writer.protect(plain, elderly).to_arrow())
        con.execute(f"INSERT INTO raw.{table} BY NAME SELECT * FROM footer")
        con.unregister("footer")

    def sealed_cell() -> str:
        with open_lake(settings, read_only=True) as con:
            frame = con.execute(f"SELECT * FROM raw.{table} WHERE _delivery_id = 'footer'").pl()
        assert "community_name" in clear_fields(frame, elderly)
        return frame["community_name"][0]

    assert ciphertext_suite(sealed_cell())[0] is Suite.INTL
    before = _revealed(settings, cat)[f"raw.{table}"]
    rekey(settings, "gm", "test:officer")
    assert ciphertext_suite(sealed_cell())[0] is Suite.GM
    after = _revealed(settings, cat)[f"raw.{table}"]
    assert after.equals(before)
    assert after.filter(pl.col("_delivery_id") == "footer")["community_name"].to_list() == [
        "联系电话：13911112222"
    ]
