"""Landing and raw on the simulated departments: every row accounted for, nothing twice."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog.loader import load_catalogue
from catalog.model import Catalogue, ConnectorKind, Dataset
from catalog.settings import Settings
from departments import faults
from departments.connect import connection_env
from departments.server import running_server
from departments.simulate import sim_dir_for, simulate
from lakehouse.lake import open_lake
from pipelines.connectors.http_api import RetryPolicy
from pipelines.ingest import ingest_dataset
from pipelines.ingest.raw import ensure_raw_table
from quality.evaluation import manifest_rows

START = dt.date(2026, 11, 20)
FAST = RetryPolicy(attempts=12, base_delay_s=0.01, max_delay_s=0.05, timeout_s=5)


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One small simulated street, generated once; tests copy it before changing it."""
    home = tmp_path_factory.mktemp("street")
    manifest = simulate(home, residents=400, seed=11, days=2, start=START)
    return home, manifest


def fresh_home(street: tuple[Path, dict], tmp_path: Path) -> Settings:
    """A copy of the street (the hub's inbox and the simulator's folder beside it), with the
    connection settings the simulated systems publish (database URL, API token)."""
    src, _ = street
    settings = Settings(home=tmp_path / "home")
    shutil.copytree(src, settings.home_abs)
    shutil.copytree(sim_dir_for(src), settings.sim_dir_abs)
    return settings.ensure_dirs().connected(connection_env(settings.sim_dir_abs))


@contextlib.contextmanager
def faulty_api(settings: Settings) -> Iterator[Settings]:
    """The settings with the simulated APIs served, with faults and slow answers."""
    with running_server(
        settings.sim_dir_abs, fault_rate=0.2, slow_rate=0.05, slow_seconds=0.05
    ) as url:
        yield settings.model_copy(update={"dept_api_url": url})


@pytest.fixture
def api(street: tuple[Path, dict], tmp_path: Path) -> Iterator[Settings]:
    with faulty_api(fresh_home(street, tmp_path)) as settings:
        yield settings


@pytest.fixture(scope="module")
def ingested(
    street: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory, cat: Catalogue
) -> Iterator[Settings]:
    """A copy of the street with every dataset ingested once through the faulty APIs,
    which still serve it (a rerun asks them again)."""
    with faulty_api(fresh_home(street, tmp_path_factory.mktemp("ingested"))) as settings:
        ingest_all(settings, cat)
        yield settings


def by_kind(cat: Catalogue, kind: ConnectorKind, encoding: str | None = None):
    for dept, ds in cat.datasets():
        if ds.delivery.kind is kind and (encoding is None or ds.delivery.encoding == encoding):
            return dept.code, ds
    raise LookupError(kind)


def ingest_all(settings: Settings, cat: Catalogue) -> dict[tuple[str, str], tuple]:
    out = {}
    with open_lake(settings) as con:
        from pipelines.ingest.ledger import ensure_ledger

        ensure_ledger(con)
        for dept, ds in cat.datasets():
            landed, accounts = ingest_dataset(con, settings, dept.code, ds, policy=FAST)
            out[(dept.code, ds.code)] = (landed, accounts)
    return out


def accounts(settings: Settings) -> list[tuple]:
    with open_lake(settings, read_only=True) as con:
        return con.execute(
            "SELECT dept, dataset, status, reason, rows_read, rows_loaded, rows_quarantined "
            "FROM landing.delivery_accounts ORDER BY dept, dataset, delivery_id"
        ).fetchall()


def raw_counts(settings: Settings) -> dict[str, int]:
    with open_lake(settings, read_only=True) as con:
        tables = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name='lake' "
            "AND schema_name='raw'"
        ).fetchall()
        return {t: con.execute(f'SELECT count(*) FROM raw."{t}"').fetchone()[0] for (t,) in tables}


def test_every_department_ingests_and_balances_against_the_simulator(
    ingested: Settings, cat: Catalogue, street: tuple[Path, dict]
) -> None:
    rows = accounts(ingested)
    assert rows, "nothing was accounted"
    failed = [r for r in rows if r[2] != "loaded"]
    assert failed == []
    assert all(r[4] == r[5] + r[6] for r in rows)
    read: dict[tuple[str, str], int] = {}
    for dept, ds, _, _, n, _, _ in rows:
        read[(dept, ds)] = read.get((dept, ds), 0) + n
    expected = manifest_rows(street[1])
    assert {k: v for k, v in expected.items() if v} == read
    assert {d for d, _ in read} == set(cat.departments)
    counts = raw_counts(ingested)
    assert len(counts) == len(cat.datasets())
    with open_lake(ingested, read_only=True) as con:
        lineage = con.execute(
            "SELECT count(*) FILTER (WHERE _delivery_id IS NULL OR _source_row IS NULL) "
            "FROM raw.gaj__registered_residents"
        ).fetchone()[0]
    assert lineage == 0


def test_rerun_adds_nothing(ingested: Settings, cat: Catalogue) -> None:
    before_counts, before_accounts = raw_counts(ingested), accounts(ingested)
    with open_lake(ingested, read_only=True) as con:
        deliveries = con.execute("SELECT count(*) FROM landing.deliveries").fetchone()[0]
    second = ingest_all(ingested, cat)
    assert all(not landed.landed and not accts for landed, accts in second.values())
    assert raw_counts(ingested) == before_counts
    assert accounts(ingested) == before_accounts
    with open_lake(ingested, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM landing.deliveries").fetchone()[0] == deliveries


def test_landing_keeps_bytes_and_hash(street: tuple[Path, dict], tmp_path: Path, cat: Catalogue):
    settings = fresh_home(street, tmp_path)
    dept, ds = by_kind(cat, ConnectorKind.csv, "gbk")
    import hashlib

    from pipelines.ingest.landing import open_landed

    delivered = {  # the inbox files, removed once landed
        hashlib.sha256(p.read_bytes()).hexdigest(): p.read_bytes()
        for p in (settings.inbox_dir / dept).iterdir()
    }
    with open_lake(settings) as con:
        from pipelines.ingest.ledger import ensure_ledger

        ensure_ledger(con)
        landed, _ = ingest_dataset(con, settings, dept, ds)
        rows = con.execute(
            "SELECT source, landed_path, sha256, size_bytes FROM landing.deliveries"
        ).fetchall()
    assert landed.landed
    for source, landed_path, sha, size in rows:
        assert not Path(source).exists()
        assert Path(landed_path).read_bytes() != delivered[sha]  # encrypted at rest
        with open_landed(settings, landed_path) as fh:
            data = fh.read()
        assert data == delivered[sha]
        assert hashlib.sha256(data).hexdigest() == sha and len(data) == size


def _only(settings: Settings, dept: str, ds: Dataset, **kw):
    with open_lake(settings) as con:
        from pipelines.ingest.ledger import ensure_ledger

        ensure_ledger(con)
        return ingest_dataset(con, settings, dept, ds, **kw)


def _inbox_file(settings: Settings, dept: str, ds: Dataset) -> Path:
    return sorted((settings.inbox_dir / dept).glob(ds.delivery.pattern or ""))[0]


@pytest.mark.parametrize(
    ("case", "kind", "encoding"),
    [
        ("wrong encoding", ConnectorKind.csv, "gbk"),
        ("missing sheet", ConnectorKind.excel, None),
    ],
)
def test_unreadable_delivery_fails_whole_with_a_reason(
    case: str,
    kind: ConnectorKind,
    encoding: str | None,
    street: tuple[Path, dict],
    tmp_path: Path,
    cat: Catalogue,
) -> None:
    settings = fresh_home(street, tmp_path)
    dept, ds = by_kind(cat, kind, encoding)
    path = _inbox_file(settings, dept, ds)
    if case == "wrong encoding":
        faults.wrong_encoding(path, declared="gbk")
        expect = "wrong encoding at byte"
    else:
        faults.drop_sheet(path, ds.delivery.sheet or "")
        expect = f"sheet '{ds.delivery.sheet}' is missing"
    _, accts = _only(settings, dept, ds)
    bad = [a for a in accts if a.file_name == path.name]
    assert len(bad) == 1 and bad[0].status == "failed"
    assert expect in (bad[0].reason or "")
    assert path.name in (bad[0].reason or "")
    assert bad[0].rows_loaded == 0
    with open_lake(settings) as con:
        table = ensure_raw_table(con, dept, ds)  # absent when no delivery loaded: empty
        in_raw = dict(
            con.execute(f'SELECT _delivery_id, count(*) FROM raw."{table}" GROUP BY ALL').fetchall()
        )
    # raw holds exactly the loaded deliveries' rows, none of the failed one
    assert in_raw == {a.delivery_id: a.rows_loaded for a in accts if a.rows_loaded}
    assert bad[0].delivery_id not in in_raw


def test_truncated_csv_quarantines_its_cut_last_row(
    street: tuple[Path, dict], tmp_path: Path, cat: Catalogue
) -> None:
    """Issue 9: a CSV cut mid-row loads every whole row; the cut one is quarantined."""
    settings = fresh_home(street, tmp_path)
    dept, ds = by_kind(cat, ConnectorKind.csv, None)
    path = _inbox_file(settings, dept, ds)
    faults.truncate_csv(path)
    last_line = path.read_bytes().count(b"\n") + 1
    _, accts = _only(settings, dept, ds)
    [acct] = [a for a in accts if a.file_name == path.name]
    assert acct.status == "loaded" and acct.balances and acct.rows_loaded > 0
    with open_lake(settings, read_only=True) as con:
        cut = con.execute(
            "SELECT source_row, check_name, reason FROM quarantine.rows "
            "WHERE delivery_id = ? AND check_name = 'truncated'",
            [acct.delivery_id],
        ).fetchall()
    assert len(cut) == 1 and cut[0][0] == last_line and "possibly truncated" in cut[0][2]


def test_broken_jsonl_line_is_one_quarantined_row(
    street: tuple[Path, dict], tmp_path: Path, cat: Catalogue
) -> None:
    settings = fresh_home(street, tmp_path)
    dept, ds = by_kind(cat, ConnectorKind.jsonl)
    path = _inbox_file(settings, dept, ds)
    before_q = sum(1 for ln in path.read_text("utf-8").splitlines() if ln.strip())
    faults.break_jsonl_line(path, line_no=2)
    _, accts = _only(settings, dept, ds)
    acct = next(a for a in accts if a.file_name == path.name)
    assert acct.status == "loaded" and acct.balances
    assert acct.rows_read == before_q
    with open_lake(settings, read_only=True) as con:
        q = con.execute(
            "SELECT file_name, source_row, check_name, reason FROM quarantine.rows "
            "WHERE delivery_id = ? AND source_row = 2",
            [acct.delivery_id],
        ).fetchall()
    [(file_name, source_row, check_name, reason)] = q
    assert (file_name, source_row, check_name) == (path.name, 2, "json")
    assert "broken JSON line" in reason


def test_http_source_that_stays_down_is_a_failed_delivery(
    street: tuple[Path, dict], tmp_path: Path, cat: Catalogue
) -> None:
    settings = fresh_home(street, tmp_path)
    dept, ds = by_kind(cat, ConnectorKind.http_api)
    with running_server(settings.sim_dir_abs, down=True) as url:
        s = settings.model_copy(update={"dept_api_url": url})
        landed, accts = _only(s, dept, ds, policy=RetryPolicy(3, 0.01, 0.02, 2))
    assert landed.failed and not landed.landed and accts == []
    rows = [r for r in accounts(s) if r[1] == ds.code]
    assert len(rows) == 1 and rows[0][2] == "failed"
    assert "stayed unavailable on page 1 after 3 attempts" in rows[0][3]
    assert "HTTP 503" in rows[0][3]


def by_dialect(cat: Catalogue) -> list[tuple[str, Dataset]]:
    """An http_api dataset of each paging protocol the catalogue's departments speak."""
    from pipelines.connectors.http_api import Paging

    first: dict = {}
    for dept, ds in cat.datasets():
        if ds.delivery.kind is ConnectorKind.http_api:
            first.setdefault(Paging.of(ds.delivery), (dept.code, ds))
    return list(first.values())


def test_the_street_speaks_the_reference_protocol_and_a_platform_s(cat: Catalogue) -> None:
    """The shipped departments' APIs page in two dialects (the social security bureau's is
    the reference protocol, the hotline platform's a POST with PageHelper paging and an
    envelope), so the main job and these tests pull both."""
    dialects = {ds.delivery.method or "get": dept for dept, ds in by_dialect(cat)}
    assert dialects == {"get": "rsj", "post": "rx"}


@pytest.mark.parametrize("dialect", [0, 1], ids=["reference", "platform"])
def test_http_pull_survives_faults_and_resumes_after_interruption(
    api: Settings, cat: Catalogue, street: tuple[Path, dict], dialect: int
) -> None:
    dept, ds = by_dialect(cat)[dialect]
    total = manifest_rows(street[1])[(dept, ds.code)]
    if total <= 2 * (ds.delivery.page_size or 0):  # a small dataset: pages of a few records
        smaller = ds.delivery.model_copy(update={"page_size": total // 4})
        ds = ds.model_copy(update={"delivery": smaller})
    assert total > 2 * (ds.delivery.page_size or 0) > 0, "need several pages for this test"
    from catalog.errors import DeliveryError
    from pipelines.connectors.http_api import pull_http

    with pytest.raises(DeliveryError, match="resumes there"):
        pull_http(api, dept, ds, None, policy=FAST, max_pages=2)
    from masking.stream import is_encrypted
    from pipelines.ingest.landing import open_landed

    partial = sorted(api.state_dir.glob(f"{dept}__{ds.code}.pull.*.enc"))  # a file a page
    assert len(partial) == 2 and all(is_encrypted(p.read_bytes()) for p in partial)
    lines = 0
    for page in partial:
        with open_landed(api, page) as fh:
            lines += fh.read().count(b"\n")
    assert lines == 2 * (ds.delivery.page_size or 0)
    landed, accts = _only(api, dept, ds, policy=FAST)  # resumes at page 3
    assert len(landed.landed) == 1 and accts[0].rows_read == total
    with open_landed(api, landed.landed[0].landed_path) as fh:
        resumed = fh.read()
    elsewhere = api.model_copy(update={"home": api.home / "other"})
    clean = pull_http(elsewhere, dept, ds, None, policy=FAST)
    assert resumed == clean.data  # same records, same order: nothing lost, nothing twice
    assert not any(p.exists() for p in partial)
    assert not list(api.state_dir.glob(f"{dept}__{ds.code}.pull.*"))


def test_database_pull_is_incremental(
    street: tuple[Path, dict], tmp_path: Path, cat: Catalogue
) -> None:
    settings = fresh_home(street, tmp_path)
    dept, ds = by_kind(cat, ConnectorKind.sql_db)
    first, accts = _only(settings, dept, ds)
    assert len(first.landed) == 1 and accts[0].rows_loaded > 0
    again, accts2 = _only(settings, dept, ds)
    assert again.landed == [] and accts2 == []
    db = settings.db_url(dept).removeprefix("sqlite:")
    cursor_col = ds.delivery.cursor_column
    with sqlite3.connect(db) as conn:
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({ds.delivery.table})")]
        row = conn.execute(f"SELECT * FROM {ds.delivery.table} LIMIT 1").fetchone()
        new = dict(zip(cols, row, strict=True))
        new[cursor_col] = "2099-01-01 00:00:00"
        placeholders = ",".join("?" * len(cols))
        conn.execute(f"INSERT INTO {ds.delivery.table} VALUES ({placeholders})", list(new.values()))
    third, accts3 = _only(settings, dept, ds)
    assert len(third.landed) == 1 and accts3[0].rows_read == 1


def test_a_delivery_sent_compressed_lands_and_loads_as_sent_plain(
    street: tuple[Path, dict], tmp_path: Path, cat: Catalogue
) -> None:
    # an IoT platform's JSON Lines as .jsonl.gz, a ledger as .csv.zip: landed as delivered
    # (encrypted, under the compressed bytes' SHA-256), read unpacked, every row accounted
    import gzip
    import zipfile

    plain_home = fresh_home(street, tmp_path / "plain")
    packed_home = fresh_home(street, tmp_path / "packed")
    for kind, pack in ((ConnectorKind.jsonl, "gz"), (ConnectorKind.csv, "zip")):
        dept, ds = by_kind(cat, kind)
        src = _inbox_file(packed_home, dept, ds)
        packed = src.with_name(src.name + "." + pack)
        if pack == "gz":
            packed.write_bytes(gzip.compress(src.read_bytes(), mtime=0))
        else:
            with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.write(src, src.name)
        src.unlink()
        _, plain = _only(plain_home, dept, ds)
        _, sent = _only(packed_home, dept, ds)
        [want] = [a for a in plain if a.file_name == src.name]
        [got] = [a for a in sent if a.file_name == packed.name]
        assert got.status == want.status == "loaded" and got.balances
        counts = ("rows_read", "rows_loaded", "rows_quarantined")
        assert [getattr(got, c) for c in counts] == [getattr(want, c) for c in counts]
        assert got.delivery_id != want.delivery_id  # another file: its own SHA-256


def test_what_a_file_said_against_the_catalogue_is_shown_to_the_officer(
    street: tuple[Path, dict], tmp_path: Path, cat: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a GBK export now written in UTF-8 and sent gzip-compressed: read, and the notes reach
    # the run's report and `streethub deliveries list`, not only the ledger
    import datetime as dt
    import gzip

    from rich.console import Console

    from pipelines.deliveries import list_deliveries
    from pipelines.summary import print_run_report, run_report

    settings = fresh_home(street, tmp_path)
    dept, ds = by_kind(cat, ConnectorKind.csv, "gbk")
    src = _inbox_file(settings, dept, ds)
    sent = src.with_name(src.name + ".gz")
    sent.write_bytes(gzip.compress(src.read_bytes().decode("gb18030").encode("utf-8"), mtime=0))
    src.unlink()
    started = dt.datetime.now(dt.UTC)
    _, accts = _only(settings, dept, ds)
    [acct] = [a for a in accts if a.file_name == sent.name]
    assert acct.status == "loaded" and acct.rows_quarantined < acct.rows_read
    with open_lake(settings, read_only=True) as con:
        rows = list_deliveries(con)
    [row] = [r for r in rows if r.file_name == sent.name]
    notes = [
        "the file is gzip-compressed",
        "the file is UTF-8 (its header reads so), the catalogue says gbk",
    ]
    assert row.notes == "; ".join(notes)
    console = Console(record=True, width=200)
    print_run_report(console, run_report(rows, started))
    shown = console.export_text()
    assert "where the file said otherwise than the catalogue" in shown
    assert all(note in shown for note in notes) and sent.name in shown
    console = Console(record=True, width=200)
    print_run_report(console, run_report(rows, dt.datetime.now(dt.UTC)))  # a later run
    assert "said otherwise" not in console.export_text()
    # and in `streethub deliveries list`, beside the failures' reasons
    from typer.testing import CliRunner

    from pipelines.cli import app

    monkeypatch.setenv("STREETHUB_HOME", str(settings.home_abs))
    monkeypatch.setenv("COLUMNS", "200")
    listed = CliRunner().invoke(app, ["deliveries", "list", "--dept", dept]).output
    assert "read as the file says, not as the catalogue does:" in listed
    assert all(note in listed for note in notes)
