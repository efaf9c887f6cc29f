from __future__ import annotations

import pytest

from cl_client import ComputeClientConfig, ConfigurationError, MqttSettings, resolve_config


def test_defaults_are_the_protocol_ports() -> None:
    cfg = resolve_config(environ={})
    assert cfg.server_url == "http://localhost:8002"
    assert cfg.mqtt_url == "mqtt://localhost:1883"
    assert cfg.auth_url == "http://localhost:8000"


@pytest.mark.parametrize(
    ("environ", "argument", "expected"),
    [
        ({}, None, "http://localhost:8002"),
        ({"COMPUTE_URL": "http://upstream:1"}, None, "http://upstream:1"),
        ({"COMPUTE_URL": "http://upstream:1", "CL_SERVER_URL": "http://ours:2"}, None, "http://ours:2"),
        ({"COMPUTE_URL": "http://upstream:1", "CL_SERVER_URL": "http://ours:2"}, "http://arg:3", "http://arg:3"),
    ],
)
def test_server_url_precedence(environ: dict[str, str], argument: str | None, expected: str) -> None:
    assert resolve_config(server_url=argument, environ=environ).server_url == expected


def test_mqtt_and_auth_precedence_and_base() -> None:
    base = ComputeClientConfig(mqtt_url="mqtt://base:1", auth_url="http://base:2")
    assert resolve_config(base=base, environ={}).mqtt_url == "mqtt://base:1"
    env = {"MQTT_URL": "mqtt://up:1883", "AUTH_URL": "http://auth-up:8000"}
    cfg = resolve_config(base=base, environ=env)
    assert (cfg.mqtt_url, cfg.auth_url) == ("mqtt://up:1883", "http://auth-up:8000")
    env["CL_MQTT_URL"] = "mqtt://cl:1"
    assert resolve_config(environ=env).mqtt_url == "mqtt://cl:1"
    assert resolve_config(mqtt_url="mqtt://arg:9", environ=env).mqtt_url == "mqtt://arg:9"


@pytest.mark.parametrize("value", ["", "off", "none", "OFF"])
def test_mqtt_can_be_disabled(value: str) -> None:
    assert resolve_config(environ={"CL_MQTT_URL": value}).mqtt_url is None
    assert resolve_config(mqtt_url=value, environ={}).mqtt_url is None


def test_timeout_from_env_and_bad_value() -> None:
    assert resolve_config(environ={"CL_TIMEOUT": "2.5"}).timeout == 2.5
    with pytest.raises(ConfigurationError, match="CL_TIMEOUT"):
        resolve_config(environ={"CL_TIMEOUT": "soon"})


def test_secrets_are_not_in_repr() -> None:
    cfg = resolve_config(token="tok-SECRET", password="pw-SECRET", username="bob", environ={})
    assert "SECRET" not in repr(cfg)
    assert "bob" in repr(cfg)


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "user", "password"),
    [
        ("mqtt://broker:1884", "broker", 1884, False, None, None),
        ("mqtts://broker", "broker", 8883, True, None, None),
        ("mqtt://u%40x:p%3Aw@h", "h", 1883, False, "u@x", "p:w"),
        ("localhost:1999", "localhost", 1999, False, None, None),
    ],
)
def test_mqtt_url_parsing(url: str, host: str, port: int, tls: bool, user: str | None, password: str | None) -> None:
    s = MqttSettings.from_url(url)
    assert (s.host, s.port, s.tls, s.username, s.password) == (host, port, tls, user, password)
    assert "p:w" not in repr(s) and "p:w" not in s.url


@pytest.mark.parametrize("url", ["http://broker:1883", "mqtt://", "mqtt://h:notaport"])
def test_bad_mqtt_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        MqttSettings.from_url(url)


def test_bad_settings() -> None:
    with pytest.raises(ConfigurationError, match="server_url"):
        ComputeClientConfig(server_url="localhost:8002")
    with pytest.raises(ConfigurationError):
        ComputeClientConfig(timeout=0)
    with pytest.raises(ConfigurationError):
        ComputeClientConfig(max_retries=-1)
    with pytest.raises(ConfigurationError):
        ComputeClientConfig(mqtt_protocol="4")  # type: ignore[arg-type]


@pytest.mark.parametrize("priority", [-1, 11, 2.5, True, "5"])
def test_priority_checked(priority: object) -> None:
    with pytest.raises(ConfigurationError, match="priority"):
        ComputeClientConfig().check_priority(priority)  # type: ignore[arg-type]
    assert ComputeClientConfig().check_priority(0) == 0
    assert ComputeClientConfig().check_priority(10) == 10
