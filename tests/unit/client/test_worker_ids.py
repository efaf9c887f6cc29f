"""The worker registry reads both releases' capability messages (PROTOCOL.md §5, §8, §9): January workers send
``id`` only, February workers ``worker_id`` only; the client reads ``worker_id``, then ``id``, then the last topic
segment. Real broker, messages published exactly as each release does (retained, QoS 1)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cl_client import ComputeClient, ComputeClientConfig, WorkerCapability
from cl_compute.broker import Broker

from .scripted_server import ScriptedServer

CFG = ComputeClientConfig(mqtt_connect_timeout=5)
JANUARY = {"id": "jan-1", "capabilities": ["hash", "exif"], "idle_count": 1, "timestamp": 1767225600000}
FEBRUARY = {"worker_id": "feb-1", "capabilities": ["clip_embedding"], "idle_count": 0, "timestamp": 1769904000000}


@pytest.fixture
def client(server: ScriptedServer, broker: Broker) -> Iterator[ComputeClient]:
    with ComputeClient(server.url, mqtt_url=broker.url, config=CFG) as c:
        yield c


def test_worker_id_comes_before_id() -> None:
    both = WorkerCapability.model_validate({"worker_id": "new", "id": "old", "capabilities": ["hash"]})
    assert both.worker_id == "new"
    assert WorkerCapability.model_validate(JANUARY).worker_id == "jan-1"
    assert WorkerCapability.model_validate(FEBRUARY).worker_id == "feb-1"
    assert WorkerCapability.model_validate({"capabilities": []}).worker_id == ""


def test_registry_reads_january_and_february_messages(server: ScriptedServer, client: ComputeClient) -> None:
    server.publish_worker("jan-1", JANUARY)
    server.publish_worker("feb-1", FEBRUARY)
    server.publish_worker(
        "both", {"worker_id": "both-new", "id": "both-old", "capabilities": ["hash"], "idle_count": 1}
    )
    server.publish_worker("topic-only", {"capabilities": ["hash"], "idle_count": 1})
    try:
        deadline = time.monotonic() + 30
        while len(client.workers()) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = client.workers()
        assert set(workers) == {"jan-1", "feb-1", "both", "topic-only"}, workers
        assert (workers["jan-1"].worker_id, workers["jan-1"].capabilities, workers["jan-1"].is_idle) == (
            "jan-1", ["hash", "exif"], True)  # fmt: skip
        assert (workers["feb-1"].worker_id, workers["feb-1"].capabilities, workers["feb-1"].is_idle) == (
            "feb-1", ["clip_embedding"], False)  # fmt: skip
        assert workers["both"].worker_id == "both-new"
        assert workers["topic-only"].worker_id == "topic-only"
    finally:
        for topic in ("jan-1", "feb-1", "both", "topic-only"):
            server.publish_worker(topic, None)
