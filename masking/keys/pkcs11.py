"""The master key inside a PKCS#11 token (an HSM, a 密码机; SoftHSM2 in tests).

The master is an AES-256 secret key generated in the token with ``CKA_EXTRACTABLE`` false
and ``CKA_SENSITIVE`` true: it never leaves the token, so it cannot be backed up by us
(use the HSM's own backup). Each version is a key object labelled
``settings.pkcs11_key_label`` whose ``CKA_ID`` is the version's kid. Data keys are
wrapped and unwrapped inside the token with ``CKM_AES_GCM`` (12-byte nonce, 128-bit tag,
the ring's AAD binding purpose, version and suite), through ``C_Encrypt``/``C_Decrypt``:
the unwrapped data key comes back to the process, as in any envelope scheme.

The token's mechanism is AES-GCM whatever the deployment's suite: SoftHSM2 has no SM4.
A 国密 HSM offers SM4 under a vendor mechanism; this module would name it here.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from catalog.settings import Settings
from masking.errors import KeyRingError
from masking.keys.providers import MasterKeyProvider
from masking.suite import NONCE_BYTES, CipherSuite

DEFAULT_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
WRAP = "pkcs11-aes-256-gcm"
_LIBS: dict[str, Any] = {}
_LIBS_LOCK = threading.Lock()


def _lib(module: Path) -> Any:
    import pkcs11

    with _LIBS_LOCK:
        if str(module) not in _LIBS:
            if not module.exists():
                raise KeyRingError(f"the PKCS#11 module {module} does not exist")
            try:
                _LIBS[str(module)] = pkcs11.lib(str(module))
            except Exception as exc:
                raise KeyRingError(
                    f"the PKCS#11 module {module} cannot be loaded ({type(exc).__name__})"
                ) from None
        return _LIBS[str(module)]


class Pkcs11Provider(MasterKeyProvider):
    """Master key versions as non-extractable AES keys in a PKCS#11 token."""

    name = "pkcs11"
    exportable = False

    def __init__(self, module: Path, token: str, pin: str, label: str) -> None:
        self.module = Path(module)
        self.token_label = token
        self.label = label
        self._pin = pin
        self._mutex = threading.RLock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Pkcs11Provider:
        if settings.pkcs11_pin is None:
            raise KeyRingError(
                "STREETHUB_KEY_PROVIDER is pkcs11 but STREETHUB_PKCS11_PIN is not set"
            )
        return cls(
            settings.pkcs11_module or DEFAULT_MODULE,
            settings.pkcs11_token,
            settings.pkcs11_pin.get_secret_value(),
            settings.pkcs11_key_label,
        )

    def describe(self) -> str:
        return f"the PKCS#11 token {self.token_label!r} (key {self.label!r}, module {self.module})"

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        import pkcs11

        with self._mutex:
            try:
                token = _lib(self.module).get_token(token_label=self.token_label)
            except pkcs11.exceptions.PKCS11Error as exc:
                raise KeyRingError(
                    f"no PKCS#11 token labelled {self.token_label!r} in {self.module} "
                    f"({type(exc).__name__})"
                ) from None
            try:
                session = token.open(user_pin=self._pin, rw=True)
            except pkcs11.exceptions.PKCS11Error as exc:
                raise KeyRingError(
                    f"cannot log in to the PKCS#11 token {self.token_label!r} "
                    f"({type(exc).__name__}: is STREETHUB_PKCS11_PIN right?)"
                ) from None
            with session:
                yield session

    def _keys(self, session: Any) -> dict[str, Any]:
        from pkcs11 import Attribute, ObjectClass

        found = session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: self.label}
        )
        return {bytes(obj[Attribute.ID]).hex(): obj for obj in found}

    def kids(self) -> list[str]:
        with self._session() as session:
            return sorted(self._keys(session))

    def primary(self, *, create: bool) -> str | None:
        with self._session() as session:
            keys = self._keys(session)
        if len(keys) == 1:
            return next(iter(keys))
        if len(keys) > 1:
            raise KeyRingError(
                f"{self.describe()} holds {len(keys)} master keys and no key ring names one"
            )
        return self.add() if create else None

    def add(self, material: bytes | None = None) -> str:
        from pkcs11 import Attribute, KeyType

        if material is not None:
            raise KeyRingError(f"{self.describe()} makes its own keys; none can be given to it")
        kid = secrets.token_bytes(8)
        with self._session() as session:
            session.generate_key(
                KeyType.AES,
                256,
                id=kid,
                label=self.label,
                store=True,
                template={
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.ENCRYPT: True,
                    Attribute.DECRYPT: True,
                    Attribute.WRAP: False,
                    Attribute.UNWRAP: False,
                },
            )
        return kid.hex()

    def retire(self, keep: str) -> None:
        with self._session() as session:
            keys = self._keys(session)
            if keep not in keys:
                raise self.missing(keep)
            for kid, obj in keys.items():
                if kid != keep:
                    obj.destroy()

    def _crypt(self, kid: str, op: str, data: bytes, nonce: bytes, aad: bytes) -> bytes:
        import pkcs11
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        with self._session() as session:
            key = self._keys(session).get(kid)
            if key is None:
                raise self.missing(kid)
            param = GCMParams(nonce, aad, 128)
            try:
                return getattr(key, op)(data, mechanism=Mechanism.AES_GCM, mechanism_param=param)
            except pkcs11.exceptions.PKCS11Error:
                raise KeyRingError(
                    f"a data key does not {'un' if op == 'decrypt' else ''}wrap in "
                    f"{self.describe()}"
                ) from None

    def wrap(self, kid: str, data: bytes, aad: bytes, suite: CipherSuite) -> tuple[str, bytes]:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return WRAP, nonce + self._crypt(kid, "encrypt", data, nonce, aad)

    def unwrap(self, kid: str, algorithm: str, blob: bytes, aad: bytes) -> bytes:
        if algorithm != WRAP:
            raise KeyRingError(f"{self.describe()} cannot unwrap a key wrapped with {algorithm}")
        return self._crypt(kid, "decrypt", blob[NONCE_BYTES:], blob[:NONCE_BYTES], aad)
