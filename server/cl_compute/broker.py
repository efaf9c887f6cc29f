"""Start an MQTT broker for a deployment: mosquitto when installed, else the pip-installed amqtt (MQTT 3.1.1).

Both listen on the interface ``host`` (default 127.0.0.1, loopback only): ``cl-compute up`` passes the API's
``--host``, so ``--host 0.0.0.0`` serves the broker to other machines too. ``::`` means every interface, IPv4
and IPv6 (like the API's dual-stack socket). :attr:`Broker.url` names an address a client on this machine can
connect to (:func:`connect_host`: 127.0.0.1 for 0.0.0.0, ::1 for ::).

mosquitto cannot bind port 0 (``listener 0`` means a unix socket), so a free port is picked, a config file
with ``listener PORT HOST`` + ``allow_anonymous true`` is written, and the start is retried on the rare
bind race. amqtt runs in a subprocess (``python -m cl_compute._amqtt_broker``) that binds port 0 itself (or,
for ``::``, a free port picked the same way) and reports the port on stdout.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, cast

from cl_compute.mqtt import MQTTConnectError, wait_for_broker
from cl_compute.owned_tmp import make_owned_tmp_dir

#: a broker's folder (configuration, log): the name says which process started it (``cl_compute.owned_tmp``), so
#: the next deployment start removes the folder of a caller that was killed (``deployment.TMP_PREFIXES``)
MOSQUITTO_DIR_PREFIX = "cl-compute-mosquitto-"
AMQTT_DIR_PREFIX = "cl-compute-amqtt-"

#: the interface a broker started here listens on unless told otherwise (loopback only).
BROKER_HOST = "127.0.0.1"

MOSQUITTO_FALLBACK_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")
#: the mosquitto binary to use (a name on PATH or a path), or ``none``: behave as if mosquitto were not installed
MOSQUITTO_ENV = "CL_COMPUTE_MOSQUITTO"


class BrokerError(RuntimeError):
    """The broker could not be started."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None.

    ``$CL_COMPUTE_MOSQUITTO`` when set (``none``: None, as on a machine without mosquitto; a name that is not an
    executable: None), else ``mosquitto`` on PATH, then the usual sbin directories (often not on PATH).
    """
    chosen = os.environ.get(MOSQUITTO_ENV, "").strip()
    if chosen:
        if chosen.lower() == "none":
            return None
        return shutil.which(chosen) or (chosen if os.access(chosen, os.X_OK) and os.path.isfile(chosen) else None)
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in MOSQUITTO_FALLBACK_PATHS:
        if os.access(path, os.X_OK):
            return path
    return None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def connect_host(host: str) -> str:
    """The host a client uses to reach a server bound to ``host`` (loopback for the wildcard addresses)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def url_host(host: str) -> str:
    """``connect_host(host)`` as it goes into a URL (an IPv6 address in brackets)."""
    target = connect_host(host)
    return f"[{target}]" if ":" in target else target


def socket_port(sock: socket.socket) -> int:
    """The local port of a bound IPv4/IPv6 socket."""
    # getsockname() is (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6; typeshed says Any.
    address = cast("tuple[str, int, *tuple[int, ...]]", sock.getsockname())
    return int(address[1])


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on ``host`` (racy by nature: callers retry)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return socket_port(s)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether another socket already listens on (or holds) ``host:port``, so a server could not bind it.

    The probe binds with ``SO_REUSEADDR`` like mosquitto, amqtt and uvicorn do, so a port left in
    ``TIME_WAIT`` by a previous run counts as free. Any error other than "address in use" is raised.
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
        return False


class Broker:
    """A broker subprocess started by :func:`start_broker`.

    Attributes:
        url: ``mqtt://HOST:PORT``, connectable from this machine (127.0.0.1 when it listens on 0.0.0.0).
        kind: ``"mosquitto"`` or ``"amqtt"``.
        process: the subprocess.
    """

    def __init__(self, url: str, kind: str, process: subprocess.Popen[bytes], workdir: Path | None) -> None:
        self.url = url
        self.kind = kind
        self.process = process
        self._workdir = workdir

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


#: The broker's stderr goes to this file in its working folder, never to a pipe: nobody reads a pipe once the broker
#: runs, and mosquitto logs every connection, so a pipe filled after ~240 connections and the broker stopped
#: accepting any (blocked on the write).
BROKER_LOG = "broker.log"


def _open_log(workdir: Path) -> IO[bytes]:
    return (workdir / BROKER_LOG).open("wb")


def _read_log(workdir: Path) -> str:
    with contextlib.suppress(OSError):
        return (workdir / BROKER_LOG).read_bytes().decode(errors="replace")[-2000:]
    return ""


def _mosquitto_listener(host: str, port: int) -> str:
    if host == "::":  # `listener PORT ::` would be IPv6 only; no address = every interface, both families
        return f"listener {port}"
    return f"listener {port} {host or '0.0.0.0'}"


def start_mosquitto(
    binary: str,
    *,
    host: str = BROKER_HOST,
    port: int | None = None,
    preexec_fn: Callable[[], None] | None = None,
    attempts: int = 5,
) -> Broker:
    """Start mosquitto on ``host`` (``port`` or a free one) and wait until it accepts connections.

    Raises:
        BrokerError: it would not start (the last stderr is included).
    """
    last_error = ""
    for _ in range(attempts if port is None else 1):
        chosen = port or free_port(host)
        workdir = make_owned_tmp_dir(MOSQUITTO_DIR_PREFIX)
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"{_mosquitto_listener(host, chosen)}\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n"
        )
        # mosquitto changes credentials at start-up, which clears PR_SET_PDEATHSIG: a small watchdog keeps it
        cmd = [binary, "-c", str(conf)]
        if preexec_fn is not None:
            cmd = [sys.executable, "-m", "cl_compute._watchdog", *cmd]
        with _open_log(workdir) as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                preexec_fn=preexec_fn,
            )
        url = f"mqtt://{url_host(host)}:{chosen}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                wait_for_broker(url, timeout=0.5)
            except MQTTConnectError:
                continue
            return Broker(url, "mosquitto", proc, workdir)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        last_error = _read_log(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    raise BrokerError(f"mosquitto ({binary}) failed to start: {last_error.strip() or 'no output'}")


def start_amqtt(
    *, host: str = BROKER_HOST, port: int | None = None, preexec_fn: Callable[[], None] | None = None
) -> Broker:
    """Start the amqtt broker (MQTT 3.1.1 only) on ``host`` in a subprocess and wait until it accepts connections.

    Raises:
        BrokerError: amqtt is not installed or would not start.
    """
    if importlib.util.find_spec("amqtt") is None:
        raise BrokerError(
            'mosquitto is not installed and neither is amqtt (pip install "cl-client[server]", '
            "or apt-get install mosquitto)"
        )
    workdir = make_owned_tmp_dir(AMQTT_DIR_PREFIX)
    with _open_log(workdir) as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cl_compute._amqtt_broker", "--host", host, "--port", str(port or 0)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,  # one line, "PORT n"; closed right after
            stderr=log,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    assert proc.stdout is not None
    line = cast(bytes, proc.stdout.readline()).decode().strip()  # typeshed types Popen's pipes as IO[Any]
    proc.stdout.close()
    if not line.startswith("PORT "):
        proc.kill()
        proc.wait()
        error = _read_log(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        raise BrokerError(f"amqtt broker failed to start: {line} {error}".strip())
    url = f"mqtt://{url_host(host)}:{int(line.split()[1])}"
    try:
        wait_for_broker(url, timeout=10)
    except MQTTConnectError as exc:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        raise BrokerError(f"amqtt broker did not accept connections: {exc}") from exc
    return Broker(url, "amqtt", proc, workdir)


def start_broker(
    *,
    prefer: str = "auto",
    host: str = BROKER_HOST,
    port: int | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Broker:
    """Start mosquitto when available (``prefer="auto"``/``"mosquitto"``), else amqtt (``"amqtt"`` forces it).

    The broker listens on ``host`` (default 127.0.0.1; ``0.0.0.0`` = every IPv4 interface, ``::`` = every
    interface), on ``port`` or a free one.

    Raises:
        BrokerError: no broker could be started.
    """
    if prefer not in ("auto", "mosquitto", "amqtt"):
        raise ValueError(f"unknown broker kind {prefer!r}")
    if prefer != "amqtt":
        binary = find_mosquitto()
        if binary is not None:
            return start_mosquitto(binary, host=host, port=port, preexec_fn=preexec_fn)
        if prefer == "mosquitto":
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
    return start_amqtt(host=host, port=port, preexec_fn=preexec_fn)
