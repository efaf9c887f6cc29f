"""MQTT-first job monitoring against a real broker and a real (scripted) server."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cl_client import (
    AsyncComputeClient,
    ComputeClient,
    ComputeClientConfig,
    JobFailedError,
    JobNotFoundError,
    JobResponse,
    JobTimeoutError,
    WorkerUnavailableError,
)
from cl_compute.broker import Broker, start_broker
from tests.unit.ports import unassigned_port

from .scripted_server import ScriptedServer

CFG = ComputeClientConfig(event_silence_timeout=0.6, poll_interval=0.2, poll_max_interval=0.5, mqtt_connect_timeout=5)


class Recorder:
    """Collects callback invocations (thread-safe) and lets a test wait for completion."""

    def __init__(self) -> None:
        self.progress: list[tuple[str, int]] = []
        self.complete: list[JobResponse] = []
        self.after_complete: list[str] = []
        self.threads: set[str] = set()
        self.done = threading.Event()
        self._lock = threading.Lock()

    def on_progress(self, job: JobResponse) -> None:
        with self._lock:
            if self.complete:
                self.after_complete.append(f"progress {job.status}")
            self.progress.append((job.status, job.progress))
            self.threads.add(threading.current_thread().name)

    def on_complete(self, job: JobResponse) -> None:
        with self._lock:
            if self.complete:
                self.after_complete.append(f"complete {job.status}")
            self.complete.append(job)
            self.threads.add(threading.current_thread().name)
        self.done.set()


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    p = tmp_path / "in.png"
    p.write_bytes(b"\x89PNG" + b"0" * 1000)
    return p


@pytest.fixture
def client(server: ScriptedServer, broker: Broker) -> Iterator[ComputeClient]:
    with ComputeClient(server.url, mqtt_url=broker.url, config=CFG) as c:
        yield c


def test_job_completing_before_the_post_returns_fires_once(
    server: ScriptedServer, client: ComputeClient, sample: Path
) -> None:
    server.behaviour["hash"] = "complete_before_reply"
    rec = Recorder()
    job = client.submit("hash", sample, on_progress=rec.on_progress, on_complete=rec.on_complete)
    assert rec.done.wait(5)
    final = job.wait(timeout=5)
    assert final.status == "completed"
    time.sleep(0.3)
    assert [j.status for j in rec.complete] == ["completed"]
    assert rec.complete[0].job_id == job.job_id
    assert [s for s, _ in rec.progress] == ["queued", "processing", "completed"]
    assert rec.after_complete == []
    assert "paho" not in " ".join(rec.threads).lower()
    # Confirmed by exactly one GET: no polling happened while events flowed.
    assert server.count("GET", f"/jobs/{job.job_id}") == 1
    assert client.monitor is not None and client.monitor.stats.replayed >= 1


def test_duplicate_and_foreign_events_and_garbage(server: ScriptedServer, client: ComputeClient, sample: Path) -> None:
    rec = Recorder()
    job = client.submit("hash", sample, on_progress=rec.on_progress, on_complete=rec.on_complete)
    monitor = client.monitor
    assert monitor is not None
    for raw in (b"not json", b"[]", b'{"job_id": 5}', b'{"event_type": "completed"}', b"\xff\xfe", b""):
        server.publish_event(job.job_id, "", raw=raw)
    server.publish_event("some-other-users-job", "completed", 100)
    server.set_status(job.job_id, "processing", 40)
    server.publish_event(job.job_id, "processing", 40)
    server.set_status(job.job_id, "completed", 100)
    server.publish_event(job.job_id, "completed", 100)
    server.publish_event(job.job_id, "completed", 100)  # duplicate
    assert rec.done.wait(5)
    server.publish_event(job.job_id, "error", 100)  # a late contradicting event
    time.sleep(0.4)
    assert len(rec.complete) == 1 and rec.complete[0].status == "completed"
    assert rec.after_complete == []
    assert ("processing", 40) in rec.progress
    assert monitor.stats.malformed >= 5
    # The network thread survived: a new job still completes through events.
    server.behaviour["hash"] = "complete_before_reply"
    assert client.submit("hash", sample).wait(timeout=5).status == "completed"


def test_failed_job_with_event(server: ScriptedServer, client: ComputeClient, sample: Path) -> None:
    server.behaviour["exif"] = "fail_with_event"
    rec = Recorder()
    job = client.submit("exif", sample, on_complete=rec.on_complete)
    with pytest.raises(JobFailedError) as exc_info:
        job.result(timeout=5)
    assert exc_info.value.job.error_message == "scripted failure"
    assert job.job_id in str(exc_info.value) and "scripted failure" in str(exc_info.value)
    assert rec.done.wait(10) and rec.complete[0].status == "error"
    assert job.status == "error"


def test_silent_upstream_failure_completes_by_polling(
    server: ScriptedServer, client: ComputeClient, sample: Path
) -> None:
    server.behaviour["exif"] = "fail_silently"
    rec = Recorder()
    job = client.submit("exif", sample, on_complete=rec.on_complete)
    start = time.monotonic()
    final = job.wait(timeout=60)
    assert final.status == "error" and final.error_message == "scripted silent failure"
    took = time.monotonic() - start
    # polled after event_silence_timeout (0.6 s), not found at the end of the wait (60 s)
    assert took < 30, f"the silent failure was noticed after {took:.1f} s"
    assert rec.done.wait(10) and len(rec.complete) == 1


def test_progress_in_order_then_complete(server: ScriptedServer, client: ComputeClient, sample: Path) -> None:
    rec = Recorder()
    job = client.submit("hash", sample, on_progress=rec.on_progress, on_complete=rec.on_complete)
    for p in (10, 50, 90):
        server.set_status(job.job_id, "processing", p)
        server.publish_event(job.job_id, "processing", p)
    server.set_status(job.job_id, "completed", 100)
    server.publish_event(job.job_id, "completed", 100)
    assert rec.done.wait(5)
    numbers = [p for s, p in rec.progress if s == "processing"]
    assert numbers == [10, 50, 90]
    assert rec.progress[-1] == ("completed", 100)


def test_out_of_order_events_never_move_progress_back(
    server: ScriptedServer, client: ComputeClient, sample: Path
) -> None:
    """Two publishers (API and worker) can reorder events: a late ``queued`` or lower progress is dropped."""
    rec = Recorder()
    job = client.submit("hash", sample, on_progress=rec.on_progress, on_complete=rec.on_complete)
    server.set_status(job.job_id, "processing", 10)
    server.publish_event(job.job_id, "processing", 10)
    server.publish_event(job.job_id, "queued", 0)  # the API's event, delivered after the worker's
    server.publish_event(job.job_id, "processing", 60)
    server.publish_event(job.job_id, "processing", 40)  # an older progress event
    server.set_status(job.job_id, "completed", 100)
    server.publish_event(job.job_id, "completed", 100)
    assert rec.done.wait(5)
    time.sleep(0.2)
    statuses = [s for s, _ in rec.progress]
    numbers = [p for _, p in rec.progress]
    assert numbers == sorted(numbers), rec.progress
    assert ("processing", 60) in rec.progress and ("processing", 40) not in rec.progress
    assert statuses.count("queued") <= 1 and "queued" not in statuses[statuses.index("processing") :]
    assert rec.progress[-1] == ("completed", 100)
    assert job.status == "completed"


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_blocked_callback_delays_neither_other_waits_nor_its_own_order(
    server: ScriptedServer, broker: Broker, sample: Path, concurrency: int
) -> None:
    """User code never runs on the tracker thread: while job A's ``on_progress`` is stuck, job B still
    completes for ``wait()``; with ``callback_concurrency=2`` B's callbacks run too. A's own callbacks stay in
    order and A's ``wait()`` returns only after its ``on_complete`` ran."""
    server.behaviour["hash"] = "complete_before_reply"
    gate = threading.Event()
    a_calls: list[str] = []

    def a_progress(job: JobResponse) -> None:
        gate.wait(10)
        a_calls.append(f"progress {job.status}")

    def a_complete(job: JobResponse) -> None:
        a_calls.append(f"complete {job.status}")

    cfg = dataclasses.replace(CFG, callback_concurrency=concurrency)
    with ComputeClient(server.url, mqtt_url=broker.url, config=cfg) as c:
        a = c.submit("hash", sample, on_progress=a_progress, on_complete=a_complete)
        b_rec = Recorder()
        b_plain = c.submit("hash", sample)
        assert b_plain.wait(timeout=3).status == "completed"  # not behind A's stuck callback
        b = c.submit("hash", sample, on_complete=b_rec.on_complete)
        if concurrency == 1:  # one callback thread: B's on_complete, and so B's wait(), queue behind A's
            with pytest.raises(JobTimeoutError):
                b.wait(timeout=1)
            assert not b_rec.done.is_set()
        else:
            assert b.wait(timeout=10).status == "completed"
            assert b_rec.done.wait(3), "with 2 callback threads B's callbacks run while A's is stuck"
        assert a_calls == []
        gate.set()
        assert a.wait(timeout=10).status == "completed"
        assert a_calls[-1] == "complete completed"  # wait() returned after on_complete
        assert a_calls[:-1] == [f"progress {s}" for s in ("queued", "processing", "completed")]
        assert b_rec.done.wait(5) and len(b_rec.complete) == 1


def test_callback_exceptions_are_contained(
    server: ScriptedServer, client: ComputeClient, sample: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.behaviour["hash"] = "complete_before_reply"
    rec = Recorder()

    def bad(job: JobResponse) -> None:
        raise RuntimeError("user bug")

    client.submit("hash", sample, on_progress=bad, on_complete=rec.on_complete)
    assert rec.done.wait(5)
    assert "user bug" in caplog.text


def test_subscribe_after_finish_and_unsubscribe(server: ScriptedServer, client: ComputeClient, sample: Path) -> None:
    server.behaviour["hash"] = "complete_before_reply"
    job = client.submit("hash", sample)
    job.wait(timeout=5)
    late = Recorder()
    client.subscribe_job_updates(job.job_id, on_complete=late.on_complete)
    assert late.done.wait(10) and len(late.complete) == 1
    server.behaviour["hash"] = "queue"
    job2 = client.submit("hash", sample)
    gone = Recorder()
    sub = client.mqtt_subscribe_job_updates(job2.job_id, gone.on_progress, gone.on_complete)
    assert client.unsubscribe(sub) is True
    assert client.unsubscribe(sub) is False
    server.set_status(job2.job_id, "completed", 100)
    server.publish_event(job2.job_id, "completed", 100)
    assert job2.wait(timeout=5).status == "completed"
    time.sleep(0.2)
    assert gone.complete == [] and gone.progress == []


def test_wait_timeout_names_job_and_status(server: ScriptedServer, client: ComputeClient, sample: Path) -> None:
    job = client.submit("hash", sample)
    server.set_status(job.job_id, "processing", 5)
    server.publish_event(job.job_id, "processing", 5)
    with pytest.raises(JobTimeoutError) as exc_info:
        job.wait(timeout=0.5)
    err = exc_info.value
    assert isinstance(err, TimeoutError)
    assert err.job_id == job.job_id and err.last_status == "processing"
    assert job.job_id in str(err) and "processing" in str(err)


def test_deleted_job_wait_raises_not_found(server: ScriptedServer, client: ComputeClient, sample: Path) -> None:
    job = client.submit("hash", sample)
    server.jobs.pop(job.job_id)  # deleted behind the client's back
    with pytest.raises(JobNotFoundError):
        job.wait(timeout=10)
    job2 = client.submit("hash", sample)
    job2.delete()
    with pytest.raises(JobNotFoundError):
        client.wait_for_job(job2.job_id, timeout=2)


def test_mqtt_v5_selectable(server: ScriptedServer, broker: Broker, sample: Path) -> None:
    if broker.kind != "mosquitto":
        pytest.skip("the amqtt fallback broker speaks MQTT 3.1.1 only")
    server.behaviour["hash"] = "complete_before_reply"
    with ComputeClient(server.url, mqtt_url=broker.url, config=CFG.replace(mqtt_protocol="5")) as c:
        assert c.submit("hash", sample).wait(timeout=5).status == "completed"
        assert c.monitor is not None and c.monitor.stats.events >= 3


def test_broker_down_at_start_costs_at_most_connect_timeout(server: ScriptedServer, sample: Path) -> None:
    cfg = CFG.replace(mqtt_connect_timeout=3.0)
    dead = f"mqtt://127.0.0.1:{unassigned_port()}"
    with ComputeClient(server.url, mqtt_url=dead, config=cfg) as c:
        start = time.monotonic()
        job = c.submit("hash", sample)
        job2 = c.submit("hash", sample)
        c.submit("hash", sample).delete()
        took = time.monotonic() - start
        # the bounded wait happens once, not per submit: three waits would take 9 s (a bound far from both)
        assert took < 2 * cfg.mqtt_connect_timeout, f"3 submits took {took:.1f} s with a dead broker"
        threading.Timer(0.3, server.set_status, args=(job.job_id, "completed", 100)).start()
        assert job.wait(timeout=5).status == "completed"
        server.set_status(job2.job_id, "error", 100, "x")
        assert job2.wait(timeout=5).status == "error"


def test_broker_restart_during_wait(server: ScriptedServer, sample: Path) -> None:
    port = unassigned_port()
    own = start_broker(port=port)
    try:
        with ComputeClient(server.url, mqtt_url=own.url, config=CFG) as c:
            assert c.monitor is not None and c.monitor.wait_ready(5)
            job = c.submit("hash", sample)
            own.stop()
            server.set_status(job.job_id, "completed", 100)  # the event is lost with the broker
            assert job.wait(timeout=10).status == "completed"
            own = start_broker(port=port)
            deadline = time.monotonic() + 10
            while not c.monitor.ready and time.monotonic() < deadline:
                time.sleep(0.05)
            assert c.monitor.ready and c.monitor.stats.connects >= 2
            # Resubscribed: an event published on the new broker reaches a new job's callback.
            rec = Recorder()
            job2 = c.submit("hash", sample, on_progress=rec.on_progress, on_complete=rec.on_complete)
            publisher = ScriptedServer(own.url)
            try:
                publisher.publish_event(job2.job_id, "processing", 33)
                deadline = time.monotonic() + 5
                while ("processing", 33) not in rec.progress and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert ("processing", 33) in rec.progress
            finally:
                publisher.stop()
    finally:
        own.stop()


def test_worker_registry_and_wait_for_workers(server: ScriptedServer, client: ComputeClient) -> None:
    server.publish_worker("w-old", {"id": "w-old", "capabilities": ["hash", "exif"], "idle_count": 1, "timestamp": 1})
    server.publish_worker("w-new", {"worker_id": "w-new", "capabilities": ["clip_embedding"], "idle_count": 0})
    server.publish_worker("w-topic", {"capabilities": ["dino_embedding"], "idle_count": 1})
    server.publish_worker("w-bad", {"capabilities": "not a list"})
    try:
        workers = client.wait_for_workers(["hash", "clip_embedding", "dino_embedding"], timeout=5)
        assert workers["w-old"].capabilities == ["hash", "exif"]
        assert workers["w-new"].worker_id == "w-new" and not workers["w-new"].is_idle
        assert workers["w-topic"].worker_id == "w-topic"
        assert "w-bad" not in workers
        server.publish_worker("w-new", None)  # empty retained payload: the worker is gone
        deadline = time.monotonic() + 5
        while "w-new" in client.workers() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "w-new" not in client.workers()
        with pytest.raises(WorkerUnavailableError) as exc_info:
            client.wait_for_workers(["face_detection", "hash"], timeout=0.3)
        err = exc_info.value
        assert err.task_type == "face_detection" and err.missing == ["face_detection"]
        assert "hash" in err.available and "exif" in err.available
        assert "face_detection" in str(err)
    finally:
        for wid in ("w-old", "w-new", "w-topic", "w-bad"):
            server.publish_worker(wid, None)


def test_wait_for_workers_without_mqtt_uses_capabilities(server: ScriptedServer) -> None:
    with ComputeClient(server.url, mqtt_url="off", config=CFG) as c:
        assert c.wait_for_workers(["hash"], timeout=2) == {}
        with pytest.raises(WorkerUnavailableError) as exc_info:
            c.wait_for_workers(["exif"], timeout=0.3)
        assert exc_info.value.available == ["hash"]


async def test_async_client_callbacks_run_on_the_loop(server: ScriptedServer, broker: Broker, sample: Path) -> None:
    server.behaviour["hash"] = "complete_before_reply"
    loop_thread = threading.current_thread().name
    seen: list[tuple[str, str]] = []
    finished = asyncio.Event()

    async def on_progress(job: JobResponse) -> None:
        seen.append((job.status, threading.current_thread().name))

    async def on_complete(job: JobResponse) -> None:
        seen.append(("complete:" + job.status, threading.current_thread().name))
        finished.set()

    async with AsyncComputeClient(server.url, mqtt_url=broker.url, config=CFG) as c:
        job = await c.submit("hash", sample, on_progress=on_progress, on_complete=on_complete)
        final = await job.result(timeout=5)
        assert final.status == "completed"
        await asyncio.wait_for(finished.wait(), 5)
        assert {t for _, t in seen} == {loop_thread}
        assert [s for s, _ in seen][-1] == "complete:completed"
        server.behaviour["exif"] = "fail_silently"
        failing = await c.submit("exif", sample)
        with pytest.raises(JobFailedError):
            await failing.result(timeout=10)
        server.behaviour["hash"] = "queue"
        slow = await c.submit("hash", sample)
        with pytest.raises(JobTimeoutError):
            await slow.wait(timeout=0.3)
        server.publish_worker("w-async", {"worker_id": "w-async", "capabilities": ["hls_streaming"], "idle_count": 1})
        try:
            assert "w-async" in await c.wait_for_workers(["hls_streaming"], timeout=5)
            with pytest.raises(WorkerUnavailableError):
                await c.wait_for_workers(["nothing_like_this"], timeout=0.2)
        finally:
            server.publish_worker("w-async", None)


async def test_async_without_mqtt(server: ScriptedServer, sample: Path) -> None:
    async with AsyncComputeClient(server.url, mqtt_url="off", config=CFG) as c:
        job = await c.submit("hash", sample)
        server.set_status(job.job_id, "completed", 100)
        assert (await c.wait_for_job(job.job_id, timeout=5)).status == "completed"
        assert "hash" in (await c.get_capabilities()).capabilities
        assert await c.wait_for_workers(["hash"], timeout=1) == {}
        with pytest.raises(WorkerUnavailableError):
            await c.wait_for_workers(["exif"], timeout=0.2)


def test_waiting_on_a_job_that_ended_before_anyone_listened_is_immediate(
    server: ScriptedServer, broker: Broker, sample: Path
) -> None:
    with ComputeClient(server.url, mqtt_url="off", config=CFG) as first:
        job = first.submit("hash", sample)
    server.set_status(job.job_id, "completed", 100)  # finished while nobody tracked it
    slow_poll = CFG.replace(event_silence_timeout=30.0)
    with ComputeClient(server.url, mqtt_url=broker.url, config=slow_poll) as second:
        assert second.monitor is not None
        assert second.monitor.wait_ready(5)
        start = time.monotonic()
        assert second.wait_for_job(job.job_id, timeout=60).status == "completed"
        took = time.monotonic() - start
        # asked at once, not after event_silence_timeout (30 s) of silence
        assert took < 15, f"a job that had ended was confirmed after {took:.1f} s"
        rec = Recorder()  # a subscription after the end completes at once, once
        second.subscribe_job_updates(job.job_id, on_complete=rec.on_complete)
        assert rec.done.wait(10)
        assert [j.job_id for j in rec.complete] == [job.job_id]
