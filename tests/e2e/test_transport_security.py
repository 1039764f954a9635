"""TLS with a self-signed certificate made here, security headers on every kind of answer, and CORS
only for configured origins — against real `servekit serve` processes."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from pathlib import Path

import httpx
import pytest

from tests.support import ServerProcess, iris_bundle

ROW = {"features": [5.1, 3.5, 1.4, 0.2]}
ORIGIN = "https://app.example.com"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "servekit test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    bundle = iris_bundle(tmp_path)
    args = ["serve", str(bundle), "--trust", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    with ServerProcess(args) as server:
        url = f"https://127.0.0.1:{server.port}"
        context = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=url, verify=context, timeout=5) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.1)
            answer = client.post("/v1/models/iris/predict", json=ROW)
            assert answer.status_code == 200
            assert answer.json()["predictions"][0]["prediction"] == "setosa"
            assert answer.headers["strict-transport-security"].startswith("max-age=")
        with pytest.raises(httpx.TransportError):  # a client that does not trust the certificate
            httpx.get(f"{url}/health/live", timeout=5)
        with pytest.raises(httpx.TransportError):  # plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{server.port}/health/live", timeout=5)
        assert server.terminate() == 0


def test_tls_needs_both_files(tmp_path: Path) -> None:
    from tests.e2e.test_serve import servekit

    cert, _ = self_signed(tmp_path)
    bundle = iris_bundle(tmp_path)
    alone = servekit("serve", str(bundle), "--trust", "--ssl-certfile", str(cert))
    assert alone.returncode == 2
    assert "TLS needs both ssl_certfile and ssl_keyfile" in alone.stderr
    missing = servekit("serve", str(bundle), "--trust", "--ssl-certfile", str(cert), "--ssl-keyfile", "nope.pem")
    assert missing.returncode == 2
    assert "--ssl-keyfile nope.pem: no such file" in missing.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("headers")
    bundle = iris_bundle(tmp)
    env = {"SERVEKIT_CORS_ORIGINS": f'["{ORIGIN}"]'}
    with ServerProcess(["serve", str(bundle), "--trust"], env=env) as server:
        server.wait_ready()
        with server.client() as client:
            yield client


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/models/iris/predict", ROW),  # answered by the hot path
        ("POST", "/v1/models/iris/predict", {"features": [1]}),  # a hot-path error
        ("GET", "/v1/models/iris", None),  # answered by FastAPI
        ("GET", "/nope", None),  # no route
        ("POST", "/v2/models/iris/infer", {"inputs": []}),
    ],
)
def test_every_answer_has_the_security_headers(served, method: str, path: str, body: dict | None) -> None:
    answer = served.request(method, path, json=body)
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "strict-transport-security" not in answer.headers  # plain HTTP here


def test_the_docs_page_can_load_its_scripts(served) -> None:
    page = served.get("/docs")
    assert page.status_code == 200
    assert "content-security-policy" not in page.headers
    assert page.headers["x-content-type-options"] == "nosniff"


def test_cors_only_for_the_configured_origin(served) -> None:
    for path in ("/v1/models/iris/predict", "/predict"):  # hot path
        allowed = served.post(path, json=ROW, headers={"Origin": ORIGIN})
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert "x-request-id" in allowed.headers["access-control-expose-headers"]
        other = served.post(path, json=ROW, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    detail = served.get("/v1/models/iris", headers={"Origin": ORIGIN})  # FastAPI path
    assert detail.headers["access-control-allow-origin"] == ORIGIN
    preflight = served.options(
        "/v1/models/iris/predict",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-api-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    refused = served.options(
        "/v1/models/iris/predict", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


def test_no_cors_unless_configured(tmp_path: Path) -> None:
    bundle = iris_bundle(tmp_path)
    with ServerProcess(["serve", str(bundle), "--trust"]) as server:
        server.wait_ready()
        with server.client() as client:
            answer = client.post("/v1/models/iris/predict", json=ROW, headers={"Origin": ORIGIN})
            preflight = client.options(
                "/v1/models/iris/predict", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
            )
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-origin" not in preflight.headers
