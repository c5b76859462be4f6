"""The key ring: a versioned master key wrapping versioned data keys (envelope encryption).

Layout under ``settings.keys_dir`` (directory 0700, files 0600):

- ``master.json``  the master key versions, unless the master key comes from the
  environment (``STREETHUB_MASTER_KEY``, base64 of 32 bytes). Old master versions
  are kept so a crash in the middle of a rotation never strands a data key.
- ``keyring.json`` every data key, each wrapped with AES-GCM under the master key
  with AAD ``streethub-key|<purpose>|<version>`` (a wrapped key cannot be moved to
  another purpose or version), and the current version per purpose.
- ``.lock``        the lock file taken around every write.

Purposes: ``at_rest`` (column encryption), ``pseudonym`` (HMAC pseudonyms),
``audit_signing`` (HMAC over the audit chain) and ``recipient:<id>`` (per-recipient
pseudonyms), created on first use. ``rotate()`` makes a new master version, re-wraps
every data key version under it and makes a new current version of the encryption and
signing keys; old versions stay readable, data is not touched. Pseudonym keys keep their
version unless ``rotate(pseudonyms=True)``: a new pseudonym key changes every pseudonym,
so nothing made before joins with anything made after.

``keyring.json`` also records ``pseudonym_scheme``: 2 since pseudonyms are HMAC-SHA256
under the hex of the key (``masking.pseudonym``). A ring that made pseudonyms before
that marker existed (scheme 1, HMAC under the raw key bytes) is refused for pseudonyms,
because its old and new pseudonyms of one person would differ.

With the master key in the environment a rotation needs the new master key
(``rotate(new_master_key=...)``); set ``STREETHUB_MASTER_KEY`` to it afterwards.
Key material is never logged and no ``repr`` shows it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from catalog.settings import Settings
from masking.errors import KeyRingError
from masking.suite import CipherSuite, Suite, get_suite

MASTER_ENV = "STREETHUB_MASTER_KEY"
KEY_BYTES = 32
BASE_PURPOSES = ("at_rest", "pseudonym", "audit_signing", "audit_checkpoint", "landing")
PSEUDONYM_SCHEME = 2
_RECIPIENT = re.compile(r"^recipient:[a-z0-9][a-z0-9_.-]{0,63}$")


def is_pseudonym_purpose(purpose: str) -> bool:
    return purpose == "pseudonym" or purpose.startswith("recipient:")


def check_purpose(purpose: str) -> str:
    """Return ``purpose`` if it names a data key, else raise KeyRingError."""
    if purpose in BASE_PURPOSES or _RECIPIENT.match(purpose):
        return purpose
    raise KeyRingError(
        f"unknown key purpose {purpose!r}: one of {', '.join(BASE_PURPOSES)} or recipient:<id>"
    )


class DataKey:
    """One version of a data key. Unpacks as ``version, key = ring.current(purpose)``."""

    __slots__ = ("_material", "purpose", "version")

    def __init__(self, purpose: str, version: int, material: bytes) -> None:
        self.purpose = purpose
        self.version = version
        self._material = material

    @property
    def material(self) -> bytes:
        return self._material

    def __iter__(self) -> Iterator[int | bytes]:
        yield self.version
        yield self._material

    def __repr__(self) -> str:
        return f"DataKey(purpose={self.purpose!r}, version={self.version}, material=<hidden>)"

    __str__ = __repr__


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _aad(purpose: str, version: int) -> bytes:
    return f"streethub-key|{purpose}|{version}".encode()


def _fingerprint(master: bytes) -> str:
    """A public identifier of a master key (not reversible, does not help an attacker)."""
    return hashlib.sha256(b"streethub-master-kid|" + master).hexdigest()[:16]


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created 0600) across processes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _atomic_write(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def env_master_key() -> bytes | None:
    """The master key from ``STREETHUB_MASTER_KEY``, or None when unset."""
    raw = os.environ.get(MASTER_ENV)
    if not raw:
        return None
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        raise KeyRingError(f"{MASTER_ENV} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise KeyRingError(f"{MASTER_ENV} must decode to {KEY_BYTES} bytes, not {len(key)}")
    return key


class KeyRing:
    """Versioned data keys per purpose, wrapped under a versioned master key."""

    def __init__(
        self, keys_dir: Path, *, master_key: bytes | None = None, suite: str | None = None
    ) -> None:
        self.keys_dir = Path(keys_dir)
        self._suite_choice = suite
        self._env_master = master_key if master_key is not None else env_master_key()
        if self._env_master is not None and len(self._env_master) != KEY_BYTES:
            raise KeyRingError(f"the master key must be {KEY_BYTES} bytes")
        self._mutex = threading.RLock()
        self._state: dict | None = None
        self._stamp: tuple[int, int] | None = None
        self._cache: dict[tuple[str, int], bytes] = {}

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> KeyRing:
        settings = settings or Settings()
        return cls(settings.keys_dir, suite=settings.cipher_suite)

    def __repr__(self) -> str:
        return f"KeyRing(keys_dir={str(self.keys_dir)!r}, master_from_env={self._env_master is not None})"

    # -- files ---------------------------------------------------------------------------
    @property
    def _ring_path(self) -> Path:
        return self.keys_dir / "keyring.json"

    @property
    def _master_path(self) -> Path:
        return self.keys_dir / "master.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.keys_dir, 0o700)
            with exclusive_lock(self.keys_dir / ".lock"):
                yield

    def _read_json(self, path: Path) -> dict | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise KeyRingError(
                f"cannot read {path.name}: {type(exc).__name__}", file=str(path)
            ) from None

    def _masters(self, create: bool) -> dict:
        """``{"current": n, "versions": {n: {"kid", "key"?}}}``; file mode creates on demand."""
        if self._env_master is not None:
            kid = _fingerprint(self._env_master)
            return {"current": kid, "keys": {kid: self._env_master}}
        data = self._read_json(self._master_path)
        if data is None:
            if not create:
                return {"current": None, "keys": {}}
            key = secrets.token_bytes(KEY_BYTES)
            data = {"current": _fingerprint(key), "versions": {_fingerprint(key): _b64(key)}}
            _atomic_write(self._master_path, data)
        return {
            "current": data["current"],
            "keys": {kid: _unb64(k) for kid, k in data["versions"].items()},
        }

    def _load(self, force: bool = False) -> dict:
        try:
            st = self._ring_path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if force or self._state is None or stamp != self._stamp:
            data = self._read_json(self._ring_path) if stamp else None
            self._state = data or {"format": 1, "master_version": 0, "current": {}, "keys": {}}
            self._stamp = stamp
            self._cache.clear()
        return self._state

    def _save(self, state: dict) -> None:
        _atomic_write(self._ring_path, state)
        self._state = state
        st = self._ring_path.stat()
        self._stamp = (st.st_mtime_ns, st.st_size)
        self._cache.clear()

    # -- wrapping ------------------------------------------------------------------------
    def _unwrap(self, purpose: str, version: int, entry: dict, masters: dict) -> bytes:
        master = masters["keys"].get(entry["kid"])
        if master is None:
            raise KeyRingError(
                f"data key {purpose} v{version} is wrapped under a master key that is not "
                f"available (kid {entry['kid']}); is {MASTER_ENV} the right key?"
            )
        blob = _unb64(entry["wrapped"])
        try:
            return AESGCM(master).decrypt(blob[:12], blob[12:], _aad(purpose, version))
        except Exception:
            raise KeyRingError(f"data key {purpose} v{version} does not unwrap") from None

    @staticmethod
    def _wrap(master_kid: str, master: bytes, purpose: str, version: int, key: bytes) -> dict:
        nonce = secrets.token_bytes(12)
        blob = nonce + AESGCM(master).encrypt(nonce, key, _aad(purpose, version))
        return {"kid": master_kid, "wrapped": _b64(blob)}

    # -- public API ----------------------------------------------------------------------
    def current(self, purpose: str) -> DataKey:
        """The current version of the data key for ``purpose`` (created on first use)."""
        check_purpose(purpose)
        with self._mutex:
            state = self._load()
            version = state["current"].get(purpose)
            if version is None:
                with self._locked():
                    state = self._load(force=True)
                    version = state["current"].get(purpose)
                    if version is None:
                        version = self._create(purpose, state)
            return self.get(purpose, version)

    def get(self, purpose: str, version: int) -> DataKey:
        """A given version of the data key for ``purpose``; KeyRingError if unknown."""
        check_purpose(purpose)
        with self._mutex:
            cached = self._cache.get((purpose, version))
            if cached is not None:
                return DataKey(purpose, version, cached)
            state = self._load()
            entry = state["keys"].get(purpose, {}).get(str(version))
            if entry is None:
                state = self._load(force=True)
                entry = state["keys"].get(purpose, {}).get(str(version))
            if entry is None:
                raise KeyRingError(f"no data key {purpose} version {version}")
            key = self._unwrap(purpose, version, entry, self._masters(create=False))
            self._cache[(purpose, version)] = key
            return DataKey(purpose, version, key)

    def versions(self, purpose: str) -> list[int]:
        check_purpose(purpose)
        with self._mutex:
            return sorted(int(v) for v in self._load()["keys"].get(purpose, {}))

    def purposes(self) -> list[str]:
        with self._mutex:
            return sorted(self._load()["current"])

    def _create(self, purpose: str, state: dict) -> int:
        masters = self._masters(create=True)
        kid = masters["current"]
        state.setdefault("suite", str(self._suite_choice or Suite.INTL))
        if not any(is_pseudonym_purpose(p) for p in state["keys"]):
            state.setdefault("pseudonym_scheme", PSEUDONYM_SCHEME)  # no pseudonyms made yet
        versions = state["keys"].setdefault(purpose, {})
        version = max((int(v) for v in versions), default=0) + 1
        key = secrets.token_bytes(KEY_BYTES)
        versions[str(version)] = self._wrap(kid, masters["keys"][kid], purpose, version, key)
        state["current"][purpose] = version
        self._save(state)
        return version

    def rotate(
        self, *, new_master_key: bytes | None = None, pseudonyms: bool = False
    ) -> dict[str, int]:
        """A new master; every version re-wrapped; new current encryption and signing keys.

        Returns the current version per purpose. Data encrypted or signed under old
        versions stays readable (``get(purpose, old_version)``). Pseudonym and recipient
        keys get a new version only with ``pseudonyms=True`` (every pseudonym changes).
        """
        with self._locked():
            state = self._load(force=True)
            old_masters = self._masters(create=True)
            plain = {
                (p, int(v)): self._unwrap(p, int(v), e, old_masters)
                for p, vs in state["keys"].items()
                for v, e in vs.items()
            }
            if self._env_master is not None:
                if new_master_key is None or len(new_master_key) != KEY_BYTES:
                    raise KeyRingError(
                        f"the master key comes from {MASTER_ENV}: rotate(new_master_key=<32 "
                        "bytes>) and set the variable to it afterwards"
                    )
                master = new_master_key
            else:
                master = new_master_key or secrets.token_bytes(KEY_BYTES)
                data = self._read_json(self._master_path) or {"versions": {}}
                data["versions"][_fingerprint(master)] = _b64(master)
                data["current"] = _fingerprint(master)
                _atomic_write(self._master_path, data)  # old versions kept until re-wrapped
            kid = _fingerprint(master)
            new_state = {
                "format": 1,
                "master_version": int(state.get("master_version", 0)) + 1,
                "current": {},
                "keys": {},
            }
            if "suite" in state:
                new_state["suite"] = state["suite"]
            if "pseudonym_scheme" in state:
                new_state["pseudonym_scheme"] = state["pseudonym_scheme"]
            for (p, v), key in plain.items():
                new_state["keys"].setdefault(p, {})[str(v)] = self._wrap(kid, master, p, v, key)
            for p in state["current"]:
                if is_pseudonym_purpose(p) and not pseudonyms:
                    new_state["current"][p] = state["current"][p]
                    continue
                version = max(int(v) for v in new_state["keys"][p]) + 1
                new_state["keys"][p][str(version)] = self._wrap(
                    kid, master, p, version, secrets.token_bytes(KEY_BYTES)
                )
                new_state["current"][p] = version
            self._save(new_state)
            if self._env_master is not None:
                self._env_master = master
            return dict(new_state["current"])

    @property
    def pseudonym_scheme(self) -> int:
        """How this ring's pseudonyms are derived (see the module docstring)."""
        with self._mutex:
            state = self._load()
            if "pseudonym_scheme" in state:
                return int(state["pseudonym_scheme"])
            legacy = any(is_pseudonym_purpose(p) for p in state["keys"])
            return 1 if legacy else PSEUDONYM_SCHEME

    @property
    def suite(self) -> CipherSuite:
        """The deployment's cipher suite: recorded in the ring at its first key, else the
        one this ring was opened with (``STREETHUB_CIPHER_SUITE``), else intl."""
        with self._mutex:
            return get_suite(self._load().get("suite") or self._suite_choice or Suite.INTL)

    @property
    def master_version(self) -> int:
        """How many times the master key has been rotated (0 = the first master)."""
        with self._mutex:
            return int(self._load().get("master_version", 0))
