"""``cl-compute``: run a whole deployment (``up``), the API alone (``serve``), one ``worker``, or mint a ``token``.

The top level imports only light modules (click and the standard library), so that without the ``server`` extra
the command can still say what to install instead of failing with a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypedDict, TypeVar, cast

import click

from cl_compute import __version__
from cl_compute._extra import SERVER_EXTRA_MODULES, missing_extra_message
from cl_compute.profile import (
    FIXED,
    PROFILE_ENV,
    PROFILES,
    UPSTREAM_2026_01,
    UPSTREAM_2026_02,
    UPSTREAM_2026_02_20,
    profile_warning,
    use_profile,
)

LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)

#: the ports clients, the README and the pytest plugin expect (``up`` uses them when they are free).
DEFAULT_API_PORT = 8002
DEFAULT_MQTT_PORT = 1883

#: what the API server needs to start (each entry: alternatives, one of which must be importable).
_API_MODULES: tuple[tuple[str, ...], ...] = (
    ("fastapi",),
    ("uvicorn",),
    ("python_multipart", "multipart"),
    ("jwt",),
    ("cryptography",),
)
_AUTH_MODULES: tuple[tuple[str, ...], ...] = (("jwt",), ("cryptography",))


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _fail_missing_extra(*modules: str) -> NoReturn:
    click.echo(f"cl-compute: {missing_extra_message(modules)}", err=True)
    sys.exit(1)


def _require(requirements: Sequence[tuple[str, ...]]) -> None:
    """Exit with the install hint when a module of the ``server`` extra cannot be imported."""
    for alternatives in requirements:
        if not any(_importable(name) for name in alternatives):
            _fail_missing_extra(alternatives[0])


class _Main(click.Group):
    """The command group; a ``server`` extra module missing at run time gives the install hint, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)  # pyright: ignore[reportAny]  # click types a command's result as Any
        except ModuleNotFoundError as exc:
            root = (exc.name or "").partition(".")[0]
            if root not in SERVER_EXTRA_MODULES:
                raise
            _fail_missing_extra(root)


def _setup_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=cast("int", getattr(logging, level.upper())),  # LOG_LEVELS: a level name of logging
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )


#: ``--max-upload-mb`` of ``up`` and ``serve`` (the default is ``cl_compute.app.DEFAULT_MAX_UPLOAD_MB``, repeated
#: here so that the command imports nothing heavy).
MAX_UPLOAD_ENV = "CL_COMPUTE_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 2048


_Command = TypeVar("_Command", bound=Callable[..., object])


def _max_upload_option(fn: _Command) -> _Command:
    return click.option(
        "--max-upload-mb",
        type=click.IntRange(min=0),
        envvar=MAX_UPLOAD_ENV,
        default=DEFAULT_MAX_UPLOAD_MB,
        show_default=True,
        show_envvar=True,
        help="Largest request body of POST /jobs/<task> in MiB; a larger upload ends with 413 while it streams "
        "and leaves nothing behind. 0 = no limit.",
    )(fn)


def _profile_option(fn: _Command) -> _Command:
    return click.option(
        "--profile",
        type=click.Choice(list(PROFILES)),
        envvar=PROFILE_ENV,
        default=FIXED,
        show_default=True,
        help=f"Behaviour profile: {FIXED} (every [fix] of PROTOCOL.md), {UPSTREAM_2026_01} (upstream's "
        f"January 2026 wire behaviour, quirk by quirk), {UPSTREAM_2026_02} (upstream's February 2026 compute "
        f"service; lets any caller read and write server paths) or {UPSTREAM_2026_02_20} (the same with the "
        f"ml_tools of 2026-02-20: hash and media_thumbnail fail every job); see cl_compute.profile. "
        f"Also ${PROFILE_ENV}.",
    )(fn)


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items


@click.group(cls=_Main)
@click.version_option(__version__, prog_name="cl-compute")
def main() -> None:
    """cl_compute: the reference CL compute deployment (API server, workers, MQTT broker)."""


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface of the API and of the broker started here: 127.0.0.1 = this machine only, "
    "0.0.0.0 = every IPv4 interface, :: = every interface (IPv4 and IPv6).",
)
@click.option(
    "--port",
    "-p",
    type=click.IntRange(0, 65535),
    default=None,
    help=f"API port; taken = error; 0 = a free port. [default: {DEFAULT_API_PORT}, or a free port if it is taken]",
)
@click.option(
    "--mqtt-port",
    type=click.IntRange(0, 65535),
    default=None,
    help=f"Port of the broker started here (on HOST, like the API); taken = error; 0 = a free port. "
    f"[default: {DEFAULT_MQTT_PORT}, or a free port if it is taken]",
)
@click.option("--workers", "-n", type=int, default=None, help="Worker processes (default: number of cores).")
@click.option("--mqtt", "mqtt_url", default=None, help="Use this broker (mqtt://host:port) instead of starting one.")
@click.option(
    "--broker",
    type=click.Choice(["auto", "mosquitto", "amqtt"]),
    default="auto",
    show_default=True,
    help="Broker to start when --mqtt is not given.",
)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Default: temp dir.")
@click.option("--tasks", "-t", default=None, help="Comma-separated task types (default: all that load).")
@click.option("--auth-public-key", type=click.Path(exists=True, dir_okay=False), default=None, help="ES256 PEM.")
@click.option("--guest-mode/--no-guest-mode", default=None, help="Initial guest mode when auth is on.")
@click.option("--job-time-limit", type=float, default=600.0, show_default=True, help="Seconds per job.")
@_max_upload_option
@_profile_option
@click.option("--log-level", "-l", type=LOG_LEVELS, default="WARNING", show_default=True)
def up(
    host: str,
    port: int | None,
    mqtt_port: int | None,
    workers: int | None,
    mqtt_url: str | None,
    broker: str,
    data_dir: Path | None,
    tasks: str | None,
    auth_public_key: str | None,
    guest_mode: bool | None,
    job_time_limit: float,
    max_upload_mb: int,
    profile: str,
    log_level: str,
) -> None:
    """Start broker + API server + workers, print the URLs, serve until Ctrl-C/SIGTERM.

    \b
    Ports: the API listens on HOST:8002 and the broker on HOST:1883, the ports
    clients expect, when they are free. When one is taken, a line says so and a
    free port is used instead. An explicit --port / --mqtt-port that is taken is
    an error (exit status 1); 0 picks a free port.

    \b
    Interface: both listen on HOST only, 127.0.0.1 by default. For clients on
    other machines (cl-client certify http://THISHOST:8002 finds the broker on
    port 1883 of the same host) use --host 0.0.0.0. The printed URLs then name
    the loopback address (127.0.0.1; ::1 for --host ::): other machines use
    this machine's name or address instead.

    \b
    The banner ends with a line to paste into the shell of a client (cl-client,
    the pytest plugin), for example:
      export CL_SERVER_URL=http://127.0.0.1:8002 CL_MQTT_URL=mqtt://127.0.0.1:1883
    With 8002 and 1883 the client defaults (http://localhost:8002,
    mqtt://localhost:1883) work as they are.

    \b
    Workers are supervised: one that dies (a crash, kill -9) is started again
    with the same id after a back-off (0.5 s, doubling), at most 5 times a
    minute; then it is left stopped and the log says so. Jobs it was running
    end "error" naming it.
    """
    if mqtt_url is not None and mqtt_port is not None:
        raise click.UsageError("give either --mqtt (an external broker) or --mqtt-port (the broker started here)")
    _require(_API_MODULES)
    if mqtt_url is None and broker != "mosquitto":
        from cl_compute.broker import find_mosquitto

        if broker == "amqtt" or find_mosquitto() is None:
            _require((("amqtt",),))

    from cl_compute.broker import connect_host
    from cl_compute.deployment import Deployment, DeploymentError, PortInUseError

    _setup_logging(log_level, "up")
    dep = Deployment(
        workers=workers,
        data_dir=data_dir,
        mqtt_url=mqtt_url,
        auth_public_key=auth_public_key,
        tasks=_split(tasks),
        host=host,
        port=DEFAULT_API_PORT if port is None else port,
        port_fallback=port is None,
        mqtt_port=DEFAULT_MQTT_PORT if mqtt_port is None else mqtt_port,
        mqtt_port_fallback=mqtt_port is None,
        broker=broker,
        job_time_limit=job_time_limit,
        guest_mode=guest_mode,
        max_upload_mb=max_upload_mb,
        log_level=log_level,
        log_dir="-",
        profile=profile,
    )
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    click.echo("cl-compute: starting…", err=True)
    try:
        dep.start()
    except PortInUseError as exc:
        option = "--port" if exc.part == "API server" else "--mqtt-port"
        click.echo(
            f"cl-compute: port {exc.port} is in use, so the {exc.part} cannot listen on it; "
            f"choose another {option} (0 = any free port) or leave it out to fall back to a free port",
            err=True,
        )
        sys.exit(1)
    except DeploymentError as exc:
        click.echo(f"cl-compute: start-up failed: {exc}", err=True)
        sys.exit(1)
    for fb in dep.port_fallbacks:
        where = f"[{fb.host}]:{fb.used}" if ":" in fb.host else f"{fb.host}:{fb.used}"
        click.echo(f"cl-compute: port {fb.requested} is in use; the {fb.part} listens on {where} instead", err=True)
    click.echo(f"API server:  {dep.server_url}")
    click.echo(f"MQTT broker: {dep.mqtt_url} ({dep.broker_kind})")
    click.echo(f"data dir:    {dep.data_dir}")
    click.echo(f"workers:     {', '.join(dep.worker_ids) or '(none)'}")
    if profile != FIXED:
        click.echo(f"profile:     {profile} (upstream's quirks, not the fixed reference behaviour)")
    warning = profile_warning(profile)
    if warning is not None:
        click.echo(f"cl-compute: {warning}", err=True)
    click.echo(f"ready in {dep.startup_seconds:.2f} s; Ctrl-C to stop")
    everywhere = connect_host(host) != host  # 0.0.0.0 or ::, printed as a loopback address
    click.echo(_client_hint(dep.server_url, dep.mqtt_url, auth=auth_public_key is not None, everywhere=everywhere))
    click.echo(f"export CL_SERVER_URL={dep.server_url} CL_MQTT_URL={dep.mqtt_url}")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        click.echo("cl-compute: stopping…", err=True)
        t0 = time.monotonic()
        dep.stop()
        click.echo(f"cl-compute: stopped in {time.monotonic() - t0:.2f} s", err=True)


def _client_hint(server_url: str, mqtt_url: str, *, auth: bool, everywhere: bool = False) -> str:
    """The shell comment before the ``export`` line of the banner."""
    defaults = server_url.endswith(f"://127.0.0.1:{DEFAULT_API_PORT}") and mqtt_url.endswith(
        f"://127.0.0.1:{DEFAULT_MQTT_PORT}"
    )
    hint = (
        "# clients on this machine: the cl-client defaults (localhost:8002, localhost:1883) work; or paste:"
        if defaults
        else "# clients: paste this line into their shell (cl-client, pytest --cl-server):"
    )
    if everywhere:
        hint += "\n# clients on other machines: this line with this machine's name or address, not the loopback one"
    if auth:
        hint += "\n# auth is on: also export CL_TOKEN=$(cl-compute token --private-key PRIVATE_KEY.pem)"
    return hint


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", "-p", default=8002, show_default=True)
@click.option("--fd", type=int, default=None, hidden=True, help="Serve on this already bound socket.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CL_COMPUTE_DATA_DIR",
    required=True,
    help="Shared data directory (jobs, database).",
)
@click.option("--mqtt", "mqtt_url", default="mqtt://127.0.0.1:1883", show_default=True)
@click.option("--auth-public-key", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--guest-mode/--no-guest-mode", default=None, help="Initial guest mode when auth is on (default off).")
@_max_upload_option
@_profile_option
@click.option("--log-level", "-l", type=LOG_LEVELS, default="INFO", show_default=True)
def serve(
    host: str,
    port: int,
    fd: int | None,
    data_dir: Path,
    mqtt_url: str,
    auth_public_key: str | None,
    guest_mode: bool | None,
    max_upload_mb: int,
    profile: str,
    log_level: str,
) -> None:
    """Run the API server only (workers and broker run elsewhere)."""
    use_profile(profile)
    _require(_API_MODULES)
    import uvicorn

    from cl_compute.app import MIB, ServerSettings, create_app

    _setup_logging(log_level, "api")
    key = Path(auth_public_key).read_text() if auth_public_key else None
    data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(
        ServerSettings(
            data_dir=data_dir.resolve(),
            mqtt_url=mqtt_url,
            auth_public_key_pem=key,
            guest_mode_default=guest_mode,
            max_upload_bytes=max_upload_mb * MIB if max_upload_mb > 0 else None,
        )
    )
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level.lower(), access_log=log_level.upper() == "DEBUG"
    )
    server = uvicorn.Server(config)
    sockets = [socket.socket(fileno=fd)] if fd is not None else None
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(1)


@main.command()
@click.option("--server", "server_url", default=None, help="API server URL (used to find the data dir).")
@click.option("--port", "-p", type=int, default=None, help="API port on localhost (upstream style).")
@click.option("--mqtt", "mqtt_url", default="mqtt://127.0.0.1:1883", show_default=True)
@click.option("--tasks", "-t", default=None, help="Comma-separated task types (default: all that load).")
@click.option("--worker-id", "-w", default=None, help="Default: worker-<host>-<pid>.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CL_COMPUTE_DATA_DIR",
    default=None,
    help="Shared data directory (default: asked from the server).",
)
@click.option("--job-time-limit", type=float, default=600.0, show_default=True)
@click.option("--heartbeat-interval", type=float, default=10.0, show_default=True)
@click.option("--shutdown-grace", type=float, default=5.0, show_default=True)
@_profile_option
@click.option("--log-level", "-l", type=LOG_LEVELS, default="INFO", show_default=True)
def worker(
    server_url: str | None,
    port: int | None,
    mqtt_url: str,
    tasks: str | None,
    worker_id: str | None,
    data_dir: Path | None,
    job_time_limit: float,
    heartbeat_interval: float,
    shutdown_grace: float,
    profile: str,
    log_level: str,
) -> None:
    """Run one worker sharing the server's data directory."""
    use_profile(profile)
    from cl_compute.mqtt import MQTTConnectError
    from cl_compute.worker import ServerExtraMissing, Worker, WorkerSettings

    wid = worker_id or f"worker-{socket.gethostname()}-{os.getpid()}"
    _setup_logging(log_level, f"worker[{wid}]")
    if server_url is None and port is not None:
        server_url = f"http://127.0.0.1:{port}"
    if data_dir is None:
        if server_url is None:
            raise click.UsageError("give --data-dir, or --server so the data directory can be asked")
        data_dir = _ask_data_dir(server_url)
    w = Worker(
        WorkerSettings(
            worker_id=wid,
            data_dir=data_dir,
            mqtt_url=mqtt_url,
            tasks=_split(tasks),
            job_time_limit=job_time_limit,
            heartbeat_interval=heartbeat_interval,
            shutdown_grace=shutdown_grace,
        )
    )
    w.install_signal_handlers()
    try:
        code = w.run()
    except ServerExtraMissing as exc:  # nothing to serve without it: one line, as the other commands say it
        _fail_missing_extra(*exc.modules)
    except MQTTConnectError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


class _InternalInfo(TypedDict):
    """The answer of the API's ``GET /internal/info``."""

    data_dir: str
    mqtt_url: str


def _ask_data_dir(server_url: str) -> Path:
    import httpx

    deadline = time.monotonic() + 30
    while True:
        try:
            info = cast("_InternalInfo", httpx.get(f"{server_url}/internal/info", timeout=2).json())
            return Path(info["data_dir"])
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            if time.monotonic() > deadline:
                raise click.ClickException(f"cannot ask {server_url} for its data directory: {exc}") from exc
            time.sleep(0.2)


@main.command()
@click.option("--private-key", type=click.Path(exists=True, dir_okay=False), required=True, help="ES256 PEM.")
@click.option("--permissions", default="ai_inference_support", show_default=True, help="Comma-separated.")
@click.option("--admin", is_flag=True, help="Set is_admin true.")
@click.option("--expires-in", type=float, default=1800.0, show_default=True, help="Seconds.")
@click.option("--user-id", default="cl-compute-user", show_default=True)
def token(private_key: str, permissions: str, admin: bool, expires_in: float, user_id: str) -> None:
    """Print an ES256 JWT signed with PRIVATE_KEY."""
    _require(_AUTH_MODULES)
    from cl_compute.auth import mint_token

    click.echo(
        mint_token(
            Path(private_key).read_text(),
            user_id=user_id,
            permissions=_split(permissions) or [],
            is_admin=admin,
            expires_in=expires_in,
        )
    )


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def keygen(out_dir: Path) -> None:
    """Write a new ES256 key pair as OUT_DIR/private_key.pem and OUT_DIR/public_key.pem."""
    _require(_AUTH_MODULES)
    from cl_compute.auth import generate_keypair

    out_dir.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_keypair()
    priv = out_dir / "private_key.pem"
    priv.write_text(private_pem)
    priv.chmod(0o600)
    (out_dir / "public_key.pem").write_text(public_pem)
    click.echo(f"wrote {priv} and {out_dir / 'public_key.pem'}")


if __name__ == "__main__":
    main()
