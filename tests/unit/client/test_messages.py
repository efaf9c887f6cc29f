"""What the client says when a wait runs out: durations rounded, and a terminal event the server never
confirmed named as such (a real broker; the scripted server keeps answering a running status, or 503)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cl_client import ComputeClient, ComputeClientConfig, JobTimeoutError
from cl_compute.broker import Broker

from .scripted_server import Injected, ScriptedServer

CFG = ComputeClientConfig(event_silence_timeout=0.6, poll_interval=0.2, poll_max_interval=0.5, max_retries=0)


@pytest.fixture
def client(server: ScriptedServer, broker: Broker) -> Iterator[ComputeClient]:
    with ComputeClient(server.url, mqtt_url=broker.url, config=CFG) as c:
        yield c


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    p = tmp_path / "in.png"
    p.write_bytes(b"\x89PNG" + b"0" * 100)
    return p


def test_timeout_duration_is_rounded(client: ComputeClient, sample: Path) -> None:
    job = client.submit("hash", sample)
    with pytest.raises(JobTimeoutError) as info:
        job.wait(timeout=0.867302)
    message = str(info.value)
    assert "within 0.87 s" in message and "0.867302" not in message, message
    assert "last status: queued" in message
    assert info.value.timeout == 0.867302 and info.value.unconfirmed_status is None


def test_terminal_event_the_server_does_not_confirm(
    server: ScriptedServer, client: ComputeClient, sample: Path
) -> None:
    job = client.submit("hash", sample)
    server.set_status(job.job_id, "processing", 50)
    server.publish_event(job.job_id, "processing", 50)
    server.publish_event(job.job_id, "completed", 100)  # the server still says processing
    with pytest.raises(JobTimeoutError) as info:
        job.wait(timeout=2)
    err = info.value
    message = str(err)
    assert "last status: completed" not in message, message
    assert f"job {job.job_id}: an event reported 'completed', but the server did not confirm it" in message
    assert f"GET /jobs/{job.job_id} answered 'processing'" in message
    assert (err.last_status, err.unconfirmed_status) == ("processing", "completed")
    assert job.status == "processing"  # not claimed completed before the server says so
    server.set_status(job.job_id, "completed", 100)
    assert job.wait(timeout=30).status == "completed"  # confirmed once the server agrees


def test_terminal_event_while_the_server_fails(server: ScriptedServer, client: ComputeClient, sample: Path) -> None:
    job = client.submit("hash", sample)
    server.set_status(job.job_id, "completed", 100)
    server.inject[("GET", f"/jobs/{job.job_id}")] = Injected(503, 10_000, body={"detail": "scripted outage"})
    server.publish_event(job.job_id, "completed", 100)
    with pytest.raises(JobTimeoutError) as info:
        job.wait(timeout=2)
    message = str(info.value)
    assert "an event reported 'completed', but the server did not confirm it within 2 s" in message, message
    assert "; the confirming request failed: GET " in message and "503: scripted outage" in message
    server.inject.clear()
    assert job.wait(timeout=30).status == "completed"
