"""The one settings object (environment variables with the ``STREETHUB_`` prefix).

It lives in ``catalog/`` because every other folder may import ``catalog``;
nothing else of ours is imported here. Embedded default: everything under
``STREETHUB_HOME`` (``./.streethub``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

CATALOG_DIR = Path(__file__).parent / "departments"
PREFIX = "STREETHUB_"  # Settings' env_prefix (pydantic-settings matches it in any case)
API_URL_ENV = "STREETHUB_DEPT_API_URL"
API_TOKEN_ENV = "STREETHUB_DEPT_API_TOKEN"
DB_URL_ENV = re.compile(r"STREETHUB_([A-Z][A-Z0-9]*)_DB_URL")


def db_urls_in(env: Mapping[str, str]) -> dict[str, str]:
    """Department database URLs in an environment: ``STREETHUB_<DEPT>_DB_URL`` → by code."""
    return _per_department(DB_URL_ENV, env)


# a department's own API (its base URL and token), where its systems are not the shared one
DEPT_API_URL_ENV = re.compile(r"STREETHUB_([A-Z][A-Z0-9]*)_API_URL")
DEPT_API_TOKEN_ENV = re.compile(r"STREETHUB_([A-Z][A-Z0-9]*)_API_TOKEN")


def api_urls_in(env: Mapping[str, str]) -> dict[str, str]:
    """Department API base URLs in an environment: ``STREETHUB_<DEPT>_API_URL`` → by code."""
    return _per_department(DEPT_API_URL_ENV, env)


def api_tokens_in(env: Mapping[str, str]) -> dict[str, str]:
    """Department API tokens in an environment: ``STREETHUB_<DEPT>_API_TOKEN`` → by code."""
    return _per_department(DEPT_API_TOKEN_ENV, env)


def _per_department(pattern: re.Pattern[str], env: Mapping[str, str]) -> dict[str, str]:
    found = ((pattern.fullmatch(k), v) for k, v in env.items())
    return {m.group(1).lower(): v for m, v in found if m and v and m.group(1) != "DEPT"}


STREET_FILE = Path(__file__).parent / "street.yaml"

# a password in a URL's user info (scheme://user:password@host), and the value of a secret's
# keyword in a libpq connection string (DuckLake's PostgreSQL catalogue: "dbname=… password=…")
# or a query string (…?access_token=…)
_URL_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/\s]*(?=@[^@/\s]*(?:[/?#\s]|$))"
)
_KEY_SECRET = re.compile(
    r"(?i)(?P<head>(?<![A-Za-z0-9_])(?:[a-z_]*(?:password|passwd|pwd|token|secret)|api_?key)"
    r"\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&;]*)"
)
SHOWN_SECRET = "***"
# the settings holding a connection string or URL (a dict: by department code)
_URL_FIELDS = frozenset({
    "lake_metadata_url", "dept_api_url", "api_urls", "db_urls", "share_db_url", "dagster_ui_url",
    "model_registry_url",
})  # fmt: skip


def shown_url(url: str) -> str:
    """A connection string or URL as it may be shown (a log line, an error, a repr): the
    password of its user info and the value of a secret's keyword (``password=``,
    ``…token=``, ``secret=``, ``api_key=``) replaced by ``***``; the rest as it is."""
    url = _URL_PASSWORD.sub(lambda m: m["head"] + SHOWN_SECRET, url)
    return _KEY_SECRET.sub(lambda m: m["head"] + SHOWN_SECRET, url)


class Settings(BaseSettings):
    """Where things live and how the hub reaches its sources."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    def __repr_args__(self):
        """The repr's fields, connection strings as :func:`shown_url` shows them (the
        tokens' and the PIN's fields are left out altogether)."""
        for name, value in super().__repr_args__():
            if name in _URL_FIELDS and isinstance(value, dict):
                value = {k: shown_url(v) for k, v in value.items()}
            elif name in _URL_FIELDS and isinstance(value, str):
                value = shown_url(value)
            yield name, value

    home: Path = Field(default=Path(".streethub"), description="root of all local state")
    catalog_dir: Path = Field(default=CATALOG_DIR, description="folder of department YAMLs")
    street_file: Path = Field(
        default=STREET_FILE, description="the street: code, extent, communities"
    )
    lake_metadata_url: str | None = Field(
        default=None,
        description="DuckLake metadata catalogue; default a SQLite file under home/lake",
    )
    lake_data_path: Path | None = Field(default=None, description="Parquet data folder")
    lake_busy_timeout_ms: int = 30_000
    lake_memory_limit: str = Field(
        default="512MB",
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$",
        description="most memory one process's DuckDB may hold (the rest spills to disk)",
    )
    lake_lock_timeout_s: float = 600.0
    lake_threads: int = Field(
        default=1,
        ge=1,
        description=(
            "DuckDB worker threads of the lake's connection: a run is thousands of small "
            "statements, and each woke idle workers that spun (2 threads: +20-50 % CPU)"
        ),
    )
    dept_api_url: str = Field(
        default="http://127.0.0.1:8765", description="base URL of the departments' HTTP APIs"
    )
    dept_api_token: str | None = Field(
        default=None, description="bearer token for the departments' APIs", repr=False
    )
    api_urls: dict[str, str] = Field(
        default_factory=lambda: api_urls_in(os.environ),
        description="a department's own API base URL by department code, from "
        "STREETHUB_<DEPT>_API_URL (else dept_api_url)",
    )
    api_tokens: dict[str, str] = Field(
        default_factory=lambda: api_tokens_in(os.environ),
        description="a department's own API token by department code, from "
        "STREETHUB_<DEPT>_API_TOKEN (else dept_api_token)",
        repr=False,
    )
    db_urls: dict[str, str] = Field(
        default_factory=lambda: db_urls_in(os.environ),
        description="department database URLs by department code, from STREETHUB_<DEPT>_DB_URL",
    )
    k_anonymity: int = Field(
        default=5, ge=2, description="k that published person-level tables must reach"
    )
    k_max_suppression: float = Field(
        default=0.05, ge=0, le=0.5, description="share of rows k-anonymity may drop"
    )
    # deliveries as they really arrive (hostile, half-written, huge): bounds come from here
    settle_seconds: float = Field(
        default=2.0, ge=0, description="a file lands only after its size and mtime are this stable"
    )
    max_json_depth: int = Field(
        default=64, ge=2, description="deepest nesting a JSON record may have before it is refused"
    )
    max_record_bytes: int = Field(
        default=16 * 1024 * 1024,
        gt=0,
        description="largest delivered record (CSV row, JSON line or object); larger is quarantined",
    )
    max_file_bytes: int = Field(
        default=8 * 1024**3, gt=0, description="largest delivery accepted for landing"
    )
    xlsx_max_uncompressed_bytes: int = Field(
        default=256 * 1024 * 1024,
        gt=0,
        description=(
            "an xlsx whose members declare more than this in all, or an xls larger, is "
            "refused unread"
        ),
    )
    xlsx_max_members: int = Field(default=2_000, gt=0, description="members an xlsx may hold")
    kill_at: str | None = Field(
        default=None,
        description="testing only: the named kill point at which the process SIGKILLs itself",
    )
    sim_residents: int = Field(default=20_000, description="residents the simulator makes")
    sim_seed: int = 7
    sim_api_fault_rate: float = Field(
        default=0.05, ge=0, le=1, description="share of simulated API requests answered 429/503"
    )
    sim_days: int = 3
    sim_history_days: int = Field(
        default=365,
        ge=0,
        description=(
            "days of history the simulator delivers for the need model (departments/NEEDS.md: "
            "door events, health checks, 12345 calls, the four need outcomes); the model trains on "
            "about a year; 0: the last sim_days only, no model trained"
        ),
    )
    sim_auto: bool = Field(
        default=True,
        description=(
            "the main job simulates a street when the simulator's folder holds none "
            "(a newcomer's first run); a hub with real departments sets false"
        ),
    )
    sim_dir: Path | None = Field(
        default=None,
        description=(
            "the simulated departments' folder (systems and truth), the outside world; "
            "default: beside the home, <home>.departments"
        ),
    )

    # custody (keys apart from the data, suites, audit witness, retention)
    cipher_suite: Literal["intl", "gm"] = Field(
        default="intl",
        description=(
            "algorithms of a new deployment: intl (AES-256-GCM, SHA-256, Ed25519) or gm "
            "(国密: SM4-GCM, SM3, SM2); fixed at the first run, changed only by a re-key"
        ),
    )
    key_provider: Literal["auto", "env", "file", "pkcs11"] = Field(
        default="auto",
        description=(
            "where the master key lives: env (STREETHUB_MASTER_KEY), file (key_file, outside "
            "the home), pkcs11 (a hardware security module); auto: env when that variable "
            "is set, else file"
        ),
    )
    key_file: Path | None = Field(
        default=None,
        description=(
            "the master key file (0600, never inside the home); default "
            "$XDG_CONFIG_HOME/streethub/<home id>/master.json"
        ),
    )
    pkcs11_module: Path | None = Field(
        default=None, description="the PKCS#11 library of the HSM (default: SoftHSM2's)"
    )
    pkcs11_token: str = Field(default="streethub", description="the HSM token's label")
    pkcs11_pin: SecretStr | None = Field(default=None, description="the HSM user PIN")
    pkcs11_key_label: str = Field(
        default="streethub-master", description="label of the master key inside the HSM"
    )
    witness_dir: Path | None = Field(
        default=None,
        description=(
            "where audit checkpoints are also written, outside the home; default beside "
            "it, <home>.witness"
        ),
    )
    audit_checkpoint_every: int = Field(
        default=1_000, gt=0, description="records between two signed audit checkpoints"
    )
    landing_retention_days: int | None = Field(
        default=None,
        ge=0,
        description="days a landed (encrypted) delivery file is kept once loaded; None: forever",
    )
    keep_inbox_originals: bool = Field(
        default=False,
        description="keep each landed inbox file, encrypted, in the archive instead of removing it",
    )
    snapshot_retention_days: int | None = Field(
        default=460,
        ge=0,
        description=(
            "days old lake snapshots (and files only they use) are kept; None: forever. The "
            "default outlasts the need model's backtest window (14 monthly training cut-offs "
            "and their 90-day horizon, ~456 days): the golden records' attribute history "
            "keeps a replaced record's older value only while a snapshot holds it"
        ),
    )

    # the share service (share_api): state, listening address, tokens, request bounds
    share_db_url: str | None = Field(
        default=None,
        description=(
            "the share service's database (SQLAlchemy URL, e.g. postgresql+psycopg://…); "
            "default SQLite in WAL mode under the home, <home>/share/share.db"
        ),
    )
    share_host: str = Field(default="127.0.0.1", description="address `streethub serve` listens on")
    share_port: int = Field(
        default=8780, ge=1, le=65_535, description="port `streethub serve` listens on"
    )
    share_trusted_proxies: str | None = Field(
        default=None,
        description=(
            "addresses of reverse proxies whose X-Forwarded-For names the real client "
            "(comma-separated, as uvicorn's forwarded_allow_ips); none: the socket's address"
        ),
    )
    share_token_ttl_hours: float = Field(
        default=24 * 30,
        gt=0,
        le=24 * 366,
        description="how long a new API token is valid unless a shorter life is asked for",
    )
    share_max_body_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="largest request body the share service reads; larger is refused (413)",
    )
    share_answer_working_days: int = Field(
        default=10,
        ge=1,
        le=60,
        description="working days (State Council calendar) an owner has to answer a request",
    )
    share_audit_retention_days: int = Field(
        default=180,
        ge=180,
        description="days share audit records are kept at least (never below 180)",
    )
    # Delta Sharing (share_api.sharing): profiles, signed file URLs, materialised grant files
    share_profile_ttl_days: float = Field(
        default=30,
        gt=0,
        le=366,
        description="how long a Delta Sharing profile's bearer token is valid",
    )
    share_url_ttl_seconds: int = Field(
        default=3600,
        ge=60,
        le=7 * 24 * 3600,
        description="how long a signed Delta Sharing file URL is valid",
    )
    share_prepare_seconds: float = Field(
        default=30,
        ge=0,
        description=(
            "how often `streethub serve` looks for live grants whose files (a new lake "
            "snapshot, new terms, new opt-outs) are not materialised yet; 0: never, files are "
            "then made on first use"
        ),
    )

    # the web portal (share_api.portal): sign-in sessions and the data officers' link
    portal_session_hours: float = Field(
        default=8,
        gt=0,
        le=24,
        description="how long a portal sign-in lasts (its session token expires then)",
    )
    portal_secure_cookie: bool = Field(
        default=False,
        description=(
            "mark the portal's session cookie Secure (set it when a TLS proxy fronts the "
            "service; plain http on 127.0.0.1 needs it off)"
        ),
    )
    dagster_ui_url: str = Field(
        default="http://127.0.0.1:3000",
        description="where data officers find the Dagster UI (`streethub ui`); the portal links to it",
    )

    # the elderly alert (marts/sql/elderly_alert.sql reads them as getvariable('<name>'))
    elderly_alert_window_days: int = Field(
        default=30, ge=1, le=365, description="elderly alert: the recent window of door activity"
    )
    elderly_alert_baseline_days: int = Field(
        default=90,
        ge=7,
        le=730,
        description="elderly alert: the days before the window that are each person's baseline",
    )
    elderly_alert_min_drop: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="elderly alert: the least drop of daily door passes against the baseline",
    )
    elderly_alert_min_expected_passes: int = Field(
        default=10,
        ge=1,
        description="elderly alert: passes the baseline rate must expect in the window (fewer: noise)",
    )

    model_registry_url: str | None = Field(
        default=None,
        description=(
            "the need model's MLflow tracking and registry store (SQLAlchemy URL); default "
            "SQLite under the home, <home>/models/mlflow.db"
        ),
    )

    # analysts (share_api.analysts): their databases and the notebooks' workspace
    analyst_dir: Path | None = Field(
        default=None,
        description="where `streethub analyst` writes analysts' databases; default <home>/analysts",
    )
    notebook_dir: Path | None = Field(
        default=None,
        description=(
            "the notebooks' workspace (a copy of the analyst's database, the notebooks), "
            "outside the home; default beside it, <home>.notebooks"
        ),
    )
    notebook_port: int = Field(
        default=0,
        ge=0,
        le=65_535,
        description="port `streethub notebook` listens on; 0: a free one",
    )
    # the analysts' SQL endpoint (share_api.analysts.worker): limits of one query
    analyst_sql_time_limit_seconds: float = Field(
        default=10, gt=0, le=600, description="an analyst query is interrupted after this long"
    )
    analyst_sql_max_rows: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="most rows an analyst query answers (a request may ask fewer); more: cut",
    )
    analyst_sql_memory_limit: str = Field(
        default="512MB",
        pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$",
        description="DuckDB memory_limit of an analyst query's connection (set before locking)",
    )
    analyst_sql_threads: int = Field(
        default=1, ge=1, le=64, description="DuckDB threads of an analyst query's connection"
    )
    analyst_sql_workers: int = Field(
        default=2,
        ge=1,
        le=32,
        description="worker processes running analyst queries; more at once are refused (429)",
    )

    @property
    def analyst_dir_abs(self) -> Path:
        return (self.analyst_dir or self.home_abs / "analysts").expanduser().resolve()

    @property
    def notebook_dir_abs(self) -> Path:
        """The notebooks' workspace: outside the home, beside it by default."""
        if self.notebook_dir is not None:
            return self.notebook_dir.expanduser().resolve()
        return self.home_abs.with_name(self.home_abs.name + ".notebooks")

    @property
    def home_abs(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def lake_dir(self) -> Path:
        return self.home_abs / "lake"

    @property
    def spill_dir(self) -> Path:
        """Where DuckDB instances over personal data spill, encrypted, each into a folder of
        its own (``lakehouse.extensions.bounded_instance``)."""
        return self.lake_dir / "spill"

    @property
    def lake_data_dir(self) -> Path:
        return (self.lake_data_path or self.lake_dir / "data").expanduser().resolve()

    @property
    def lake_metadata(self) -> str:
        """The DuckLake metadata location as used in ``ATTACH 'ducklake:<this>'``."""
        if self.lake_metadata_url:
            return self.lake_metadata_url
        return f"sqlite:{self.lake_dir / 'metadata.sqlite'}"

    @property
    def landing_dir(self) -> Path:
        return self.home_abs / "landing"

    @property
    def inbox_dir(self) -> Path:
        return self.home_abs / "inbox"

    @property
    def sim_dir_abs(self) -> Path:
        """The simulated departments' own folder, beside the home: their systems (database,
        API data, token) and their truth. Nothing of the hub's production path reads it."""
        if self.sim_dir is not None:
            return self.sim_dir.expanduser().resolve()
        return self.home_abs.parent / f"{self.home_abs.name}.departments"

    def api_url(self, dept: str) -> str:
        """The base URL of a department's API: its own (``STREETHUB_<DEPT>_API_URL``), else
        the shared one (``STREETHUB_DEPT_API_URL``)."""
        return self.api_urls.get(dept) or self.dept_api_url

    def api_token(self, dept: str) -> str | None:
        """A department's API token: its own (``STREETHUB_<DEPT>_API_TOKEN``), else the
        shared one (``STREETHUB_DEPT_API_TOKEN``)."""
        return self.api_tokens.get(dept) or self.dept_api_token

    def db_url(self, dept: str) -> str | None:
        """The URL of a department's database (``STREETHUB_<DEPT>_DB_URL``), if given."""
        return self.db_urls.get(dept)

    def connected(self, env: Mapping[str, str]) -> Settings:
        """These settings with the connection variables in ``env`` (database URLs, the API
        URL and token) as a department's system publishes them."""
        update: dict = {
            "db_urls": {**self.db_urls, **db_urls_in(env)},
            "api_urls": {**self.api_urls, **api_urls_in(env)},
            "api_tokens": {**self.api_tokens, **api_tokens_in(env)},
        }
        if env.get(API_URL_ENV):
            update["dept_api_url"] = env[API_URL_ENV]
        if env.get(API_TOKEN_ENV):
            update["dept_api_token"] = env[API_TOKEN_ENV]
        return self.model_copy(update=update)

    @property
    def keys_dir(self) -> Path:
        return self.home_abs / "keys"

    @property
    def audit_dir(self) -> Path:
        return self.home_abs / "audit"

    @property
    def key_file_abs(self) -> Path:
        """The master key file: ``key_file``, or one per home in the user's config folder."""
        if self.key_file is not None:
            return self.key_file.expanduser().resolve()
        config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        return config.expanduser().resolve() / "streethub" / self.home_id / "master.json"

    @property
    def home_id(self) -> str:
        """The id the key ring recorded at its first key (a copied or moved home keeps it,
        so it finds its key file), else one derived from the home's path."""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            recorded = json.loads((self.keys_dir / "keyring.json").read_text()).get("home_id")
            if isinstance(recorded, str) and re.fullmatch(r"[0-9a-f]{12}", recorded):
                return recorded
        return self.path_home_id

    @property
    def path_home_id(self) -> str:
        """The home id derived from the home's path (a copy's own key file is named by it)."""
        return hashlib.sha256(str(self.home_abs).encode()).hexdigest()[:12]

    @property
    def witness_dir_abs(self) -> Path:
        """Where audit checkpoints are witnessed: outside the home, beside it by default."""
        if self.witness_dir is not None:
            return self.witness_dir.expanduser().resolve()
        return self.home_abs.with_name(self.home_abs.name + ".witness")

    @property
    def archive_dir(self) -> Path:
        """Inbox originals kept (encrypted) when ``keep_inbox_originals`` is set."""
        return self.home_abs / "archive"

    @property
    def mart_parameters(self) -> dict[str, int | float]:
        """The settings mart SQL reads as ``getvariable('<name>')`` (set by the build)."""
        return {
            n: getattr(self, n) for n in type(self).model_fields if n.startswith("elderly_alert_")
        }

    @property
    def models_dir(self) -> Path:
        """The model registry (MLflow): its SQLite tracking database and artifacts."""
        return self.home_abs / "models"

    @property
    def model_registry_uri(self) -> str:
        """MLflow's tracking and registry store: ``model_registry_url``, else SQLite under
        the home (no server)."""
        return self.model_registry_url or f"sqlite:///{self.models_dir / 'mlflow.db'}"

    @property
    def dagster_home(self) -> Path:
        return self.home_abs / "dagster"

    @property
    def state_dir(self) -> Path:
        """Connector cursors and other small bookkeeping."""
        return self.home_abs / "state"

    @property
    def extension_dir(self) -> Path:
        return self.home_abs / "duckdb_extensions"

    def ensure_dirs(self) -> Settings:
        """Create the local folders (private to the owner) and return self."""
        for d in (
            self.home_abs,
            self.lake_dir,
            self.lake_data_dir,
            self.landing_dir,
            self.inbox_dir,
            self.state_dir,
            self.dagster_home,
        ):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self


def get_settings() -> Settings:
    """A fresh settings object read from the environment: a copy of the one last read for
    the same ``STREETHUB_`` variables (the only ones it reads: reading and validating them
    again cost ~4 ms, and a run asks some fifty times)."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(PREFIX)))
    read = _LAST_READ.get(env)
    if read is None:
        _LAST_READ.clear()
        read = _LAST_READ[env] = Settings()
    return read.model_copy(deep=True)


_LAST_READ: dict[tuple[tuple[str, str], ...], Settings] = {}
