"""Every HTTP client of a process shares one verifying TLS context (``cl_client._tls``), and it still verifies.

A real HTTPS server on 127.0.0.1 with a certificate from a throw-away CA made by ``openssl``; the trust comes from
``SSL_CERT_FILE`` as with httpx's own default. Checked: the clients connect when the CA is trusted, a client
made after ``SSL_CERT_FILE`` names another bundle refuses the server (so the shared context follows the variable
and verification stays on), and many clients reuse one context instead of reading the CA bundle each time.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cl_client import AsyncComputeClient, ComputeClient, ComputeConnectionError
from cl_client._tls import shared_ssl_context

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA (``ca.pem``), a server certificate for 127.0.0.1 signed by it, and an unrelated CA (``other.pem``)."""
    d = tmp_path_factory.mktemp("pki")
    for name in ("ca", "other"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=test {name} CA",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d,
        )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr", cwd=d,
    )  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.ext", "-out", "server.pem", cwd=d,
    )  # fmt: skip
    return d


class _Capabilities(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"num_workers": 1, "capabilities": {"hash": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def https_url(pki: Path) -> Iterator[str]:
    """An HTTPS server that answers ``GET /capabilities``, with the certificate of ``pki``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capabilities)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_clients_reach_a_server_their_trusted_ca_signed(
    monkeypatch: pytest.MonkeyPatch, pki: Path, https_url: str
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.pem"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with ComputeClient(https_url, mqtt_url="off") as client:
        assert client.get_capabilities().num_workers == 1

    async def main() -> int:
        async with AsyncComputeClient(https_url, mqtt_url="off") as client:
            return (await client.get_capabilities()).num_workers

    assert asyncio.run(main()) == 1


def test_a_client_made_under_other_trust_refuses_the_server(
    monkeypatch: pytest.MonkeyPatch, pki: Path, https_url: str
) -> None:
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.pem"))
    with ComputeClient(https_url, mqtt_url="off") as trusted:
        trusted.get_capabilities()
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "other.pem"))  # the shared context must not be the old one
    with ComputeClient(https_url, mqtt_url="off") as untrusted, pytest.raises(ComputeConnectionError) as caught:
        untrusted.get_capabilities()
    assert "certificate" in str(caught.value).lower() or "ssl" in str(caught.value).lower(), str(caught.value)


def test_many_clients_share_one_context(monkeypatch: pytest.MonkeyPatch, pki: Path) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.pem"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    first = shared_ssl_context()
    assert shared_ssl_context() is first
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    loads: list[object] = []
    real = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(args or kwargs)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    clients = [ComputeClient("http://127.0.0.1:9", mqtt_url="off") for _ in range(5)]
    for client in clients:
        client.close()
    assert loads == [], f"each new client read the CA bundle again: {len(loads)} reads for 5 clients"
