"""The 国密 algorithms against their standards' published test vectors, through
``masking.suite`` (the one place that names an algorithm).

- SM4 (GB/T 32907-2016, Appendix A example 1): key = plaintext =
  0123456789abcdeffedcba9876543210 → 681edf34d206965e86b3e94f536e4246. The suite only
  offers SM4 in GCM mode, whose counter blocks are SM4 encryptions: GCM's tag of an empty
  message with no AAD is E(nonce ‖ 0^31 1) and its first keystream block E(nonce ‖ 0^30 10),
  both checked against the vector-checked block cipher; and the whole mode against the
  SM4-GCM vector of RFC 8998 (ShangMi cipher suites for TLS 1.3, Appendix A.1).
- SM3 (GB/T 32905-2016, Appendix A): "abc" and the 512-bit message "abcd" × 16.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from masking.suite import get_suite

SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
SM4_EXAMPLE_1 = bytes.fromhex("681edf34d206965e86b3e94f536e4246")


def sm4_block(key: bytes, block: bytes) -> bytes:
    """One SM4 block encryption (ECB of one block): the primitive under the suite's GCM."""
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def test_sm4_block_cipher_gbt_32907_example_1() -> None:
    assert sm4_block(SM4_KEY, SM4_KEY) == SM4_EXAMPLE_1


@pytest.mark.parametrize("nonce", [bytes(12), SM4_KEY[:12], bytes(range(12))])
def test_suite_sm4_gcm_is_built_on_that_block_cipher(nonce: bytes) -> None:
    aead = get_suite("gm").aead(SM4_KEY + bytes(16))  # the suite uses a data key's first 16
    # empty message, no AAD: GHASH is 0, the tag is E(J0), J0 = nonce ‖ 00000001
    assert aead.encrypt(nonce, b"", None) == sm4_block(SM4_KEY, nonce + b"\0\0\0\1")
    # the first keystream block is E(J0 + 1)
    out = aead.encrypt(nonce, bytes(16), None)
    assert out[:16] == sm4_block(SM4_KEY, nonce + b"\0\0\0\2")
    assert aead.decrypt(nonce, out, None) == bytes(16)


def test_suite_sm4_gcm_rfc_8998_vector() -> None:
    nonce = bytes.fromhex("00001234567800000000ABCD")
    plaintext = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    ciphertext = bytes.fromhex(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    tag = bytes.fromhex("83DE3541E4C2B58177E065A9BF7B62EC")
    aead = get_suite("gm").aead(SM4_KEY)
    assert aead.encrypt(nonce, plaintext, aad) == ciphertext + tag
    assert aead.decrypt(nonce, ciphertext + tag, aad) == plaintext


SM3_VECTORS = [
    (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
]


@pytest.mark.parametrize(("message", "digest"), SM3_VECTORS)
def test_sm3_gbt_32905_examples(message: bytes, digest: str) -> None:
    suite = get_suite("gm")
    assert suite.hash_name == "sm3"
    assert suite.hash(message).hex() == digest
    h = suite.hasher()  # the streaming form, fed in pieces
    for i in range(0, len(message), 5):
        h.update(message[i : i + 5])
    assert h.digest().hex() == digest


@pytest.mark.parametrize(("suite", "digest"), [("intl", "sha256"), ("gm", "sm3")])
def test_mac_is_the_standard_hmac(suite: str, digest: str) -> None:
    """HMAC over the vector-checked hash, against hashlib's HMAC (a separate code path)."""
    key = bytes(range(64))
    s = get_suite(suite)
    mac = s.keyed_mac(key)
    for data in (b"", b"abc", b"11010519491231002X" * 9):
        want = hmac.digest(key, data, digest)
        assert s.mac(key, data) == want == mac(data)
        assert s.mac_ok(key, data, want) and not s.mac_ok(key, data + b"!", want)
    assert hashlib.new("sm3", b"abc").hexdigest() == SM3_VECTORS[0][1]  # hashlib's own SM3
