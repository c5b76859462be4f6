"""Composite business keys: a key of several fields is pseudonymised from a text no value can
forge (``masking.pseudonym.key_text``), so two different keys never share a ``_key_pid``.

Joined plainly with ``|``, ``("3|2", "101")`` and ``("3", "2|101")`` were one key: an upsert of
the second replaced the first — a record lost with nothing quarantined or counted. Shown here
through the real path (inbox → landing → raw → staged) of a department added from a YAML
file, and on the pseudonyms themselves, with the pseudonyms of every ordinary key unchanged
(a lake staged before keeps matching its re-deliveries).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from catalog.loader import load_catalogue
from catalog.model import Dataset
from catalog.settings import Settings
from lakehouse.lake import open_lake
from masking.keys import KeyRing
from masking.pseudonym import pseudonymise_series
from pipelines.ingest import ingest_dataset
from pipelines.ingest.ledger import ensure_ledger
from pipelines.ingest.staged import StageAccount, stage_dataset
from pipelines.protection import Protection, key_pids
from pipelines.rekey import rekey
from tests.streets import catalogue_with, copy_home, deliver_settled

DEPT = "fwzx"
YAML = """\
code: fwzx
name_zh: 社区服务中心
name_en: Community Service Centre
provider_code: "12110105MB0174653C"
owner: team:fwzx
datasets:
  - code: rooms
    resource_code: "JD-FWZX-001"
    name_zh: 活动室登记
    name_en: Activity rooms
    entity: thing
    summary: 社区活动室登记，楼号与房间号为自由文本。
    format: csv
    update_cycle: daily
    share_type: unconditional
    consent_category: none
    share_method: api
    open_attribute: not_open
    release_date: 2026-11-01
    grade: general
    key: [building, room]
    update_mode: upsert
    delivery: {kind: csv, pattern: rooms_*.csv, encoding: utf-8, delimiter: ','}
    fields:
      - {name: building, label_zh: 楼号, source: 楼号, type: string, required: true, level: L1}
      - {name: room, label_zh: 房间号, source: 房间号, type: string, required: true, level: L1}
      - {name: purpose, label_zh: 用途, source: 用途, type: string, required: true, level: L1}
"""


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped catalogue and one department whose key is two free-text fields."""
    root = tmp_path_factory.mktemp("catalogue")
    (root / f"{DEPT}.yaml").write_text(YAML, encoding="utf-8")
    return catalogue_with(root / "catalogue", root / f"{DEPT}.yaml")


@pytest.fixture(scope="module")
def rooms(catalogue: Path) -> Dataset:
    return load_catalogue(catalogue).dataset(f"{DEPT}.rooms")[1]


@pytest.fixture
def hub(catalogue: Path, rooms: Dataset, tmp_path: Path) -> tuple[Settings, Dataset]:
    settings = Settings(
        home=tmp_path / "home", catalog_dir=catalogue, sim_dir=tmp_path / "none",
        settle_seconds=0,
    ).ensure_dirs()  # fmt: skip
    return settings, rooms


def deliver(
    settings: Settings, ds: Dataset, name: str, rows: list[tuple[str, str, str]]
) -> StageAccount:
    text = "楼号,房间号,用途\n" + "".join(f"{b},{r},{p}\n" for b, r, p in rows)
    deliver_settled(settings.inbox_dir / DEPT, name, text)
    with open_lake(settings) as con:
        ensure_ledger(con)
        ingest_dataset(con, settings, DEPT, ds)
        (account,) = stage_dataset(con, DEPT, ds, Protection.from_settings(settings))
    return account


def staged(settings: Settings) -> list[tuple[str, str, str]]:
    with open_lake(settings, read_only=True) as con:
        rows = con.execute(f"SELECT building, room, purpose FROM staged.{DEPT}__rooms").fetchall()
    return sorted(rows)


def test_keys_that_joined_alike_are_two_records_across_deliveries(hub) -> None:
    settings, ds = hub
    first = deliver(
        settings, ds, "rooms_20261201.csv", [("3|2", "101", "阅览室"), ("5", "201", "舞蹈室")]
    )
    # another record whose fields joined by "|" read as the first one's: a new key, not an update
    second = deliver(settings, ds, "rooms_20261202.csv", [("3", "2|101", "棋牌室")])
    assert (first.rows_out, first.balances) == (2, True)
    assert (second.rows_out, second.rows_replaced, second.balances) == (1, 0, True)
    assert staged(settings) == [
        ("3", "2|101", "棋牌室"),
        ("3|2", "101", "阅览室"),
        ("5", "201", "舞蹈室"),
    ]
    # and an update of one of them still replaces that one only
    third = deliver(settings, ds, "rooms_20261203.csv", [("3|2", "101", "图书室")])
    assert (third.rows_out, third.rows_replaced) == (1, 1)
    assert staged(settings) == [
        ("3", "2|101", "棋牌室"),
        ("3|2", "101", "图书室"),
        ("5", "201", "舞蹈室"),
    ]
    with open_lake(settings, read_only=True) as con:
        pids = con.execute(
            f"SELECT count(DISTINCT _key_pid), count(*) FROM staged.{DEPT}__rooms"
        ).fetchone()
    assert pids == (3, 3)


def _pids(ds: Dataset, ring: KeyRing, rows: list[tuple]) -> list[str]:
    frame = pl.DataFrame(rows, schema=[k for k in ds.key], orient="row")
    return key_pids(frame, ds, ring).to_list()


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing.from_settings(Settings(home=tmp_path_factory.mktemp("ring")).ensure_dirs())


def test_no_two_different_keys_share_a_pseudonym(rooms: Dataset, ring: KeyRing) -> None:
    ds = rooms
    keys = [
        ("a|b", "c"), ("a", "b|c"), ("a|b|c", None), (None, "a|b|c"), ("a", "b"),
        ("a\\", "b"), ("a", "\\b"), ("a\\|", "b"), ("a", "\\|b"), ("a\\", "|b"),
        ("a", None), ("a", ""), (None, None), ("", ""), ("", None), ("\\e", None),
        ("a｜b", "c"), ("a", "b｜c"),
    ]  # fmt: skip
    pids = _pids(ds, ring, keys)
    distinct = {
        k: p for k, p in zip(keys, pids, strict=True) if "｜" not in "".join(filter(None, k))
    }
    assert len(set(distinct.values())) == len(distinct)
    # a full-width bar is its half-width form, as in every pseudonym, but not a boundary
    assert pids[keys.index(("a｜b", "c"))] == pids[keys.index(("a|b", "c"))]
    assert pids[keys.index(("a", "b｜c"))] == pids[keys.index(("a", "b|c"))]
    # the same key is the same pseudonym wherever it comes
    assert _pids(ds, ring, [("a", "b|c"), ("a|b", "c")]) == [pids[1], pids[0]]


def test_an_ordinary_key_keeps_the_pseudonym_it_was_staged_under(ring: KeyRing) -> None:
    """Keys with no "|", "\\" or empty field: the text as plainly joined before, so the
    pseudonyms already in a lake still find their re-deliveries (datetime fields included)."""
    (_, ds) = load_catalogue().dataset("iot.sensor_readings")
    assert ds.key == ["device_id", "ts"]
    frame = pl.DataFrame({
        "device_id": ["ENV-0001", "门禁-7", "D 3"],
        "ts": [dt.datetime(2026, 11, 20, 8, 5), dt.datetime(2026, 11, 20, 8, 5, 30, 250), dt.datetime(2026, 1, 1)],
    })  # fmt: skip
    before = frame.select(pl.concat_str([pl.col(k).fill_null("") for k in ds.key], separator="|"))
    assert before.to_series().to_list()[0] == "ENV-0001|2026-11-20 08:05:00.000000"
    assert (
        key_pids(frame, ds, ring).to_list()
        == pseudonymise_series(before.to_series(), ring).to_list()
    )


def test_a_lake_staged_under_the_plain_join_is_mended_by_a_rekey_to_its_own_suite(
    hub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A lake whose composite keys were pseudonymised before key_text: a key with "|" in a
    field has another pseudonym now, so until ``streethub keys rekey`` recomputes them its
    record re-sent unchanged is taken for a new one; after it, for the record it is."""
    import pipelines.protection

    settings, ds = hub
    with monkeypatch.context() as before:  # the text as keys were joined before 2026-12-07
        before.setattr(
            pipelines.protection,
            "key_text",
            lambda fields: pl.concat_str([f.fill_null("") for f in fields], separator="|"),
        )
        deliver(
            settings, ds, "rooms_20261201.csv", [("3|2", "101", "阅览室"), ("5", "201", "舞蹈室")]
        )
    resent = [("3|2", "101", "阅览室"), ("5", "201", "舞蹈室"), ("3", "2|101", "棋牌室")]
    unmended = copy_home(settings.home_abs, tmp_path / "unmended")
    unmended = unmended.model_copy(
        update={"catalog_dir": settings.catalog_dir, "settle_seconds": 0}
    )
    account = deliver(unmended, ds, "rooms_20261202.csv", resent)
    assert (account.rows_out, account.rows_skipped) == (2, 1)  # "3|2"/"101" staged twice
    assert len(staged(unmended)) == 4

    rekey(settings, KeyRing.from_settings(settings).suite.name.value, "test:officer")
    account = deliver(settings, ds, "rooms_20261202.csv", resent)
    assert (account.rows_out, account.rows_skipped, account.balances) == (1, 2, True)
    assert staged(settings) == [
        ("3", "2|101", "棋牌室"),
        ("3|2", "101", "阅览室"),
        ("5", "201", "舞蹈室"),
    ]
