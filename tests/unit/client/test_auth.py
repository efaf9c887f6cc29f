"""Auth providers against a real (scripted) auth service."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from cl_client import (
    AsyncComputeClient,
    AuthenticationError,
    ComputeClient,
    ComputeClientConfig,
    ComputeConnectionError,
    ConfigurationError,
    JWTAuthProvider,
    NoAuthProvider,
)
from cl_client._auth import token_expiry
from tests.unit.ports import unassigned_port

from .scripted_server import Injected, ScriptedServer

CFG = ComputeClientConfig(mqtt_url=None, retry_backoff_base=0.01, retry_backoff_max=0.02)


def provider(server: ScriptedServer, **kw: object) -> JWTAuthProvider:
    return JWTAuthProvider(username="alice", password="s3cret", auth_url=server.url, **kw)  # type: ignore[arg-type]


def _token(payload: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"e30.{body}.sig"


def test_token_expiry_reading() -> None:
    assert token_expiry(_token({"exp": 1234})) == 1234.0
    assert token_expiry(_token({"exp": True})) is None
    assert token_expiry(_token({"id": "x"})) is None
    assert token_expiry("not-a-jwt") is None
    assert token_expiry("a.!!!.c") is None
    assert token_expiry(_token([1, 2])) is None  # type: ignore[arg-type]


def test_provider_needs_credentials() -> None:
    with pytest.raises(ConfigurationError):
        JWTAuthProvider()
    with pytest.raises(ConfigurationError):
        JWTAuthProvider(username="a")
    assert NoAuthProvider().headers() == {}
    assert NoAuthProvider().invalidate() is False


def test_login_once_then_reuse(http_only_server: ScriptedServer) -> None:
    auth = provider(http_only_server)
    with ComputeClient(http_only_server.url, config=CFG, auth_provider=auth) as client:
        client.get_storage_size()
        client.get_guest_mode()
        client.get_storage_size()
    assert http_only_server.tokens_issued == 1
    sent = {h.get("authorization", "") for m, p, h in http_only_server.requests if not p.startswith("/auth")}
    assert len(sent) == 1
    assert next(iter(sent)).startswith("Bearer ")
    assert "s3cret" not in repr(auth)


def test_refresh_when_close_to_expiry_and_relogin_when_refresh_fails(http_only_server: ScriptedServer) -> None:
    http_only_server.token_lifetime = 30  # under the 60 s margin: every use refreshes
    auth = provider(http_only_server)
    with ComputeClient(http_only_server.url, config=CFG, auth_provider=auth) as client:
        client.get_storage_size()
        assert http_only_server.tokens_issued == 1
        client.get_storage_size()
        client.get_storage_size()
        assert http_only_server.refreshes == 2
        http_only_server.refreshes = -1  # refresh now refused: log in again
        client.get_storage_size()
        assert http_only_server.tokens_issued == 2


def test_401_invalidates_and_retries_once_with_a_new_login(http_only_server: ScriptedServer, tmp_path: Path) -> None:
    http_only_server.auth_required = True
    http_only_server.revoke_next_issued = True  # the first login's token is refused with 401
    auth = provider(http_only_server)
    sample = tmp_path / "x.bin"
    sample.write_bytes(b"abc")
    with ComputeClient(http_only_server.url, config=CFG, auth_provider=auth) as client:
        job = client.submit("hash", sample)  # first token refused with 401, second accepted
        assert client.get_job(job.job_id).job_id == job.job_id
    assert http_only_server.tokens_issued == 2


def test_static_token_401_is_not_retried(http_only_server: ScriptedServer) -> None:
    http_only_server.auth_required = True
    with ComputeClient(http_only_server.url, config=CFG, token="wrong.TOKEN.x") as client:
        with pytest.raises(AuthenticationError) as exc_info:
            client.get_job("j")
    assert exc_info.value.status_code == 401
    assert "TOKEN" not in str(exc_info.value)
    assert http_only_server.count("GET", "/jobs/j") == 1


def test_bad_password_and_unreachable_auth_service(
    http_only_server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = JWTAuthProvider(username="alice", password="WRONGPW", auth_url=http_only_server.url)
    with pytest.raises(AuthenticationError) as exc_info:
        bad.headers()
    assert "WRONGPW" not in str(exc_info.value)
    assert "WRONGPW" not in caplog.text
    dead = JWTAuthProvider(username="a", password="b", auth_url=f"http://127.0.0.1:{unassigned_port()}")
    with pytest.raises(ComputeConnectionError, match="auth service"):
        dead.headers()
    dead.close()
    bad.close()


def test_credentials_from_config_build_a_jwt_provider(http_only_server: ScriptedServer) -> None:
    with ComputeClient(
        http_only_server.url, config=CFG, username="alice", password="s3cret", auth_url=http_only_server.url
    ) as client:
        assert isinstance(client.auth, JWTAuthProvider)
        client.get_storage_size()
    assert http_only_server.tokens_issued == 1
    with ComputeClient(http_only_server.url, config=CFG, token="t.o.k") as client:
        assert isinstance(client.auth, JWTAuthProvider)
        assert client.auth.has_credentials is False


async def test_async_login_refresh_and_relogin(http_only_server: ScriptedServer) -> None:
    http_only_server.token_lifetime = 30
    auth = provider(http_only_server)
    async with AsyncComputeClient(http_only_server.url, config=CFG, auth_provider=auth) as client:
        await client.get_storage_size()
        await client.get_storage_size()
        assert (http_only_server.tokens_issued, http_only_server.refreshes) == (1, 1)
        http_only_server.refreshes = -1
        await client.get_storage_size()
        assert http_only_server.tokens_issued == 2
    bad = JWTAuthProvider(username="alice", password="nope", auth_url=http_only_server.url)
    with pytest.raises(AuthenticationError):
        await bad.aheaders()
    dead = JWTAuthProvider(username="a", password="b", auth_url=f"http://127.0.0.1:{unassigned_port()}")
    with pytest.raises(ComputeConnectionError):
        await dead.aheaders()
    await dead.aclose()
    await bad.aclose()


def test_public_routes_answer_despite_a_failed_login(http_only_server: ScriptedServer) -> None:
    """``/`` and ``/capabilities`` need no credentials: a wrong password must not hide that the server is up,
    and no login is even attempted for them; job routes still report the login failure."""
    http_only_server.auth_required = True
    bad = JWTAuthProvider(username="alice", password="WRONGPW", auth_url=http_only_server.url)
    with ComputeClient(http_only_server.url, config=CFG, auth_provider=bad) as client:
        assert client.health().status == "healthy"
        assert client.get_capabilities().capabilities == {"hash": 1}
        assert http_only_server.count("POST", "/auth/token") == 0
        sent = [h for m, p, h in http_only_server.requests if p in ("/", "/capabilities")]
        assert sent and all("authorization" not in h for h in sent)
        with pytest.raises(AuthenticationError):
            client.get_job("j")


async def test_async_public_routes_and_a_proxy_that_wants_credentials(http_only_server: ScriptedServer) -> None:
    """A 401 on a public route (an authenticating proxy in front) repeats it once, with credentials."""
    http_only_server.inject[("GET", "/capabilities")] = Injected(401, 1, body={"detail": "proxy: log in"})
    async with AsyncComputeClient(http_only_server.url, config=CFG, auth_provider=provider(http_only_server)) as c:
        assert (await c.health()).status == "healthy"
        assert (await c.get_capabilities()).num_workers == 1
    sent = [h for m, p, h in http_only_server.requests if p == "/capabilities"]
    assert ["authorization" in h for h in sent] == [False, True]
    assert http_only_server.tokens_issued == 1
