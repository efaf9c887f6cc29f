"""``ServerConfig``: upstream's January 2026 name of ``ServerPref``, with the broker as host and port."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cl_client._config import MqttSettings, redacted_repr
from cl_client.server_pref import ServerPref, env_value


@dataclass
class ServerConfig:
    """Service URLs and the broker's host and port (upstream's January 2026 ``ServerConfig``).

    Attributes:
        auth_url: auth service URL.
        compute_url: compute API URL.
        store_url: store service URL (not used by this package).
        mqtt_broker: broker host.
        mqtt_port: broker port.
    """

    auth_url: str = "http://localhost:8000"
    compute_url: str = "http://localhost:8002"
    store_url: str = "http://localhost:8001"
    mqtt_broker: str = "localhost"
    mqtt_port: int = 1883

    @property
    def mqtt_url(self) -> str:
        """``mqtt://<mqtt_broker>:<mqtt_port>``."""
        return f"mqtt://{self.mqtt_broker}:{self.mqtt_port}"

    def __repr__(self) -> str:
        """Show the URLs without their passwords."""
        return redacted_repr(self, {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerConfig:
        """Read the settings from the environment as ``ServerPref.from_env`` does (broker URL split up).

        Raises:
            ConfigurationError: an invalid broker URL or ``MQTT_PORT``.
        """
        env = os.environ if environ is None else environ
        pref = ServerPref.from_env(env)
        broker = MqttSettings.from_url(pref.mqtt_url)
        return cls(
            auth_url=env_value("auth_url", env) or pref.auth_url,
            compute_url=pref.compute_url,
            store_url=pref.store_url,
            mqtt_broker=broker.host,
            mqtt_port=broker.port,
        )
