"""REST behaviour of the sync and async clients against a real (scripted) HTTP server."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import httpx
import pytest

from cl_client import (
    AsyncComputeClient,
    AuthenticationError,
    ComputeClient,
    ComputeClientConfig,
    ComputeConnectionError,
    ConfigurationError,
    JobNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    ValidationError,
)
from tests.unit.ports import unassigned_port

from .scripted_server import Injected, ScriptedServer

FAST = ComputeClientConfig(retry_backoff_base=0.01, retry_backoff_max=0.05, mqtt_url=None)


def make(server: ScriptedServer, **kw: object) -> ComputeClient:
    return ComputeClient(server.url, mqtt_url="", config=FAST, **kw)  # type: ignore[arg-type]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    p = tmp_path / "café 画像 #1?.jpg"
    p.write_bytes(bytes(range(256)) * 1000)
    return p


def test_health_and_capabilities(http_only_server: ScriptedServer) -> None:
    with make(http_only_server) as client:
        health = client.health()
        assert (health.status, health.version, health.guest_mode) == ("healthy", "0.0-test", "on")
        assert client.get_capabilities().capabilities == {"hash": 1}


def test_submit_streams_file_keeps_unicode_name_and_fields(http_only_server: ScriptedServer, sample: Path) -> None:
    with make(http_only_server) as client:
        job = client.submit("hash", sample, {"algorithm": "md5", "normalize": True, "skip": None, "v": [1, 2]}, 7)
        up = http_only_server.uploads[job.job_id]
        assert up.filename == sample.name
        assert up.size == sample.stat().st_size
        assert up.sha256 == hashlib.sha256(sample.read_bytes()).hexdigest()
        assert up.fields == {"algorithm": "md5", "normalize": "true", "v": "[1,2]", "priority": "7"}
        assert up.content_type == "image/jpeg"
        record = client.get_job(job.job_id)
        assert record.priority == 7 and record.status == "queued" and record.task_type == "hash"


def test_priority_validated_before_sending(http_only_server: ScriptedServer, sample: Path) -> None:
    with make(http_only_server) as client:
        for bad in (-1, 11):
            with pytest.raises(ConfigurationError):
                client.submit("hash", sample, priority=bad)
        with pytest.raises(FileNotFoundError):
            client.submit("hash", sample.parent / "missing.jpg")
        with pytest.raises(IsADirectoryError):
            client.submit("hash", sample.parent)
    assert http_only_server.count("POST", "/jobs") == 0


def test_error_mapping(http_only_server: ScriptedServer, sample: Path) -> None:
    with make(http_only_server) as client:
        with pytest.raises(JobNotFoundError) as exc_info:
            client.get_job("nope")
        err = exc_info.value
        assert err.job_id == "nope" and err.status_code == 404 and err.method == "GET"
        assert "/jobs/nope" in err.url and err.detail == "Job nope not found"
        assert "Job nope not found" in str(err)
        with pytest.raises(JobNotFoundError):
            client.delete_job("nope")
        job = client.submit("hash", sample)
        with pytest.raises(NotFoundError) as nf:
            client.download_job_file(job.job_id, "output/missing.bin", sample.parent)
        assert not isinstance(nf.value, JobNotFoundError)
        http_only_server.inject[("GET", "/capabilities")] = Injected(
            403, 1, body={"detail": "Insufficient permissions."}
        )
        with pytest.raises(PermissionDeniedError):
            client.get_capabilities()
        http_only_server.inject[("GET", "/admin/jobs/storage/size")] = Injected(
            401, 1, body={"detail": "Authentication required"}
        )
        with pytest.raises(AuthenticationError, match="Authentication required"):
            client.get_storage_size()
        http_only_server.inject[("GET", "/capabilities")] = Injected(500, 9, body={"detail": "boom"})
        with pytest.raises(ServerError, match="boom"):
            client.get_capabilities()
        assert http_only_server.count("GET", "/capabilities") == 2  # 500 is not retried


def test_validation_error_carries_fields(http_only_server: ScriptedServer, sample: Path) -> None:
    bad = ComputeClientConfig(mqtt_url=None, max_priority=99)  # let a bad priority through to the server
    with ComputeClient(http_only_server.url, config=bad) as client, pytest.raises(ValidationError) as exc_info:
        client.submit("hash", sample, priority=50)
    assert exc_info.value.errors[0][0] == "body.priority"


def test_retries_idempotent_requests_with_retry_after(http_only_server: ScriptedServer) -> None:
    http_only_server.inject[("GET", "/")] = Injected(503, 2, headers={"Retry-After": "0.2"})
    with make(http_only_server) as client:
        start = time.monotonic()
        assert client.health().status == "healthy"
        elapsed = time.monotonic() - start
    assert http_only_server.count("GET", "/") == 3
    # Retry-After (0.2 s) is capped at retry_backoff_max=0.05 here: two waits of at least 0.05 s each. The upper
    # bound only catches a wait that never ends; it is far above any honest run, even on a loaded machine.
    assert elapsed >= 0.09, f"the two retries waited {elapsed:.3f} s in all, less than 2 x retry_backoff_max"
    assert elapsed < 10.0, f"the two retries took {elapsed:.1f} s"


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retry_statuses_give_up_after_max_retries(http_only_server: ScriptedServer, status: int) -> None:
    http_only_server.inject[("GET", "/capabilities")] = Injected(status, 99)
    with make(http_only_server) as client:
        expected = RateLimitedError if status == 429 else ServerError
        with pytest.raises(expected):
            client.get_capabilities()
    assert http_only_server.count("GET", "/capabilities") == FAST.max_retries + 1


def test_job_creation_is_never_retried(http_only_server: ScriptedServer, sample: Path) -> None:
    http_only_server.inject[("POST", "/jobs/hash")] = Injected(503, 5)
    with make(http_only_server) as client, pytest.raises(ServerError):
        client.submit("hash", sample)
    assert http_only_server.count("POST", "/jobs/hash") == 1


def test_connection_refused_is_a_clear_error() -> None:
    port = unassigned_port()
    with ComputeClient(f"http://127.0.0.1:{port}", config=FAST) as client:
        with pytest.raises(ComputeConnectionError) as exc_info:
            client.health()
    assert f"127.0.0.1:{port}" in str(exc_info.value) and exc_info.value.method == "GET"


def test_download_streams_to_place_and_creates_no_partial_file(
    http_only_server: ScriptedServer, sample: Path, tmp_path: Path
) -> None:
    with make(http_only_server) as client:
        job = client.submit("hash", sample)
        out = client.download_job_file(job.job_id, "output/result.bin", tmp_path / "sub" / "r.bin")
        assert out == tmp_path / "sub" / "r.bin" and out.read_bytes() == b"R" * 300_000
        into_dir = job.download("output/result.bin", tmp_path)
        assert into_dir == tmp_path / "result.bin"
        http_only_server.truncate_downloads = True
        target = tmp_path / "broken.bin"
        with pytest.raises(ComputeConnectionError):
            client.download_job_file(job.job_id, "output/result.bin", target)
        assert not target.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize(
    ("file_path", "raw"),
    [
        ("../../etc/passwd", "/files/%2E%2E/%2E%2E/etc/passwd"),
        ("faces/face 0.png", "/files/faces/face%200.png"),
        ("output/a#b?.txt", "/files/output/a%23b%3F.txt"),
    ],
)
def test_download_path_segments_are_quoted(
    http_only_server: ScriptedServer, sample: Path, tmp_path: Path, file_path: str, raw: str
) -> None:
    with make(http_only_server) as client:
        job = client.submit("hash", sample)
        with pytest.raises((NotFoundError, PermissionDeniedError)):
            client.download_job_file(job.job_id, file_path, tmp_path / "x")
    paths = [p for m, p, _ in http_only_server.requests if m == "GET" and "/files/" in p]
    assert paths[-1].endswith(raw), paths[-1]


def test_admin_and_guest_mode_both_generations(http_only_server: ScriptedServer) -> None:
    with make(http_only_server) as client:
        assert client.get_storage_size().job_count == 0
        assert client.cleanup_old_jobs(3).deleted_count == 0
        with pytest.raises(ValidationError):
            client.cleanup_old_jobs(-1)
        assert client.set_guest_mode(False) is False
        assert client.get_guest_mode() is False
        http_only_server.newer_guest_endpoint = False
        assert client.set_guest_mode(True) is True  # falls back to /admin/config/guest-mode
        assert client.get_guest_mode() is True
    assert http_only_server.count("PUT", "/admin/config/guest-mode") == 1


def test_per_call_timeout(http_only_server: ScriptedServer) -> None:
    with make(http_only_server) as client:
        assert client.health(timeout=5).status == "healthy"


def test_transport_override_for_statuses_a_server_will_not_produce() -> None:
    """MOCK transport: a load balancer's HTML 502 page, then success."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(502, text="<html>bad gateway</html>")
        return httpx.Response(200, json={"status": "healthy"})

    with ComputeClient("http://lb.invalid", config=FAST, transport=httpx.MockTransport(handler)) as client:
        assert client.health().status == "healthy"
    assert len(calls) == 2


def test_malformed_success_body_is_a_clear_error() -> None:
    """MOCK transport: a proxy answering 200 with a non-JSON body."""
    from cl_client import ComputeClientError

    transport = httpx.MockTransport(lambda r: httpx.Response(200, text="<html>portal</html>"))
    with ComputeClient("http://portal.invalid", config=FAST, transport=transport) as client:
        with pytest.raises(ComputeClientError, match="not a valid HealthResponse"):
            client.health()


async def test_async_client_rest(http_only_server: ScriptedServer, sample: Path, tmp_path: Path) -> None:
    async with AsyncComputeClient(http_only_server.url, config=FAST) as client:
        assert (await client.health()).status == "healthy"
        assert (await client.get_capabilities()).num_workers == 1
        job = await client.submit("hash", sample, {"algorithm": "md5"}, 3)
        assert http_only_server.uploads[job.job_id].fields["priority"] == "3"
        rec = await job.refresh()
        assert rec.job_id == job.job_id
        out = await job.download("output/result.bin", tmp_path / "a.bin")
        assert out.stat().st_size == 300_000
        with pytest.raises(JobNotFoundError):
            await client.get_job("missing")
        http_only_server.inject[("GET", "/capabilities")] = Injected(503, 1)
        assert (await client.get_capabilities()).num_workers == 1
        assert await client.set_guest_mode(False) is False
        http_only_server.newer_guest_endpoint = False
        assert await client.get_guest_mode() is False
        assert (await client.get_storage_size()).job_count == 1
        assert (await client.cleanup_old_jobs(1)).freed_space == 0
        await job.delete()
        with pytest.raises(JobNotFoundError):
            await client.delete_job(job.job_id)
        other = await client.submit("hash", sample)
        http_only_server.truncate_downloads = True
        with pytest.raises(ComputeConnectionError):
            await client.download_job_file(other.job_id, "output/result.bin", tmp_path / "b.bin")
        assert not (tmp_path / "b.bin").exists()


def test_logs_never_contain_the_token(
    http_only_server: ScriptedServer, sample: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http_only_server.inject[("GET", "/")] = Injected(503, 1)
    with make(http_only_server, token="tok.SECRET.value") as client:
        client.health()
        with pytest.raises(JobNotFoundError) as exc_info:
            client.get_job("nope")
        assert "SECRET" not in repr(client)
    assert "SECRET" not in str(exc_info.value)
    assert "SECRET" not in caplog.text
    headers = http_only_server.requests[-1][2]
    assert headers["authorization"] == "Bearer tok.SECRET.value"


def test_download_into_a_folder_named_with_a_trailing_slash(
    http_only_server: ScriptedServer, sample: Path, tmp_path: Path
) -> None:
    with make(http_only_server) as client:
        job = client.submit("hash", sample)
        out = client.download_job_file(job.job_id, "output/result.bin", f"{tmp_path}/new/folder/")
    assert out == tmp_path / "new" / "folder" / "result.bin"
    assert out.stat().st_size == 300_000
