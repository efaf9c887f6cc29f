"""The shared machinery of the plugin clients: specs, typed-result base, job handles and submission.

A plugin module declares a ``PluginSpec`` (task type, form fields, how to build its typed result) and a
``PluginClient`` subclass with the upstream method names. Submission goes through ``ComputeClient.submit`` /
``AsyncComputeClient.submit``; the result is built by a plan (``_files``) run with sync or async I/O, so no
logic exists twice.

The plugin client classes are generic in what their methods return: on a ``ComputeClient`` a
``PluginJob[R]``, on an ``AsyncComputeClient`` an awaitable ``AsyncPluginJob[R]``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar, cast

from pydantic import JsonValue

from cl_client._exceptions import ConfigurationError, JobFailedError
from cl_client._models import JobResponse
from cl_client._tracker import JobCallback
from cl_client.plugins._fields import Field, WireValue
from cl_client.plugins._files import JobFiles, Plan, safe_relative, save

if TYPE_CHECKING:
    from cl_client._client import AsyncComputeClient, AsyncJob, ComputeClient, Job

PathLike = str | Path


# -- typed results --------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PluginResult:
    """Base of every typed result: the final job record and access to the job's files.

    Attributes:
        job: the final (completed) job record.
        files: file access for this job (sync and async).
    """

    job: JobResponse
    files: JobFiles = field(repr=False, compare=False)

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.job.job_id

    def _outputs_plan(self, dest: Path) -> Plan[list[Path]]:
        """Default: the file named by ``params.output_path``, saved under its own name."""
        path = self.job.output_path
        if not path:
            return []
        rel = safe_relative(path, where=f"job {self.job_id} params.output_path")
        written = yield from save(rel, dest / rel.rsplit("/", 1)[-1])
        return [written]

    def download_outputs(self, dest: PathLike) -> list[Path]:
        """Download every output file of the job into the folder ``dest`` (created if needed).

        All or nothing: the files are staged beside ``dest`` and moved in once all of them arrived, so after
        an error nothing of this download is in ``dest``.

        Returns:
            The paths written.

        Raises:
            ComputeClientError: a download failed or the server named an unsafe path.
        """
        return self.files.run_into(dest, self._outputs_plan)

    async def adownload_outputs(self, dest: PathLike) -> list[Path]:
        """Async ``download_outputs`` (all or nothing too)."""
        return await self.files.arun_into(dest, self._outputs_plan)

    def as_dict(self) -> dict[str, JsonValue]:
        """Return the result as JSON-ready data (what ``cl-client --json`` prints under ``result``)."""
        return {}

    def summary(self) -> str:
        """Return one human-readable line (what ``cl-client`` prints)."""
        return self.job.status


R = TypeVar("R", bound=PluginResult)
R_co = TypeVar("R_co", bound=PluginResult, covariant=True)
OutT_co = TypeVar("OutT_co", covariant=True)


@dataclass(frozen=True)
class PluginSpec(Generic[R_co]):
    """What a plugin declares: its task type, form fields, CLI naming and how to read its result.

    Attributes:
        task_type: the route name (``POST /jobs/{task_type}``).
        fields: the form fields (priority is common to all and not listed).
        build: ``(final record, files) -> plan of the typed result``.
        method: the upstream SDK method name (``embed_image``).
        command: the CLI sub-command (``embed``).
        metavar: the CLI input name (``IMAGE``).
        summary: one line describing the plugin.
    """

    task_type: str
    fields: tuple[Field, ...]
    build: Callable[[JobResponse, JobFiles], Plan[R_co]]
    method: str
    command: str
    metavar: str
    summary: str

    @property
    def cli_group(self) -> str:
        """The CLI group name (``clip-embedding``)."""
        return self.task_type.replace("_", "-")

    def check(self, values: Mapping[str, object]) -> dict[str, WireValue]:
        """Validate parameters by field name and return the form fields to send.

        Raises:
            ConfigurationError: an unknown name, a missing required field, a wrong type or range.
        """
        known = {f.name for f in self.fields}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigurationError(
                f"{self.task_type}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known)) or 'none'}"
            )
        out: dict[str, WireValue] = {}
        for fld in self.fields:
            try:
                value = fld.check(values.get(fld.name))
            except ConfigurationError as exc:
                raise ConfigurationError(f"{self.task_type}: {exc}") from None
            if value is not None:
                out[fld.name] = value
        return out


def check_wait_timeout(timeout: float | None) -> float | None:
    """Validate a wait timeout (None or a positive number of seconds).

    Raises:
        ConfigurationError: not a positive number.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout) or timeout <= 0:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


# -- job handles ----------------------------------------------------------------------------------------
class _PluginJobBase(Generic[R]):
    """What both job handles share: the JobResponse fields of the last record seen."""

    def __init__(self, spec: PluginSpec[R], record: JobResponse, files: JobFiles) -> None:
        self.spec = spec
        self.record = record
        self.files = files
        self._result: R | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(job_id={self.job_id!r}, task_type={self.task_type!r}, status={self.status!r})"

    @property
    def job_id(self) -> str:
        """The server's job id."""
        return self.record.job_id

    @property
    def task_type(self) -> str:
        """The plugin."""
        return self.record.task_type

    @property
    def status(self) -> str:
        """The status of the last record fetched (``refresh``/``wait`` update it)."""
        return self.record.status

    @property
    def progress(self) -> int:
        """Progress 0-100 of the last record."""
        return self.record.progress

    @property
    def params(self) -> dict[str, JsonValue]:
        """The form fields echoed by the server plus ``input_path`` and ``output_path``."""
        return self.record.params

    @property
    def task_output(self) -> dict[str, JsonValue] | None:
        """The plugin's summary output (never the vectors or files themselves)."""
        return self.record.task_output

    @property
    def error_message(self) -> str | None:
        """Why the job failed (None unless it did)."""
        return self.record.error_message

    @property
    def priority(self) -> int:
        """The job's priority (0-10)."""
        return self.record.priority

    @property
    def created_at(self) -> int:
        """Creation time, ms since the epoch."""
        return self.record.created_at

    @property
    def updated_at(self) -> int | None:
        """Last update time, ms since the epoch."""
        return self.record.updated_at

    @property
    def started_at(self) -> int | None:
        """Start time, ms since the epoch."""
        return self.record.started_at

    @property
    def completed_at(self) -> int | None:
        """End time, ms since the epoch."""
        return self.record.completed_at

    @property
    def output_path(self) -> str | None:
        """``params.output_path``."""
        return self.record.output_path

    def model_dump(self, *, mode: str = "python", exclude_none: bool = False) -> dict[str, object]:
        """The last record as a dict (``JobResponse.model_dump``), for code written for upstream's SDK,
        whose plugin methods returned the ``JobResponse`` itself."""
        return cast(dict[str, object], self.record.model_dump(mode=mode, exclude_none=exclude_none))

    def model_dump_json(self, *, indent: int | None = None, exclude_none: bool = False) -> str:
        """The last record as JSON (``JobResponse.model_dump_json``)."""
        return self.record.model_dump_json(indent=indent, exclude_none=exclude_none)

    @property
    def is_terminal(self) -> bool:
        """True when the last record is completed or failed."""
        return self.record.is_terminal

    def _completed(self, record: JobResponse) -> JobResponse:
        self.record = record
        if record.is_failed:
            raise JobFailedError(record)
        return record


class PluginJob(_PluginJobBase[R]):
    """A submitted plugin job (sync): the JobResponse fields plus ``result()`` for the typed result.

    Attributes:
        record: the last JobResponse fetched (after submit, ``wait``, ``refresh`` or ``result``).
        spec: the plugin's spec.
        job: the underlying ``Job`` handle.
    """

    def __init__(self, job: Job, spec: PluginSpec[R], record: JobResponse, files: JobFiles) -> None:
        super().__init__(spec, record, files)
        self.job = job

    def refresh(self) -> JobResponse:
        """Fetch the job record now (``GET /jobs/{id}``) and keep it."""
        self.record = self.job.refresh()
        return self.record

    def wait(self, timeout: float | None = None) -> JobResponse:
        """Wait until the job ends and return the final record (does not raise when it failed).

        Raises:
            JobTimeoutError: not finished within ``timeout`` seconds.
        """
        self.record = self.job.wait(check_wait_timeout(timeout))
        return self.record

    def result(self, timeout: float | None = None) -> R:
        """Wait for the end and return the typed result, reading the output files once (then cached).

        Raises:
            JobFailedError: the job ended in error (``.job.error_message`` has the server's reason).
            JobTimeoutError: not finished within ``timeout`` seconds.
            ComputeClientError: an output file is missing or malformed.
        """
        if self._result is None:
            record = self.record if self.record.is_completed else self.wait(timeout)
            self._result = self.files.run(self.spec.build(self._completed(record), self.files))
        return self._result

    def download(self, file_path: str, dest: PathLike) -> Path:
        """Download one file of the job (path relative to the job directory) to ``dest``."""
        return self.job.download(file_path, dest)

    def download_outputs(self, dest: PathLike, timeout: float | None = None) -> list[Path]:
        """Wait for the result and download every output file into the folder ``dest``."""
        return self.result(timeout).download_outputs(dest)

    def delete(self) -> None:
        """Delete the job on the server."""
        self.job.delete()


class AsyncPluginJob(_PluginJobBase[R]):
    """Async twin of ``PluginJob`` (``await job.result()``, ...)."""

    def __init__(self, job: AsyncJob, spec: PluginSpec[R], record: JobResponse, files: JobFiles) -> None:
        super().__init__(spec, record, files)
        self.job = job

    async def refresh(self) -> JobResponse:
        """Async ``PluginJob.refresh``."""
        self.record = await self.job.refresh()
        return self.record

    async def wait(self, timeout: float | None = None) -> JobResponse:
        """Async ``PluginJob.wait``."""
        self.record = await self.job.wait(check_wait_timeout(timeout))
        return self.record

    async def result(self, timeout: float | None = None) -> R:
        """Async ``PluginJob.result``."""
        if self._result is None:
            record = self.record if self.record.is_completed else await self.wait(timeout)
            self._result = await self.files.arun(self.spec.build(self._completed(record), self.files))
        return self._result

    async def download(self, file_path: str, dest: PathLike) -> Path:
        """Async ``PluginJob.download``."""
        return await self.job.download(file_path, dest)

    async def download_outputs(self, dest: PathLike, timeout: float | None = None) -> list[Path]:
        """Async ``PluginJob.download_outputs``."""
        return await (await self.result(timeout)).adownload_outputs(dest)

    async def delete(self) -> None:
        """Async ``PluginJob.delete``."""
        await self.job.delete()


# -- submission -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubmitOptions:
    """How to submit: priority, waiting and callbacks (the same for every plugin)."""

    priority: int | None = None
    wait: bool = False
    timeout: float | None = None
    on_progress: JobCallback | None = None
    on_complete: JobCallback | None = None
    filename: str | None = None
    fetch_record: bool = True


def _queued_record(job_id: str, task_type: str, fields: Mapping[str, WireValue]) -> JobResponse:
    """A record for a job just created, without a GET (the batch helper skips that request)."""
    params = cast(dict[str, JsonValue], dict(fields))
    return JobResponse(job_id=job_id, task_type=task_type, status="queued", params=params)


class Runner(Protocol[OutT_co]):
    """Submits a validated plugin job on one client; the sync and async runners return different things."""

    @property
    def spec(self) -> PluginSpec[PluginResult]:
        """The plugin's spec."""
        ...

    def submit(self, file: PathLike | None, fields: Mapping[str, WireValue], options: SubmitOptions) -> OutT_co:
        """Submit (and wait when asked); return the job handle (or an awaitable of it)."""
        ...


class SyncRunner(Generic[R]):
    """Submission on a ``ComputeClient``: returns ``PluginJob``."""

    def __init__(self, client: ComputeClient, spec: PluginSpec[R]) -> None:
        self.client = client
        self._spec = spec

    @property
    def spec(self) -> PluginSpec[R]:
        """The plugin's spec."""
        return self._spec

    def submit(self, file: PathLike | None, fields: Mapping[str, WireValue], options: SubmitOptions) -> PluginJob[R]:
        """Submit through ``ComputeClient.submit``; then wait (``options.wait``) or fetch the record once."""
        job = self.client.submit(
            self._spec.task_type,
            file,
            fields,
            options.priority,
            on_progress=options.on_progress,
            on_complete=options.on_complete,
            filename=options.filename,
        )
        if options.wait:
            record = job.wait(options.timeout)
        elif options.fetch_record:
            record = job.refresh()
        else:
            record = _queued_record(job.job_id, job.task_type, fields)
        return PluginJob(job, self._spec, record, self.client.job_files(job.job_id))


class AsyncRunner(Generic[R]):
    """Submission on an ``AsyncComputeClient``: returns an awaitable ``AsyncPluginJob``."""

    def __init__(self, client: AsyncComputeClient, spec: PluginSpec[R]) -> None:
        self.client = client
        self._spec = spec

    @property
    def spec(self) -> PluginSpec[R]:
        """The plugin's spec."""
        return self._spec

    def submit(
        self, file: PathLike | None, fields: Mapping[str, WireValue], options: SubmitOptions
    ) -> Awaitable[AsyncPluginJob[R]]:
        """Submit through ``AsyncComputeClient.submit``; then wait (``options.wait``) or fetch the record.

        The priority is checked here, before the coroutine exists, so a bad one raises at call time.
        """
        if options.priority is not None:
            self.client.config.check_priority(options.priority)
        return self._submit(file, fields, options)

    async def _submit(
        self, file: PathLike | None, fields: Mapping[str, WireValue], options: SubmitOptions
    ) -> AsyncPluginJob[R]:
        job = await self.client.submit(
            self._spec.task_type,
            file,
            fields,
            options.priority,
            on_progress=options.on_progress,
            on_complete=options.on_complete,
            filename=options.filename,
        )
        if options.wait:
            record = await job.wait(options.timeout)
        elif options.fetch_record:
            record = await job.refresh()
        else:
            record = _queued_record(job.job_id, job.task_type, fields)
        return AsyncPluginJob(job, self._spec, record, self.client.job_files(job.job_id))


class PluginClient(Generic[OutT_co]):
    """Base of the nine plugin clients (``client.clip_embedding`` ...).

    The methods return ``PluginJob[...]`` on a ``ComputeClient`` and an awaitable ``AsyncPluginJob[...]`` on an
    ``AsyncComputeClient``. Every parameter is validated before anything is sent.
    """

    #: The plugin's task type (set by each of the nine plugin classes).
    TASK_TYPE: ClassVar[str] = ""

    def __init__(self, runner: Runner[OutT_co] | ComputeClient | AsyncComputeClient) -> None:
        """Bind the plugin to a runner, or to a client as upstream's SDK does (``ClipEmbeddingClient(client)``).

        Args:
            runner: what ``client.<plugin>`` passes; or a ``ComputeClient`` / ``AsyncComputeClient`` (then the
                methods return a ``PluginJob``, or an awaitable ``AsyncPluginJob``, exactly as ``client.<plugin>``).

        Raises:
            ConfigurationError: a client given to the base class itself, which names no plugin.
        """
        from cl_client._client import AsyncComputeClient, ComputeClient

        if isinstance(runner, ComputeClient | AsyncComputeClient):
            if not self.TASK_TYPE:
                raise ConfigurationError(f"{type(self).__name__} names no plugin; use one of the nine plugin clients")
            from cl_client.plugins import get_spec

            spec = get_spec(self.TASK_TYPE)
            built = SyncRunner(runner, spec) if isinstance(runner, ComputeClient) else AsyncRunner(runner, spec)
            self._runner = cast("Runner[OutT_co]", built)
            self.client: ComputeClient | AsyncComputeClient | None = runner
        else:
            self._runner = runner
            self.client = getattr(runner, "client", None)

    @property
    def task_type(self) -> str:
        """The plugin's task type (``clip_embedding`` ...), as upstream's plugin clients name it."""
        return self._runner.spec.task_type

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task_type={self.spec.task_type!r})"

    @property
    def spec(self) -> PluginSpec[PluginResult]:
        """The plugin's spec (task type and fields)."""
        return self._runner.spec

    def submit(
        self,
        file: PathLike | None,
        params: Mapping[str, object] | None = None,
        *,
        priority: int | None = None,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        filename: str | None = None,
    ) -> OutT_co:
        """Submit a job with parameters given by field name (the generic form of the upstream methods).

        Args:
            file: the input file (None: no file part, for a plugin that takes a server path instead).
            params: form fields by name (see the plugin's ``spec.fields``); missing ones take their default.
            priority: 0-10 (default from the client's config).
            wait: wait until the job ends before returning (a failed job is returned, not raised).
            timeout: how long ``wait`` may take in seconds (default: the client's ``job_timeout``).
            on_progress: called with a JobResponse on every update.
            on_complete: called once with the final JobResponse.
            filename: the name to upload the file under (default: its own name).

        Returns:
            The job handle (awaitable on the async client).

        Raises:
            ConfigurationError: a bad parameter, priority or timeout (nothing was sent).
            FileNotFoundError: no such input file.
        """
        fields = self._runner.spec.check(params or {})
        if not isinstance(wait, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(f"wait must be True or False, got {wait!r}")
        options = SubmitOptions(priority, wait, check_wait_timeout(timeout), on_progress, on_complete, filename)
        return self._runner.submit(file, fields, options)
