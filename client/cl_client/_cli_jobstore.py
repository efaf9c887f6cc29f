"""``cl-client jobs usage|list|clean``: a deployment's storage use, the jobs this machine created, clean-up.

The protocol has no route that lists a deployment's jobs: ``jobs usage`` reads ``GET /admin/jobs/storage/size``
(admin), ``jobs clean --older-than 7d`` calls ``DELETE /admin/jobs/cleanup?days=7`` (admin), and ``--mine``
works from the command's local record of the jobs it created (:mod:`cl_client._joblog`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import PurePath
from typing import TYPE_CHECKING

import click

from cl_client._cli_common import EXIT_JOB_FAILED, CliState, handled, state
from cl_client._exceptions import ComputeClientError, JobNotFoundError
from cl_client._joblog import JobRecord, RecordedJob, default_record_path

if TYPE_CHECKING:
    from cl_client._client import ComputeClient

_AGE = re.compile(r"^\s*(\d{1,6})\s*(d|days?)?\s*$", re.IGNORECASE)


def parse_age(text: str) -> int:
    """``7d``, ``7 days`` or ``7`` → 7 (whole days: the server's cleanup takes days).

    Args:
        text: the option's value.

    Raises:
        click.BadParameter: anything else.
    """
    match = _AGE.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not an age in whole days (write 7d or 7)", param_hint="--older-than")
    return int(match.group(1))


def human_size(size: int) -> str:
    """Bytes as ``512 B``, ``1.5 KiB``, ``3.2 MiB``, …

    Args:
        size: a number of bytes.
    """
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop returns


def _local_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).astimezone().strftime("%Y-%m-%d %H:%M")


def _record(client: ComputeClient) -> JobRecord:
    return JobRecord(client.config.base_url)


class Recorder:
    """Notes the jobs a plugin command creates in the local record; a record that cannot be written is said once.

    Args:
        st: the command's state (for the warning on stderr).
        client: the client the jobs are created with (its server URL keys the entries).
        task_type: the plugin.
    """

    def __init__(self, st: CliState, client: ComputeClient, task_type: str) -> None:
        self._st = st
        self._record = _record(client)
        self._task = task_type
        self._seen: set[str] = set()
        self._broken = False

    def created(self, job_id: str | None, input_name: str) -> None:
        """Note a job (once per id; None, a job that was not created, is ignored)."""
        if job_id is None or job_id in self._seen or self._broken:
            return
        self._seen.add(job_id)
        try:
            self._record.created(job_id, self._task, input_name)
        except OSError as exc:
            self._broken = True
            self._st.err.print(
                f"warning: cannot note the job in {self._record.path} ({exc.strerror or exc}); "
                "`cl-client jobs clean --mine` will not know it",
                markup=False,
            )


def note_deleted(client: ComputeClient, job_ids: Iterable[str]) -> None:
    """Note jobs deleted through the command (``job delete``); a record that cannot be written is ignored."""
    with contextlib.suppress(OSError):
        _record(client).deleted(job_ids)


@click.group("jobs")
def jobs_group() -> None:
    """A deployment's storage use, the jobs this machine created, and clean-up (admin routes for usage and age).

    \b
    Examples:
      cl-client jobs usage
      cl-client jobs list --mine
      cl-client jobs clean --mine
      cl-client jobs clean --older-than 7d
    """


@jobs_group.command("usage")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.pass_context
def jobs_usage(ctx: click.Context, as_json: bool) -> None:
    """How many jobs the deployment holds and their size (GET /admin/jobs/storage/size, admin), and how many of
    them this machine's cl-client created and has not deleted (its local record)."""
    st = state(ctx)
    st.json = st.json or as_json
    with handled(ctx), st.client(events=False) as client:
        info = client.get_storage_size()
        mine = len(_record(client).outstanding())
        if st.json:
            st.print_json(
                {
                    "server_url": client.config.base_url,
                    "job_count": info.job_count,
                    "total_size": info.total_size,
                    "mine": mine,
                    "record": str(default_record_path()),
                }
            )
            return
        st.out.print(f"{client.config.base_url}", markup=False)
        st.out.print(f"  {info.job_count} job(s), {human_size(info.total_size)} on the server", markup=False)
        st.out.print(f"  {mine} created by cl-client on this machine (jobs list --mine)", markup=False)


def _check(client: ComputeClient, job: RecordedJob) -> str:
    """The job's status on the server, ``gone`` after a 404."""
    try:
        return client.get_job(job.job_id).status
    except JobNotFoundError:
        return "gone"


@jobs_group.command("list")
@click.option("--mine", is_flag=True, help="The jobs this machine's cl-client created (the only list there is).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.pass_context
def jobs_list(ctx: click.Context, mine: bool, as_json: bool) -> None:
    """List the jobs this machine's cl-client created on the deployment and has not deleted, with their status.

    The server has no route that lists every job; `jobs usage` counts them. Jobs found gone (404) are listed
    once as `gone` and dropped from the local record.
    """
    st = state(ctx)
    st.json = st.json or as_json
    with handled(ctx), st.client(events=False) as client:
        record = _record(client)
        rows = [(job, _check(client, job)) for job in record.outstanding()]
        gone = [job.job_id for job, status in rows if status == "gone"]
        if gone:
            record.deleted(gone)
        if st.json:
            st.print_json(
                [
                    {"job_id": j.job_id, "task_type": j.task_type, "status": s, "input": j.input, "created": j.created}
                    for j, s in rows
                ]
            )
            return
        if not rows:
            st.out.print(f"no jobs of this machine's cl-client on {client.config.base_url}", markup=False)
            return
        st.out.print(f"{len(rows)} job(s) created here on {client.config.base_url}:", markup=False)
        for job, status in rows:  # one line each, the id first and whole (a table folds ids in a narrow terminal)
            name = PurePath(job.input).name or job.input
            line = f"{job.job_id}  {status:<10}  {job.task_type}  {_local_time(job.created)}  {name}"
            st.out.print(line, markup=False, overflow="ignore", crop=False)


@jobs_group.command("clean")
@click.option("--mine", is_flag=True, help="Delete the jobs this machine's cl-client created (its local record).")
@click.option("--older-than", "older_than", metavar="AGE", default=None,
              help="Delete every job older than AGE whole days, e.g. 7d (admin: /admin/jobs/cleanup).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.pass_context
def jobs_clean(ctx: click.Context, mine: bool, older_than: str | None, as_json: bool) -> None:
    """Delete jobs: those this machine created (--mine), those older than an age (--older-than), or both.

    Exits 1 when a job could not be deleted (each is named on stderr); a job already gone counts as deleted.
    """
    st = state(ctx)
    st.json = st.json or as_json
    days = parse_age(older_than) if older_than is not None else None
    if not mine and days is None:
        raise click.UsageError("say what to clean: --mine (the jobs this machine created) or --older-than 7d")
    with handled(ctx), st.client(events=False) as client:
        result: dict[str, object] = {"server_url": client.config.base_url}
        failed: dict[str, str] = {}
        if mine:
            failed = _clean_mine(st, client, result)
        if days is not None:
            cleaned = client.cleanup_old_jobs(days)
            result["older_than_days"] = days
            result["deleted_count"] = cleaned.deleted_count
            result["freed_space"] = cleaned.freed_space
            if not st.json:
                st.out.print(
                    f"deleted {cleaned.deleted_count} job(s) older than {days} day(s) on {client.config.base_url}, "
                    f"freed {human_size(cleaned.freed_space)}",
                    markup=False,
                )
        if st.json:
            st.print_json(result)
        for job_id, why in failed.items():
            st.err.print(f"error: job {job_id} was not deleted: {why}", markup=False)
        if failed:
            ctx.exit(EXIT_JOB_FAILED)


def _clean_mine(st: CliState, client: ComputeClient, result: dict[str, object]) -> dict[str, str]:
    """Delete the recorded jobs; fills ``result`` (deleted, gone, failed) and returns the failures."""
    record = _record(client)
    deleted: list[str] = []
    gone: list[str] = []
    failed: dict[str, str] = {}
    for job in record.outstanding():
        try:
            client.delete_job(job.job_id)
            deleted.append(job.job_id)
        except JobNotFoundError:
            gone.append(job.job_id)
        except ComputeClientError as exc:
            failed[job.job_id] = str(exc)
    record.deleted([*deleted, *gone])
    result.update({"deleted": deleted, "gone": gone, "failed": failed})
    if not st.json:
        line = f"deleted {len(deleted)} job(s) this machine created on {client.config.base_url}"
        st.out.print(line + (f" ({len(gone)} already gone)" if gone else ""), markup=False)
    return failed
