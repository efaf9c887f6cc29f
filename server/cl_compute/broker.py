"""Start an MQTT broker for a deployment: mosquitto when installed, else the pip-installed amqtt (MQTT 3.1.1).

mosquitto cannot bind port 0 (``listener 0`` means a unix socket), so a free port is picked, a config file
with ``listener PORT 127.0.0.1`` + ``allow_anonymous true`` is written, and the start is retried on the rare
bind race. amqtt runs in a subprocess (``python -m cl_compute._amqtt_broker``) that binds port 0 itself and
reports the port on stdout.
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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cl_compute.mqtt import MQTTConnectError, wait_for_broker

#: the interface every broker started here listens on.
BROKER_HOST = "127.0.0.1"

MOSQUITTO_FALLBACK_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


class BrokerError(RuntimeError):
    """The broker could not be started."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (PATH, then the usual sbin directories), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in MOSQUITTO_FALLBACK_PATHS:
        if os.access(path, os.X_OK):
            return path
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on ``host`` (racy by nature: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether another socket already listens on (or holds) ``host:port``, so a server could not bind it.

    The probe binds with ``SO_REUSEADDR`` like mosquitto, amqtt and uvicorn do, so a port left in
    ``TIME_WAIT`` by a previous run counts as free. Any error other than "address in use" is raised.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
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
        url: ``mqtt://127.0.0.1:PORT``.
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


def _read_stderr(proc: subprocess.Popen[bytes]) -> str:
    if proc.stderr is None:
        return ""
    with contextlib.suppress(Exception):
        return proc.stderr.read().decode(errors="replace")[-2000:]
    return ""


def start_mosquitto(
    binary: str, *, port: int | None = None, preexec_fn: Callable[[], None] | None = None, attempts: int = 5
) -> Broker:
    """Start mosquitto on 127.0.0.1 (``port`` or a free one) and wait until it accepts connections.

    Raises:
        BrokerError: it would not start (the last stderr is included).
    """
    last_error = ""
    for _ in range(attempts if port is None else 1):
        chosen = port or free_port()
        workdir = Path(tempfile.mkdtemp(prefix="cl-compute-mosquitto-"))
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {chosen} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n")
        # mosquitto changes credentials at start-up, which clears PR_SET_PDEATHSIG: a small watchdog keeps it
        cmd = [binary, "-c", str(conf)]
        if preexec_fn is not None:
            cmd = [sys.executable, "-m", "cl_compute._watchdog", *cmd]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
        url = f"mqtt://127.0.0.1:{chosen}"
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
        last_error = _read_stderr(proc)
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(workdir, ignore_errors=True)
    raise BrokerError(f"mosquitto ({binary}) failed to start: {last_error.strip() or 'no output'}")


def start_amqtt(*, port: int | None = None, preexec_fn: Callable[[], None] | None = None) -> Broker:
    """Start the amqtt broker (MQTT 3.1.1 only) in a subprocess and wait until it accepts connections.

    Raises:
        BrokerError: amqtt is not installed or would not start.
    """
    if importlib.util.find_spec("amqtt") is None:
        raise BrokerError(
            'mosquitto is not installed and neither is amqtt (pip install "cl-client[server]", '
            "or apt-get install mosquitto)"
        )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cl_compute._amqtt_broker", "--port", str(port or 0)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("PORT "):
        proc.kill()
        proc.wait()
        raise BrokerError(f"amqtt broker failed to start: {line} {_read_stderr(proc)}".strip())
    url = f"mqtt://127.0.0.1:{int(line.split()[1])}"
    try:
        wait_for_broker(url, timeout=10)
    except MQTTConnectError as exc:
        proc.kill()
        proc.wait()
        raise BrokerError(f"amqtt broker did not accept connections: {exc}") from exc
    return Broker(url, "amqtt", proc, None)


def start_broker(
    *, prefer: str = "auto", port: int | None = None, preexec_fn: Callable[[], None] | None = None
) -> Broker:
    """Start mosquitto when available (``prefer="auto"``/``"mosquitto"``), else amqtt (``"amqtt"`` forces it).

    Raises:
        BrokerError: no broker could be started.
    """
    if prefer not in ("auto", "mosquitto", "amqtt"):
        raise ValueError(f"unknown broker kind {prefer!r}")
    if prefer != "amqtt":
        binary = find_mosquitto()
        if binary is not None:
            return start_mosquitto(binary, port=port, preexec_fn=preexec_fn)
        if prefer == "mosquitto":
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
    return start_amqtt(port=port, preexec_fn=preexec_fn)
