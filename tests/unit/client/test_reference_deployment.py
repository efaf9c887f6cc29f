"""The client end to end against the real reference deployment (API + workers + broker, real plugins)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from cl_client import (
    AsyncComputeClient,
    ComputeClient,
    JobFailedError,
    JobNotFoundError,
    JobResponse,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
    WorkerUnavailableError,
)
from cl_compute.deployment import Deployment

MEDIA = Path(__file__).resolve().parents[3] / "pytest_cl" / "media"
PHOTO = MEDIA / "images" / "synthetic_800x600.png"
EMPTY = MEDIA / "hostile" / "empty.jpg"
PALETTE = MEDIA / "images" / "palette.gif"


@pytest.fixture(scope="module", params=["fixed", "upstream-2026-01"])
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    """The reference deployment, once per behaviour profile: the client must cope with upstream's quirks too."""
    with Deployment(workers=1, tasks=["hash", "media_thumbnail"], profile=cast(str, request.param)) as dep:
        yield dep


@pytest.fixture
def client(deployment: Deployment) -> Iterator[ComputeClient]:
    with ComputeClient(deployment.server_url, mqtt_url=deployment.mqtt_url) as c:
        yield c


def test_hash_job_end_to_end_through_events(client: ComputeClient, deployment: Deployment, tmp_path: Path) -> None:
    seen: list[str] = []
    done = threading.Event()
    finals: list[JobResponse] = []

    def on_progress(job: JobResponse) -> None:
        seen.append(job.status)

    def on_complete(job: JobResponse) -> None:
        finals.append(job)
        done.set()

    job = client.submit("hash", PHOTO, {"algorithm": "md5"}, on_progress=on_progress, on_complete=on_complete)
    record = job.result(timeout=60)
    assert done.wait(10)
    assert [f.status for f in finals] == ["completed"]
    # upstream's API may publish 'queued' after the worker's 'processing'; the client never moves a job back
    assert seen[0] in (("queued",) if deployment.profile == "fixed" else ("queued", "processing")), seen
    assert seen[-1] == "completed"
    assert record.params["algorithm"] == "md5"
    assert record.task_output == {"media_type": "image"}
    out = job.download("output/hash.json", tmp_path)
    data = json.loads(out.read_text())
    assert data["hash_value"] == hashlib.md5(PHOTO.read_bytes()).hexdigest()
    assert client.monitor is not None
    assert client.monitor.stats.events >= 3


def test_failure_is_an_event_and_a_clear_error(client: ComputeClient, deployment: Deployment) -> None:
    """A failed job ends in ``JobFailedError`` and one ``on_complete``: through its ``error`` event on the fixed
    profile, by the polling fallback on upstream's (which publishes nothing for a failure)."""
    finals: list[JobResponse] = []
    done = threading.Event()

    def on_complete(job: JobResponse) -> None:
        finals.append(job)
        done.set()

    if deployment.profile == "fixed":
        job = client.submit("hash", EMPTY, on_complete=on_complete)
    else:  # upstream hashes an empty file happily, but fails a paletted image's thumbnail
        job = client.submit("media_thumbnail", PALETTE, on_complete=on_complete)
    with pytest.raises(JobFailedError) as exc_info:
        job.result(timeout=60)
    assert exc_info.value.job.error_message
    assert done.wait(10)
    assert [f.status for f in finals] == ["error"]


def test_errors_from_a_real_server(client: ComputeClient, tmp_path: Path) -> None:
    job = client.submit("media_thumbnail", PHOTO, {"width": 64, "height": 64})
    job.result(timeout=60)
    with pytest.raises(PermissionDeniedError):
        job.download("../../../etc/passwd", tmp_path / "x")
    with pytest.raises(NotFoundError):
        job.download("output/nothing-here.jpg", tmp_path / "y")
    with pytest.raises(ValidationError):
        client.submit("media_thumbnail", PHOTO, {"width": -3})
    thumb = job.download("output/thumbnail.jpg", tmp_path)
    assert thumb.read_bytes()[:3] == b"\xff\xd8\xff"
    job.delete()
    with pytest.raises(JobNotFoundError):
        client.get_job(job.job_id)
    with pytest.raises(JobNotFoundError):
        job.delete()
    assert not list(tmp_path.glob("*.part"))


def test_workers_and_capabilities_agree(client: ComputeClient, deployment: Deployment) -> None:
    workers = client.wait_for_workers(["hash", "media_thumbnail"], timeout=10)
    assert set(workers) == set(deployment.worker_ids)
    caps = client.get_capabilities()
    if deployment.profile != "fixed" and not caps.capabilities:  # upstream's first answer is empty (PROTOCOL §2)
        caps = client.get_capabilities()
    assert caps.num_workers == len(deployment.worker_ids)
    assert {"hash", "media_thumbnail"} <= set(caps.capabilities)
    with pytest.raises(WorkerUnavailableError) as exc_info:
        client.wait_for_workers(["face_detection"], timeout=0.5)
    assert "hash" in exc_info.value.available


async def test_async_client_against_the_reference(deployment: Deployment) -> None:
    async with AsyncComputeClient(deployment.server_url, mqtt_url=deployment.mqtt_url) as client:
        health = await client.health()
        assert health.status == "healthy"
        job = await client.submit("hash", PHOTO, {"algorithm": "sha512"}, priority=9)
        record = await job.result(timeout=60)
        assert record.priority == 9
        assert record.task_output == {"media_type": "image"}
        storage = await client.get_storage_size()
        assert storage.job_count >= 1
        await job.delete()


def test_large_upload_is_streamed_not_read_into_memory(client: ComputeClient, tmp_path: Path) -> None:
    import os
    import tracemalloc

    big = tmp_path / "big.bin"
    chunk = os.urandom(1 << 20)
    with big.open("wb") as fh:
        for _ in range(48):
            fh.write(chunk)
    expected = hashlib.md5(big.read_bytes()).hexdigest()
    tracemalloc.start()
    try:
        job = client.submit("hash", big, {"algorithm": "md5"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"uploading 48 MiB allocated {peak / 2**20:.1f} MiB at peak"
    job.result(timeout=120)
    out = json.loads(job.download("output/hash.json", tmp_path).read_text())
    assert out["hash_value"] == expected
    job.delete()
