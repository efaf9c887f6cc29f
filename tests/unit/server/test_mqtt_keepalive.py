"""``CL_COMPUTE_MQTT_KEEPALIVE`` sets the keep-alive of a deployment's MQTT connections (default 30 s)."""

from __future__ import annotations

import pytest

from cl_compute.broker import start_broker
from cl_compute.mqtt import DEFAULT_KEEPALIVE, KEEPALIVE_ENV, MQTTConnection, keepalive


@pytest.mark.parametrize(("raw", "expected"), [("", DEFAULT_KEEPALIVE), ("5", 5), ("0", 1), ("x", DEFAULT_KEEPALIVE)])
def test_keepalive_from_the_environment(monkeypatch: pytest.MonkeyPatch, raw: str, expected: int) -> None:
    monkeypatch.setenv(KEEPALIVE_ENV, raw)
    assert keepalive() == expected


def test_a_connection_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEEPALIVE_ENV, "7")
    broker = start_broker()
    try:
        conn = MQTTConnection(broker.url)
        conn.start()
        try:
            assert conn.client.keepalive == 7
        finally:
            conn.stop()
    finally:
        broker.stop()
