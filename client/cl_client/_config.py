"""Configuration: every default lives in ``ComputeClientConfig``; precedence is resolved in one place.

Precedence (first wins): explicit argument > ``CL_*`` environment variable > upstream's variable
(``COMPUTE_URL``, ``MQTT_URL``, ``AUTH_URL``; for the broker then the January 2026 pair ``MQTT_BROKER`` /
``MQTT_PORT``) > default. The README has the same table.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from cl_client._exceptions import ConfigurationError

MqttProtocol = Literal["3.1.1", "5"]

#: setting name -> environment variables read for it, in order of precedence.
ENVIRONMENT_VARIABLES: Mapping[str, tuple[str, ...]] = {
    "server_url": ("CL_SERVER_URL", "COMPUTE_URL"),
    "mqtt_url": ("CL_MQTT_URL", "MQTT_URL"),
    "auth_url": ("CL_AUTH_URL", "AUTH_URL"),
    "token": ("CL_TOKEN",),
    "username": ("CL_USERNAME",),
    "password": ("CL_PASSWORD",),
    "timeout": ("CL_TIMEOUT",),
}

#: upstream's January 2026 broker variables, read after ``mqtt_url``'s (host, and port defaulting to 1883).
MQTT_HOST_PORT_VARIABLES: tuple[str, str] = ("MQTT_BROKER", "MQTT_PORT")

_DISABLED_MQTT = {"", "off", "none", "disabled", "false", "0"}

#: query parameters whose value is a secret (matched as a part of the lower-cased name)
_SECRET_QUERY_KEYS = ("token", "password", "passwd", "secret", "key", "auth")
#: what stands for a secret in reprs and messages
REDACTED = "***"


def redact_url(url: str | None) -> str | None:
    """Return ``url`` with its password (``scheme://user:PASSWORD@host``) and secret query values replaced.

    Used by every repr/str that shows a URL; text that is no URL comes back unchanged.

    Args:
        url: a URL (http, mqtt, ...), or None.
    """
    if not url or ("@" not in url and "?" not in url):
        return url
    try:
        parts = urlsplit(url if "://" in url else "//" + url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, colon, _ = userinfo.partition(":")
            netloc = f"{user}:{REDACTED}@{hostport}" if colon else f"{userinfo}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k in name.lower() for name, _ in pairs for k in _SECRET_QUERY_KEYS):
                safe = [(n, REDACTED if any(k in n.lower() for k in _SECRET_QUERY_KEYS) else v) for n, v in pairs]
                query = urlencode(safe, safe="*")
        rebuilt = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return REDACTED  # unparseable: show nothing of it rather than a secret
    return rebuilt if "://" in url else rebuilt.removeprefix("//")


def _shown(value: object) -> str:
    return repr(redact_url(value)) if isinstance(value, str) else repr(value)


def redacted_repr(obj: object, fields: Mapping[str, object]) -> str:
    """``Name(a=..., b=...)`` with every string value passed through :func:`redact_url`.

    Args:
        obj: the object (its class name leads).
        fields: the values to show, in order (secrets themselves must not be among them).
    """
    shown = ", ".join(f"{name}={_shown(value)}" for name, value in fields.items())
    return f"{type(obj).__name__}({shown})"


@dataclass(frozen=True)
class MqttSettings:
    """A parsed MQTT broker URL (``mqtt://[user:pass@]host[:port]`` or ``mqtts://`` for TLS).

    Attributes:
        host: broker host name.
        port: broker port (1883, or 8883 for ``mqtts`` when not given).
        tls: whether to use TLS.
        username: optional user name.
        password: optional password (never shown in reprs).
    """

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> MqttSettings:
        """Parse a broker URL.

        Args:
            url: ``mqtt://host:port``, ``mqtts://user:pass@host``, or a bare ``host:port``.

        Raises:
            ConfigurationError: the scheme is not mqtt/mqtts or the port is invalid.
        """
        text = url.strip()
        if "://" not in text:
            text = "mqtt://" + text
        parts = urlsplit(text)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ConfigurationError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ConfigurationError(f"invalid port in MQTT URL {url!r}") from exc
        if not parts.hostname:
            raise ConfigurationError(f"MQTT URL has no host: {url!r}")
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    @property
    def url(self) -> str:
        """The URL without credentials (safe to log)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class ComputeClientConfig:
    """Every setting of a client, with its default. Build one with ``resolve_config`` to apply precedence.

    Attributes:
        server_url: compute API base URL.
        mqtt_url: broker URL, or ``None`` to work by polling only.
        auth_url: auth service base URL (used when logging in with a user name and password).
        token: a static bearer token (JWT).
        username: user name for logging in at the auth service.
        password: password for logging in (never shown in reprs).
        timeout: default timeout in seconds for one HTTP request (connect, read, write, pool).
        connect_timeout: timeout to establish a TCP connection.
        max_retries: retries of idempotent requests on connection errors and retryable statuses.
        retry_statuses: statuses that are retried for idempotent requests.
        retry_backoff_base: first back-off delay in seconds (doubled each attempt, with jitter).
        retry_backoff_max: cap of one back-off delay, and of an honoured ``Retry-After``.
        mqtt_protocol: "3.1.1" (default) or "5".
        mqtt_connect_timeout: how long the first connection to the broker may take before the client
            falls back to polling.
        mqtt_keepalive: MQTT keep-alive in seconds.
        mqtt_reconnect_max_delay: cap of paho's reconnect back-off in seconds.
        poll_interval: first polling interval when events are not available.
        poll_backoff: multiplier of the polling interval.
        poll_max_interval: cap of the polling interval.
        event_silence_timeout: when a watched job gets no event for this long, it is polled.
        event_buffer_ttl: how long events for not-yet-known job ids are kept for replay.
        event_buffer_max: how many such events are kept at most.
        fetch_concurrency: threads doing confirmation GETs and polls (never on the event path).
        callback_concurrency: threads running sync callbacks. Callbacks of one job always run in order, one
            at a time; with the default 1 all callbacks share one thread (as upstream's SDK), with more, a
            slow callback of one job no longer delays other jobs' callbacks.
        default_priority: job priority when none is given.
        min_priority: lowest valid priority.
        max_priority: highest valid priority.
        job_timeout: default wait for a job in seconds.
        worker_wait_timeout: default wait for workers in seconds.
        token_refresh_margin: refresh a JWT when fewer seconds than this remain.
        download_chunk_size: bytes per chunk when streaming downloads.
        user_agent: the User-Agent header.

    Upstream's SDK used this class name for a holder of class constants; they are here too, as class
    attributes (``ComputeClientConfig.DEFAULT_TIMEOUT``, ``ENDPOINT_GET_JOB``, ``PLUGIN_ENDPOINTS``,
    ``get_plugin_endpoint(task_type)``, ...) with the same values as the instance defaults. They are read-only
    facts about the protocol: changing them changes nothing in the client.
    """

    DEFAULT_HOST: ClassVar[str] = "localhost"
    DEFAULT_PORT: ClassVar[int] = 8002
    DEFAULT_BASE_URL: ClassVar[str] = "http://localhost:8002"
    DEFAULT_TIMEOUT: ClassVar[float] = 30.0
    MQTT_URL: ClassVar[str] = "mqtt://localhost:1883"
    MQTT_BROKER: ClassVar[str] = "localhost"
    MQTT_PORT: ClassVar[int] = 1883
    MQTT_CAPABILITY_TOPIC_PREFIX: ClassVar[str] = "inference/workers"
    MQTT_JOB_EVENTS_TOPIC: ClassVar[str] = "inference/events"
    ENDPOINT_GET_JOB: ClassVar[str] = "/jobs/{job_id}"
    ENDPOINT_DELETE_JOB: ClassVar[str] = "/jobs/{job_id}"
    ENDPOINT_GET_JOB_FILE: ClassVar[str] = "/jobs/{job_id}/files/{file_path}"
    ENDPOINT_CAPABILITIES: ClassVar[str] = "/capabilities"
    PLUGIN_ENDPOINTS: ClassVar[Mapping[str, str]] = {
        name: f"/jobs/{name}"
        for name in (
            "clip_embedding",
            "dino_embedding",
            "exif",
            "face_detection",
            "face_embedding",
            "hash",
            "hls_streaming",
            "image_conversion",
            "media_thumbnail",
        )
    }
    DEFAULT_POLL_INTERVAL: ClassVar[float] = 1.0
    MAX_POLL_BACKOFF: ClassVar[float] = 10.0
    POLL_BACKOFF_MULTIPLIER: ClassVar[float] = 1.5
    WORKER_WAIT_TIMEOUT: ClassVar[float] = 30.0
    WORKER_CAPABILITY_CHECK_INTERVAL: ClassVar[float] = 1.0

    @classmethod
    def get_plugin_endpoint(cls, task_type: str) -> str:
        """The job-creation path of a plugin (``/jobs/clip_embedding``), as upstream's SDK has it.

        Raises:
            ConfigurationError: an unknown task type (also a ValueError, as upstream raised).
        """
        endpoint = cls.PLUGIN_ENDPOINTS.get(task_type)
        if endpoint is None:
            raise ConfigurationError(f"Unknown task type: {task_type}. Available: {list(cls.PLUGIN_ENDPOINTS)}")
        return endpoint

    server_url: str = "http://localhost:8002"
    mqtt_url: str | None = "mqtt://localhost:1883"
    auth_url: str = "http://localhost:8000"
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    connect_timeout: float = 5.0
    max_retries: int = 3
    retry_statuses: frozenset[int] = frozenset({429, 502, 503, 504})
    retry_backoff_base: float = 0.25
    retry_backoff_max: float = 8.0
    mqtt_protocol: MqttProtocol = "3.1.1"
    mqtt_connect_timeout: float = 5.0
    mqtt_keepalive: int = 30
    mqtt_reconnect_max_delay: float = 2.0
    poll_interval: float = 1.0
    poll_backoff: float = 1.5
    poll_max_interval: float = 10.0
    event_silence_timeout: float = 5.0
    event_buffer_ttl: float = 60.0
    event_buffer_max: int = 20_000
    fetch_concurrency: int = 4
    callback_concurrency: int = 1
    default_priority: int = 5
    min_priority: int = 0
    max_priority: int = 10
    job_timeout: float = 600.0
    worker_wait_timeout: float = 30.0
    token_refresh_margin: float = 60.0
    download_chunk_size: int = 1 << 20
    user_agent: str = "cl-client/0.1"

    def __post_init__(self) -> None:
        """Validate the settings.

        Raises:
            ConfigurationError: a URL has no http(s) scheme, a number is out of range, or the MQTT URL
                cannot be parsed.
        """
        for name, value in (("server_url", self.server_url), ("auth_url", self.auth_url)):
            if not value.startswith(("http://", "https://")):
                raise ConfigurationError(f"{name} must start with http:// or https://, got {value!r}")
        if self.mqtt_url is not None:
            MqttSettings.from_url(self.mqtt_url)
        if self.mqtt_protocol not in ("3.1.1", "5"):
            raise ConfigurationError(f"mqtt_protocol must be '3.1.1' or '5', got {self.mqtt_protocol!r}")
        if self.timeout <= 0 or self.connect_timeout <= 0:
            raise ConfigurationError("timeouts must be positive")
        if self.max_retries < 0:
            raise ConfigurationError("max_retries must be >= 0")
        if self.fetch_concurrency < 1 or self.callback_concurrency < 1:
            raise ConfigurationError("fetch_concurrency and callback_concurrency must be >= 1")

    @property
    def mqtt(self) -> MqttSettings | None:
        """The parsed broker settings, or ``None`` when MQTT is disabled."""
        return MqttSettings.from_url(self.mqtt_url) if self.mqtt_url is not None else None

    @property
    def base_url(self) -> str:
        """``server_url`` without a trailing slash."""
        return self.server_url.rstrip("/")

    def __repr__(self) -> str:
        """Show the settings, URLs without their passwords; ``token`` and ``password`` are left out."""
        return redacted_repr(self, {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr})

    def replace(self, **changes: object) -> ComputeClientConfig:
        """Return a copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)  # pyright: ignore[reportArgumentType]

    def check_priority(self, priority: int) -> int:
        """Validate a job priority before anything is sent.

        Raises:
            ConfigurationError: not an int, or outside ``min_priority``..``max_priority``.
        """
        if isinstance(priority, bool) or not isinstance(priority, int):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(f"priority must be an int, got {priority!r}")
        if not self.min_priority <= priority <= self.max_priority:
            raise ConfigurationError(
                f"priority must be between {self.min_priority} and {self.max_priority}, got {priority}"
            )
        return priority


def resolve_config(
    *,
    server_url: str | None = None,
    mqtt_url: str | None = None,
    auth_url: str | None = None,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout: float | None = None,
    base: ComputeClientConfig | None = None,
    environ: Mapping[str, str] | None = None,
) -> ComputeClientConfig:
    """Build a config: arguments > ``CL_*`` variables > upstream variables > ``base`` (or the defaults).

    For the broker, upstream's January 2026 pair ``MQTT_BROKER`` (host) / ``MQTT_PORT`` comes after
    ``CL_MQTT_URL`` and ``MQTT_URL``: either one set gives ``mqtt://<MQTT_BROKER or localhost>:<MQTT_PORT or 1883>``.

    ``mqtt_url`` may be ``""`` or ``"off"`` (argument or environment) to disable MQTT and work by polling.

    Args:
        server_url: compute API URL.
        mqtt_url: broker URL.
        auth_url: auth service URL.
        token: static JWT.
        username: login user name.
        password: login password.
        timeout: default HTTP timeout in seconds.
        base: the config whose values are the defaults (``ComputeClientConfig()`` when omitted).
        environ: the environment to read (``os.environ`` when omitted).

    Raises:
        ConfigurationError: a value is invalid (for example ``CL_TIMEOUT`` is not a number).
    """
    env = os.environ if environ is None else environ
    cfg = base or ComputeClientConfig()

    def pick(name: str, given: str | None) -> str | None:
        if given is not None:
            return given
        for var in ENVIRONMENT_VARIABLES[name]:
            value = env.get(var)
            if value is not None and (value.strip() or name == "mqtt_url"):
                return value.strip()
        return None

    changes: dict[str, object] = {}
    for name, given in (
        ("server_url", server_url),
        ("auth_url", auth_url),
        ("token", token),
        ("username", username),
        ("password", password),
    ):
        value = pick(name, given)
        if value is not None:
            changes[name] = value
    mqtt = pick("mqtt_url", mqtt_url)
    if mqtt is None:
        mqtt = mqtt_url_from_host_port(env)
    if mqtt is not None:
        changes["mqtt_url"] = None if mqtt.strip().lower() in _DISABLED_MQTT else mqtt
    if timeout is not None:
        changes["timeout"] = float(timeout)
    else:
        raw = pick("timeout", None)
        if raw is not None:
            try:
                changes["timeout"] = float(raw)
            except ValueError as exc:
                raise ConfigurationError(f"CL_TIMEOUT must be a number of seconds, got {raw!r}") from exc
    return cfg.replace(**changes) if changes else cfg


def mqtt_url_from_host_port(env: Mapping[str, str]) -> str | None:
    """``mqtt://host:port`` from upstream's ``MQTT_BROKER`` / ``MQTT_PORT`` (None when neither is set).

    Raises:
        ConfigurationError: ``MQTT_PORT`` is not a port number.
    """
    host_var, port_var = MQTT_HOST_PORT_VARIABLES
    host = (env.get(host_var) or "").strip()
    port = (env.get(port_var) or "").strip()
    if not host and not port:
        return None
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ConfigurationError(f"{port_var} must be a port number, got {port!r}")
    return f"mqtt://{host or 'localhost'}:{port or 1883}"
