"""Fixtures of every share-service test: a copy of the session's mart street, a
:class:`Service` on it, the app, a real uvicorn server, and people with roles and tokens.

- ``share_settings``: the ``mart_street`` home copied into the test's tmp folder
  (``STREETHUB_HOME`` points at it): the service's state, its audit log and any lake write
  go into the copy, never into the session street. No main job runs here. The service's
  database is SQLite under the copy, or a fresh PostgreSQL database per test when
  ``STREETHUB_TEST_SHARE_DB_URL`` names a server (``share_db_url``).
- ``service``: :class:`Service` opened on the copy, every catalogue department an
  organisation; closed after the test.
- ``people``: :class:`People` — ``people.make("wjw", "reviewer")`` makes a person of an
  organisation (made if missing) with roles and a live token: a :class:`Person` with
  ``.token``, ``.headers``, ``.principal``.
- ``app`` / ``api``: the FastAPI app on ``service`` and an in-process ``TestClient``.
- ``server``: the app served by a real uvicorn on a free port of 127.0.0.1, in a thread:
  :class:`LiveServer` with ``.url`` and ``.client(person)`` (an ``httpx.Client``).
- ``analyst_street`` / ``analyst_db``: an analysts' organisation (:data:`ANALYST_ORG`,
  kind ``analyst``) with standing grants on :data:`ANALYST_MARTS`, one resident of
  ``elderly_care`` who declined its consent category for analysts, and its database built
  (``share_api.analysts.build``): :class:`AnalystStreet`; ``analyst_db`` is the file's path.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from catalog.settings import Settings
from pipelines.connectors.http_api import tls_context
from share_api.deps import Principal
from share_api.principals import (
    IssuedToken,
    create_org,
    create_user,
    get_org,
    issue_token,
    principal_for_user,
    sync_departments,
)
from share_api.routes.data import CLOCK_THREAD
from share_api.service import Service
from tests.mart_street import MartStreet
from tests.streets import copy_home


@dataclass
class Person:
    """A person made for a test: who they are and a live token."""

    user_id: str
    org: str
    roles: tuple[str, ...]
    issued: IssuedToken
    principal: Principal

    @property
    def token(self) -> str:
        return self.issued.token

    @property
    def token_id(self) -> str:
        return self.issued.token_id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def actor(self) -> str:
        return self.principal.actor


@dataclass
class People:
    """Makes organisations and people with roles and tokens on a service."""

    service: Service
    made: dict[str, Person] = field(default_factory=dict)

    def org(self, code: str, kind: str = "department", name: str | None = None) -> str:
        """The organisation ``code`` (made with ``kind`` if missing)."""
        if get_org(self.service, code) is None:
            create_org(self.service, code, name or f"test org {code}", kind)
        return code

    def make(
        self,
        org: str,
        *roles: str,
        kind: str = "department",
        user_id: str | None = None,
        ttl: dt.timedelta | None = None,
    ) -> Person:
        """A new person of ``org`` with ``roles`` and a token (``ttl``: its life)."""
        self.org(org, kind)
        uid = create_user(
            self.service,
            org,
            name=user_id or f"{org} {'+'.join(roles) or 'nobody'}",
            roles=roles,
            user_id=user_id,
        )
        issued = issue_token(self.service, uid, ttl=ttl, label="test")
        principal = principal_for_user(self.service, uid, issued.token_id)
        assert principal is not None
        person = Person(uid, org, tuple(roles), issued, principal)
        self.made[uid] = person
        return person

    def token_for(self, person: Person, ttl: dt.timedelta | None = None) -> IssuedToken:
        """Another token of the same person."""
        return issue_token(self.service, person.user_id, ttl=ttl, label="test")


# one TLS context for the clients of the session's servers, the pulls' own: httpx makes a
# verifying context for each client it is not handed one (certifi's roots, ~30 ms a client)
TLS = tls_context()


def lake_clock_threads() -> set[threading.Thread]:
    """The share services' lake clocks running in this process (their threads)."""
    return {t for t in threading.enumerate() if t.name == CLOCK_THREAD}


@dataclass
class LiveServer:
    """A uvicorn server running the app in a thread."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, who: Person | str | None = None, **kwargs) -> httpx.Client:
        """An HTTP client of the server, signed in as ``who`` (a person or a raw token)."""
        headers = dict(kwargs.pop("headers", {}))
        if isinstance(who, Person):
            headers.update(who.headers)
        elif isinstance(who, str):
            headers["Authorization"] = f"Bearer {who}"
        kwargs.setdefault("verify", TLS)
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)


@pytest.fixture
def share_db_url() -> Iterator[str | None]:
    """The service's database for this test: None (SQLite under the copied home), or with
    ``STREETHUB_TEST_SHARE_DB_URL`` (a PostgreSQL server whose user may create databases)
    a fresh database made for the test and dropped after it: the same tests on both."""
    server_url = os.environ.get("STREETHUB_TEST_SHARE_DB_URL")
    if not server_url:
        yield None
        return
    import sqlalchemy as sa

    name = f"share_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as con:
        con.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as con:
            con.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def share_settings(
    mart_street: MartStreet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    share_db_url: str | None,
) -> Settings:
    """The session's mart street copied for this test (its settings, the environment's
    home pointing at it; the share database ``share_db_url``)."""
    settings = copy_home(mart_street.settings.home, tmp_path)
    monkeypatch.setenv("STREETHUB_HOME", str(settings.home))
    if share_db_url:
        monkeypatch.setenv("STREETHUB_SHARE_DB_URL", share_db_url)
    else:
        monkeypatch.delenv("STREETHUB_SHARE_DB_URL", raising=False)
    return Settings(home=settings.home)


@pytest.fixture
def service(share_settings: Settings) -> Iterator[Service]:
    svc = Service.open(share_settings)
    sync_departments(svc)
    yield svc
    svc.close()


@pytest.fixture
def people(service: Service) -> People:
    return People(service)


@pytest.fixture
def app(service: Service) -> FastAPI:
    from share_api.app import create_app

    return create_app(service=service)


@pytest.fixture
def api(app: FastAPI) -> Iterator[TestClient]:
    """The app in process (no socket): fast for route tests."""
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        yield client


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening socket on a free port (handed to uvicorn: no race for the port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


def serve_in_thread(app: FastAPI, *, startup_timeout: float = 30.0) -> LiveServer:
    """Run ``app`` with uvicorn on a free port of 127.0.0.1 in a daemon thread."""
    sock = free_socket()
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        proxy_headers=False,  # as `streethub serve`: the client address is the socket's
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the share server did not start")
        time.sleep(0.02)
    return LiveServer(f"http://{host}:{port}", server, thread)


def stop_server(live: LiveServer) -> None:
    live.server.should_exit = True
    live.thread.join(timeout=30)


@pytest.fixture
def server(app: FastAPI) -> Iterator[LiveServer]:
    live = serve_in_thread(app)
    yield live
    stop_server(live)


# -- analysts (issue 17) ----------------------------------------------------------------------

ANALYST_ORG = "ana"
ANALYST_MARTS = ("elderly_care", "appeal_sla", "demand_heatmap")
OPTED_OUT_MART = "elderly_care"  # a mart with a subject column: one resident declines it


@dataclass
class AnalystStreet:
    """An analysts' organisation, its grants, a resident who declined, its database."""

    service: Service
    org: str
    grants: dict[str, str]  # mart → grant id
    opted_out: str  # the hub pseudonym of the resident who declined (as in the lake)
    path: Path  # the built analyst database


@pytest.fixture
def analyst_street(service: Service, people: People) -> AnalystStreet:
    from catalog.marts import load_marts
    from lakehouse.lake import open_lake
    from share_api.analysts.build import build_analyst_db
    from share_api.consent import record_choice
    from share_api.grants import create_grant

    people.org(ANALYST_ORG, "analyst", "数据分析组")
    marts = load_marts()
    grants = {
        mart: create_grant(
            service,
            grantee_org=ANALYST_ORG,
            resource=f"marts.{mart}",
            columns=marts[mart].column_names,
            row_filter=None,
            masking={},
            expires_at=None,
            request_id=None,
            standing=True,
        )
        for mart in ANALYST_MARTS
    }
    mart = marts[OPTED_OUT_MART]
    with open_lake(service.settings, read_only=True) as con:
        (pid,) = con.execute(
            f'SELECT "{mart.subject_column}" FROM marts."{mart.name}" '
            f'ORDER BY "{mart.subject_column}" LIMIT 1'
        ).fetchone()
    record_choice(service, pseudonym=pid, category=mart.consent_category.value,
                  recipient_kind="analyst", choice="declined", channel="counter",
                  actor="test/clerk")  # fmt: skip
    path = build_analyst_db(service.settings, ANALYST_ORG, service=service)
    return AnalystStreet(service, ANALYST_ORG, grants, pid, path)


@pytest.fixture
def analyst_db(analyst_street: AnalystStreet) -> Path:
    """A built analyst database (``analyst_street``'s) on a copy of the mart street."""
    return analyst_street.path
