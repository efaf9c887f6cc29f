"""Losing the broker mid-session: submits never wait for a reconnect, one warning and one reconnect per
outage, polling covers the gap, events resume once the broker is back. A real broker process is stopped and
restarted on the same port; the scripted server publishes its own events on the session broker, so the
client's broker is the only thing that goes away."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from cl_client import ComputeClient, ComputeClientConfig, JobResponse
from cl_compute.broker import start_broker
from tests.unit.ports import unassigned_port

from .scripted_server import ScriptedServer, wait_until

# A connect timeout far longer than the deadlines below: a submit that waited for the reconnect could not
# finish while the broker is down.
CFG = ComputeClientConfig(
    event_silence_timeout=0.6, poll_interval=0.2, poll_max_interval=0.5, mqtt_connect_timeout=120,
    mqtt_reconnect_max_delay=2,
)  # fmt: skip


def mqtt_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cl_client.mqtt" and r.levelno >= logging.WARNING]


def test_four_threads_submit_through_a_broker_outage(
    server: ScriptedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sample = tmp_path / "in.png"
    sample.write_bytes(b"\x89PNG" + b"0" * 100)
    port = unassigned_port()
    own = start_broker(port=port)
    try:
        with ComputeClient(server.url, mqtt_url=own.url, config=CFG) as c:
            monitor = c.monitor
            assert monitor is not None and monitor.wait_ready(30)
            c.submit("hash", sample).delete()  # the session is up and in use
            caplog.clear()
            own.stop()
            wait_until(lambda: not monitor.ready, 30, "the client to notice the broker is gone")

            finished: list[tuple[str, str]] = []
            errors: list[BaseException] = []
            lock = threading.Lock()

            def submitter() -> None:
                try:
                    for _ in range(2):
                        job = c.submit("hash", sample)
                        server.set_status(job.job_id, "completed", 100)  # no event: it is lost with the broker
                        record = job.wait(timeout=60)
                        with lock:
                            finished.append((job.job_id, record.status))
                except BaseException as exc:  # reported below
                    with lock:
                        errors.append(exc)

            threads = [threading.Thread(target=submitter, name=f"submitter-{i}") for i in range(4)]
            for t in threads:
                t.start()
            # Every job ends by polling while the broker is still down.
            wait_until(lambda: len(finished) + len(errors) == 8, 45, "8 jobs submitted and ended during the outage")
            for t in threads:
                t.join(10)
            assert not errors, errors
            assert [status for _, status in finished] == ["completed"] * 8
            assert not monitor.ready  # it really all happened during the outage
            warnings = mqtt_warnings(caplog)
            assert len(warnings) == 1 and "lost the MQTT broker" in warnings[0], warnings

            own = start_broker(port=port)
            wait_until(lambda: monitor.ready, 60, "the client to reconnect to the restarted broker")
            assert monitor.stats.connects == 2  # one reconnect for the outage
            assert len(mqtt_warnings(caplog)) == 1
            assert any("reachable again" in r.getMessage() for r in caplog.records)

            # Events resume: an event published on the restarted broker reaches a new job's callback.
            seen: list[tuple[str, int]] = []
            done = threading.Event()

            def on_progress(job: JobResponse) -> None:
                seen.append((job.status, job.progress))

            job = c.submit("hash", sample, on_progress=on_progress, on_complete=lambda _j: done.set())
            publisher = ScriptedServer(own.url)
            try:
                publisher.publish_event(job.job_id, "processing", 42)
                wait_until(lambda: ("processing", 42) in seen, 30, "the event after the reconnect")
                server.set_status(job.job_id, "completed", 100)
                publisher.publish_event(job.job_id, "completed", 100)
                assert done.wait(30)
            finally:
                publisher.stop()
    finally:
        own.stop()
