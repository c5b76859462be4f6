"""The key ring: versioned data keys wrapped under a master key held by a provider.

Layout under ``settings.keys_dir`` (directory 0700, files 0600) — no master key here:

- ``keyring.json`` every data key version, each wrapped under the master key by the key
  provider (:mod:`masking.keys.providers`) with AAD
  ``streethub-key|<suite>|<purpose>|<version>`` (a wrapped key cannot be moved to another
  purpose, version or suite); each entry records the master ``kid``, the wrap algorithm,
  the suite and the version. The ring also records the deployment's ``suite`` (fixed at
  its first key), the ``master_kid`` it is wrapped under, ``home_id`` (which names the
  default key file, so a copied or moved home finds it) and ``pseudonym_scheme``.
- ``.lock`` the lock file taken around every write.

Purposes: ``at_rest`` (column encryption), ``pseudonym`` (HMAC pseudonyms),
``audit_signing`` (MACs over the audit chain), ``audit_checkpoint`` (the seed of the
audit's signing key), ``landing`` (landing-file encryption) and ``recipient:<id>``
(per-recipient pseudonyms), created on first use.

``rotate()`` works with every provider in three steps, each leaving everything readable
if the process dies after it: the provider adds a new master version (the old stays);
``keyring.json`` is rewritten atomically with every data key re-wrapped under the new
master plus new current encryption/signing keys; the provider retires the old master.
Pseudonym keys keep their version unless ``rotate(pseudonyms=True)``.

A home of the old layout (``keys/master.json`` beside the ring) is migrated on first use:
the key moves to the key file (or the ring is re-wrapped under the configured provider)
and the in-home copy is overwritten and removed, with one warning.

``pseudonym_scheme`` 2: pseudonyms are HMACs under the hex of the key; a ring that made
pseudonyms before the marker existed (scheme 1) is refused for pseudonyms.
Key material is never logged and no ``repr`` shows it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from catalog.settings import Settings
from masking.errors import KeyRingError
from masking.keys.homes import HomeMoves, own_key_file_of
from masking.keys.providers import (
    LEGACY_WRAP,
    EnvProvider,
    MasterKeyProvider,
    provider_from_settings,
)
from masking.keys.purposes import (
    PSEUDONYM_SCHEME,
    DataKey,
    check_purpose,
    is_pseudonym_purpose,
)
from masking.keys.store import KEY_BYTES, atomic_write, b64, exclusive_lock, unb64
from masking.suite import CipherSuite, Suite, get_suite

FORMAT = 2

#: called with a step's name between the steps of a rotation (kill points, tests)
StepHook = Callable[[str], None]


def _aad(suite: str, purpose: str, version: int) -> bytes:
    return f"streethub-key|{suite}|{purpose}|{version}".encode()


def _legacy_aad(purpose: str, version: int) -> bytes:
    return f"streethub-key|{purpose}|{version}".encode()


def _settings_for(keys_dir: Path) -> Settings:
    """The settings of the home that holds ``keys_dir`` (``<home>/keys``), or of
    ``keys_dir`` itself when it is a free-standing ring folder (tools, tests)."""
    keys_dir = Path(keys_dir)
    return Settings(home=keys_dir.parent if keys_dir.name == "keys" else keys_dir)


def _explicit_suite(settings: Settings) -> str | None:
    return settings.cipher_suite if "cipher_suite" in settings.model_fields_set else None


class KeyRing(HomeMoves):
    """Versioned data keys per purpose, wrapped under a master key held by a provider.

    ``KeyRing(keys_dir)`` uses the deployment's provider for the home holding
    ``keys_dir`` (``STREETHUB_KEY_PROVIDER``); ``master_key=`` gives the master bytes
    directly (tools); ``provider=`` any :class:`MasterKeyProvider`. ``suite`` is the suite
    the caller expects: a ring recorded under another suite is refused (None: follow the
    ring's).
    """

    def __init__(
        self,
        keys_dir: Path,
        *,
        master_key: bytes | None = None,
        suite: str | None = None,
        provider: MasterKeyProvider | None = None,
        home_id: str | None = None,
        own_key_file: tuple[str, Path, Path] | None = None,
    ) -> None:
        self.keys_dir = Path(keys_dir)
        self._suite_choice = suite
        if provider is None:
            if master_key is not None:
                provider = EnvProvider(master_key)
            else:
                settings = _settings_for(self.keys_dir)
                provider = provider_from_settings(settings)
                self._suite_choice = suite or _explicit_suite(settings)
                home_id = home_id or settings.home_id
                own_key_file = own_key_file or own_key_file_of(settings)
        self.provider = provider
        self._home_id = home_id
        self._own_key_file = own_key_file
        self._copy_checked = False
        self._mutex = threading.RLock()
        self._state: dict | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._cache: dict[tuple[str, int], bytes] = {}
        self._legacy_checked = False
        self._lock_depth = 0
        #: the message of a migration done by this object (None when none was needed)
        self.migration: str | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, enforce_suite: bool = True
    ) -> KeyRing:
        """The deployment's ring. ``enforce_suite=False`` opens a ring whatever its suite
        (``keys rekey``, which then records the new one with :meth:`change_suite`)."""
        settings = settings or Settings()
        return cls(
            settings.keys_dir,
            suite=_explicit_suite(settings) if enforce_suite else None,
            provider=provider_from_settings(settings),
            home_id=settings.home_id,
            own_key_file=own_key_file_of(settings),
        )

    def __repr__(self) -> str:
        return f"KeyRing(keys_dir={str(self.keys_dir)!r}, provider={self.provider.name})"

    # -- files ---------------------------------------------------------------------------
    @property
    def _ring_path(self) -> Path:
        return self.keys_dir / "keyring.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The ring's lock across threads and processes (re-entrant in one thread)."""
        with self._mutex:
            if self._lock_depth:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.keys_dir, 0o700)
            with exclusive_lock(self.keys_dir / ".lock"):
                self._lock_depth = 1
                try:
                    yield
                finally:
                    self._lock_depth = 0

    def _read_ring(self) -> dict | None:
        try:
            return json.loads(self._ring_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise KeyRingError(
                f"cannot read {self._ring_path.name}: {type(exc).__name__}",
                file=str(self._ring_path),
            ) from None

    def _load(self, force: bool = False) -> dict:
        self._check_legacy()
        self._check_copy()
        try:
            st = self._ring_path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if force or self._state is None or stamp != self._stamp:
            data = self._read_ring() if stamp else None
            self._state = data or {"format": FORMAT, "master_version": 0, "current": {}, "keys": {}}
            self._stamp = stamp
            self._cache.clear()
        recorded = self._state.get("suite")
        if recorded and self._suite_choice and recorded != str(self._suite_choice):
            raise KeyRingError(
                f"the key ring in {self.keys_dir} was made under the {recorded} cipher suite "
                f"but STREETHUB_CIPHER_SUITE is {self._suite_choice}: unset it, or change "
                f"the deployment's suite with `streethub keys rekey --suite "
                f"{self._suite_choice}`"
            )
        return self._state

    def _save(self, state: dict) -> None:
        if self._home_id and "home_id" not in state:
            state["home_id"] = self._home_id
        atomic_write(self._ring_path, state)
        self._state = state
        st = self._ring_path.stat()
        self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        self._cache.clear()

    # -- wrapping ------------------------------------------------------------------------
    def _suite_of(self, state: Mapping) -> CipherSuite:
        return get_suite(state.get("suite") or self._suite_choice or Suite.INTL)

    def _wrap(self, kid: str, suite: CipherSuite, purpose: str, version: int, key: bytes) -> dict:
        algorithm, blob = self.provider.wrap(kid, key, _aad(suite.name, purpose, version), suite)
        return {
            "kid": kid,
            "wrap": algorithm,
            "suite": str(suite.name),
            "version": version,
            "wrapped": b64(blob),
        }

    def _unwrap(
        self, purpose: str, version: int, entry: dict, provider: MasterKeyProvider | None = None
    ) -> bytes:
        provider = provider or self.provider
        algorithm = entry.get("wrap", LEGACY_WRAP)
        if algorithm == LEGACY_WRAP:
            aad = _legacy_aad(purpose, version)
        else:
            aad = _aad(entry["suite"], purpose, version)
        try:
            return provider.unwrap(entry["kid"], algorithm, unb64(entry["wrapped"]), aad)
        except KeyRingError as exc:
            raise KeyRingError(f"data key {purpose} v{version}: {exc}") from None

    def _master_kid(self, state: dict, *, create: bool) -> str:
        """The master version the ring is wrapped under (a new ring: the provider's)."""
        kid = state.get("master_kid")
        if kid:
            return kid
        kids = Counter(e["kid"] for vs in state["keys"].values() for e in vs.values())
        if kids:
            return kids.most_common(1)[0][0]
        kid = self.provider.primary(create=create)
        if kid is None:
            raise KeyRingError(f"no master key in {self.provider.describe()}")
        return kid

    def _plain(self, state: dict, provider: MasterKeyProvider | None = None) -> dict:
        return {
            (p, int(v)): self._unwrap(p, int(v), e, provider)
            for p, vs in state["keys"].items()
            for v, e in vs.items()
        }

    def _rewrapped(self, state: dict, plain: dict, kid: str, suite: CipherSuite) -> dict:
        """``state`` with every key in ``plain`` wrapped under ``kid`` and ``suite``."""
        new = {k: v for k, v in state.items() if k != "keys"}
        new.update(format=FORMAT, master_kid=kid, suite=str(suite.name), keys={})
        for (p, v), key in sorted(plain.items()):
            new["keys"].setdefault(p, {})[str(v)] = self._wrap(kid, suite, p, v, key)
        return new

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
                        version = self._create(purpose, state, make_current=True)
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
            key = self._unwrap(purpose, version, entry)
            self._cache[(purpose, version)] = key
            return DataKey(purpose, version, key)

    def versions(self, purpose: str) -> list[int]:
        check_purpose(purpose)
        with self._mutex:
            return sorted(int(v) for v in self._load()["keys"].get(purpose, {}))

    def purposes(self) -> list[str]:
        with self._mutex:
            return sorted(self._load()["current"])

    def _create(self, purpose: str, state: dict, *, make_current: bool) -> int:
        kid = self._master_kid(state, create=True)
        state.setdefault("format", FORMAT)
        state.setdefault("suite", str(self._suite_choice or Suite.INTL))
        state.setdefault("master_kid", kid)
        if not any(is_pseudonym_purpose(p) for p in state["keys"]):
            state.setdefault("pseudonym_scheme", PSEUDONYM_SCHEME)  # no pseudonyms made yet
        versions = state["keys"].setdefault(purpose, {})
        version = max((int(v) for v in versions), default=0) + 1
        key = secrets.token_bytes(KEY_BYTES)
        versions[str(version)] = self._wrap(kid, self._suite_of(state), purpose, version, key)
        if make_current:
            state["current"][purpose] = version
        self._save(state)
        return version

    def add_version(self, purpose: str) -> DataKey:
        """A new version of ``purpose``'s key that is not yet current (a re-key makes the
        new data with it, then :meth:`change_suite` makes it current)."""
        check_purpose(purpose)
        with self._locked():
            version = self._create(purpose, self._load(force=True), make_current=False)
        return self.get(purpose, version)

    def change_suite(self, suite: str, current: Mapping[str, int] | None = None) -> None:
        """Record ``suite`` as the deployment's: every data key re-wrapped under it and
        ``current`` (purpose → version, e.g. from :meth:`add_version`) made current, in
        one atomic write of the ring."""
        new_suite = get_suite(suite)
        with self._locked():
            self._suite_choice = None
            state = self._load(force=True)
            plain = self._plain(state)
            new = self._rewrapped(state, plain, self._master_kid(state, create=True), new_suite)
            for purpose, version in (current or {}).items():
                if str(version) not in new["keys"].get(check_purpose(purpose), {}):
                    raise KeyRingError(f"no data key {purpose} version {version}")
                new["current"][purpose] = int(version)
            self._save(new)
            self._suite_choice = str(new_suite.name)

    def rotate(
        self,
        *,
        new_master_key: bytes | None = None,
        pseudonyms: bool = False,
        step: StepHook | None = None,
    ) -> dict[str, int]:
        """A new master; every version re-wrapped; new current encryption and signing keys.

        Returns the current version per purpose. Data encrypted or signed under old
        versions stays readable (``get(purpose, old_version)``). Pseudonym and recipient
        keys get a new version only with ``pseudonyms=True`` (every pseudonym changes).
        With the environment provider the new master comes from ``new_master_key`` or
        ``STREETHUB_MASTER_KEY_NEW``. ``step(name)`` is called after each durable step
        (``rotate.master_added``, ``rotate.ring_rewrapped``): whatever happens after
        either, everything stays readable and a new ``rotate()`` completes the job.
        """
        step = step or (lambda name: None)
        with self._locked():
            state = self._load(force=True)
            plain = self._plain(state)
            kid = self.provider.add(new_master_key)
            step("rotate.master_added")
            suite = self._suite_of(state)
            new = self._rewrapped(state, plain, kid, suite)
            new["master_version"] = int(state.get("master_version", 0)) + 1
            for p in state["current"]:
                if is_pseudonym_purpose(p) and not pseudonyms:
                    continue
                version = max(int(v) for v in new["keys"][p]) + 1
                key = secrets.token_bytes(KEY_BYTES)
                new["keys"][p][str(version)] = self._wrap(kid, suite, p, version, key)
                new["current"][p] = version
            self._save(new)
            step("rotate.ring_rewrapped")
            self.provider.retire(kid)
            return dict(new["current"])

    def export_master(self) -> tuple[str, bytes]:
        """``(kid, key)`` of the master the ring is wrapped under, when the provider lets
        it leave (env, file); KeyRingError otherwise. For ``keys backup`` only."""
        with self._locked():
            state = self._load(force=True)
            if not state["keys"]:  # a ring with no key yet: record the master it will use
                self._create("at_rest", state, make_current=True)
                state = self._load(force=True)
            kid = self._master_kid(state, create=False)
        return kid, self.provider.export(kid)

    def check_readable(self) -> int:
        """Unwrap every data key version (a restore's proof); returns how many."""
        with self._mutex:
            return len(self._plain(self._load(force=True)))

    @property
    def master_kid(self) -> str | None:
        with self._mutex:
            state = self._load()
            return self._master_kid(state, create=False) if state["keys"] else None

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
            return self._suite_of(self._load())

    @property
    def master_version(self) -> int:
        """How many times the master key has been rotated (0 = the first master)."""
        with self._mutex:
            return int(self._load().get("master_version", 0))
