"""Onboarding proof for an API: 区退役军人事务局 (``tyjr``) joins the hub by ``tyjr.yaml`` and
its base URL and token in the environment, nothing else.

Its HTTP API (a real server) is not the hub's reference protocol: PageHelper paging from
page 0, records and total inside an envelope with a status code, the person nested in each
record, gender as GB/T 2261.1 codes, dates as its database's midnights (one written in UTC),
status as the bureau's own codes. The hub pulls it whole, gates every row (repaired or
quarantined for its own field and check), keeps the ID out of every file in the clear, and
pulls again only what is newer.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from stdnum.cn import ric

from catalog.loader import load_catalogue
from catalog.settings import Settings
from lakehouse.lake import open_lake
from pipelines.connectors.http_api import RetryPolicy
from pipelines.ingest import ingest_and_stage
from pipelines.ingest.ledger import ensure_ledger
from pipelines.protection import Protection
from tests.page_helper_api import PageHelperApi, served
from tests.streets import catalogue_with

HERE = Path(__file__).resolve().parent
DEPT, DATASET, TOKEN = "tyjr", "veterans", "tyjr-token"
FAST = RetryPolicy(attempts=2, base_delay_s=0.01)


def citizen_id(born: dt.date, seq: int, male: bool) -> str:
    body = f"110105{born:%Y%m%d}{seq:02d}{1 if male else 2}"
    return body + ric.calc_check_digit(body + "?")  # it reads the first 17 of 18


def veteran(i: int, **changes: object) -> dict:
    """One record as the bureau's API writes it (the person and the service nested)."""
    male = i % 3 != 0
    born = dt.date(1960 + i, 1 + i % 12, 1 + i)
    record = {
        "id": f"TY{i:04d}",
        "person": {"idcard": citizen_id(born, 10 + i, male), "name": f"王{'建军国'[i % 3]}",
                   "xb": ("1" if male else "2") if i % 2 else ("男性" if male else "女性")},
        "service": {"enlisted": f"{born.year + 18}-03-01 00:00:00.000",
                    "discharged": f"{born.year + 22}-12-30T16:00:00.000Z"},
        "status": "01" if i % 4 else "02",
        "update_time": f"2026-11-{1 + i:02d} 09:00:00",
    }  # fmt: skip
    for key, value in changes.items():
        part, _, inner = key.partition(".")
        if inner:
            record[part] = {**record[part], inner: value}
        else:
            record[key] = value
    return record


RECORDS = [
    *(veteran(i) for i in range(1, 8)),
    veteran(8, status="99"),  # 99: status unknown, a required field: quarantined as blank
    veteran(9, **{"person.idcard": citizen_id(dt.date(1969, 10, 10), 19, True)[:-1] + "0"}),
]
CLEAN = 7


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    catalogue = catalogue_with(tmp_path / "catalogue", HERE / "tyjr.yaml")
    with served(PageHelperApi(list(RECORDS), TOKEN, cap=4)) as api:
        monkeypatch.setenv("STREETHUB_TYJR_API_URL", api.url)
        monkeypatch.setenv("STREETHUB_TYJR_API_TOKEN", TOKEN)
        settings = Settings(home=tmp_path / "home", catalog_dir=catalogue,
                            sim_dir=tmp_path / "no_simulator", settle_seconds=0).ensure_dirs()  # fmt: skip
        yield settings, api


def pull(settings: Settings):
    _, ds = load_catalogue(settings.catalog_dir).dataset(f"{DEPT}.{DATASET}")
    protection = Protection.from_settings(settings)
    with open_lake(settings) as con:
        ensure_ledger(con)
        return ingest_and_stage(con, settings, DEPT, ds, protection=protection, policy=FAST)


def test_an_api_department_is_pulled_gated_and_protected(hub) -> None:
    settings, api = hub
    landed, accounts, stages = pull(settings)
    assert len(landed.landed) == 1 and landed.failed == []
    pages = [(q["pageNum"], q["pageSize"]) for q in api.asked]
    assert pages == [("0", "100"), ("1", "100"), ("2", "100")]  # the server gives 4 a page
    [account] = accounts
    assert (account.rows_read, account.rows_loaded) == (len(RECORDS), len(RECORDS))
    _, ds = load_catalogue(settings.catalog_dir).dataset(f"{DEPT}.{DATASET}")
    with open_lake(settings, read_only=True) as con:
        staged = con.execute(f'SELECT * FROM staged."{DEPT}__{DATASET}"').pl()
        held = con.execute(
            "SELECT source_row, field, check_name FROM quarantine.rows "
            "WHERE dept = ? AND dataset = ?",
            [DEPT, DATASET],
        ).fetchall()
    [stage] = stages
    assert (stage.rows_in, stage.rows_out, stage.rows_quarantined) == (len(RECORDS), CLEAN, 2)
    repairs = {(f, k): n for f, k, n in stage.repairs}
    # every gender and status a code (of the rows read; 99, no value, as a placeholder);
    # every date a stored midnight
    assert repairs[("gender", "coded_value")] == len(RECORDS)
    assert (repairs[("status", "coded_value")], repairs[("status", "placeholder")]) == (8, 1)
    assert repairs[("enlisted_on", "date_format")] == len(RECORDS)
    assert sorted((f, c) for _, f, c in held) == [
        ("citizen_id", "citizen_id_checksum"),
        ("status", "required"),
    ]
    revealed = Protection.from_settings(settings).reveal(staged, ds, "quality_scores")
    by_id = {r["record_id"]: r for r in revealed.iter_rows(named=True)}
    assert len(by_id) == CLEAN
    for record in RECORDS[:CLEAN]:
        got, person = by_id[record["id"]], record["person"]
        assert got["citizen_id"] == person["idcard"] and got["name"] == person["name"]
        assert got["gender"] == ("男" if person["xb"] in ("1", "男性") else "女")
        assert got["status"] == {"01": "在册", "02": "迁出"}[record["status"]]
        year = int(record["service"]["enlisted"][:4])
        assert got["enlisted_on"] == dt.date(year, 3, 1)
        assert got["discharged_on"] == dt.date(year + 4, 12, 31)  # Beijing's midnight, in UTC
    # no ID in the clear in any file under the home (raw and staged keep it protected)
    ids = [r["person"]["idcard"].encode() for r in RECORDS]
    for path in settings.home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(i in data for i in ids), path


def test_only_what_is_newer_is_pulled_again(hub) -> None:
    settings, api = hub
    pull(settings)
    again, _, _ = pull(settings)
    newest = max(r["update_time"] for r in RECORDS)
    assert again.landed == [] and api.asked[-1]["gxsj"] == newest
    api.records.append(veteran(20, update_time="2026-11-30 09:00:00"))
    newer, accounts, _ = pull(settings)
    assert len(newer.landed) == 1 and [a.rows_read for a in accounts] == [1]


def test_the_records_as_served_are_what_the_catalogue_describes() -> None:
    frame = pl.DataFrame([r["person"] for r in RECORDS])
    assert set(frame["xb"]) == {"1", "2", "男性", "女性"}  # both spellings of the codes
