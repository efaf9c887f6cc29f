"""The benchmarks keep working: ``bench_server.py``'s event subscriber on a broker that carries foreign messages.

(Every benchmark runs end to end in CI through ``benchmarks/run_short.sh``, with both brokers.)
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import urlparse

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cl_compute.broker import Broker, start_broker

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{uuid.uuid4().hex[:6]}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    b = start_broker(prefer="amqtt")  # the pip-only broker of a machine without mosquitto
    try:
        yield b
    finally:
        b.stop()


def publish(url: str, payload: bytes, retain: bool = False) -> None:
    parsed = urlparse(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883)
    client.loop_start()
    try:
        client.publish("inference/events", payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_bench_server_events_skip_foreign_messages(broker: Broker) -> None:
    """Before: a retained capability message (no ``job_id``) raised KeyError in paho's thread, which ended it:
    every later wait timed out and the benchmark crashed."""
    bench = load("bench_server")
    publish(broker.url, json.dumps({"worker_id": "w1", "capabilities": ["hash"]}).encode(), retain=True)
    publish(broker.url, b"not json")
    events = bench.Events(broker.url)
    try:
        time.sleep(0.5)  # let the retained message arrive first (no assertion on time)
        publish(broker.url, b"[1, 2]")
        publish(broker.url, json.dumps({"job_id": "j1", "event_type": "completed"}).encode())
        assert events.wait("j1", "completed", timeout=30) > 0
    finally:
        events.close()
        publish(broker.url, b"", retain=True)  # clear the retained message
