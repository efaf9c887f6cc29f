"""Helpers for the cl_compute server tests: an MQTT recorder and small HTTP helpers (plain httpx + paho)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlparse

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

T = TypeVar("T")
TERMINAL = ("completed", "error")


@dataclass
class Event:
    job_id: str
    event_type: str
    progress: int
    timestamp: int
    raw: dict[str, Any]
    received: float = field(default_factory=time.monotonic)


@dataclass
class WorkerMessage:
    worker_id: str
    payload: dict[str, Any] | None  # None = empty payload (worker gone)
    retained: bool
    received: float = field(default_factory=time.monotonic)


class Recorder:
    """Records ``inference/events`` and ``inference/workers/+`` from the moment it is created."""

    def __init__(self, mqtt_url: str, protocol: int = paho.MQTTv311) -> None:
        parsed = urlparse(mqtt_url)
        self.events: list[Event] = []
        self.workers: list[WorkerMessage] = []
        self.malformed: list[bytes] = []
        self.cond = threading.Condition()
        subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-rec-{uuid.uuid4().hex[:8]}", protocol=protocol
        )

        def on_connect(client: paho.Client, *_: object) -> None:
            client.subscribe([("inference/events", 1), ("inference/workers/+", 1)])

        def on_subscribe(*_: object) -> None:
            subscribed.set()

        def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
            with self.cond:
                if msg.topic == "inference/events":
                    try:
                        data = json.loads(msg.payload)
                        self.events.append(
                            Event(data["job_id"], data["event_type"], data["progress"], data["timestamp"], data)
                        )
                    except (ValueError, KeyError, TypeError):
                        self.malformed.append(msg.payload)
                else:
                    wid = msg.topic.rsplit("/", 1)[-1]
                    payload = json.loads(msg.payload) if msg.payload else None
                    self.workers.append(WorkerMessage(wid, payload, bool(msg.retain)))
                self.cond.notify_all()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError(f"recorder could not subscribe on {mqtt_url}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def wait(self, predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    idle = [(w.worker_id, w.payload and w.payload.get("idle_count")) for w in self.workers[-10:]]
                    raise AssertionError(
                        f"timed out after {timeout} s waiting for {what}; events={self.events[-20:]}, workers={idle}"
                    )
                self.cond.wait(remaining)

    def job_events(self, job_id: str) -> list[Event]:
        with self.cond:
            return [e for e in self.events if e.job_id == job_id]

    def wait_event(self, job_id: str, event_type: str, timeout: float = 10.0) -> Event:
        def find() -> Event | None:
            return next((e for e in self.events if e.job_id == job_id and e.event_type == event_type), None)

        return self.wait(find, timeout, f"{event_type} event of {job_id}")

    def wait_terminal(self, job_id: str, timeout: float = 15.0) -> Event:
        def find() -> Event | None:
            return next((e for e in self.events if e.job_id == job_id and e.event_type in TERMINAL), None)

        return self.wait(find, timeout, f"terminal event of {job_id}")

    def wait_worker(
        self, worker_id: str, predicate: Callable[[WorkerMessage], bool], after: float = 0.0, timeout: float = 10.0
    ) -> WorkerMessage:
        def find() -> WorkerMessage | None:
            return next(
                (w for w in self.workers if w.worker_id == worker_id and w.received >= after and predicate(w)),
                None,
            )

        return self.wait(find, timeout, f"worker message of {worker_id}")


def submit(
    client: httpx.Client,
    task_type: str,
    data: dict[str, str] | None = None,
    filename: str = "input.bin",
    content: bytes = b"hello world",
    headers: dict[str, str] | None = None,
) -> str:
    r = client.post(f"/jobs/{task_type}", files={"file": (filename, content)}, data=data or {}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "queued", body
    assert body["task_type"] == task_type, body
    return str(body["job_id"])


def run_job(
    client: httpx.Client, recorder: Recorder, task_type: str, data: dict[str, str] | None = None, **kw: Any
) -> dict[str, Any]:
    job_id = submit(client, task_type, data, **kw)
    recorder.wait_terminal(job_id)
    r = client.get(f"/jobs/{job_id}")
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


def retained_now(mqtt_url: str, topic: str, wait: float = 0.3) -> list[bytes]:
    """Retained messages a fresh subscriber gets on ``topic`` (brokers send them right after SUBACK), one per
    topic: a broker retains one message per topic, and amqtt may deliver a retained message twice."""
    parsed = urlparse(mqtt_url)
    got: dict[str, bytes] = {}
    done = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-ret-{uuid.uuid4().hex[:8]}")

    def on_connect(c: paho.Client, *_: object) -> None:
        c.subscribe(topic, 1)

    def on_subscribe(*_: object) -> None:
        done.set()

    def on_message(c: paho.Client, u: object, msg: paho.MQTTMessage) -> None:
        # amqtt may deliver a retained message twice, or one outside the filter: keep one per matching topic.
        if msg.retain and paho.topic_matches_sub(topic, msg.topic):
            got[msg.topic] = msg.payload

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883)
    client.loop_start()
    try:
        assert done.wait(5)
        # Retained messages follow the SUBACK on the same connection; a round trip through the broker
        # (publish to a private topic and receive it) proves they have all been delivered.
        marker = f"test/marker/{uuid.uuid4().hex}"
        seen = threading.Event()
        client.message_callback_add(marker, lambda c, u, m: seen.set())
        client.subscribe(marker, 1)
        time.sleep(0.05)
        client.publish(marker, b"x", qos=1)
        assert seen.wait(wait + 5)
    finally:
        client.disconnect()
        client.loop_stop()
    return list(got.values())


def test_plugin_spec() -> dict[str, str]:
    """The test-only plugins (plus one whose module does not exist) as ``extra_plugins`` for a Deployment."""
    from compute_test_plugins import extra_plugins_spec

    spec = extra_plugins_spec()
    spec["broken"] = "/nonexistent/cl_compute_missing_plugin.py:Nope"
    return spec


test_plugin_spec.__test__ = False  # type: ignore[attr-defined]


class UpProcess:
    """``python -m cl_compute up ARGS`` in a subprocess, with its stdout and stderr read by threads.

    Use as a context manager: leaving it always stops the process (SIGTERM, then SIGKILL), also on failure.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cl_compute", "up", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            with self._cond:
                into.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            return "stdout:\n" + "\n".join(self.stdout) + "\nstderr:\n" + "\n".join(self.stderr)

    def wait_banner(self, timeout: float = 120.0) -> list[str]:
        """Wait for the banner's ``export`` line (generous deadline); returns the stdout lines so far."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(line.startswith("export ") for line in self.stdout):
                remaining = deadline - time.monotonic()
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._readers):
                    raise AssertionError(f"cl-compute up exited with {self.proc.returncode}\n{self.output()}")
                if remaining <= 0:
                    raise AssertionError(f"no banner from cl-compute up within {timeout:g} s\n{self.output()}")
                self._cond.wait(min(remaining, 0.5))
            return list(self.stdout)

    def wait_stderr(self, text: str, timeout: float = 60.0) -> str:
        """Wait for a stderr line containing ``text`` (stdout and stderr are read by separate threads)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [line for line in self.stderr if text in line]
                if found:
                    return found[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._readers[1].is_alive():
                    raise AssertionError(f"no stderr line with {text!r}\n{self.output()}")
                self._cond.wait(min(remaining, 0.5))

    def wait_exit(self, timeout: float = 120.0) -> int:
        """Wait for the process to end (generous deadline) and for its output to be read; returns the status."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"cl-compute up did not exit within {timeout:g} s\n{self.output()}") from None
        for t in self._readers:
            t.join(timeout)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self._readers:
            t.join(10)

    def __enter__(self) -> UpProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


DEFAULT_PORTS_LOCK = "cl-compute-tests-default-ports.lock"


@contextlib.contextmanager
def default_ports_lock() -> Iterator[None]:
    """Hold the machine-wide lock of the fixed ports 8002/1883 while a test lets ``up`` take them.

    Every test that starts ``cl-compute up`` on its default ports, or occupies them itself, holds this lock, so
    no two such tests run at the same time (xdist workers, other pytest sessions on the host).
    """
    with path_lock(Path(tempfile.gettempdir()) / DEFAULT_PORTS_LOCK):
        yield


@contextlib.contextmanager
def path_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the file ``path``, which is removed when the last holder lets go.

    The holder removes the file before it unlocks, so nothing is left behind. A waiter may then hold a lock on
    the removed file while a newcomer creates a new one: each holder checks after locking that ``path`` still
    is the file it locked, and starts again otherwise.
    """
    while True:
        f = open(path, "a")  # noqa: SIM115 - closed below, after the unlock
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                continue
            mine = os.fstat(f.fileno())
            if (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
                continue
            try:
                yield
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            return
        finally:
            f.close()  # closing releases the lock


def check_md5_job_over_mqtt(client: Any, tmp_path: Path) -> None:
    """Submit an md5 ``hash`` job through ``client`` (a ``cl_client.ComputeClient``) and check it end to end.

    The job must complete, its callbacks run (``queued`` first, ``completed`` last), at least three events
    (queued, processing, completed) must have come over MQTT, and the result file must hold the MD5 of the bytes.
    """
    import hashlib
    import os

    data = os.urandom(4096)
    upload = tmp_path / "blob.bin"
    upload.write_bytes(data)
    statuses: list[str] = []
    done = threading.Event()
    job = client.submit(
        "hash",
        upload,
        {"algorithm": "md5"},
        on_progress=lambda j: statuses.append(j.status),
        on_complete=lambda j: done.set(),
    )
    record = job.result(timeout=120)
    assert record.status == "completed", record
    assert done.wait(60), "on_complete did not run"
    assert client.monitor is not None and client.monitor.ready
    assert client.monitor.stats.events >= 3, client.monitor.stats  # queued, processing, completed over MQTT
    assert statuses[0] == "queued", statuses
    assert statuses[-1] == "completed", statuses
    out = job.download("output/hash.json", tmp_path)
    assert hashlib.md5(data).hexdigest() in out.read_text()


def wait_until(predicate: Callable[[], T], what: str = "condition", timeout: float = 90.0) -> T:
    """Poll ``predicate`` until it returns something truthy (generous deadline) and return that value.

    Raises:
        AssertionError: still falsy after ``timeout`` seconds; the message says what was awaited.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
