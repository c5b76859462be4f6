"""Cipher suites: the one place that names an algorithm.

A deployment picks its suite once, at its first run (``STREETHUB_CIPHER_SUITE``):

=========  ====================  ==========  ===========  ============
suite      authenticated cipher  hash        MAC          signature
=========  ====================  ==========  ===========  ============
``intl``   AES-256-GCM           SHA-256     HMAC-SHA256  Ed25519
``gm``     SM4-GCM (GB/T 32907)  SM3 (GB/T   HMAC-SM3     SM2 (GB/T
           128-bit key           32905)                   32918) with SM3
=========  ====================  ==========  ===========  ============

The 国密 suite is what GB/T 39786-2021 (商用密码应用安全性评估) asks of a government
system. SM4 and SM3 come from ``cryptography`` (OpenSSL); SM2 signatures from ``gmssl``
(pure Python, about 12 ms a signature: sign checkpoints, not records).

Every caller goes through :func:`get_suite` and the :class:`CipherSuite` it returns;
nothing else in the project imports an algorithm class. Keys are the key ring's 32-byte
data keys: SM4 takes their first 16 bytes (a uniformly random key either way); a signing
key is derived from a 32-byte seed held in the key ring.
"""

from __future__ import annotations

import hashlib
import hmac as std_hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from masking.errors import KeyRingError

NONCE_BYTES = 12
TAG_BYTES = 16
SEED_BYTES = 32


class Suite(StrEnum):
    INTL = "intl"
    GM = "gm"


class Aead(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes: ...
    def decrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes: ...


class Hasher(Protocol):
    def update(self, data: bytes) -> None: ...
    def digest(self) -> bytes: ...


class Signer(Protocol):
    def sign(self, data: bytes) -> bytes: ...
    def public_key(self) -> bytes: ...


class _Sm4Gcm:
    """SM4 in GCM mode with the AESGCM calling convention (ciphertext ‖ 16-byte tag)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise KeyRingError("an SM4 key is 16 bytes")
        self._key = key[:16]

    def encrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        enc = Cipher(algorithms.SM4(self._key), modes.GCM(nonce)).encryptor()
        if aad:
            enc.authenticate_additional_data(aad)
        return enc.update(data) + enc.finalize() + enc.tag

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        if len(data) < TAG_BYTES:
            raise InvalidTag()
        dec = Cipher(algorithms.SM4(self._key), modes.GCM(nonce, data[-TAG_BYTES:])).decryptor()
        if aad:
            dec.authenticate_additional_data(aad)
        return dec.update(data[:-TAG_BYTES]) + dec.finalize()


class _CryptoHasher:
    __slots__ = ("_h",)

    def __init__(self, algorithm: hashes.HashAlgorithm) -> None:
        self._h = hashes.Hash(algorithm)

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.copy().finalize()


class _Ed25519Signer:
    __slots__ = ("_key",)

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed[:SEED_BYTES])

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def public_key(self) -> bytes:
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


_SM2_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)


def _sm2(private_hex: str, public_hex: str):  # -> gmssl.sm2.CryptSM2
    from gmssl import sm2

    crypt = sm2.CryptSM2(private_key=private_hex, public_key="")
    # gmssl strips a leading "04" with str.lstrip, which also eats a public key's own
    # leading 0s and 4s: set the 64-byte point (x ‖ y, hex) directly instead
    crypt.public_key = public_hex
    return crypt


class _Sm2Signer:
    """SM2 with SM3 (the Z value of GB/T 32918 with the default user id); the nonce k
    comes from ``secrets`` (gmssl's own default draws it from ``random``)."""

    __slots__ = ("_crypt", "_public")

    def __init__(self, seed: bytes) -> None:
        d = int.from_bytes(seed[:SEED_BYTES], "big") % (_SM2_N - 1) + 1
        private_hex = f"{d:064x}"
        crypt = _sm2(private_hex, "")
        # the public point d·G (gmssl has no public key-derivation call besides this one)
        self._public = crypt._kg(d, crypt.ecc_table["g"])
        crypt.public_key = self._public
        self._crypt = crypt

    def sign(self, data: bytes) -> bytes:
        while True:
            k = secrets.randbelow(_SM2_N - 1) + 1
            sig = self._crypt.sign_with_sm3(data, f"{k:064x}")
            if sig:
                return bytes.fromhex(sig)

    def public_key(self) -> bytes:
        return bytes.fromhex(self._public)


@dataclass(frozen=True)
class CipherSuite:
    """The algorithms of one suite. Stateless; keys are passed in."""

    name: Suite

    # -- authenticated encryption ------------------------------------------------------
    def aead(self, key: bytes) -> Aead:
        """An AEAD object: ``encrypt(nonce, data, aad)`` → ciphertext ‖ tag; ``decrypt``
        raises ``cryptography.exceptions.InvalidTag`` on any change."""
        return AESGCM(key) if self.name is Suite.INTL else _Sm4Gcm(key)

    # -- hashing and MACs --------------------------------------------------------------
    @property
    def hash_name(self) -> str:
        return "sha256" if self.name is Suite.INTL else "sm3"

    def hasher(self) -> Hasher:
        return _CryptoHasher(hashes.SHA256() if self.name is Suite.INTL else hashes.SM3())

    def hash(self, data: bytes) -> bytes:
        if self.name is Suite.INTL:
            return hashlib.sha256(data).digest()
        h = self.hasher()
        h.update(data)
        return h.digest()

    def mac(self, key: bytes, data: bytes) -> bytes:
        if self.name is Suite.INTL:
            return std_hmac.new(key, data, hashlib.sha256).digest()
        m = crypto_hmac.HMAC(key, hashes.SM3())
        m.update(data)
        return m.finalize()

    def keyed_mac(self, key: bytes) -> Callable[[bytes], bytes]:
        """The MAC under one key as a function, for many values: the keyed state is set
        up once and copied per value (HMAC-SM3 about 3× faster than :meth:`mac` each)."""
        keyed = crypto_hmac.HMAC(key, hashes.SHA256() if self.name is Suite.INTL else hashes.SM3())

        def mac(data: bytes) -> bytes:
            m = keyed.copy()
            m.update(data)
            return m.finalize()

        return mac

    def mac_ok(self, key: bytes, data: bytes, tag: bytes) -> bool:
        return std_hmac.compare_digest(self.mac(key, data), tag)

    # -- signatures --------------------------------------------------------------------
    @property
    def signature_name(self) -> str:
        return "ed25519" if self.name is Suite.INTL else "sm2-sm3"

    def signer(self, seed: bytes) -> Signer:
        """The signing key derived from a 32-byte seed (kept wrapped in the key ring)."""
        if len(seed) < SEED_BYTES:
            raise KeyRingError(f"a signing seed is {SEED_BYTES} bytes")
        return _Ed25519Signer(seed) if self.name is Suite.INTL else _Sm2Signer(seed)

    def verify(self, public_key: bytes, data: bytes, signature: bytes) -> bool:
        """True when ``signature`` over ``data`` verifies under ``public_key`` (no secret)."""
        if self.name is Suite.INTL:
            try:
                Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
            except (InvalidSignature, ValueError):
                return False
            return True
        if len(public_key) != 64 or len(signature) != 64:
            return False
        return bool(_sm2("", public_key.hex()).verify_with_sm3(signature.hex(), data))


def get_suite(name: str | Suite) -> CipherSuite:
    try:
        return CipherSuite(Suite(name))
    except ValueError:
        raise KeyRingError(
            f"unknown cipher suite {name!r}: one of {', '.join(s.value for s in Suite)}"
        ) from None
