"""Pulls over HTTPS verify the department's certificate, through one TLS context a process.

A real HTTPS server with a certificate no trusted root signed (made here, self-signed):
the pull is refused before any request reaches it, and says why in the delivery's error.
Every pull of a process shares :func:`pipelines.connectors.http_api.tls_context` (httpx's
verifying default, made once: a client made without a context loads the roots anew)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from catalog.errors import DeliveryError
from pipelines.connectors.http_api import RetryPolicy, pull_http, tls_context
from tests.page_helper_api import PageHelperApi
from tests.pipelines.test_http_paging import PAGE_HELPER, RECORDS, TOKEN, dataset, settings_for


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key: (certificate, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "街道 test department")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem, key_pem = folder / "cert.pem", folder / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_pem, key_pem


@pytest.fixture
def https_api(tmp_path: Path) -> Iterator[PageHelperApi]:
    """The page-helper API served over HTTPS with a self-signed certificate."""
    api = PageHelperApi(RECORDS, TOKEN, cap=3)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            body = json.dumps(api.answer(query, dict(self.headers))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api.url = f"https://127.0.0.1:{server.server_port}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def test_a_certificate_no_trusted_root_signed_is_refused(
    tmp_path: Path, https_api: PageHelperApi
) -> None:
    settings = settings_for(tmp_path / "home", https_api.url)
    with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED") as caught:
        pull_http(settings, "rx", dataset(**PAGE_HELPER), None, policy=RetryPolicy(attempts=1))
    assert https_api.asked == [], "no request reached the server"
    assert TOKEN not in str(caught.value)


def test_every_pull_shares_one_verifying_context() -> None:
    context = tls_context()
    assert tls_context() is context
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
