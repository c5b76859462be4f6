"""Where the master key lives: key providers behind one interface.

The master key never lives under ``STREETHUB_HOME``. A provider holds one or more
*versions* of it, each named by a public ``kid``, and wraps/unwraps the ring's data keys:

- :class:`EnvProvider` — ``STREETHUB_MASTER_KEY`` (base64 of 32 bytes); a rotation takes
  the new key from ``STREETHUB_MASTER_KEY_NEW``.
- :class:`FileProvider` — a key file outside the home (``settings.key_file_abs``, by
  default ``$XDG_CONFIG_HOME/streethub/<home id>/master.json``), 0600, created on first
  use; refused when it sits inside the home or is readable by group or others.
- :class:`~masking.keys.pkcs11.Pkcs11Provider` — a non-extractable AES-256 key inside a
  PKCS#11 token (an HSM / 密码机); data keys are wrapped and unwrapped inside it.

Software providers wrap with the deployment suite's AEAD (AES-256-GCM or SM4-GCM).
``key_provider=auto`` picks env when ``STREETHUB_MASTER_KEY`` is set, else file.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from catalog.settings import Settings
from masking.errors import KeyRingError
from masking.keys.store import KEY_BYTES, atomic_write, b64, fingerprint, unb64
from masking.suite import NONCE_BYTES, CipherSuite, Suite, get_suite

MASTER_ENV = "STREETHUB_MASTER_KEY"
MASTER_ENV_NEW = "STREETHUB_MASTER_KEY_NEW"
#: the wrap algorithm of software providers, per suite (recorded in every wrapped key)
SOFT_WRAPS = {Suite.INTL: "aes-256-gcm", Suite.GM: "sm4-gcm"}
LEGACY_WRAP = "legacy-aes-256-gcm"  # rings written before wraps were recorded


def decode_master(raw: str, name: str) -> bytes:
    """A base64 master key from variable ``name``; KeyRingError naming the variable."""
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        raise KeyRingError(f"{name} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise KeyRingError(f"{name} must decode to {KEY_BYTES} bytes, not {len(key)}")
    return key


def env_master_key(name: str = MASTER_ENV) -> bytes | None:
    """The master key from the environment variable ``name``, or None when unset."""
    raw = os.environ.get(name)
    return decode_master(raw, name) if raw else None


class MasterKeyProvider(ABC):
    """One place that holds the master key's versions and wraps data keys under them."""

    name: ClassVar[str]
    #: whether the master key may leave the provider (for ``keys backup``)
    exportable: ClassVar[bool] = False

    @abstractmethod
    def describe(self) -> str:
        """Where the key lives, for messages (never key material)."""

    @abstractmethod
    def kids(self) -> list[str]:
        """The master key versions present now (nothing is created)."""

    @abstractmethod
    def primary(self, *, create: bool) -> str | None:
        """The version a new ring starts with; made on demand when ``create``."""

    @abstractmethod
    def add(self, material: bytes | None = None) -> str:
        """A new master version (a rotation's first step); the old ones stay."""

    @abstractmethod
    def retire(self, keep: str) -> None:
        """``keep`` becomes the only version (a rotation's last step)."""

    @abstractmethod
    def wrap(self, kid: str, data: bytes, aad: bytes, suite: CipherSuite) -> tuple[str, bytes]:
        """``(algorithm, blob)``: ``data`` encrypted under master ``kid``, bound to ``aad``."""

    @abstractmethod
    def unwrap(self, kid: str, algorithm: str, blob: bytes, aad: bytes) -> bytes:
        """The data wrapped by :meth:`wrap`; KeyRingError when it does not authenticate."""

    def export(self, kid: str) -> bytes:
        raise KeyRingError(
            f"the master key in {self.describe()} cannot leave it: no backup shares "
            "(back the token up with the HSM's own procedure)"
        )

    def install(self, material: bytes) -> str:
        raise KeyRingError(f"a restored master key cannot be put into {self.describe()}")

    def missing(self, kid: str) -> KeyRingError:
        return KeyRingError(
            f"the key ring is wrapped under master key {kid}, which is not in "
            f"{self.describe()}: point the key provider at it, or restore it from backup "
            "shares (`streethub keys restore`)"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


class _SoftwareProvider(MasterKeyProvider):
    """A provider that holds the master key bytes and wraps in software."""

    exportable = True

    @abstractmethod
    def _material(self, kid: str) -> bytes | None: ...

    def _key(self, kid: str) -> bytes:
        key = self._material(kid)
        if key is None:
            raise self.missing(kid)
        return key

    def wrap(self, kid: str, data: bytes, aad: bytes, suite: CipherSuite) -> tuple[str, bytes]:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return SOFT_WRAPS[suite.name], nonce + suite.aead(self._key(kid)).encrypt(nonce, data, aad)

    def unwrap(self, kid: str, algorithm: str, blob: bytes, aad: bytes) -> bytes:
        names = {v: k for k, v in SOFT_WRAPS.items()} | {LEGACY_WRAP: Suite.INTL}
        if algorithm not in names:
            raise KeyRingError(f"{self.describe()} cannot unwrap a key wrapped with {algorithm}")
        aead = get_suite(names[algorithm]).aead(self._key(kid))
        try:
            return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except Exception:
            raise KeyRingError("a data key does not unwrap under its master key") from None

    def export(self, kid: str) -> bytes:
        return self._key(kid)


class EnvProvider(_SoftwareProvider):
    """The master key from ``STREETHUB_MASTER_KEY`` (or given bytes, for tools and tests).

    Nothing is stored: a rotation's new key comes from ``STREETHUB_MASTER_KEY_NEW`` (or
    ``add(material)``), and the operator sets ``STREETHUB_MASTER_KEY`` to it afterwards.
    """

    name = "env"

    def __init__(self, master: bytes | None = None, new: bytes | None = None) -> None:
        self._keys: dict[str, bytes] = {}
        self._current: str | None = None
        for key in (master, new):
            if key is not None:
                if len(key) != KEY_BYTES:
                    raise KeyRingError(f"the master key must be {KEY_BYTES} bytes")
                self._keys[fingerprint(key)] = key
        self._current = fingerprint(master) if master is not None else None
        self._new = fingerprint(new) if new is not None else None

    @classmethod
    def from_environment(cls) -> EnvProvider:
        return cls(env_master_key(MASTER_ENV), env_master_key(MASTER_ENV_NEW))

    def describe(self) -> str:
        return f"the environment ({MASTER_ENV})"

    def kids(self) -> list[str]:
        return list(self._keys)

    def primary(self, *, create: bool) -> str | None:
        if self._current is None and create:
            raise KeyRingError(f"no master key: {MASTER_ENV} is not set")
        return self._current

    def add(self, material: bytes | None = None) -> str:
        if material is None:
            if self._new is None:
                raise KeyRingError(
                    f"the master key comes from {MASTER_ENV}: put the new key (base64 of "
                    f"{KEY_BYTES} random bytes, e.g. `openssl rand -base64 32`) in "
                    f"{MASTER_ENV_NEW} and rotate again"
                )
            return self._new
        if len(material) != KEY_BYTES:
            raise KeyRingError(f"the master key must be {KEY_BYTES} bytes")
        self._keys[fingerprint(material)] = material
        return fingerprint(material)

    def retire(self, keep: str) -> None:
        self._current = keep  # nothing stored: the operator replaces the variable

    def _material(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def install(self, material: bytes) -> str:
        raise KeyRingError(
            f"the environment cannot be written: `streethub keys restore --print` shows the "
            f"restored key to set as {MASTER_ENV}"
        )


class FileProvider(_SoftwareProvider):
    """The master key versions in a JSON file outside the home, private to its owner."""

    name = "file"

    def __init__(self, path: Path, home: Path) -> None:
        self.path = Path(path).expanduser().resolve()
        home = Path(home).expanduser().resolve()
        if self.path.is_relative_to(home):
            raise KeyRingError(
                f"the master key file {self.path} is inside the home {home}: a copy of the "
                "home would carry the key; set STREETHUB_KEY_FILE to a path outside it"
            )

    def describe(self) -> str:
        return f"the key file {self.path}"

    def _read(self) -> dict | None:
        import json

        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise KeyRingError(
                f"the master key file {self.path} is readable or writable by group or "
                f"others (mode {stat.S_IMODE(st.st_mode):o}): chmod 600 it and check who "
                "has read it"
            )
        if st.st_uid != os.geteuid():
            raise KeyRingError(f"the master key file {self.path} belongs to another user")
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            versions = {kid: unb64(k) for kid, k in data["versions"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise KeyRingError(f"the master key file {self.path} cannot be read") from None
        return {"current": data.get("current"), "versions": versions}

    def _write(self, current: str | None, versions: dict[str, bytes]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(
            self.path,
            {
                "format": 1,
                "current": current,
                "versions": {kid: b64(k) for kid, k in versions.items()},
            },
        )

    def exists(self) -> bool:
        data = self._read()
        return bool(data and data["versions"])

    def kids(self) -> list[str]:
        data = self._read()
        return list(data["versions"]) if data else []

    def primary(self, *, create: bool) -> str | None:
        data = self._read()
        if data and data["current"] in data["versions"]:
            return data["current"]
        if not create:
            return None
        return self.install(secrets.token_bytes(KEY_BYTES))

    def add(self, material: bytes | None = None) -> str:
        data = self._read() or {"current": None, "versions": {}}
        key = material if material is not None else secrets.token_bytes(KEY_BYTES)
        if len(key) != KEY_BYTES:
            raise KeyRingError(f"the master key must be {KEY_BYTES} bytes")
        data["versions"][fingerprint(key)] = key
        self._write(data["current"] or fingerprint(key), data["versions"])
        return fingerprint(key)

    def retire(self, keep: str) -> None:
        data = self._read() or {"versions": {}}
        if keep not in data["versions"]:
            raise self.missing(keep)
        self._write(keep, {keep: data["versions"][keep]})

    def _material(self, kid: str) -> bytes | None:
        data = self._read()
        return data["versions"].get(kid) if data else None

    def install(self, material: bytes) -> str:
        if self.exists():
            raise KeyRingError(f"{self.describe()} already holds a master key: not replaced")
        if len(material) != KEY_BYTES:
            raise KeyRingError(f"the master key must be {KEY_BYTES} bytes")
        kid = fingerprint(material)
        self._write(kid, {kid: material})
        return kid


def provider_from_settings(settings: Settings) -> MasterKeyProvider:
    """The deployment's provider (``STREETHUB_KEY_PROVIDER``; auto: env if set, else file)."""
    choice = settings.key_provider
    if choice == "auto":
        choice = "env" if os.environ.get(MASTER_ENV) else "file"
    if choice == "env":
        provider = EnvProvider.from_environment()
        if provider.primary(create=False) is None:
            raise KeyRingError(f"STREETHUB_KEY_PROVIDER is env but {MASTER_ENV} is not set")
        return provider
    if choice == "file":
        return FileProvider(settings.key_file_abs, settings.home_abs)
    from masking.keys.pkcs11 import Pkcs11Provider

    return Pkcs11Provider.from_settings(settings)
