"""TLS on the gateway: ``searchtuner serve --tls-cert --tls-key`` serves HTTPS and gRPC over
TLS on its two ports (a self-signed certificate for 127.0.0.1 here), tokens still required; a
plaintext client gets no answer.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.service import REPO, Service

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 / localhost, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(root)
    service = Service(
        root / "data", root / "service.log", args=("--tls-cert", str(cert), "--tls-key", str(key))
    )
    service.start()
    yield service
    service.stop()


def test_https_serves_with_the_certificate_and_still_needs_a_token(tls_service: Service) -> None:
    assert tls_service.http.startswith("https://")
    assert tls_service.get("/healthz").status_code == 200
    assert tls_service.get("/datasets").json() == []
    assert tls_service.get("/datasets", headers={}).status_code == 401
    with pytest.raises(requests.exceptions.SSLError):  # an unknown certificate is refused
        requests.get(f"{tls_service.http}/healthz", timeout=10)
    plain = f"http://127.0.0.1:{tls_service.http_port}/healthz"
    with pytest.raises(requests.exceptions.ConnectionError):  # no plaintext answers
        requests.get(plain, timeout=10)


def _sdk(url: str, token: str, roots: str | None) -> subprocess.CompletedProcess[str]:
    """The SDK listing datasets in a fresh interpreter (gRPC reads its root certificates once
    per process, from GRPC_DEFAULT_SSL_ROOTS_FILE_PATH)."""
    env = {**os.environ}
    env.pop("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", None)
    if roots:
        env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = roots
    code = (
        "import searchtuner, sys\n"
        f"print(len(searchtuner.Client({url!r}, token={token!r}, timeout=30).list_datasets()))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_grpc_over_tls_with_the_sdk(tls_service: Service) -> None:
    assert tls_service.grpc.startswith("grpcs://")
    cert = str(tls_service.verify)
    trusted = _sdk(tls_service.grpc, tls_service.token, cert)
    assert trusted.returncode == 0, trusted.stderr[-2000:]
    assert trusted.stdout.strip().splitlines()[-1] == "0"
    plaintext = _sdk(f"grpc://127.0.0.1:{tls_service.grpc_port}", tls_service.token, None)
    assert plaintext.returncode != 0
    untrusted = _sdk(tls_service.grpc, tls_service.token, None)
    assert untrusted.returncode != 0
