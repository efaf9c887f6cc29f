"""Upstream SDK code runs unchanged: one test per row of the README's "Coming from upstream's SDK" table.

Each call is written the way upstream's README, docstrings and tests call it (cloudonlanapps/cl_server_sdk_python
at 970a13d, and 3920994 for the January 2026 names), against a real HTTP server and a real broker.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest

import cl_client
from cl_client import ComputeClient
from cl_client.auth import AuthProvider, JWTAuthProvider, NoAuthProvider, get_default_auth
from cl_client.compute_client import ComputeClient as AsyncUpstreamClient
from cl_client.config import ComputeClientConfig
from cl_client.exceptions import (
    AuthenticationError,
    ComputeClientError,
    JobFailedError,
    JobNotFoundError,
    PermissionError,
    WorkerUnavailableError,
)
from cl_client.models import (
    JobResponse,
    JSONObject,
    OnJobResponseCallback,
    WorkerCapabilitiesResponse,
    WorkerCapability,
)
from cl_client.mqtt_monitor import MQTTJobMonitor, get_mqtt_monitor, release_mqtt_monitor
from cl_client.plugins.base import BasePluginClient
from cl_compute.broker import Broker
from tests.unit.client.scripted_server import ScriptedServer


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    p = tmp_path / "photo.jpg"
    p.write_bytes(b"\xff\xd8\xff" + b"p" * 1000)
    return p


# -- row: ComputeClient is async (async with) ------------------------------------------------------------
async def test_async_with_top_level_compute_client(server: ScriptedServer, broker: Broker, photo: Path) -> None:
    server.behaviour["hash"] = "complete_before_reply"
    async with ComputeClient(server.url, mqtt_url=broker.url) as client:
        assert isinstance(client, AsyncUpstreamClient)
        assert isinstance(client, cl_client.AsyncComputeClient)
        job = await client.hash.compute(image=photo, wait=True, timeout=30)
        fetched = await client.get_job(job.job_id)
        assert fetched.status == "completed"
        await client.delete_job(job.job_id)


def test_sync_compute_client_unchanged(http_only_server: ScriptedServer) -> None:
    with ComputeClient(http_only_server.url, mqtt_url="") as client:
        assert client.health().status == "healthy"


# -- row: module cl_client.compute_client; constructor keywords --------------------------------------------
async def test_upstream_constructor_positional_and_keywords(server: ScriptedServer, broker: Broker) -> None:
    pref = cl_client.ServerPref(compute_url=server.url, mqtt_url=broker.url)
    async with AsyncUpstreamClient(None, 12.5, None, NoAuthProvider(), pref) as client:
        assert client.base_url == server.url
        assert client.timeout == 12.5
        assert isinstance(client._session, httpx.AsyncClient)  # pyright: ignore[reportPrivateUsage]
        assert (await client.get_capabilities()).num_workers == 1
        for _ in range(100):
            if client._mqtt._connected:  # pyright: ignore[reportPrivateUsage]
                break
            await asyncio.sleep(0.1)
        assert client._mqtt._connected  # pyright: ignore[reportPrivateUsage]
    host, port = broker.url.removeprefix("mqtt://").split(":")
    jan = cl_client.ServerConfig(compute_url=server.url, mqtt_broker=host, mqtt_port=int(port))
    async with AsyncUpstreamClient(server_config=jan) as client:
        assert client.config.mqtt_url == broker.url
    async with AsyncUpstreamClient(base_url=server.url, mqtt_broker=host, mqtt_port=int(port)) as client:
        assert client.config.mqtt_url == broker.url
    with ComputeClient(base_url=server.url, server_pref=pref) as sync_client:
        assert sync_client.config.mqtt_url == broker.url


# -- row: ComputeClientConfig class constants --------------------------------------------------------------
def test_config_class_constants() -> None:
    assert ComputeClientConfig().server_url == ComputeClientConfig.DEFAULT_BASE_URL
    assert ComputeClientConfig().timeout == ComputeClientConfig.DEFAULT_TIMEOUT
    assert ComputeClientConfig.ENDPOINT_GET_JOB.format(job_id="j") == "/jobs/j"
    assert ComputeClientConfig.get_plugin_endpoint("clip_embedding") == "/jobs/clip_embedding"
    assert set(ComputeClientConfig.PLUGIN_ENDPOINTS) == set(cl_client.plugins.REGISTRY)
    with pytest.raises(ValueError, match="Unknown task type"):
        ComputeClientConfig.get_plugin_endpoint("nope")


# -- rows: models, JSONObject, OnJobResponseCallback ------------------------------------------------------
def test_models_module() -> None:
    params: JSONObject = {"a": [1, "x", None]}
    job = JobResponse(job_id="j", task_type="hash", status="in_progress", params=params, created_at=1)
    cb: OnJobResponseCallback = None
    assert cb is None
    assert job.status == "in_progress"
    assert job.status == "processing"
    assert WorkerCapabilitiesResponse(num_workers=1, capabilities={"hash": 1}).capabilities["hash"] == 1
    assert WorkerCapability.model_validate({"id": "w", "capabilities": ["hash"], "idle_count": 1}).worker_id == "w"


# -- rows: exceptions ---------------------------------------------------------------------------------------
def test_exception_constructors_as_upstream() -> None:
    exc = JobNotFoundError("job-1")
    assert exc.job_id == "job-1"
    assert "job-1" in str(exc)
    assert isinstance(exc, ComputeClientError)
    auth = AuthenticationError("token expired")
    assert str(auth) == "token expired"
    assert auth.response.status_code == 401
    assert PermissionError("no").response.status_code == 403
    assert PermissionError is cl_client.PermissionDeniedError
    worker = WorkerUnavailableError("clip_embedding", {"hash": 2})
    assert worker.available_capabilities == {"hash": 2}
    assert worker.task_type == "clip_embedding"
    failed = JobFailedError(JobResponse(job_id="j", status="failed", error_message="boom", created_at=1))
    assert failed.job.error_message == "boom"


async def test_http_errors_are_httpx_status_errors(http_only_server: ScriptedServer) -> None:
    async with AsyncUpstreamClient(http_only_server.url, mqtt_url="") as client:
        with pytest.raises(httpx.HTTPStatusError) as exc_info:
            await client.get_job("no-such-job")
    assert exc_info.value.response.status_code == 404
    assert isinstance(exc_info.value, JobNotFoundError)
    assert exc_info.value.status_code == 404
    assert exc_info.value.request.url.path == "/jobs/no-such-job"


# -- rows: status words -----------------------------------------------------------------------------------------
async def test_upstream_status_words_compare_true(http_only_server: ScriptedServer, photo: Path) -> None:
    http_only_server.behaviour["hash"] = "fail_silently"
    async with AsyncUpstreamClient(http_only_server.url, mqtt_url="") as client:
        job = await client.hash.compute(image=photo)
        final = await client.wait_for_job(job.job_id, 0.5, 30)
    assert final.status in ["completed", "failed"]
    assert final.status == "failed"
    assert final.status == "error"
    assert final.status.upstream == "failed"


# -- rows: MQTT monitor -------------------------------------------------------------------------------------------
def test_standalone_monitor_subscribe_and_unsubscribe(server: ScriptedServer, broker: Broker) -> None:
    monitor = get_mqtt_monitor(broker.url)
    try:
        assert get_mqtt_monitor(broker.url) is monitor
        release_mqtt_monitor(monitor)
        assert monitor._connected  # pyright: ignore[reportPrivateUsage]
        done = threading.Event()
        seen: list[JobResponse] = []

        def on_complete(job: JobResponse) -> None:
            seen.append(job)
            done.set()

        sub = monitor.subscribe_job_updates("job-a", on_complete=on_complete, task_type="hash")
        dropped = monitor.subscribe_job_updates("job-b", on_complete=on_complete)
        monitor.unsubscribe(dropped)
        server.publish_event("job-b", "completed", 100)
        server.publish_event("job-a", "in_progress", 50)
        server.publish_event("job-a", "completed", 100)
        assert done.wait(30)
        assert [(j.job_id, j.status, j.task_type) for j in seen] == [("job-a", "completed", "hash")]
        assert isinstance(sub, str)
    finally:
        release_mqtt_monitor(monitor)


async def test_wait_for_capability(server: ScriptedServer, broker: Broker) -> None:
    server.publish_worker("w1", {"id": "w1", "capabilities": ["hash"], "idle_count": 1, "timestamp": 1})
    monitor = MQTTJobMonitor(broker.url)
    try:
        assert await monitor.wait_for_capability("hash", timeout=30) is True
        with pytest.raises(WorkerUnavailableError) as exc_info:
            await monitor.wait_for_capability("clip_embedding", timeout=0.5)
        assert exc_info.value.available_capabilities == {"hash": 1}
    finally:
        monitor.close()
        server.publish_worker("w1", None)


async def test_client_subscribe_through_mqtt_view(server: ScriptedServer, broker: Broker, photo: Path) -> None:
    async with AsyncUpstreamClient(server.url, mqtt_url=broker.url) as client:
        done = asyncio.Event()
        finals: list[JobResponse] = []

        async def on_complete(job: JobResponse) -> None:
            finals.append(job)
            done.set()

        job = await client.hash.compute(image=photo)
        sub = client.mqtt_subscribe_job_updates(job.job_id, on_complete=on_complete, task_type="hash")
        assert isinstance(sub, str)
        server.set_status(job.job_id, "completed", 100)
        server.publish_event(job.job_id, "completed", 100)
        await asyncio.wait_for(done.wait(), 30)
        assert [f.status for f in finals] == ["completed"]
        client.unsubscribe(sub)


# -- rows: BasePluginClient, plugin results usable as JobResponse ------------------------------------------------
async def test_base_plugin_client(server: ScriptedServer, broker: Broker, photo: Path) -> None:
    server.behaviour["hash"] = "complete_before_reply"
    async with AsyncUpstreamClient(server.url, mqtt_url=broker.url) as client:
        plugin = BasePluginClient(client, "hash")
        assert plugin.endpoint == "/jobs/hash"
        job = await plugin.submit_with_files(files={"file": photo}, params={"algorithm": "md5"}, wait=True)
        assert job.status == "completed"
        assert job.params["algorithm"] == "md5"
        with pytest.raises(NotImplementedError):
            await plugin.submit_job(params={"algorithm": "md5"})
        job_id = await client.http_submit_job(
            ComputeClientConfig.get_plugin_endpoint("hash"),
            data={"priority": 5},
            files={"file": (photo.name, photo.open("rb"), "image/jpeg")},
        )
        assert (await client.wait_for_job(job_id, timeout=30)).status == "completed"


async def test_plugin_job_model_dump(server: ScriptedServer, broker: Broker, photo: Path) -> None:
    server.behaviour["hash"] = "complete_before_reply"
    async with ComputeClient(server.url, mqtt_url=broker.url) as client:
        job = await client.hash.compute(image=photo, wait=True)
        dumped = job.model_dump()
        assert dumped["job_id"] == job.job_id
        assert dumped["status"] == "completed"
        assert job.task_output is None or isinstance(job.task_output, dict)


# -- rows: auth ----------------------------------------------------------------------------------------------------
async def test_upstream_style_auth_provider_subclass(http_only_server: ScriptedServer) -> None:
    refreshed: list[int] = []

    class HeaderAuth(AuthProvider):
        def get_headers(self) -> dict[str, str]:
            return {"X-Upstream": "yes"}

        async def refresh_token_if_needed(self) -> None:
            refreshed.append(1)

    async with AsyncUpstreamClient(http_only_server.url, mqtt_url="", auth_provider=HeaderAuth()) as client:
        with pytest.raises(JobNotFoundError):
            await client.get_job("nope")
    assert refreshed
    assert any(h.get("x-upstream") == "yes" for _, p, h in http_only_server.requests if p == "/jobs/nope")
    assert isinstance(get_default_auth(), NoAuthProvider)


async def test_session_manager_and_jwt_getters(http_only_server: ScriptedServer) -> None:
    http_only_server.auth_required = True
    pref = cl_client.ServerPref(auth_url=http_only_server.url, compute_url=http_only_server.url, mqtt_url="")
    async with cl_client.SessionManager(server_pref=pref) as session:
        token = await session.login("alice", "s3cret")
        assert session.is_authenticated()
        assert token.access_token == session.get_token()
        client = session.create_compute_client()
        try:
            with pytest.raises(JobNotFoundError):
                await client.get_job("nope")  # authenticated: a 404, not a 401
        finally:
            await client.close()
        await session.logout()
        assert not session.is_authenticated()
    provider = JWTAuthProvider(get_cached_token=lambda: "abc")
    assert provider.get_headers() == {"Authorization": "Bearer abc"}
    assert JWTAuthProvider(token="t").get_token() == "t"


# -- rows: env MQTT_BROKER / MQTT_PORT ------------------------------------------------------------------------------
def test_mqtt_broker_and_port_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CL_MQTT_URL", "MQTT_URL", "MQTT_BROKER", "MQTT_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MQTT_BROKER", "broker.example")
    monkeypatch.setenv("MQTT_PORT", "1884")
    assert cl_client.resolve_config().mqtt_url == "mqtt://broker.example:1884"
    assert cl_client.ServerConfig.from_env().mqtt_port == 1884
    monkeypatch.setenv("MQTT_URL", "mqtt://wins:1999")
    assert cl_client.resolve_config().mqtt_url == "mqtt://wins:1999"
    monkeypatch.delenv("MQTT_URL")
    monkeypatch.setenv("MQTT_PORT", "not-a-port")
    with pytest.raises(cl_client.ConfigurationError, match="MQTT_PORT"):
        cl_client.resolve_config()


# -- rows: wait_for_job / wait_for_workers keywords on our own clients ------------------------------------------------
def test_our_sync_client_accepts_upstream_keywords(http_only_server: ScriptedServer, photo: Path) -> None:
    http_only_server.behaviour["hash"] = "fail_silently"
    with ComputeClient(http_only_server.url, mqtt_url="") as client:
        job = client.submit("hash", photo)
        final = client.wait_for_job(job.job_id, poll_interval=0.5, timeout=30)
        assert final.status == "failed"
        assert client.wait_for_workers(required_capabilities=["hash"], timeout=10)


# -- row: plugin clients built on a client, as upstream's compute client builds them ------------------------------
PLUGIN_CLASSES = {
    "clip_embedding": "cl_client.plugins.clip_embedding:ClipEmbeddingClient",
    "dino_embedding": "cl_client.plugins.dino_embedding:DinoEmbeddingClient",
    "exif": "cl_client.plugins.exif:ExifClient",
    "face_detection": "cl_client.plugins.face_detection:FaceDetectionClient",
    "face_embedding": "cl_client.plugins.face_embedding:FaceEmbeddingClient",
    "hash": "cl_client.plugins.hash:HashClient",
    "hls_streaming": "cl_client.plugins.hls_streaming:HlsStreamingClient",
    "image_conversion": "cl_client.plugins.image_conversion:ImageConversionClient",
    "media_thumbnail": "cl_client.plugins.media_thumbnail:MediaThumbnailClient",
}


@pytest.mark.parametrize("task_type", sorted(PLUGIN_CLASSES))
def test_plugin_client_on_a_client_names_its_task_type(http_only_server: ScriptedServer, task_type: str) -> None:
    import importlib

    module, name = PLUGIN_CLASSES[task_type].split(":")
    cls = getattr(importlib.import_module(module), name)
    with ComputeClient(http_only_server.url, mqtt_url="off") as client:
        plugin = cls(client)  # upstream: ClipEmbeddingClient(self) in its compute client
        assert plugin.task_type == task_type
        assert plugin.client is client


async def test_plugin_client_on_a_client_submits(server: ScriptedServer, broker: Broker, photo: Path) -> None:
    from cl_client.plugins.hash import HashClient

    server.behaviour["hash"] = "complete_before_reply"
    async with AsyncUpstreamClient(server.url, mqtt_url=broker.url) as client:
        job = await HashClient(client).compute(image=photo, algorithm="md5", wait=True, timeout=30)
        assert job.status == "completed"
        assert job.params["algorithm"] == "md5"
    with ComputeClient(server.url, mqtt_url=broker.url) as sync_client:
        job = HashClient(sync_client).compute(image=photo, algorithm="md5", wait=True, timeout=30)
        assert job.status == "completed"


def test_the_base_plugin_class_names_no_plugin(http_only_server: ScriptedServer) -> None:
    from cl_client.plugins import PluginClient

    with ComputeClient(http_only_server.url, mqtt_url="off") as client, pytest.raises(cl_client.ConfigurationError):
        PluginClient(client)
