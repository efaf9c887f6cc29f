from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from cl_compute.broker import Broker, start_broker
from tests.unit.client.scripted_server import ScriptedServer


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """A real MQTT broker (mosquitto when installed, else amqtt) on a free loopback port."""
    b = start_broker()
    yield b
    b.stop()


@pytest.fixture
def server(broker: Broker) -> Iterator[ScriptedServer]:
    s = ScriptedServer(broker.url)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def http_only_server() -> Iterator[ScriptedServer]:
    s = ScriptedServer(None)
    s.start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="cl_client")
