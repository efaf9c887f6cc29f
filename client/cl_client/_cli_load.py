"""``cl-client load URL``: a load test of a deployment on Locust's distributed engine, thin front for the common case.

Not a second load-test engine: ``build_plan`` (a pure function) turns the options into the command lines of
Locust's master and of K local worker processes running the packaged locustfile (``cl_client/_locustfile.py``,
users from ``cl_client.locust``); ``run_plan`` runs them, the master writes the final statistics as JSON
(``--cl-summary``), and the command prints the job rows and exits 1 when a ``--fail-on`` threshold is crossed
(default: any failed job). Locust's own ``--csv`` and ``--html`` outputs are passed through.

Locust runs in child processes only: it monkey-patches the standard library with gevent at import time, which
must never happen in this process (it has imported httpx and click already).

Master and workers talk over ZeroMQ on a free port of 127.0.0.1 (never all interfaces); for masters and workers
on several machines run ``locust`` itself (README, "Load testing").
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import click

from cl_client._cli_certify import OneLineUsageCommand, deployment_problem, is_installed, mqtt_problem, url_problem
from cl_client._cli_common import state, terminal_safe
from cl_client._load import (
    DEFAULT_MIX,
    LOAD_HINT,
    LoadUsageError,
    Summary,
    Threshold,
    crossed,
    format_summary,
    parse_mix,
    parse_thresholds,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING_EXTRA = 0, 1, 2, 3
#: the packaged locustfile (``python -m cl_client.locust`` prints it too).
LOCUSTFILE = Path(__file__).with_name("_locustfile.py")
#: without ``--fail-on``: any failed job fails the run (as Locust's own exit code does).
DEFAULT_FAIL_ON = ("errors=0",)
_RUN_TIME = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")


def parse_run_time(text: str) -> int:
    """Seconds of a Locust run time (``60``, ``60s``, ``1m30s``, ``1h``).

    Raises:
        LoadUsageError: not such a duration, or zero.
    """
    match = _RUN_TIME.match(text.strip().lower())
    if not match or not text.strip():
        raise LoadUsageError(f"--run-time: expected a duration like 60s, 1m30s or 1h, got {text!r}")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise LoadUsageError(f"--run-time must be positive, got {text!r}")
    return total


@dataclass(frozen=True)
class LoadRequest:
    """The options of ``cl-client load``.

    Attributes:
        url: the compute API.
        users: concurrent users (each runs one job at a time, back to back).
        spawn_rate: users started per second (default: all at once).
        run_time: seconds of load.
        mix: plugin weights, ``hash=5,exif=2``.
        workers: local Locust worker processes (0: one process, no master).
        csv: Locust's ``--csv`` prefix.
        html: Locust's ``--html`` report path.
        fail_on: ``--fail-on`` texts (``p95=2000,errors=1%``).
        mqtt: broker URL or ``off`` (None: ``CL_MQTT_URL`` / the client default).
        job_timeout: seconds from submit to terminal state before a job fails.
        keep_jobs: leave the jobs on the server.
        summary: where the master writes the JSON summary (None: a temporary file).
    """

    url: str
    users: int = 10
    spawn_rate: float | None = None
    run_time: int = 60
    mix: str = DEFAULT_MIX
    workers: int = 0
    csv: str | None = None
    html: str | None = None
    fail_on: tuple[str, ...] = ()
    mqtt: str | None = None
    job_timeout: float = 60.0
    keep_jobs: bool = False
    summary: str | None = None


@dataclass(frozen=True)
class LoadPlan:
    """The processes of a run: Locust's master (or single process) and its workers, one environment.

    Attributes:
        master: the master's (or single process's) command line.
        workers: each worker's command line.
        env: the children's environment (the broker URL travels here: it may carry credentials).
        summary: the JSON summary the master writes.
        thresholds: the parsed ``--fail-on`` limits.
        deadline: seconds after which the master is stopped (run time + job time-out + slack).
    """

    master: tuple[str, ...]
    workers: tuple[tuple[str, ...], ...]
    env: Mapping[str, str] = field(repr=False)
    summary: Path
    thresholds: tuple[Threshold, ...]
    deadline: float


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])  # pyright: ignore[reportAny]


def build_plan(
    request: LoadRequest,
    *,
    summary: Path,
    port: int,
    environ: Mapping[str, str],
    executable: str | None = None,
) -> LoadPlan:
    """Build the Locust command lines of a run (no I/O).

    Raises:
        LoadUsageError: a URL that is not http(s), an unknown plugin or bad weight in the mix, a bad
            threshold, fewer than one user, a negative worker count.
    """
    problem = url_problem(request.url) or (mqtt_problem(request.mqtt) if request.mqtt is not None else None)
    if problem is not None:
        raise LoadUsageError(problem)
    if request.users < 1:
        raise LoadUsageError(f"--users must be >= 1, got {request.users}")
    if request.workers < 0:
        raise LoadUsageError(f"--workers must be >= 0, got {request.workers}")
    mix = parse_mix(request.mix)
    thresholds = tuple(parse_thresholds(request.fail_on or DEFAULT_FAIL_ON))
    env = dict(environ)
    if request.mqtt is not None:
        env["CL_MQTT_URL"] = request.mqtt
    env.pop("LOCUST_CL_MQTT", None)  # the client reads CL_MQTT_URL; never a stale Locust variable
    python = [executable or sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    options = [
        "--cl-mix", ",".join(f"{name}={weight}" for name, weight in mix.items()),
        "--cl-job-timeout", f"{request.job_timeout:g}",
        *(["--cl-keep-jobs"] if request.keep_jobs else []),
    ]  # fmt: skip
    master = [
        *python, "--headless", "--only-summary", "--host", request.url,
        "--users", str(request.users), "--spawn-rate", f"{request.spawn_rate or request.users:g}",
        "--run-time", f"{request.run_time}s", "--stop-timeout", f"{request.job_timeout + 5:g}",
        "--cl-summary", str(summary), *options,
    ]  # fmt: skip
    if request.csv:
        master += ["--csv", request.csv]
    if request.html:
        master += ["--html", request.html]
    workers: list[tuple[str, ...]] = []
    if request.workers:
        master += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
        master += ["--expect-workers", str(request.workers), "--expect-workers-max-wait", "60"]
        worker = (*python, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port), *options)
        workers = [worker] * request.workers
    deadline = request.run_time + request.job_timeout + 90.0
    return LoadPlan(tuple(master), tuple(workers), env, summary, thresholds, deadline)


def _stop(process: subprocess.Popen[bytes], grace: float) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def run_plan(plan: LoadPlan, echo: Callable[[str], None] = click.echo) -> int:
    """Run the master and the workers; return the master's exit code (workers are always stopped).

    SIGTERM to this process is passed to the master as SIGTERM (Locust's clean stop); Ctrl-C reaches every
    child through the terminal's process group.
    """
    children: list[subprocess.Popen[bytes]] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        if children and children[0].poll() is None:
            children[0].send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_term)
    previous_int = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        children.append(subprocess.Popen(plan.master, env=dict(plan.env)))
        children += [subprocess.Popen(argv, env=dict(plan.env)) for argv in plan.workers]
        try:
            code = children[0].wait(plan.deadline)
        except subprocess.TimeoutExpired:
            echo(f"cl-client load: Locust did not finish within {plan.deadline:.0f} s; stopping it")
            code = _stop(children[0], 30)
    finally:
        for child in children:
            _stop(child, 15)
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    return code


def verdict(plan: LoadPlan, code: int) -> tuple[int, str]:
    """The exit code and the text to print after a run (reads the summary the master wrote)."""
    if not plan.summary.is_file():
        return EXIT_FAILED, f"cl-client load: Locust wrote no summary (exit code {code}); see its output above"
    summary = Summary.from_json(plan.summary.read_text(encoding="utf-8"))
    text = format_summary(summary)
    reasons = crossed(summary, plan.thresholds)
    if summary.jobs.requests == 0:
        reasons.append("no job was run")
    if reasons:
        return EXIT_FAILED, f"{text}\nFAILED: {'; '.join(reasons)}"
    return EXIT_OK, f"{text}\npassed: {', '.join(f'{t.metric}' for t in plan.thresholds)} within limits"


@click.command("load", cls=OneLineUsageCommand)
@click.argument("url")
@click.option("-u", "--users", type=int, default=10, show_default=True, help="Concurrent users (one job at a time).")
@click.option("-r", "--spawn-rate", type=float, default=None, help="Users started per second [default: all at once].")
@click.option("-t", "--run-time", default="60s", show_default=True, help="How long: 60s, 1m30s, 1h.")
@click.option("--mix", default=DEFAULT_MIX, show_default=True, help="Plugin weights: hash=5,exif=2,clip-embedding=1.")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Local Locust worker processes behind Locust's master (0: a single process).")  # fmt: skip
@click.option("--csv", "csv_prefix", metavar="PREFIX", default=None, help="Locust's CSV files PREFIX_stats.csv, ...")
@click.option("--html", metavar="PATH", default=None, help="Locust's HTML report.")
@click.option("--fail-on", multiple=True, metavar="LIMITS",
              help="Exit 1 when crossed: p50/p95/p99/avg/max=MS, errors=N|N%, rps=MIN [errors=0].")  # fmt: skip
@click.option("--mqtt", metavar="URL|off", default=None, help="Broker URL, or 'off' to poll [env CL_MQTT_URL].")
@click.option("--job-timeout", type=float, default=60.0, show_default=True, help="Seconds submit -> end per job.")
@click.option("--keep-jobs", is_flag=True, help="Leave the jobs on the server (default: delete each one).")
@click.option("--summary", "summary_path", metavar="PATH", default=None, help="Also keep the JSON summary at PATH.")
@click.pass_context
def load(
    ctx: click.Context,
    url: str,
    users: int,
    spawn_rate: float | None,
    run_time: str,
    mix: str,
    workers: int,
    csv_prefix: str | None,
    html: str | None,
    fail_on: tuple[str, ...],
    mqtt: str | None,
    job_timeout: float,
    keep_jobs: bool,
    summary_path: str | None,
) -> None:
    """Load-test the deployment at URL with Locust: plugin jobs on the packaged test media.

    Every job is one Locust request (JOB, name = plugin, time = submit -> end; failed when it ended in error,
    timed out or gave a wrong answer); the POST and the DELETE are their own rows (SUBMIT, DELETE). With
    --workers K, Locust's master and K worker processes run on this machine (127.0.0.1 only).

    Exit code: 0 within the --fail-on limits, 1 a limit crossed (or Locust failed), 2 a bad argument or a
    deployment that cannot be reached or refuses the credentials (checked before Locust starts), 3 the load
    extra is missing (pip install "cl-client[load]").
    """
    if not is_installed("locust"):
        click.echo(f"cl-client load needs the load extra (locust not installed): {LOAD_HINT}", err=True)
        ctx.exit(EXIT_MISSING_EXTRA)
    st = state(ctx)
    try:
        request = LoadRequest(
            url=url, users=users, spawn_rate=spawn_rate, run_time=parse_run_time(run_time), mix=mix,
            workers=workers, csv=csv_prefix, html=html, fail_on=fail_on,
            mqtt=mqtt if mqtt is not None else st.mqtt, job_timeout=job_timeout, keep_jobs=keep_jobs,
        )  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="cl-load-") as tmp:
            target = Path(summary_path) if summary_path else Path(tmp) / "summary.json"
            target.unlink(missing_ok=True)
            plan = build_plan(request, summary=target.absolute(), port=free_port(), environ=os.environ)
            problem = deployment_problem(
                request.url, request.mqtt, token=st.token, username=st.username, password=st.password,
                auth_url=st.auth_url,
            )  # fmt: skip
            if problem is not None:  # before Locust starts: one line instead of a minute of failed jobs
                raise LoadUsageError(problem)
            started = time.monotonic()
            code = run_plan(plan)
            exit_code, text = verdict(plan, code)
    except LoadUsageError as exc:
        click.echo(terminal_safe(f"error: {exc}"), err=True)
        ctx.exit(EXIT_USAGE)
    click.echo(terminal_safe(text, keep_newlines=True))
    click.echo(f"wall time {time.monotonic() - started:.1f} s, Locust exit code {code}", err=True)
    ctx.exit(exit_code)
