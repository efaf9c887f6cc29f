"""Defects found while comparing with upstream's SDK (issue 18), each shown against a real scripted server."""

from __future__ import annotations

from pathlib import Path

import httpx

from cl_client import AsyncComputeClient, ComputeClient
from cl_client.compute_client import ComputeClient as UpstreamComputeClient
from tests.unit.client.scripted_server import ScriptedServer


class CountingAsyncTransport(httpx.AsyncBaseTransport):
    """A real async HTTP transport that records the paths it carried (async-only: no sync ``handle_request``)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_async_tracker_requests_go_through_the_given_transport(
    http_only_server: ScriptedServer, tmp_path: Path
) -> None:
    """``wait_for_job`` on an async client polls through the client's own transport, not a second pool.

    Before the fix the tracker built ``SyncHTTP(config, auth)`` without the transport: the server saw the
    polling GETs, the transport did not.
    """
    http_only_server.behaviour["hash"] = "fail_silently"  # ends at once; no event: the tracker must GET
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"\xff\xd8\xff" + b"x" * 100)
    transport = CountingAsyncTransport()
    async with AsyncComputeClient(http_only_server.url, mqtt_url="", transport=transport) as client:
        job = await client.submit("hash", photo)
        final = await client.wait_for_job(job.job_id, timeout=60)
    assert final.status == "error"
    job_gets = [p for p in transport.paths if p == f"GET /jobs/{job.job_id}"]
    assert job_gets, transport.paths
    assert http_only_server.count("GET", f"/jobs/{job.job_id}") == len(job_gets)


def test_wait_for_workers_is_truthy_without_mqtt(http_only_server: ScriptedServer) -> None:
    """With MQTT off the live-worker registry is empty; the answer must still be true (it used to be ``{}``)."""
    with ComputeClient(http_only_server.url, mqtt_url="") as client:
        ready = client.wait_for_workers(["hash"], timeout=10)
        assert ready
        assert ready.capabilities == {"hash": 1}
        assert client.wait_for_workers(required_capabilities=["hash"], timeout=10)


async def test_async_wait_for_workers_is_truthy_without_mqtt(http_only_server: ScriptedServer) -> None:
    async with AsyncComputeClient(http_only_server.url, mqtt_url="") as client:
        assert await client.wait_for_workers(["hash"], timeout=10)
    async with UpstreamComputeClient(http_only_server.url, mqtt_url="") as upstream:
        assert await upstream.wait_for_workers(required_capabilities=["hash"], timeout=10) is True
        assert await upstream.wait_for_workers() is True
