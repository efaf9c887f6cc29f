"""``cl-client job get|delete|download|wait``, ``capabilities``, ``workers [--watch]`` and ``health``."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import click
from pydantic import JsonValue
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cl_client._cli_common import (
    EXIT_CONNECTION,
    EXIT_JOB_FAILED,
    EXIT_OK,
    CliState,
    handled,
    state,
    terminal_safe,
)
from cl_client._cli_jobstore import note_deleted
from cl_client._config import redact_url
from cl_client._models import JobResponse, WorkerCapability


def _record_json(record: JobResponse) -> dict[str, JsonValue]:
    return cast(dict[str, JsonValue], record.model_dump(mode="json"))


#: the JobResponse fields that hold epoch milliseconds (shown as local ISO-8601 times; raw in ``--json``).
_TIMESTAMPS = ("created_at", "updated_at", "started_at", "completed_at")


def format_timestamp(millis: int) -> str:
    """Epoch milliseconds as local ISO-8601 time with its UTC offset, e.g. ``2026-01-20T14:03:12.345+01:00``.

    Args:
        millis: milliseconds since the Unix epoch (the protocol's timestamps).

    Returns:
        The text, or the raw number when it is out of range for a date.
    """
    try:
        moment = datetime.fromtimestamp(millis / 1000, tz=UTC).astimezone()
    except (OverflowError, OSError, ValueError):
        return str(millis)
    return moment.isoformat(timespec="milliseconds")


def _print_record(st: CliState, record: JobResponse) -> None:
    if st.json:
        st.print_json(_record_json(record))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in _record_json(record).items():
        if key in _TIMESTAMPS and isinstance(value, int):
            table.add_row(key, f"{format_timestamp(value)} (local time)")
        else:
            table.add_row(key, Text(terminal_safe("" if value is None else value)))
    st.out.print(table)


@click.group("job")
def job_group() -> None:
    """Inspect, wait for, download from or delete a job by id."""


@job_group.command("get")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.pass_context
def job_get(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Show a job record (GET /jobs/JOB_ID)."""
    st = state(ctx)
    st.json = st.json or as_json
    with handled(ctx), st.client(events=False) as client:
        _print_record(st, client.get_job(job_id))


@job_group.command("wait")
@click.argument("job_id")
@click.option("--timeout", "-t", "job_timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds to wait (default 600).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.pass_context
def job_wait(ctx: click.Context, job_id: str, job_timeout: float | None, as_json: bool) -> None:
    """Wait until a job ends and show it; exit 1 if it failed."""
    st = state(ctx)
    st.json = st.json or as_json
    with handled(ctx), st.client() as client:
        record = client.get_job(job_id)  # a job that already ended needs no events
        if not record.is_terminal:
            record = client.wait_for_job(job_id, job_timeout, record.task_type)
        _print_record(st, record)
        ctx.exit(EXIT_JOB_FAILED if record.is_failed else EXIT_OK)


@job_group.command("delete")
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...")
@click.pass_context
def job_delete(ctx: click.Context, job_ids: tuple[str, ...]) -> None:
    """Delete jobs (DELETE /jobs/JOB_ID)."""
    st = state(ctx)
    with handled(ctx), st.client(events=False) as client:
        for job_id in job_ids:
            client.delete_job(job_id)
            note_deleted(client, [job_id])
            if not st.json:
                st.out.print(f"deleted {terminal_safe(job_id)}", markup=False)
        if st.json:
            st.print_json({"deleted": list(job_ids)})


@job_group.command("download")
@click.argument("job_id")
@click.argument("file_path")
@click.argument("dest", required=False, type=click.Path())  # a str: a trailing "/" names a folder to create
@click.pass_context
def job_download(ctx: click.Context, job_id: str, file_path: str, dest: str | None) -> None:
    """Download FILE_PATH (relative to the job directory, e.g. output/thumbnail.jpg) to DEST (default: here).

    DEST is a file name, an existing folder, or a folder to create when it ends with "/".
    """
    st = state(ctx)
    with handled(ctx), st.client(events=False) as client:
        written = client.download_job_file(job_id, file_path, dest if dest is not None else Path.cwd())
        if st.json:
            st.print_json({"job_id": job_id, "file_path": file_path, "path": str(written)})
        else:
            st.out.print(terminal_safe(written), markup=False)


@click.command("capabilities")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.pass_context
def capabilities(ctx: click.Context, as_json: bool) -> None:
    """Show the number of workers and the idle workers per task type (GET /capabilities)."""
    st = state(ctx)
    st.json = st.json or as_json
    with handled(ctx), st.client(events=False) as client:
        caps = client.get_capabilities()
        if st.json:
            st.print_json(caps.model_dump(mode="json"))
            return
        table = Table(title=f"{caps.num_workers} worker(s)")
        table.add_column("task type")
        table.add_column("idle workers", justify="right")
        for task, idle in sorted(caps.capabilities.items()):
            table.add_row(Text(terminal_safe(task)), str(idle))
        st.out.print(table)


def _workers_table(workers: dict[str, WorkerCapability], broker: str | None = None) -> Table:
    """The workers table; ``broker`` names a broker lost meanwhile (the rows are the last ones seen)."""
    title = f"{len(workers)} live worker(s)"
    if broker is not None:
        title = f"MQTT broker {broker} unreachable, reconnecting: {len(workers)} worker(s) last seen"
    table = Table(title=title)
    table.add_column("worker")
    table.add_column("state")
    table.add_column("capabilities")
    for worker_id, cap in sorted(workers.items()):
        busy = "[green]idle" if cap.is_idle else "[yellow]busy"
        table.add_row(Text(terminal_safe(worker_id)), busy, Text(terminal_safe(", ".join(sorted(cap.capabilities)))))
    return table


@click.command("workers")
@click.option("--watch", "-w", is_flag=True, help="Keep a live table until Ctrl-C.")
@click.option("--duration", type=click.FloatRange(min=0), default=None, help="With --watch: stop after N seconds.")
@click.option("--wait", "settle", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds to collect the retained worker messages first.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.pass_context
def workers(ctx: click.Context, watch: bool, duration: float | None, settle: float, as_json: bool) -> None:
    """List live workers, their capabilities and idle/busy state (from MQTT worker messages).

    Exits 3 with one line on stderr when the broker cannot be reached (with or without --json): the live
    workers are unknown then; `cl-client capabilities` asks the API instead.
    """
    st = state(ctx)
    st.json = st.json or as_json
    with handled(ctx), st.client() as client:
        monitor = client.monitor
        if monitor is None:
            raise click.UsageError("workers needs MQTT (give --mqtt or CL_MQTT_URL; it is off)")
        if not monitor.wait_ready():
            click.echo(
                f"error: MQTT broker {terminal_safe(monitor.settings.url)} is not reachable, so the live workers are "
                "unknown "
                "(check --mqtt / CL_MQTT_URL; `cl-client capabilities` asks the API instead)",
                err=True,
            )
            ctx.exit(EXIT_CONNECTION)
        changed = threading.Event()
        monitor.add_worker_listener(lambda _wid, _cap: changed.set())
        changed.wait(settle)
        time.sleep(min(settle, 0.2))  # the retained messages arrive together; let the burst finish
        if not watch:
            snapshot = client.workers()
            if st.json:
                st.print_json({wid: cap.model_dump(mode="json") for wid, cap in snapshot.items()})
            else:
                st.out.print(_workers_table(snapshot))
            return
        end = None if duration is None else time.monotonic() + duration
        try:
            with Live(_workers_table(client.workers()), console=st.out, refresh_per_second=4) as live:
                while end is None or time.monotonic() < end:
                    changed.clear()
                    changed.wait(0.5 if end is None else max(0.0, min(0.5, end - time.monotonic())))
                    lost = None if monitor.ready else monitor.settings.url
                    live.update(_workers_table(client.workers(), lost))
        except KeyboardInterrupt:
            pass


@click.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.pass_context
def health(ctx: click.Context, as_json: bool) -> None:
    """Check that the server answers (GET /); exit 3 when it cannot be reached."""
    st = state(ctx)
    st.json = st.json or as_json
    with handled(ctx), st.client(events=False) as client:
        info = client.health()
        if st.json:
            st.print_json({"server_url": client.config.base_url, **info.model_dump(mode="json")})
        else:
            st.out.print(
                terminal_safe(
                    f"{redact_url(client.config.base_url)}: {info.status} ({info.service or 'unknown service'} "
                    f"{info.version or ''}, guest mode {info.guest_mode or 'unknown'})".replace(" ,", ",")
                ),
                markup=False,
            )
