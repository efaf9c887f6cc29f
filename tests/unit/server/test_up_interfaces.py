"""``cl-compute up --host``: the broker listens on the API's interface, so a client on another machine gets both
the API and the job events. Another machine is played by another loopback address (127.0.0.2: Linux routes
all of 127.0.0.0/8 to ``lo``), which reaches a socket bound to 0.0.0.0 but not one bound to 127.0.0.1.
Real processes (``cl-compute up`` with mosquitto, or amqtt), no mocks; free ports only (``--port 0
--mqtt-port 0``), never 8002/1883.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import Recorder, UpProcess, check_md5_job_over_mqtt

from cl_client import ComputeClient
from cl_compute.broker import find_mosquitto
from tests.unit.ports import unassigned_port

#: an address of this machine that is not 127.0.0.1: a client "elsewhere".
OTHER = "127.0.0.2"

#: variables that would point a client somewhere other than its arguments.
CLIENT_ENV = ("CL_SERVER_URL", "COMPUTE_URL", "CL_MQTT_URL", "MQTT_URL", "CL_AUTH_URL", "AUTH_URL", "CL_TOKEN")


def _expected_kind(broker: str) -> str:
    return "mosquitto" if broker == "auto" and find_mosquitto() is not None else "amqtt"


def _banner(lines: list[str], loopback: str) -> tuple[str, str, str, int, int]:
    """(server_url, mqtt_url, broker kind, API port, broker port) from the banner; the URLs must name ``loopback``."""
    text = "\n".join(lines)
    host = re.escape(loopback)
    api = re.search(rf"^API server:\s+(http://{host}:(\d+))$", text, re.MULTILINE)
    mqtt = re.search(rf"^MQTT broker:\s+(mqtt://{host}:(\d+)) \((\w+)\)$", text, re.MULTILINE)
    assert api, text
    assert mqtt, text
    return api.group(1), mqtt.group(1), mqtt.group(3), int(api.group(2)), int(mqtt.group(2))


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=30):
            return False
    except ConnectionRefusedError:
        return True


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("broker", ["auto", "amqtt"])
@pytest.mark.parametrize(("host", "loopback"), [("0.0.0.0", "127.0.0.1"), ("::", "[::1]")])
def test_with_a_wildcard_host_a_client_elsewhere_gets_the_api_and_the_events(
    host: str, loopback: str, broker: str, client_env: None, tmp_path: Path
) -> None:
    args = ["--host", host, "--port", "0", "--mqtt-port", "0", "--broker", broker]
    args += ["--workers", "1", "--tasks", "hash", "--data-dir", str(tmp_path / "data")]
    with UpProcess(*args) as up:
        lines = up.wait_banner()
        # the printed URLs name this machine's loopback address, and they work
        server_url, mqtt_url, kind, api_port, mqtt_port = _banner(lines, loopback)
        assert kind == _expected_kind(broker), up.output()
        assert lines[-1] == f"export CL_SERVER_URL={server_url} CL_MQTT_URL={mqtt_url}", up.output()
        assert any("other machines" in line for line in lines), up.output()
        assert httpx.get(server_url, timeout=30).status_code == 200
        Recorder(mqtt_url).close()

        # a client that reaches this machine through another address gets the API and the job's events
        with ComputeClient(f"http://{OTHER}:{api_port}", mqtt_url=f"mqtt://{OTHER}:{mqtt_port}") as client:
            assert client.monitor is not None
            assert client.monitor.wait_ready(60), f"no MQTT connection through {OTHER}:{mqtt_port}\n{up.output()}"
            check_md5_job_over_mqtt(client, tmp_path)
    assert up.proc.returncode == 0, up.output()


@pytest.mark.parametrize("broker", ["auto", "amqtt"])
def test_with_the_default_host_api_and_broker_are_loopback_only(broker: str, tmp_path: Path) -> None:
    args = ["--port", "0", "--mqtt-port", "0", "--broker", broker, "--workers", "0"]
    with UpProcess(*args, "--data-dir", str(tmp_path / "data")) as up:
        lines = up.wait_banner()
        server_url, mqtt_url, kind, api_port, mqtt_port = _banner(lines, "127.0.0.1")
        assert kind == _expected_kind(broker), up.output()
        assert not any("other machines" in line for line in lines), up.output()
        assert httpx.get(server_url, timeout=30).status_code == 200
        Recorder(mqtt_url).close()
        assert _refused(OTHER, api_port), f"the API answers on {OTHER}:{api_port}"
        assert _refused(OTHER, mqtt_port), f"the broker answers on {OTHER}:{mqtt_port}"
    assert up.proc.returncode == 0, up.output()


@contextlib.contextmanager
def _occupied_on(host: str) -> Iterator[int]:
    """A listening socket on ``host``; yields its port, which is free on 127.0.0.1 and outside the ephemeral range
    (a ``bind(0)`` port, free on ``host``, was once already held on 127.0.0.1 by another socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, unassigned_port(host, "127.0.0.1")))
        s.listen(1)
        yield s.getsockname()[1]


@pytest.mark.parametrize("broker", ["auto", "amqtt"])
def test_a_broker_port_taken_on_another_address_is_taken_for_a_wildcard_host(broker: str, tmp_path: Path) -> None:
    """0.0.0.0:PORT cannot be bound while 127.0.0.2:PORT listens: the check looks where the broker binds."""
    with _occupied_on(OTHER) as port:
        args = ["--host", "0.0.0.0", "--port", "0", "--mqtt-port", str(port), "--broker", broker, "--workers", "0"]
        with UpProcess(*args, "--data-dir", str(tmp_path / "data")) as up:
            code = up.wait_exit()
    assert code == 1, up.output()
    assert [x for x in up.stderr if "in use" in x] == [
        f"cl-compute: port {port} is in use, so the MQTT broker cannot listen on it; choose another --mqtt-port "
        "(0 = any free port) or leave it out to fall back to a free port"
    ], up.output()
    assert "Traceback" not in up.output()


def test_a_broker_port_taken_on_another_address_is_free_for_the_default_host(tmp_path: Path) -> None:
    """127.0.0.1:PORT can be bound while 127.0.0.2:PORT listens: the broker starts on it."""
    with _occupied_on(OTHER) as port:
        args = ["--port", "0", "--mqtt-port", str(port), "--workers", "0", "--data-dir", str(tmp_path / "data")]
        with UpProcess(*args) as up:
            lines = up.wait_banner()
            _server_url, mqtt_url, _kind, _api_port, mqtt_port = _banner(lines, "127.0.0.1")
            assert mqtt_port == port, up.output()
            Recorder(mqtt_url).close()
    assert up.proc.returncode == 0, up.output()
    assert not [x for x in up.stderr if "in use" in x], up.output()
