"""The service's state (issue 14 item 8): SQLite in WAL mode under the home by default, the
database a URL names otherwise (PostgreSQL: the same code), every concern's tables made,
and the share settings' bounds."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from catalog.settings import Settings
from share_api import db
from share_api.principals import authenticate_token, create_org, get_org
from share_api.service import Service


def test_default_state_is_sqlite_in_wal_under_the_home(service: Service, share_db_url):
    if share_db_url:  # the same tests on PostgreSQL: the URL's database is used
        assert service.engine.dialect.name == "postgresql"
        return
    path = service.settings.home_abs / "share" / "share.db"
    assert service.engine.url.database == str(path) and path.exists()
    with service.engine.connect() as con:
        assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert con.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_every_concerns_tables_are_made(service: Service):
    names = set(sa.inspect(service.engine).get_table_names())
    for module in db.TABLE_MODULES:
        __import__(module)
    declared = set(db.metadata.tables)
    assert declared <= names
    assert {"orgs", "users", "user_roles", "tokens", "bootstrap"} <= declared


def test_a_url_names_another_database(share_settings: Settings, tmp_path: Path, share_db_url):
    url = share_db_url or f"sqlite:///{tmp_path / 'elsewhere' / 'share.db'}"
    settings = Settings(home=share_settings.home, share_db_url=url)
    service = Service.open(settings)
    try:
        create_org(service, "app_x", "a front end", "frontend")
        assert get_org(service, "app_x")["kind"] == "frontend"
    finally:
        service.close()
    if not share_db_url:
        assert (tmp_path / "elsewhere" / "share.db").exists()
        assert not (share_settings.home_abs / "share" / "share.db").exists()


def test_times_come_back_aware(service: Service):
    create_org(service, "app_y", "a front end", "frontend")
    created = get_org(service, "app_y")["created_at"]
    assert db.aware(created).tzinfo is not None
    assert abs((db.aware(created) - db.utc_now()).total_seconds()) < 60


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("share_audit_retention_days", 179),
        ("share_max_body_bytes", 0),
        ("share_port", 70_000),
        ("share_token_ttl_hours", 0),
        ("share_answer_working_days", 0),
    ],
)
def test_share_settings_refuse_values_out_of_bounds(tmp_path: Path, name: str, value):
    with pytest.raises(ValidationError) as refused:
        Settings(home=tmp_path, **{name: value})
    assert name in str(refused.value)


def test_share_settings_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREETHUB_SHARE_PORT", "9999")
    monkeypatch.setenv("STREETHUB_SHARE_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("STREETHUB_SHARE_DB_URL", "postgresql+psycopg://u@db/share")
    settings = Settings(home=tmp_path)
    assert (settings.share_port, settings.share_max_body_bytes) == (9999, 2048)
    assert settings.share_db_url == "postgresql+psycopg://u@db/share"
    assert settings.share_host == "127.0.0.1"


def test_concurrent_sign_ins_reuse_pooled_connections(service: Service, people, share_db_url):
    """As many request threads as the server runs (anyio's 40) signing in at once all
    succeed, and on SQLite reuse the pool's connections instead of opening (and closing)
    one per request."""
    person = people.make("wjw", "requester")
    opened: list[int] = []
    sa.event.listen(service.engine, "connect", lambda *_: opened.append(1))
    failures: list[BaseException] = []

    def sign_in() -> None:
        try:
            for _ in range(20):
                assert authenticate_token(service, person.token).user_id == person.user_id
        except BaseException as exc:  # reported by the test
            failures.append(exc)

    threads = [threading.Thread(target=sign_in) for _ in range(db.POOL_SIZE)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    if not share_db_url:
        assert len(opened) <= db.POOL_SIZE


def test_a_kept_thing_may_be_made_from_another(service):
    """Service.kept: a maker asking for another kept thing (the catalogue's lookup table is
    made from its entries) gets it instead of waiting on itself; each is made once."""
    import threading

    made: list[str] = []

    def entries():
        made.append("entries")
        return [1, 2]

    def by_ref():
        made.append("by_ref")
        return {n: n for n in service.kept("test.entries", entries)}

    done = threading.Event()
    worker = threading.Thread(
        target=lambda: (service.kept("test.by_ref", by_ref), done.set()), daemon=True
    )
    worker.start()
    assert done.wait(10), "kept() waited on itself"
    assert service.kept("test.by_ref", by_ref) == {1: 1, 2: 2}
    assert made == ["by_ref", "entries"]
