"""``cl-compute``: run a whole deployment (``up``), the API alone (``serve``), one ``worker``, or mint a ``token``."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import click

from cl_compute import __version__

LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)


def _setup_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items


@click.group()
@click.version_option(__version__, prog_name="cl-compute")
def main() -> None:
    """cl_compute: the reference CL compute deployment (API server, workers, MQTT broker)."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="API interface.")
@click.option("--port", "-p", default=8002, show_default=True, help="API port (0 = a free port).")
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
@click.option("--log-level", "-l", type=LOG_LEVELS, default="WARNING", show_default=True)
def up(
    host: str,
    port: int,
    workers: int | None,
    mqtt_url: str | None,
    broker: str,
    data_dir: Path | None,
    tasks: str | None,
    auth_public_key: str | None,
    guest_mode: bool | None,
    job_time_limit: float,
    log_level: str,
) -> None:
    """Start broker + API server + workers, print the URLs, serve until Ctrl-C/SIGTERM."""
    from cl_compute.deployment import Deployment, DeploymentError

    _setup_logging(log_level, "up")
    dep = Deployment(
        workers=workers,
        data_dir=data_dir,
        mqtt_url=mqtt_url,
        auth_public_key=auth_public_key,
        tasks=_split(tasks),
        host=host,
        port=port,
        broker=broker,
        job_time_limit=job_time_limit,
        guest_mode=guest_mode,
        log_level=log_level,
        log_dir="-",
    )
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    click.echo("cl-compute: starting…", err=True)
    try:
        dep.start()
    except DeploymentError as exc:
        click.echo(f"cl-compute: start-up failed: {exc}", err=True)
        sys.exit(1)
    click.echo(f"API server:  {dep.server_url}")
    click.echo(f"MQTT broker: {dep.mqtt_url} ({dep.broker_kind})")
    click.echo(f"data dir:    {dep.data_dir}")
    click.echo(f"workers:     {', '.join(dep.worker_ids) or '(none)'}")
    click.echo(f"ready in {dep.startup_seconds:.2f} s; Ctrl-C to stop")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        click.echo("cl-compute: stopping…", err=True)
        t0 = time.monotonic()
        dep.stop()
        click.echo(f"cl-compute: stopped in {time.monotonic() - t0:.2f} s", err=True)


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
@click.option("--log-level", "-l", type=LOG_LEVELS, default="INFO", show_default=True)
def serve(
    host: str,
    port: int,
    fd: int | None,
    data_dir: Path,
    mqtt_url: str,
    auth_public_key: str | None,
    guest_mode: bool | None,
    log_level: str,
) -> None:
    """Run the API server only (workers and broker run elsewhere)."""
    import uvicorn

    from cl_compute.app import ServerSettings, create_app

    _setup_logging(log_level, "api")
    key = Path(auth_public_key).read_text() if auth_public_key else None
    data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(
        ServerSettings(
            data_dir=data_dir.resolve(), mqtt_url=mqtt_url, auth_public_key_pem=key, guest_mode_default=guest_mode
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
    log_level: str,
) -> None:
    """Run one worker sharing the server's data directory."""
    from cl_compute.mqtt import MQTTConnectError
    from cl_compute.worker import Worker, WorkerSettings

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
    except MQTTConnectError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


def _ask_data_dir(server_url: str) -> Path:
    import httpx

    deadline = time.monotonic() + 30
    while True:
        try:
            return Path(httpx.get(f"{server_url}/internal/info", timeout=2).json()["data_dir"])
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
