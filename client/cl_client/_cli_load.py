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

import contextlib
import datetime
import os
import platform
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

from cl_client._capacity import CapacityReport, Objective, Ramp, chart, compare, parse_seconds
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
#: the capacity search's locustfile (paced users, the stepped shape).
CAPACITY_LOCUSTFILE = Path(__file__).with_name("_capacity_locustfile.py")
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
        find_capacity: run the capacity search (``--find-capacity``) instead of a fixed number of users.
        slo: the capacity objective (``p95=2s,errors=0``).
        ramp: the capacity search's steps.
        capacity_out: where the capacity steps go (``PREFIX.json``; the command adds ``.csv`` and ``.svg``).
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
    find_capacity: bool = False
    slo: str | None = None
    ramp: Ramp = field(default_factory=Ramp)
    capacity_out: str | None = None


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
        capacity: where the capacity search's steps are written (None: not a capacity search).
        announce: the line printed when Locust starts (Locust itself says nothing until the end).
    """

    master: tuple[str, ...]
    workers: tuple[tuple[str, ...], ...]
    env: Mapping[str, str] = field(repr=False)
    summary: Path
    thresholds: tuple[Threshold, ...]
    deadline: float
    capacity: Path | None = None
    announce: str = ""


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
    thresholds = tuple(parse_thresholds(request.fail_on or (() if request.find_capacity else DEFAULT_FAIL_ON)))
    if any(t.metric == "capacity" for t in thresholds) and not request.find_capacity:
        raise LoadUsageError("--fail-on capacity<N needs --find-capacity")
    env = dict(environ)
    if request.mqtt is not None:
        env["CL_MQTT_URL"] = request.mqtt
    env.pop("LOCUST_CL_MQTT", None)  # the client reads CL_MQTT_URL; never a stale Locust variable
    locustfile = CAPACITY_LOCUSTFILE if request.find_capacity else LOCUSTFILE
    python = [executable or sys.executable, "-m", "locust", "-f", str(locustfile)]
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
    deadline = request.run_time + request.job_timeout + 90.0
    if request.find_capacity:
        master, options, deadline = _capacity_args(request, master, options)
    if request.workers:
        master += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
        master += ["--expect-workers", str(request.workers), "--expect-workers-max-wait", "60"]
        worker = (*python, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port), *options)
        workers = [worker] * request.workers
    processes = f"Locust master + {request.workers} worker process(es)" if request.workers else "Locust"
    what = (
        f"capacity search within {Objective.parse(request.slo or '').text()}, up to {request.ramp.max_steps} steps "
        f"of {request.ramp.step_time:g} s (a line per step)"
        if request.find_capacity
        else f"{request.users} users for {request.run_time} s (statistics at the end)"
    )
    announce = f"cl-client load: {processes} started against {request.url}: {what}"
    capacity = summary.with_name(summary.name + ".capacity.json") if request.find_capacity else None
    if capacity is not None:
        master += ["--cl-capacity", str(capacity)]
    return LoadPlan(tuple(master), tuple(workers), env, summary, thresholds, deadline, capacity, announce)


def _capacity_args(request: LoadRequest, master: list[str], options: list[str]) -> tuple[list[str], list[str], float]:
    """Turn the master's fixed-users command line into the capacity search's (no users or run time: the shape)."""
    if not request.slo:
        raise LoadUsageError("--find-capacity needs --slo, e.g. --slo p95=2s,errors=0")
    objective = Objective.parse(request.slo)
    ramp = request.ramp
    ramp.check()
    pace = max(1.0, 2 * objective.latency_ms / 1000)
    ramp = Ramp(ramp.start, ramp.factor, ramp.step_time, ramp.settle, ramp.max_steps, pace)
    cut = {"--users", "--spawn-rate", "--run-time"}
    kept: list[str] = []
    skip = False
    for arg in master:
        if skip:
            skip = False
            continue
        if arg in cut:
            skip = True
            continue
        kept.append(arg)
    shape = [
        "--cl-slo", objective.text(), "--cl-rate-start", f"{ramp.start:g}", "--cl-rate-factor", f"{ramp.factor:g}",
        "--cl-step-time", f"{ramp.step_time:g}", "--cl-settle", f"{ramp.settle:g}",
        "--cl-max-steps", str(ramp.max_steps),
    ]  # fmt: skip
    kept += ["--cl-pace", f"{pace:g}", *shape]
    deadline = ramp.max_steps * ramp.step_time + request.job_timeout + 120.0
    return kept, [*options, "--cl-pace", f"{pace:g}"], deadline


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
    if plan.announce:
        echo(plan.announce)

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


def deployment_workers(url: str) -> int | None:
    """The workers a deployment announces (``GET /capabilities``: ``num_workers``), or None when it does not say.

    Args:
        url: the compute API.
    """
    from cl_client import ComputeClient, ComputeClientError

    try:
        with ComputeClient(url, mqtt_url="off", timeout=10) as client:
            workers = client.get_capabilities().num_workers
    except ComputeClientError:
        return None
    return workers if workers > 0 else None


def parse_ceiling(text: str | None) -> dict[str, float]:
    """Parse ``--ceiling hash=35.6,exif=9`` (one deployment worker's jobs/s per plugin).

    Raises:
        LoadUsageError: not plugin=rate pairs with positive rates.
    """
    out: dict[str, float] = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        name, _, value = part.partition("=")
        try:
            rate = float(value)
        except ValueError:
            raise LoadUsageError(f"--ceiling: expected plugin=jobs/s pairs, got {part!r}") from None
        if rate <= 0 or not name.strip():
            raise LoadUsageError(f"--ceiling: expected plugin=jobs/s with a rate > 0, got {part!r}")
        out[name.strip().replace("-", "_")] = rate
    return out


def machine() -> str:
    """This machine in one line: cores, architecture, CPU model, Python."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = f" ({line.split(':', 1)[1].strip()})"
                break
    return f"{os.cpu_count()} cores {platform.machine()}{cpu}, Python {platform.python_version()}"


def capacity_verdict(
    plan: LoadPlan,
    out: Path,
    *,
    meta: Mapping[str, object],
    old: CapacityReport | None = None,
    ceiling: Mapping[str, float] | None = None,
) -> tuple[int, str]:
    """Read the capacity search's steps, write ``out``.json/.csv/.svg, compare, and check ``capacity<N``."""
    if plan.capacity is None or not plan.capacity.is_file():
        return EXIT_FAILED, "cl-client load: the capacity search wrote no steps; see Locust's output above"
    raw = CapacityReport.from_json(plan.capacity.read_text(encoding="utf-8"))
    report = CapacityReport(raw.steps, raw.objective, raw.mix, {**raw.meta, **meta})
    out.parent.mkdir(parents=True, exist_ok=True)
    files = {ext: out.with_name(out.name + ext) for ext in (".json", ".csv", ".svg")}
    files[".json"].write_text(report.to_json(), encoding="utf-8")
    files[".csv"].write_text(report.to_csv(), encoding="utf-8")
    files[".svg"].write_text(chart(report, ceiling=ceiling or None, old=old), encoding="utf-8")
    lines = report.lines()
    if old is not None:
        lines.append(f"compared with {old.meta.get('source', 'the previous run')} ({old.meta.get('date', '?')}):")
        lines += [f"  {change.text()}" for change in compare(old, report)]
    lines.append(f"wrote {', '.join(str(f) for f in files.values())}")
    reasons = [r for t in plan.thresholds if (r := t.capacity_crossed(report.capacity)) is not None]
    if plan.summary.is_file():
        summary = Summary.from_json(plan.summary.read_text(encoding="utf-8"))
        reasons += crossed(summary, [t for t in plan.thresholds if t.metric != "capacity"])
    if not report.steps:
        reasons.append("no step was measured")
    if reasons:
        return EXIT_FAILED, "\n".join([*lines, f"FAILED: {'; '.join(reasons)}"])
    return EXIT_OK, "\n".join(lines)


def _read_old(path: str) -> CapacityReport:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LoadUsageError(f"--compare: cannot read {path}: {exc.strerror or exc}") from None
    return CapacityReport.from_json(text)


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
@click.option("--find-capacity", is_flag=True,
              help="Raise the offered jobs/s step by step until --slo breaks; report the capacity.")  # fmt: skip
@click.option("--slo", metavar="OBJECTIVE", default=None, help="With --find-capacity: p95=2s[,p99=5s][,errors=0|N%].")
@click.option("--capacity-start", type=float, default=1.0, show_default=True, help="First step's offered jobs/s.")
@click.option("--capacity-factor", type=float, default=1.5, show_default=True, help="Each step offers x this.")
@click.option("--step-time", default="30s", show_default=True, help="Seconds of a step (settling included).")
@click.option("--settle", default="10s", show_default=True, help="Seconds at a step's start not measured.")
@click.option("--max-steps", type=int, default=12, show_default=True, help="Give up after this many steps.")
@click.option("--capacity-out", metavar="PREFIX", default="capacity", show_default=True,
              help="Writes PREFIX.json, PREFIX.csv and PREFIX.svg (the chart).")  # fmt: skip
@click.option("--compare", "compare_path", metavar="OLD.json", default=None,
              help="A previous --find-capacity JSON: print and chart the change per plugin.")  # fmt: skip
@click.option("--ceiling", metavar="RATES", default=None,
              help="One worker's jobs/s per plugin (bench_server.py), drawn as the chart's ceiling.")  # fmt: skip
@click.option("--note", default=None, help="A note in the chart's title, e.g. 'loaded machine'.")
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
    find_capacity: bool,
    slo: str | None,
    capacity_start: float,
    capacity_factor: float,
    step_time: str,
    settle: str,
    max_steps: int,
    capacity_out: str,
    compare_path: str | None,
    ceiling: str | None,
    note: str | None,
) -> None:
    """Load-test the deployment at URL with Locust: plugin jobs on the packaged test media.

    Every job is one Locust request (JOB, name = plugin, time = submit -> end; failed when it ended in error,
    timed out or gave a wrong answer); the POST and the DELETE are their own rows (SUBMIT, DELETE). With
    --workers K, Locust's master and K worker processes run on this machine (127.0.0.1 only).

    --find-capacity --slo p95=2s,errors=0 raises the offered jobs/s step by step (users paced to one job per
    2 x the latency objective each) and stops at the first step that breaks the objective: it prints the highest
    sustained jobs/s within it (mix and per plugin), the step that broke and which plugin broke it, and writes
    --capacity-out PREFIX.json/.csv/.svg. --fail-on capacity<N fails below N jobs/s; --compare OLD.json shows the
    change per plugin against a previous search, with a noise band from both runs' spread.

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
            find_capacity=find_capacity, slo=slo,
            ramp=Ramp(capacity_start, capacity_factor, parse_seconds(step_time, "--step-time"),
                      parse_seconds(settle, "--settle"), max_steps),
        )  # fmt: skip
        if not find_capacity and (slo or compare_path):
            raise LoadUsageError("--slo and --compare go with --find-capacity")
        old = _read_old(compare_path) if compare_path else None
        if old is not None:
            old = CapacityReport(old.steps, old.objective, old.mix, {**old.meta, "source": compare_path})
        rates = parse_ceiling(ceiling)
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
            if find_capacity:
                meta: dict[str, object] = {
                    "url": url, "machine": machine(), "note": note or "",
                    "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "workers_text": f"{workers} Locust worker process(es)" if workers else "one Locust process",
                }  # fmt: skip
                if (announced := deployment_workers(request.url)) is not None:
                    meta["deployment_workers"] = announced
                exit_code, text = capacity_verdict(plan, Path(capacity_out), meta=meta, old=old, ceiling=rates)
            else:
                exit_code, text = verdict(plan, code)
    except LoadUsageError as exc:
        click.echo(terminal_safe(f"error: {exc}"), err=True)
        ctx.exit(EXIT_USAGE)
    click.echo(terminal_safe(text, keep_newlines=True))
    click.echo(f"wall time {time.monotonic() - started:.1f} s, Locust exit code {code}", err=True)
    ctx.exit(exit_code)
