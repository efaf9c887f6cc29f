"""No public object shows a secret it holds in its repr or str: tokens, passwords (fields and inside URLs).

Every object is built with every secret it can hold planted (a distinct marker each), then its ``repr`` and
``str`` are searched for the markers. The MQTT monitor connects to a real broker (the session's); nothing else
here talks to a network.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import cl_client
from cl_client import ComputeClientConfig
from cl_client._config import MqttSettings, redact_url
from cl_client.auth import JWTAuthProvider
from cl_client.compute_client import ComputeClient as UpstreamComputeClient
from cl_client.mqtt_monitor import MQTTJobMonitor
from cl_client.server_config import ServerConfig
from cl_client.server_pref import ServerPref
from cl_client.session_manager import SessionManager, TokenResponse
from cl_compute.broker import Broker
from cl_compute.deployment import Deployment

PASSWORD = "PW-in-url-7f3a"  # in URLs (user:PASSWORD@host)
FIELD_PASSWORD = "PW-field-91c2"  # a password argument
QUERY_TOKEN = "TOKEN-in-query-55e1"  # ?token=... in a URL


def _jwt() -> str:
    head = base64.urlsafe_b64encode(json.dumps({"alg": "ES256"}).encode()).rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps({"exp": time.time() + 3600, "sub": "u"}).encode()).rstrip(b"=")
    return f"{head}.{body.decode()}.SIGNATURE-secret-0b7d"


TOKEN = _jwt()
SECRETS = (PASSWORD, FIELD_PASSWORD, QUERY_TOKEN, TOKEN, "SIGNATURE-secret-0b7d")

HTTP = f"http://user:{PASSWORD}@127.0.0.1:9/"
AUTH = f"http://user:{PASSWORD}@127.0.0.1:9/auth?token={QUERY_TOKEN}"
MQTT = f"mqtt://user:{PASSWORD}@127.0.0.1:9"


def _client_config() -> object:
    return ComputeClientConfig(server_url=HTTP, mqtt_url=MQTT, auth_url=AUTH, token=TOKEN, password=FIELD_PASSWORD)


def _sync_client() -> object:
    client = cl_client.ComputeClient(HTTP, mqtt_url=None, auth_url=AUTH, username="u", password=FIELD_PASSWORD)
    client.close()
    return client


def _upstream_client() -> object:
    return UpstreamComputeClient(HTTP, mqtt_url=None, auth_url=AUTH, token=TOKEN)


def _jwt_static() -> object:
    return JWTAuthProvider(TOKEN, auth_url=AUTH)


def _jwt_login() -> object:
    return JWTAuthProvider(username="u", password=FIELD_PASSWORD, auth_url=AUTH)


def _jwt_cached() -> object:
    return JWTAuthProvider(get_cached_token=lambda: TOKEN, auth_url=AUTH)


def _session_manager() -> object:
    manager = SessionManager(AUTH, ServerPref(auth_url=AUTH, compute_url=HTTP, store_url=HTTP, mqtt_url=MQTT))
    manager._token = TOKEN  # pyright: ignore[reportPrivateUsage] - a logged-in session, without an auth service
    manager._credentials = ("u", FIELD_PASSWORD)  # pyright: ignore[reportPrivateUsage]
    return manager


def _deployment() -> object:
    dep = Deployment(workers=0, mqtt_url=MQTT)
    dep.server_url, dep.mqtt_url = HTTP, MQTT  # as after start() against an external broker with credentials
    return dep


BUILDERS: dict[str, Callable[[], object]] = {
    "ComputeClientConfig": _client_config,
    "MqttSettings": lambda: MqttSettings.from_url(MQTT),
    "ComputeClient": _sync_client,
    "compute_client.ComputeClient": _upstream_client,
    "JWTAuthProvider(token)": _jwt_static,
    "JWTAuthProvider(login)": _jwt_login,
    "JWTAuthProvider(get_cached_token)": _jwt_cached,
    "ServerPref": lambda: ServerPref(auth_url=AUTH, compute_url=HTTP, store_url=HTTP, mqtt_url=MQTT),
    "ServerConfig": lambda: ServerConfig(auth_url=AUTH, compute_url=HTTP, store_url=HTTP),
    "SessionManager": _session_manager,
    "TokenResponse": lambda: TokenResponse(access_token=TOKEN),
    "Deployment": _deployment,
}


def _assert_hidden(obj: object) -> None:
    for text in (repr(obj), str(obj)):
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} shows in {text!r}"


@pytest.mark.parametrize("name", list(BUILDERS))
def test_no_secret_in_repr_or_str(name: str) -> None:
    _assert_hidden(BUILDERS[name]())


@pytest.fixture
def monitor(broker: Broker) -> Iterator[MQTTJobMonitor]:
    """A monitor connected to the session's broker through a URL with a user and password."""
    url = broker.url.replace("mqtt://", f"mqtt://user:{PASSWORD}@")
    m = MQTTJobMonitor(url)
    try:
        yield m
    finally:
        m.close()


def test_no_secret_in_the_mqtt_monitor(monitor: MQTTJobMonitor) -> None:
    _assert_hidden(monitor)


def test_the_upstream_client_in_a_running_loop() -> None:
    """The async client of upstream's module path, as it is used (inside a loop), shows no token either."""

    async def main() -> None:
        async with UpstreamComputeClient(HTTP, mqtt_url=None, token=TOKEN) as client:
            _assert_hidden(client)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (MQTT, "mqtt://user:***@127.0.0.1:9"),
        ("http://h:1/p?token=abc&x=1", "http://h:1/p?token=***&x=1"),
        ("http://h:1/p", "http://h:1/p"),
        ("mqtt://user@h", "mqtt://user@h"),
        ("h:1883", "h:1883"),
        ("u:pw@h:1883", "u:***@h:1883"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_deployment_keeps_its_own_copy(tmp_path: Path) -> None:
    """cl_compute does not import cl_client internals: its URL redaction is its own."""
    dep = Deployment(workers=0, mqtt_url=MQTT, data_dir=tmp_path)
    dep.mqtt_url = MQTT
    assert "mqtt_url='mqtt://user:***@127.0.0.1:9'" in repr(dep)


def test_no_password_in_error_messages() -> None:
    """A connection error names the URL it tried, without the password in it."""
    config = ComputeClientConfig(server_url=HTTP, mqtt_url=None, max_retries=0)
    with cl_client.ComputeClient(config=config) as client:
        with pytest.raises(cl_client.ComputeConnectionError) as caught:
            client.health()
    _assert_hidden(caught.value)
    assert "user:***@127.0.0.1:9" in str(caught.value)
