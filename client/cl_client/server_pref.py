"""``ServerPref``: the service URLs of a CL Server installation, as upstream's SDK names them.

``ComputeClient(server_pref=ServerPref(...))`` (either client, and ``cl_client.compute_client.ComputeClient``)
uses its URLs for those not given as arguments.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cl_client._config import ENVIRONMENT_VARIABLES, mqtt_url_from_host_port, redacted_repr


def env_value(name: str, env: Mapping[str, str]) -> str | None:
    """Return the first non-empty environment variable of a setting, in the order of ``ENVIRONMENT_VARIABLES``."""
    for var in ENVIRONMENT_VARIABLES[name]:
        value = (env.get(var) or "").strip()
        if value:
            return value
    return None


@dataclass
class ServerPref:
    """The URLs of the auth, compute and store services and of the MQTT broker (upstream's ``ServerPref``).

    Attributes:
        auth_url: auth service URL.
        compute_url: compute API URL.
        store_url: store service URL (not used by this package; kept for upstream code).
        mqtt_url: broker URL.
    """

    auth_url: str = "http://localhost:8000"
    compute_url: str = "http://localhost:8002"
    store_url: str = "http://localhost:8001"
    mqtt_url: str = "mqtt://localhost:1883"

    def __repr__(self) -> str:
        """Show the URLs without their passwords."""
        return redacted_repr(self, {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerPref:
        """Read the URLs from the environment, in this package's precedence.

        ``CL_SERVER_URL`` before ``COMPUTE_URL``, ``CL_MQTT_URL`` before ``MQTT_URL`` before
        ``MQTT_BROKER``/``MQTT_PORT``, ...; ``STORE_URL`` for the store; each missing one takes its default.

        Args:
            environ: the environment (``os.environ`` when omitted).

        Raises:
            ConfigurationError: ``MQTT_PORT`` is not a port number.
        """
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            auth_url=env_value("auth_url", env) or default.auth_url,
            compute_url=env_value("server_url", env) or default.compute_url,
            store_url=(env.get("STORE_URL") or "").strip() or default.store_url,
            mqtt_url=env_value("mqtt_url", env) or mqtt_url_from_host_port(env) or default.mqtt_url,
        )
