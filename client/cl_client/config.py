"""Upstream's module path ``cl_client.config``: ``ComputeClientConfig`` (with upstream's class constants)."""

from cl_client._config import ComputeClientConfig, MqttSettings, resolve_config

__all__ = ["ComputeClientConfig", "MqttSettings", "resolve_config"]
