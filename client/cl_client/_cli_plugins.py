"""The plugin groups of ``cl-client`` (``cl-client clip-embedding embed IMAGE...``), built from the registry."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click
from pydantic import JsonValue
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

from cl_client._cli_certify import OneLineUsageCommand, mqtt_problem, url_problem
from cl_client._cli_common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliState,
    alias,
    exit_code_for,
    handled,
    state,
    terminal_safe,
)
from cl_client._cli_jobstore import Recorder
from cl_client._exceptions import ComputeClientError, ConfigurationError, JobFailedError
from cl_client.plugins import REGISTRY, BatchItem, BatchOutcome, BatchUpdate, PluginResult, PluginSpec, run_batch
from cl_client.plugins._base import SubmitOptions, SyncRunner

if TYPE_CHECKING:
    from cl_client._client import ComputeClient
from cl_client.plugins._fields import (
    BoolField,
    ChoiceField,
    Field,
    FloatField,
    HlsVariant,
    IntField,
    ServerPathField,
    TagsField,
    VariantsField,
)

#: upstream's CLI spelling of a plugin command where it differs from ours (added as an alias).
_UPSTREAM_COMMANDS: dict[str, str] = {"hls_streaming": "generate-manifest"}

#: short option names kept from the upstream CLI.
_SHORT: dict[str, str] = {"format": "-f", "quality": "-q", "width": "-w", "height": "-H"}

_STATUS_STYLE = {"completed": "green", "error": "red", "timeout": "red", "processing": "cyan", "queued": "yellow"}


class VariantType(click.ParamType[HlsVariant]):
    """``HEIGHT:KBPS`` on the command line."""

    name = "HEIGHT:KBPS"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> HlsVariant:
        """Parse a variant; a bad one is a usage error (exit 2)."""
        if isinstance(value, HlsVariant):
            return value
        try:
            return HlsVariant.parse(str(value))
        except ConfigurationError as exc:
            self.fail(str(exc), param, ctx)


def _shown(value: object) -> str:
    """A name or server text for a markup line: terminal escapes written out, rich markup escaped."""
    return escape(terminal_safe(value))


def _option_for(fld: Field) -> click.Option:
    flag = "--" + fld.name.replace("_", "-")
    names = [flag, *([_SHORT[fld.name]] if fld.name in _SHORT else [])]
    help_text = fld.describe()
    if isinstance(fld, BoolField):
        return click.Option([f"{flag}/--no-{flag[2:]}"], default=fld.value_default, help=help_text)
    if isinstance(fld, IntField):
        return click.Option(
            names, type=click.IntRange(fld.minimum, fld.maximum), default=fld.value_default, help=help_text
        )
    if isinstance(fld, FloatField):
        return click.Option(
            names, type=click.FloatRange(fld.minimum, fld.maximum), default=fld.value_default, help=help_text
        )
    if isinstance(fld, ChoiceField):
        return click.Option(
            names,
            type=click.Choice(fld.choices, case_sensitive=False),
            default=fld.value_default,
            required=fld.required,
            help=help_text,
        )
    if isinstance(fld, TagsField):
        return click.Option(names, multiple=True, help=help_text + "; repeatable")
    if isinstance(fld, VariantsField):
        return click.Option(["--variant", fld.name], type=VariantType(), multiple=True, help=help_text)
    if isinstance(fld, ServerPathField):
        return click.Option(names, metavar="SERVER_PATH", default=None, help=help_text)
    raise TypeError(f"no CLI option for field type {type(fld).__name__}")  # pragma: no cover


def _params_from(spec: PluginSpec[PluginResult], values: dict[str, object]) -> dict[str, object]:
    params: dict[str, object] = {}
    for fld in spec.fields:
        value = values.get(fld.name)
        if isinstance(fld, TagsField | VariantsField):
            seq = cast(Sequence[object], value or ())
            if isinstance(fld, TagsField):
                params[fld.name] = ",".join(str(v) for v in seq)
            elif seq:
                params[fld.name] = list(seq)
            continue
        params[fld.name] = value
    return params


class _Display:
    """Live progress rows (one per job) on stderr, fed by batch updates (MQTT events, polling fallback)."""

    def __init__(self, st: CliState, items: Sequence[BatchItem]) -> None:
        self.enabled = st.show_progress()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=st.err,
            refresh_per_second=10,
            disable=not self.enabled,
        )
        self.rows: list[TaskID] = [
            self.progress.add_task(item.label, total=100, status="[yellow]submitting") for item in items
        ]

    def __enter__(self) -> _Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, update: BatchUpdate) -> None:
        style = _STATUS_STYLE.get(update.status, "white")
        done = 100 if update.status == "completed" else update.progress
        self.progress.update(self.rows[update.index], completed=done, status=f"[{style}]{update.status}")


def _unique_dirs(items: Sequence[BatchItem], root: Path) -> list[Path]:
    seen: dict[str, int] = {}
    out: list[Path] = []
    for item in items:
        stem = re.sub(r"[^\w.\-]+", "_", Path(item.file).stem) or "input"
        if len(items) > 1 and sum(1 for i in items if Path(i.file).stem == Path(item.file).stem) > 1:
            stem = f"{stem}.{item.task_type}" if len({i.task_type for i in items}) > 1 else stem
        count = seen.get(stem, 0) + 1
        seen[stem] = count
        out.append(root / (stem if count == 1 else f"{stem}-{count}"))
    return out


def _report(st: CliState, outcomes: Sequence[BatchOutcome], output: Path | None) -> int:
    dirs = _unique_dirs([o.item for o in outcomes], output) if output is not None else []
    rows: list[dict[str, JsonValue]] = []
    for outcome in outcomes:
        row: dict[str, JsonValue] = {
            "file": str(outcome.item.file),
            "task_type": outcome.item.task_type,
            "job_id": outcome.job_id,
            "status": outcome.record.status if outcome.record else "not submitted",
            "error": str(outcome.error) if outcome.error else None,
            "job": cast(dict[str, JsonValue], outcome.record.model_dump(mode="json")) if outcome.record else None,
            "result": outcome.result.as_dict() if outcome.result else None,
        }
        if output is not None and outcome.result is not None:
            written = outcome.result.download_outputs(dirs[outcome.index])
            row["files"] = [str(p) for p in written]
        rows.append(row)
        if not st.json:
            name = Path(outcome.item.file).name
            if outcome.result is not None:
                st.out.print(
                    f"[green]✓[/] {_shown(name)}  {_shown(outcome.job_id)}  {_shown(outcome.result.summary())}",
                    markup=True,
                )
                for path in cast(list[str], row.get("files") or []):
                    st.out.print(f"    {terminal_safe(path)}", markup=False)
            else:
                reason = str(outcome.error) if outcome.error else "no result"
                st.err.print(
                    f"[red]✗[/] {_shown(name)}  {_shown(outcome.job_id or '-')}  {_shown(reason)}", markup=True
                )
    if st.json:
        st.print_json(rows)
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return EXIT_OK
    # the README's rule: input the server refused (400, 413, 422) or a missing file exits 2, when every failure is one
    if all(o.error is not None and exit_code_for(o.error) == EXIT_USAGE for o in failed):
        return EXIT_USAGE
    return EXIT_JOB_FAILED


#: the form field that replaces the upload with a path on the server (upstream's February 2026 hls_streaming).
SERVER_INPUT = "input_absolute_path"


def _run_server_input(
    st: CliState,
    client: ComputeClient,
    spec: PluginSpec[PluginResult],
    params: dict[str, object],
    server_input: str,
    priority: int | None,
    timeout: float | None,
    wait: bool,
    output: Path | None,
) -> int:
    """One job without an upload, reading ``server_input`` on the server; reported like a batch of one."""
    job = SyncRunner(client, spec).submit(None, spec.check(params), SubmitOptions(priority, wait, timeout))
    Recorder(st, client, spec.task_type).created(job.job_id, server_input)
    if not wait:
        record = cast(dict[str, JsonValue], job.record.model_dump(mode="json"))
        if st.json:
            st.print_json([record])
        else:
            st.out.print(terminal_safe(f"{record['job_id']}  {server_input}  {record['status']}"), markup=False)
        return EXIT_OK
    outcome = BatchOutcome(0, BatchItem(spec.task_type, server_input, params, priority), record=job.record)
    try:
        outcome.result = job.result()
    except (JobFailedError, ComputeClientError) as exc:
        outcome.error = exc
    return _report(st, [outcome], output)


def _check_target(st: CliState) -> None:
    """Check ``--server`` and ``--mqtt`` (or their variables) before connecting.

    Raises:
        ConfigurationError: one of them is no URL of its kind (one line naming it, exit 2).
    """
    server = st.server or os.environ.get("CL_SERVER_URL") or os.environ.get("COMPUTE_URL")
    problem = url_problem(server, "--server") if server else None
    mqtt = st.mqtt or os.environ.get("CL_MQTT_URL") or os.environ.get("MQTT_URL")
    if problem is None and mqtt and "://" in mqtt:  # the library takes a bare host:port too
        problem = mqtt_problem(mqtt)
    if problem is not None:
        raise ConfigurationError(problem)


def _run(
    ctx: click.Context,
    spec: PluginSpec[PluginResult],
    files: tuple[Path, ...],
    values: dict[str, object],
    *,
    priority: int | None,
    timeout: float | None,
    wait: bool,
    output: Path | None,
) -> None:
    st = state(ctx)
    _check_target(st)
    params = _params_from(spec, values)
    spec.check(params)  # usage errors before connecting
    server_input = cast(str | None, params.get(SERVER_INPUT))
    if server_input is not None and files:
        raise click.UsageError(f"give {spec.metavar} files or --input-absolute-path, not both")
    if server_input is None and not files:
        takes_path = any(f.name == SERVER_INPUT for f in spec.fields)
        raise click.UsageError(
            f"give at least one {spec.metavar}" + (" or --input-absolute-path" if takes_path else "")
        )
    items = [BatchItem(spec.task_type, f, params, priority) for f in files]
    with st.client(events=wait) as client:
        if priority is not None:
            client.config.check_priority(priority)
        if server_input is not None:
            ctx.exit(_run_server_input(st, client, spec, params, server_input, priority, timeout, wait, output))
        recorder = Recorder(st, client, spec.task_type)
        if not wait:
            runner = SyncRunner(client, spec)
            records: list[dict[str, JsonValue]] = []
            for f in files:
                job = runner.submit(f, spec.check(params), SubmitOptions(priority))
                recorder.created(job.job_id, str(f))
                record = cast(dict[str, JsonValue], job.record.model_dump(mode="json"))
                records.append(record)
                if not st.json:
                    st.out.print(terminal_safe(f"{record['job_id']}  {f.name}  {record['status']}"), markup=False)
            if st.json:
                st.print_json(records)
            return
        with _Display(st, items) as display:

            def on_progress(update: BatchUpdate) -> None:
                recorder.created(update.job_id, str(update.item.file))
                display.update(update)

            outcomes = run_batch(client, items, timeout=timeout, on_progress=on_progress)
        for outcome in outcomes:  # a job whose first update never came (it ended before, or the wait failed)
            recorder.created(outcome.job_id, str(outcome.item.file))
        ctx.exit(_report(st, outcomes, output))


def _make_command(spec: PluginSpec[PluginResult]) -> click.Command:
    def callback(**kwargs: object) -> None:
        ctx = click.get_current_context()
        files = cast(tuple[Path, ...], kwargs.pop("files"))
        priority = cast(int | None, kwargs.pop("priority"))
        timeout = cast(float | None, kwargs.pop("job_timeout"))
        wait = cast(bool, kwargs.pop("wait"))
        output = cast(Path | None, kwargs.pop("output"))
        as_json = cast(bool, kwargs.pop("as_json"))
        progress = cast(bool | None, kwargs.pop("progress"))
        st = state(ctx)
        st.json = st.json or as_json
        if progress is not None:
            st.progress = progress
        with handled(ctx):
            _run(ctx, spec, files, kwargs, priority=priority, timeout=timeout, wait=wait, output=output)

    takes_path = any(f.name == SERVER_INPUT for f in spec.fields)
    params: list[click.Parameter] = [
        click.Argument(["files"], nargs=-1, required=not takes_path,
                       type=click.Path(exists=True, dir_okay=False, path_type=Path),
                       metavar=f"[{spec.metavar}]..." if takes_path else f"{spec.metavar}..."),
        *[_option_for(f) for f in spec.fields],
        click.Option(["--priority", "-p"], type=click.IntRange(0, 10), default=None,
                     help="Job priority 0-10 (default 5)."),
        click.Option(["--timeout", "-t", "job_timeout"], type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Seconds to wait for all jobs (default 600)."),
        click.Option(["--wait/--no-wait"], default=True, help="Wait for the results (default) or only submit."),
        click.Option(["--output", "-o"], type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Download the results into DIR (one folder per input)."),
        click.Option(["--json", "as_json"], is_flag=True, default=False, help="Print JSON on stdout."),
        click.Option(["--progress/--no-progress"], default=None, help="Force the live progress display on or off."),
    ]  # fmt: skip
    return OneLineUsageCommand(
        spec.command,
        callback=callback,
        params=params,
        help=f"Run {spec.task_type} on one or more files: {spec.summary}. Several files run as one batch.",
        short_help=spec.summary,
    )


def plugin_groups() -> list[click.Group]:
    """One group per registered plugin, each with its command (``embed``, ``detect``, ...)."""
    groups: list[click.Group] = []
    for spec in REGISTRY.values():
        group = click.Group(spec.cli_group, help=f"{spec.task_type}: {spec.summary}.", short_help=spec.summary)
        command = _make_command(spec)
        group.add_command(command)
        upstream = _UPSTREAM_COMMANDS.get(spec.task_type)
        if upstream is not None:
            group.add_command(alias(command, upstream, f"{spec.cli_group} {spec.command}"))
        groups.append(group)
    return groups
