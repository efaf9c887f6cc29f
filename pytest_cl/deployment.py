"""The deployment under test: probe a configured one (noproc) or start the embedded one (proc).

* ``probe(settings)``: ``--cl-server`` given. Checks the API and the broker once and discovers version,
  workers and capabilities; raises ``DeploymentUnavailableError`` naming what failed and how to fix it.
  Without ``--cl-mqtt`` the broker is discovered: ``mqtts://<host>:8883`` (https servers only), then
  ``mqtt://<host>:1883``, the first that answers *and* carries the deployment's capability messages.
* ``EmbeddedDeployment``: no ``--cl-server``. Starts ``cl_compute``'s reference deployment on first use.
  Under xdist it is started once, by the first worker that needs it, behind an ``fcntl`` lock in a
  directory the controller shares with its workers; the other workers attach through a state file holding
  the URLs and capabilities. Every worker holds a shared lock on ``session.lock`` for its lifetime; the owner
  stops the deployment only after taking that lock exclusively, i.e. after every other worker finished.

Heavy modules (``cl_client``, ``cl_compute``) are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, Protocol, cast

from pytest_cl.config import Settings

if TYPE_CHECKING:
    from cl_client import ComputeClient

__all__ = [
    "DISCOVERY_PORTS",
    "DeploymentInfo",
    "DeploymentUnavailableError",
    "EmbeddedDeployment",
    "broker_candidates",
    "client_for",
    "describe",
    "probe",
]

SERVER_EXTRA_HINT = 'pip install "cl-client[server]"'
REFERENCE_SERVICE = "cl_compute"


class _Deployment(Protocol):
    """The part of ``cl_compute.deployment.Deployment`` the plugin uses (cl_compute ships no stubs)."""

    server_url: str
    mqtt_url: str
    startup_seconds: float

    def start(self) -> object: ...

    def stop(self) -> None: ...


#: The nine plugins of a CL compute deployment (PROTOCOL.md §3).
STANDARD_TASK_TYPES = (
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


class DeploymentUnavailableError(Exception):
    """The deployment under test cannot be used; the message says what failed and how to fix it."""


@dataclass(frozen=True)
class DeploymentInfo:
    """What the ``cl_deployment`` fixture returns: where the deployment is and what it offers.

    Attributes:
        mode: ``embedded`` (started by the plugin) or ``remote`` (``--cl-server``).
        server_url: the compute API.
        mqtt_url: the broker, or None when MQTT is off.
        service: the ``service`` field of ``GET /`` (``cl_compute`` for the reference deployment).
        version: the ``version`` field of ``GET /``.
        guest_mode: ``on``/``off`` as ``GET /`` reports it, or None.
        capabilities: task types some worker offers (sorted).
        workers: worker ids seen on the broker (sorted).
        num_workers: ``num_workers`` of ``GET /capabilities``.
        owner: who started it (``main``, an xdist worker id) or ``remote``.
        startup_seconds: how long the embedded start took (0 for remote).
        mqtt_discovered: the broker was discovered on the server's host (no ``--cl-mqtt`` was given).
        upstream_release: the upstream release a remote deployment looks like (``upstream-2026-01``,
            ``upstream-2026-02``), or None (the reference deployment, neither, or embedded).
        upstream_why: the sentence that says so and why (``pytest_cl._upstream.identify``); empty when embedded.
    """

    mode: Literal["embedded", "remote"]
    server_url: str
    mqtt_url: str | None
    service: str = ""
    version: str = ""
    guest_mode: str | None = None
    capabilities: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()
    num_workers: int = 0
    owner: str = "remote"
    startup_seconds: float = 0.0
    mqtt_discovered: bool = False
    upstream_release: str | None = None
    upstream_why: str = ""

    @property
    def is_reference(self) -> bool:
        """True for this project's reference deployment, which has every **[fix]** of PROTOCOL.md."""
        return self.service == REFERENCE_SERVICE

    @property
    def embedded(self) -> bool:
        """True when the plugin started the deployment."""
        return self.mode == "embedded"

    def offers(self, capability: str) -> bool:
        """Return True when some worker offered ``capability`` when the deployment was discovered."""
        return capability in self.capabilities

    def describe(self) -> str:
        """One line for the report header and summary."""
        where = "embedded " if self.embedded else ""
        caps = ", ".join(self.capabilities) or "none"
        mqtt = f"{self.mqtt_url} (discovered)" if self.mqtt_url and self.mqtt_discovered else self.mqtt_url or "off"
        return (
            f"{where}{self.service or 'unknown service'} {self.version or '?'} at {self.server_url} "
            f"(mqtt {mqtt}; {self.num_workers} worker(s); capabilities: {caps})"
        )

    def to_json(self) -> str:
        """Serialise (to hand to xdist workers or write to the state file)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DeploymentInfo:
        """Inverse of ``to_json``."""
        raw = cast(dict[str, object], json.loads(text))
        return cls(
            mode=cast(Literal["embedded", "remote"], raw["mode"]),
            server_url=cast(str, raw["server_url"]),
            mqtt_url=cast(str | None, raw["mqtt_url"]),
            service=cast(str, raw["service"]),
            version=cast(str, raw["version"]),
            guest_mode=cast(str | None, raw["guest_mode"]),
            capabilities=tuple(cast(list[str], raw["capabilities"])),
            workers=tuple(cast(list[str], raw["workers"])),
            num_workers=cast(int, raw["num_workers"]),
            owner=cast(str, raw["owner"]),
            startup_seconds=cast(float, raw["startup_seconds"]),
            mqtt_discovered=bool(raw.get("mqtt_discovered", False)),
            upstream_release=cast(str | None, raw.get("upstream_release")),
            upstream_why=str(raw.get("upstream_why") or ""),
        )


#: The brokers tried when ``--cl-server`` is given without ``--cl-mqtt``: the port per scheme (PROTOCOL.md §1:
#: MQTT on 1883; 8883 is MQTT over TLS). The plugin's own tests point them at brokers of their own.
DISCOVERY_PORTS: dict[str, int] = {"mqtts": 8883, "mqtt": 1883}
#: How long a discovery candidate may take to accept a TCP connection.
DISCOVERY_CONNECT_TIMEOUT = 3.0
#: ``GET /capabilities`` is asked again this often, this many seconds apart, while it is empty: upstream subscribes to
#: the capability topic only on the first call, so that call answers ``{}`` (PROTOCOL.md §2).
CAPABILITIES_RETRIES = 4
CAPABILITIES_RETRY_DELAY = 0.5
#: How long the workers' retained capability messages may take to arrive once the MQTT session is up (seconds):
#: the broker sends them just after the subscription is acknowledged, so "connected" is not yet "heard them".
RETAINED_WAIT = 2.0
#: How long the retained capability messages of a discovered broker may take to match ``/capabilities``.
DISCOVERY_MATCH_WAIT = 3.0
MQTT_FLAGS = "--cl-mqtt URL (ini cl_mqtt, env CL_MQTT_URL)"
MQTT_OFF_HINT = "--cl-mqtt off to certify by polling only (the checks that need MQTT are then reported as not checked)"


def broker_candidates(server_url: str) -> list[str]:
    """Return the brokers discovery tries for a server, in order.

    An ``https://`` server: ``mqtts://<host>:8883`` (TLS) first, then ``mqtt://<host>:1883``; an ``http://``
    server: ``mqtt://<host>:1883`` (ports from ``DISCOVERY_PORTS``).
    """
    from urllib.parse import urlsplit

    parts = urlsplit(server_url)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    schemes = ("mqtts", "mqtt") if parts.scheme == "https" else ("mqtt",)
    return [f"{scheme}://{host}:{DISCOVERY_PORTS[scheme]}" for scheme in schemes]


def describe(
    settings: Settings,
    server_url: str,
    mqtt_url: str | None,
    *,
    mode: Literal["embedded", "remote"],
    owner: str = "remote",
    startup_seconds: float = 0.0,
    broker_wait: float = 5.0,
    discover: bool = False,
) -> DeploymentInfo:
    """Ask a deployment what it is and offers (``GET /``, ``GET /capabilities``, retained worker messages).

    Args:
        settings: the plugin settings (credentials, required workers).
        server_url: the compute API.
        mqtt_url: the broker, or None for none (ignored with ``discover``).
        mode: ``embedded`` or ``remote``.
        owner: who started the deployment.
        startup_seconds: how long its start took.
        broker_wait: how long a broker may take to accept the MQTT session.
        discover: find the broker on the server's host (``broker_candidates``) and use the first that carries
            this deployment's traffic.

    Raises:
        DeploymentUnavailableError: the API or the broker did not answer, or no discovered broker carries the
            deployment's traffic (the message says how to fix it).
    """
    from cl_client import ComputeClientError, ComputeConnectionError, HTTPStatusError

    flag = "--cl-server / cl_server / CL_SERVER_URL"
    with _client(settings, server_url, None) as client:
        try:
            health = client.health()
            caps = client.get_capabilities()
            for _ in range(CAPABILITIES_RETRIES):  # upstream's first answer after its start is empty (§2)
                if caps.capabilities:
                    break
                time.sleep(CAPABILITIES_RETRY_DELAY)
                caps = client.get_capabilities()
        except ComputeConnectionError as exc:
            raise DeploymentUnavailableError(
                f"cl: the compute API at {server_url} is not reachable ({exc}). Start the deployment or fix "
                f"{flag}; omit it to let pytest_cl start the embedded reference deployment."
            ) from None
        except HTTPStatusError as exc:
            raise DeploymentUnavailableError(
                f"cl: the compute API at {server_url} answered {exc.status_code} to {exc.method} {exc.url}: "
                f"{exc.detail!r}. Is {flag} the compute service (default port 8002)?"
            ) from None
        except ComputeClientError as exc:
            raise DeploymentUnavailableError(
                f"cl: {server_url} does not look like a CL compute API ({exc}). Check {flag}."
            ) from None
        _check_job_access(client, server_url)
    workers: dict[str, list[str]] = {}
    if discover:
        mqtt_url, broker = _discover_broker(settings, server_url, broker_wait)
    elif mqtt_url:
        broker = _client(settings, server_url, mqtt_url)
        assert broker.monitor is not None
        if not broker.monitor.wait_ready(broker_wait):
            broker.close()
            raise DeploymentUnavailableError(
                f"cl: the MQTT broker at {broker.monitor.settings.url} did not accept a connection within "
                f"{broker_wait:g} s. Pass the deployment's broker with {MQTT_FLAGS}, or {MQTT_OFF_HINT}."
            )
    else:
        broker = None
    if broker is not None:
        with broker:
            if settings.require_workers:
                with contextlib.suppress(ComputeClientError):
                    broker.wait_for_workers(settings.require_workers, timeout=settings.worker_wait)
            heard = time.monotonic() + RETAINED_WAIT
            while len(broker.workers()) < caps.num_workers and time.monotonic() < heard:
                time.sleep(0.02)  # the workers the API counts announce themselves in retained messages
            workers = {wid: list(cap.capabilities) for wid, cap in broker.workers().items()}
    offered = set(caps.capabilities)
    for worker_caps in workers.values():
        offered.update(worker_caps)
    missing = [c for c in settings.require_workers if c not in offered]
    if missing:
        raise DeploymentUnavailableError(
            f"cl: --cl-require-workers / cl_require_workers: no worker offers {', '.join(missing)} at {server_url} "
            f"(available: {', '.join(sorted(offered)) or 'none'}). Start workers for them or drop them from the list."
        )
    release: str | None = None
    why = ""
    if mode == "remote":
        from pytest_cl._upstream import fingerprint, identify

        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
        verdict = identify(fingerprint(health.service or "", server_url, mqtt_url, caps.num_workers, headers))
        release, why = verdict.release, verdict.why
    return DeploymentInfo(
        mode=mode,
        server_url=server_url,
        mqtt_url=mqtt_url,
        service=health.service or "",
        version=health.version or "",
        guest_mode=health.guest_mode,
        capabilities=tuple(sorted(offered)),
        workers=tuple(sorted(workers)),
        num_workers=caps.num_workers,
        owner=owner,
        startup_seconds=startup_seconds,
        mqtt_discovered=discover,
        upstream_release=release,
        upstream_why=why,
    )


def client_for(settings: Settings, server_url: str) -> ComputeClient:
    """Return a client of the deployment with the run's credentials and no MQTT (the caller closes it)."""
    return _client(settings, server_url, None)


def _client(settings: Settings, server_url: str, mqtt_url: str | None) -> ComputeClient:
    """Return a client of the deployment with the run's credentials (``mqtt_url`` None: no MQTT)."""
    from cl_client import ComputeClient

    return ComputeClient(
        server_url,
        mqtt_url=mqtt_url or "off",
        token=settings.token,
        auth_url=settings.auth_url,
        username=settings.username,
        password=settings.password,
        timeout=10.0,
    )


def _discover_broker(settings: Settings, server_url: str, broker_wait: float) -> tuple[str, ComputeClient]:
    """Try ``broker_candidates(server_url)`` in order; return the first that carries this deployment's traffic.

    A candidate must accept a TCP connection, then an MQTT session, and carry this deployment's traffic
    (``_traffic_mismatch``): a broker that answers but serves another deployment (or none) would make every
    event check fail for the wrong reason.

    Returns:
        The broker URL and a connected client on it (the caller closes it).

    Raises:
        DeploymentUnavailableError: no candidate qualified; the message lists each one with the reason.
    """
    tried: list[str] = []
    for url in broker_candidates(server_url):
        reason = _tcp_reason(url)
        if reason is None:
            client = _client(settings, server_url, url)
            assert client.monitor is not None
            if not client.monitor.wait_ready(broker_wait):
                kind = "TLS and MQTT" if url.startswith("mqtts:") else "MQTT"
                reason = f"accepts connections but no {kind} session within {broker_wait:g} s"
            else:
                reason = _traffic_mismatch(client, url)
            if reason is None:
                return url, client
            client.close()
        tried.append(f"{url} ({reason})")
    raise DeploymentUnavailableError(
        f"cl: no MQTT broker of the deployment at {server_url} was found (no --cl-mqtt given): tried "
        f"{'; '.join(tried)}. Pass the deployment's broker with {MQTT_FLAGS}, or {MQTT_OFF_HINT}."
    )


def _tcp_reason(url: str) -> str | None:
    """Return why nothing accepts a TCP connection at the broker URL's host and port (None: something does)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 1883), DISCOVERY_CONNECT_TIMEOUT):
            return None
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer within {DISCOVERY_CONNECT_TIMEOUT:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def _traffic_mismatch(client: ComputeClient, url: str) -> str | None:
    """Return why the broker ``url`` of ``client`` does not carry the deployment's traffic (None: it does).

    1. Its live retained ``inference/workers/<id>`` messages must match ``GET /capabilities`` (which the server
       builds from the same messages): the same number of workers and the same task types. A deployment that
       reports no worker cannot be checked this way; its broker passes this step.
    2. When the deployment offers ``hash``, the ``queued`` event of a probe job (an MD5 of a few bytes, deleted
       at once) must arrive there: another deployment with the same workers on the same host passes step 1.
    """
    import time

    from cl_client import ComputeClientError

    deadline = time.monotonic() + DISCOVERY_MATCH_WAIT
    while True:
        try:
            caps = client.get_capabilities()
        except ComputeClientError as exc:
            return f"GET /capabilities failed while checking it: {exc}"
        live = client.workers()
        offered = sorted({c for w in live.values() for c in w.capabilities})
        expected = sorted(caps.capabilities)
        if caps.num_workers and len(live) == caps.num_workers and offered == expected:
            break
        if time.monotonic() >= deadline:
            if caps.num_workers == 0:
                break
            return (
                f"it answers, but its retained capability messages name {len(live)} worker(s) offering "
                f"{', '.join(offered) or 'nothing'}, while GET /capabilities reports {caps.num_workers} worker(s) "
                f"offering {', '.join(expected) or 'nothing'}: it does not carry this deployment's traffic"
            )
        time.sleep(0.1)
    if PROBE_TASK not in caps.capabilities:
        return None
    return _probe_job_mismatch(client, url)


#: The task type of the probe job that proves a discovered broker carries the deployment's job events.
PROBE_TASK = "hash"


def _probe_job_mismatch(client: ComputeClient, url: str) -> str | None:
    """Submit a tiny ``hash`` job and wait for any of its events on ``url``; delete the job (None: seen)."""
    import tempfile

    from cl_client import ComputeClientError
    from pytest_cl._events import EventRecorder

    recorder = EventRecorder(url)
    try:
        if not recorder.start(DISCOVERY_MATCH_WAIT):
            return f"a second MQTT connection (to watch {url}) failed"
        with tempfile.TemporaryDirectory(prefix="pytest-cl-probe-") as tmp:
            path = Path(tmp) / "cl-broker-probe.txt"
            path.write_bytes(b"pytest_cl broker discovery probe\n")
            try:
                job_id = client.submit(PROBE_TASK, path, {"algorithm": "md5"}).job_id
            except ComputeClientError as exc:
                return f"the probe job (POST /jobs/{PROBE_TASK}) that checks it failed: {exc}"
        try:
            seen = recorder.wait_any(job_id, DISCOVERY_MATCH_WAIT)
        finally:
            with contextlib.suppress(ComputeClientError):
                client.delete_job(job_id)
        if not seen:
            return (
                f"it carries capability messages like this deployment's, but no event of the probe job {job_id} "
                f"({PROBE_TASK}) arrived within {DISCOVERY_MATCH_WAIT:g} s: it is another deployment's broker"
            )
        return None
    finally:
        recorder.close()


def _check_job_access(client: ComputeClient, server_url: str) -> None:
    """Ask for a job that cannot exist: 404 proves the credentials (or their absence) open the job routes.

    ``/`` and ``/capabilities`` are public, so without this a wrong password or token would only show up as
    every test failing on its own.

    Raises:
        DeploymentUnavailableError: the login failed, or the job routes answered 401/403.
    """
    from cl_client import (
        AuthenticationError,
        ComputeClientError,
        ComputeConnectionError,
        JobNotFoundError,
        PermissionDeniedError,
    )

    auth_flags = "--cl-token (env CL_TOKEN), or --cl-auth-url + --cl-username + --cl-password"
    try:
        client.get_job(f"cl-probe-{uuid.uuid4()}")
    except JobNotFoundError:
        return
    except AuthenticationError as exc:
        raise DeploymentUnavailableError(
            f"cl: the job routes of {server_url} refused the credentials: {exc}. Fix {auth_flags}."
        ) from None
    except PermissionDeniedError as exc:
        raise DeploymentUnavailableError(
            f"cl: the credentials in use may not run jobs at {server_url}: {exc}. The token needs the "
            f"'ai_inference_support' permission (or is_admin); fix {auth_flags}."
        ) from None
    except ComputeConnectionError as exc:  # the API answered a moment ago: this is the auth service
        raise DeploymentUnavailableError(f"cl: could not log in for {server_url}: {exc}. Fix {auth_flags}.") from None
    except ComputeClientError:  # anything else about a job that cannot exist is not ours to judge here
        return


def probe(settings: Settings) -> DeploymentInfo:
    """Probe the deployment named by ``--cl-server`` once (API, broker, required workers).

    Without ``--cl-mqtt`` the broker is discovered on the server's host (``broker_candidates``); with
    ``--cl-mqtt off`` no broker is used.

    Raises:
        DeploymentUnavailableError: something did not answer; the message names it and the fix.
    """
    assert settings.server is not None
    if settings.mqtt is None:
        return describe(settings, settings.server, None, mode="remote", discover=True)
    return describe(settings, settings.server, None if settings.mqtt_off else settings.mqtt, mode="remote")


@contextlib.contextmanager
def _locked(path: Path, mode: int) -> Generator[IO[str]]:
    with path.open("a+") as fh:
        fcntl.flock(fh, mode)
        try:
            yield fh
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class EmbeddedDeployment:
    """The embedded reference deployment of one pytest process, shared across xdist workers.

    Args:
        settings: the plugin settings (worker count, tasks, extra plugins, required workers).
        shared_dir: the directory shared by the controller and its xdist workers (None without xdist).
        process_id: ``main`` or the xdist worker id.

    Attributes:
        info: the deployment once acquired.
        starts: how many times this process started it (0 or 1).
        jobs_at_start: the server's job count right after the start (owner only).
        jobs_at_end: the job count when every xdist worker had finished, just before the stop (owner only).
    """

    settings: Settings
    shared_dir: Path | None = None
    process_id: str = "main"
    info: DeploymentInfo | None = None
    starts: int = 0
    jobs_at_start: int | None = None
    jobs_at_end: int | None = None
    _deployment: _Deployment | None = field(default=None, repr=False)
    _session_lock: IO[str] | None = field(default=None, repr=False)
    _starter: threading.Thread | None = field(default=None, repr=False)
    _start_ended: threading.Event = field(default_factory=threading.Event, repr=False)
    _released: threading.Event = field(default_factory=threading.Event, repr=False)

    # -- xdist membership --------------------------------------------------------------------------------
    def join(self) -> None:
        """Hold a shared lock on ``session.lock`` for this process's lifetime (xdist workers only)."""
        if self.shared_dir is None or self._session_lock is not None:
            return
        fh = (self.shared_dir / "session.lock").open("a+")
        fcntl.flock(fh, fcntl.LOCK_SH)
        self._session_lock = fh

    def leave(self) -> None:
        """Release the shared lock (the owner waits for every member to leave before it stops)."""
        if self._session_lock is not None:
            fcntl.flock(self._session_lock, fcntl.LOCK_UN)
            self._session_lock.close()
            self._session_lock = None

    # -- start or attach ---------------------------------------------------------------------------------
    def start_early(self, shared_dir: Path) -> None:
        """Xdist controller: start the deployment on a thread now, while the workers start and collect.

        The workers attach to it through ``state.json`` exactly as to a deployment another worker started
        (``acquire``), and a failed start is recorded there, so each worker reports it. The thread lives until
        ``release``: the deployment's processes get SIGTERM when the thread that started them ends (Linux's
        parent-death signal follows the thread, not the process).

        Args:
            shared_dir: the run's shared directory (the one handed to the workers).
        """
        if self._starter is not None or self.info is not None:
            return
        self.shared_dir = shared_dir

        def run() -> None:
            try:
                self.acquire()
            except Exception:  # a failed start is in state.json; anything else: the first worker starts it itself
                pass
            finally:
                self._start_ended.set()
            self._released.wait()

        self._starter = threading.Thread(target=run, name="cl-embedded-early-start", daemon=True)
        self._starter.start()

    def acquire(self) -> DeploymentInfo:
        """Start the deployment, or attach to the one another xdist worker started.

        Raises:
            DeploymentUnavailableError: the server extra is missing or the deployment failed to start (a
                failure is recorded so that every worker reports the same error without retrying).
        """
        if self.info is not None:
            return self.info
        if self.shared_dir is None:
            self.info = self._start()
            return self.info
        state_path = self.shared_dir / "state.json"
        with _locked(self.shared_dir / "start.lock", fcntl.LOCK_EX):
            state = read_state(self.shared_dir)
            status = state.get("status")
            if status == "running":
                self.info = DeploymentInfo.from_json(cast(str, state["info"]))
                return self.info
            if status == "failed":
                raise DeploymentUnavailableError(cast(str, state["error"]))
            try:
                self.info = self._start()
            except DeploymentUnavailableError as exc:
                _write_json(state_path, {"status": "failed", "error": str(exc), "owner": self.process_id})
                raise
            _write_json(
                state_path,
                {"status": "running", "owner": self.process_id, "pid": os.getpid(), "info": self.info.to_json()},
            )
            return self.info

    def _start(self) -> DeploymentInfo:
        try:
            module = importlib.import_module("cl_compute.deployment")
        except ImportError as exc:
            raise DeploymentUnavailableError(
                f"cl: no --cl-server was given, so pytest_cl wants to start the embedded reference deployment, "
                f"but cl_compute cannot be imported ({exc}). Install the server extra: {SERVER_EXTRA_HINT} — or "
                "point the tests at a running deployment with --cl-server URL (env CL_SERVER_URL)."
            ) from None
        s = self.settings
        missing = [c for c in s.require_workers if s.embedded_tasks and c not in s.embedded_tasks]
        if missing:
            raise DeploymentUnavailableError(
                f"cl: --cl-require-workers names {', '.join(missing)}, which the embedded deployment does not "
                f"serve (--cl-embedded-tasks {','.join(s.embedded_tasks)})."
            )
        factory = cast(Callable[..., _Deployment], getattr(module, "Deployment"))  # noqa: B009
        error = cast(type[Exception], getattr(module, "DeploymentError"))  # noqa: B009
        dep = factory(
            workers=s.embedded_workers,
            tasks=list(s.embedded_tasks) or None,
            extra_plugins=dict(s.embedded_plugins),
            worker_shutdown_grace=1.0,
            profile=s.embedded_profile,
        )
        try:
            dep.start()
        except (error, ValueError, OSError) as exc:
            raise DeploymentUnavailableError(f"cl: the embedded cl_compute deployment did not start: {exc}") from None
        self._deployment = dep
        self.starts += 1
        self.jobs_at_start = job_count(dep.server_url)
        try:
            info = describe(
                s,
                dep.server_url,
                None if s.mqtt_off else dep.mqtt_url,
                mode="embedded",
                owner=self.process_id,
                startup_seconds=dep.startup_seconds,
            )
            self._check_every_task_is_offered(info)
            return info
        except DeploymentUnavailableError:
            dep.stop()
            self._deployment = None
            raise

    def _check_every_task_is_offered(self, info: DeploymentInfo) -> None:
        """Fail the run when a task type the embedded deployment was started for has no worker.

        Without this a plugin whose backend cannot load here turns its whole suite into skips and the run
        stays green; the error names each missing task type with the reason its worker gave.

        Raises:
            DeploymentUnavailableError: a configured task type is not offered by any worker.
        """
        s = self.settings
        if s.embedded_tasks:
            expected = set(s.embedded_tasks)
        else:
            registry = importlib.import_module("cl_compute.plugins")
            names = cast(Callable[[], list[str]], getattr(registry, "plugin_names"))  # noqa: B009
            expected = set(names()) | set(s.embedded_plugins)
        missing = sorted(expected - set(info.capabilities))
        if not missing:
            return
        reasons = _unavailable_reasons(info.server_url)
        lines = "; ".join(f"{task}: {reasons.get(task, 'no reason given (see the worker log)')}" for task in missing)
        raise DeploymentUnavailableError(
            f"cl: the embedded deployment was started for {len(expected)} task type(s), but no worker offers "
            f"{', '.join(missing)} ({lines}). Install what the backend needs, or leave it out on purpose with "
            f"--cl-embedded-tasks (env CL_EMBEDDED_TASKS); its checks then report the missing worker."
        )

    # -- stop ----------------------------------------------------------------------------------------
    @property
    def owner(self) -> bool:
        """True when this process started the deployment (and so must stop it)."""
        return self._deployment is not None

    def release(self) -> None:
        """Owner: wait until every other xdist worker finished, then stop the deployment. Others: nothing.

        A start on ``start_early``'s thread is waited for first, and the thread ends after the stop.
        """
        if self._starter is not None:
            self._start_ended.wait()
        try:
            self._stop_owned()
        finally:
            if self._starter is not None:
                self._released.set()
                self._starter.join(5.0)
                self._starter = None

    def _stop_owned(self) -> None:
        dep = self._deployment
        if dep is None:
            return
        if self.shared_dir is not None:
            self.leave()
            with _locked(self.shared_dir / "session.lock", fcntl.LOCK_EX):
                self.jobs_at_end = job_count(dep.server_url)
                dep.stop()
            with _locked(self.shared_dir / "start.lock", fcntl.LOCK_EX):
                state = read_state(self.shared_dir)
                state["status"] = "stopped"
                _write_json(self.shared_dir / "state.json", state)
        else:
            self.jobs_at_end = job_count(dep.server_url)
            dep.stop()
        self._deployment = None


def _unavailable_reasons(server_url: str) -> dict[str, str]:
    """Why the embedded workers could not load some plugins (``cl_compute``'s ``/internal/workers``), by task."""
    import httpx

    reasons: dict[str, str] = {}
    try:
        answer = cast(object, httpx.get(f"{server_url}/internal/workers", timeout=10).json())
    except (httpx.HTTPError, ValueError):
        return reasons
    workers = cast(dict[str, object], answer).get("workers") if isinstance(answer, dict) else None
    payloads = list(cast(dict[str, object], workers).values()) if isinstance(workers, dict) else []
    for payload in payloads:
        unavailable = cast(dict[str, object], payload).get("unavailable") if isinstance(payload, dict) else None
        if isinstance(unavailable, dict):
            for task, why in cast(dict[object, object], unavailable).items():
                reasons.setdefault(str(task), str(why))
    return reasons


def job_count(server_url: str) -> int | None:
    """Return ``job_count`` of ``GET /admin/jobs/storage/size`` (None when it cannot be read)."""
    import httpx

    try:
        response = httpx.get(f"{server_url}/admin/jobs/storage/size", timeout=10.0)
        return int(cast(dict[str, int], response.raise_for_status().json())["job_count"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def read_state(shared_dir: Path) -> dict[str, object]:
    """Read the shared state file (``{}`` when no worker started anything)."""
    try:
        return cast(dict[str, object], json.loads((shared_dir / "state.json").read_text()))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: Mapping[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
