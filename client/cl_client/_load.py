"""The logic of load testing, without Locust: plugin mix, probes and their result checks, one job's run, summary.

``cl_client.locust`` (the Locust ``User``) and ``cl-client load`` (``_cli_load.py``) are thin layers over this
module, which never imports Locust or gevent: it is unit-tested in the test process, where Locust's
monkey-patching must not happen.

One job of a load test (``run_job``): submit a probe (a plugin on a committed test file with known facts),
wait for the terminal state (by MQTT when the broker is there), check the result cheaply, delete the job.
Every step is reported through a ``Fire`` callback shaped like Locust's ``events.request.fire``:

=============  =====================================  ===================================================
request_type   name                                   response time
=============  =====================================  ===================================================
``JOB``        the plugin                              submit → terminal state (the job as a user sees it)
``SUBMIT``     the plugin                              the ``POST /jobs/<plugin>`` round trip
``DELETE``     the plugin                              the ``DELETE /jobs/<id>`` round trip
=============  =====================================  ===================================================

A ``JOB`` fails when the submit failed, the job ended in ``error``, did not end in time, or its result is
wrong (``ResultCheckError``); so the ``JOB`` rows count every attempted job exactly once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, cast

from cl_client._exceptions import ComputeClientError, JobTimeoutError
from cl_client._models import JobResponse

if TYPE_CHECKING:
    from cl_client._client import ComputeClient
    from pytest_cl._media import MediaItem

LOAD_HINT = 'pip install "cl-client[load]"'
#: request types of the entries reported to Locust.
JOB, SUBMIT, DELETE = "JOB", "SUBMIT", "DELETE"
#: the default plugin mix (light plugins that every reference worker runs in milliseconds).
DEFAULT_MIX = "hash=5,exif=2"


class LoadUsageError(ValueError):
    """A load-test option has a value that cannot work (``cl-client load`` shows it as a usage error, exit 2)."""


class ResultCheckError(ComputeClientError):
    """A completed job's result differs from the known answer of its test file (a wrong result)."""


class Fire(Protocol):
    """The shape of Locust's ``events.request.fire`` used here (keyword arguments only)."""

    def __call__(
        self,
        *,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        exception: BaseException | None,
        context: dict[str, object],
    ) -> None:
        """Report one request."""
        ...


Read = Callable[[str], bytes]
Check = Callable[[JobResponse, Read, "MediaItem"], None]


# -- result checks (each one cheap: a field of the record, or one small output file) -------------------------
def _fail(record: JobResponse, what: str) -> ResultCheckError:
    return ResultCheckError(f"job {record.job_id} ({record.task_type}): wrong result: {what}")


def _output_path(record: JobResponse, default: str) -> str:
    value = record.params.get("output_path")
    return value if isinstance(value, str) and value else default


def _task_output(record: JobResponse, key: str) -> object:
    return (record.task_output or {}).get(key)


def check_hash(record: JobResponse, read: Read, item: MediaItem) -> None:
    """``hash`` (md5): ``hash.json``'s value is the MD5 of the uploaded bytes."""
    data = cast("object", json.loads(read(_output_path(record, "output/hash.json"))))
    got = cast("dict[str, object]", data).get("hash_value") if isinstance(data, dict) else None
    want = hashlib.md5(item.read_bytes()).hexdigest()
    if not isinstance(got, str) or got.lower() != want:
        raise _fail(record, f"md5 {got!r}, expected {want}")


def check_exif(record: JobResponse, read: Read, item: MediaItem) -> None:
    """``exif``: make and model in ``task_output`` are the file's known ones."""
    del read
    typed = item.fact_mapping("exif")["typed"]
    known = cast("Mapping[str, object]", typed)
    for key in ("make", "model"):
        if _task_output(record, key) != known[key]:
            raise _fail(record, f"{key} {_task_output(record, key)!r}, expected {known[key]!r}")


def _magic(prefix: bytes, offset: int = 0, label: str = "") -> Check:
    def check(record: JobResponse, read: Read, item: MediaItem) -> None:
        del item
        head = read(_output_path(record, ""))[offset : offset + len(prefix)]
        if head != prefix:
            raise _fail(record, f"output is not {label} (bytes {head!r})")

    return check


def _output_field(key: str, expected: Callable[[MediaItem], object]) -> Check:
    def check(record: JobResponse, read: Read, item: MediaItem) -> None:
        del read
        want = expected(item)
        if _task_output(record, key) != want:
            raise _fail(record, f"task_output {key} {_task_output(record, key)!r}, expected {want!r}")

    return check


@dataclass(frozen=True)
class Probe:
    """One plugin's load-test job: a committed test file, the form fields, and how its result is checked.

    Attributes:
        task_type: the plugin.
        media: the test file's name in the media catalogue (``pytest_cl/media/manifest.json``).
        params: the form fields.
        check: raises ``ResultCheckError`` when the completed job's result is wrong.
    """

    task_type: str
    media: str
    params: Mapping[str, str] = field(default_factory=dict[str, str])
    check: Check = field(default=lambda record, read, item: None, repr=False)


PROBES: Mapping[str, Probe] = {
    probe.task_type: probe
    for probe in (
        Probe("hash", "jpeg_exif", {"algorithm": "md5"}, check_hash),
        Probe("exif", "jpeg_exif", {}, check_exif),
        Probe("image_conversion", "jpeg_exif", {"format": "webp"}, _magic(b"WEBP", 8, "WebP")),
        Probe("media_thumbnail", "jpeg_exif", {"width": "64"}, _magic(b"\xff\xd8\xff", 0, "JPEG")),
        Probe("clip_embedding", "face_hopper", {}, _output_field("embedding_dim", lambda _: 512)),
        Probe("dino_embedding", "face_hopper", {}, _output_field("embedding_dim", lambda _: 384)),
        Probe("face_embedding", "face_hopper", {}, _output_field("embedding_dim", lambda _: 512)),
        Probe("face_detection", "group_4_faces", {}, _output_field("num_faces", lambda item: item.face_count)),
        Probe(
            "hls_streaming",
            "video_720p_3s_silent",
            {"variants": '[{"resolution":240,"bitrate":300}]'},
            _output_field("variants_generated", lambda _: 1),
        ),
    )
}


# -- the plugin mix ------------------------------------------------------------------------------------------
def parse_mix(text: str) -> dict[str, int]:
    """Parse ``hash=5,exif=2`` (a bare name weighs 1; ``-`` may stand for ``_``) into plugin → weight.

    Raises:
        LoadUsageError: an unknown plugin, a weight that is not a whole number >= 0, or no positive weight.
    """
    mix: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, weight = part.partition("=")
        name = name.strip().replace("-", "_")
        if name not in PROBES:
            raise LoadUsageError(f"--mix: unknown plugin {name!r}; known: {', '.join(sorted(PROBES))}")
        try:
            value = int(weight) if weight.strip() else 1
        except ValueError:
            raise LoadUsageError(f"--mix: the weight of {name} must be a whole number, got {weight!r}") from None
        if value < 0:
            raise LoadUsageError(f"--mix: the weight of {name} must be >= 0, got {value}")
        mix[name] = mix.get(name, 0) + value
    mix = {name: weight for name, weight in mix.items() if weight > 0}
    if not mix:
        raise LoadUsageError(f"--mix: expected plugin=weight pairs such as {DEFAULT_MIX!r}, got {text!r}")
    return mix


class Picker:
    """Chooses the next plugin by weight (random, seeded per user so runs differ but each user is reproducible)."""

    def __init__(self, mix: Mapping[str, int], seed: int | None = None) -> None:
        self._names = list(mix)
        self._weights = [mix[name] for name in self._names]
        self._random = random.Random(seed)

    def next(self) -> str:
        """The next plugin."""
        return self._random.choices(self._names, self._weights)[0]


# -- one job ------------------------------------------------------------------------------------------------
@dataclass
class InFlight:
    """Job ids submitted by this process and not deleted yet (deleted at the end of a test if still there)."""

    ids: set[str] = field(default_factory=set[str])

    def sweep(self, client: ComputeClient) -> int:
        """Delete every job still listed (best effort); return how many deletes were sent."""
        sent = 0
        for job_id in list(self.ids):
            self.ids.discard(job_id)
            sent += 1
            with contextlib.suppress(ComputeClientError):
                client.delete_job(job_id, timeout=10)
        return sent


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def run_job(
    client: ComputeClient,
    probe: Probe,
    item: MediaItem,
    fire: Fire,
    *,
    timeout: float,
    keep: bool = False,
    in_flight: InFlight | None = None,
) -> JobResponse | None:
    """Run one probe job and report it through ``fire`` (see the module docstring); never raises.

    Args:
        client: the client (its MQTT monitor, when connected, makes the wait event-driven).
        probe: what to submit and how to check it.
        item: the probe's test file.
        fire: Locust's ``events.request.fire`` or a recorder.
        timeout: seconds from submit to the terminal state before the job counts as failed (time-out).
        keep: leave the job on the server (default: delete it, whatever its outcome).
        in_flight: the process's set of undeleted job ids (kept up to date).

    Returns:
        The terminal record (None when the submit failed or the job timed out).
    """
    context: dict[str, object] = {"media": probe.media}
    start = time.perf_counter()
    try:
        job = client.submit(probe.task_type, item.path, dict(probe.params))
    except Exception as exc:  # any submit failure is a failed job and a failed submit
        elapsed = _ms(start)
        for kind in (SUBMIT, JOB):
            fire(request_type=kind, name=probe.task_type, response_time=elapsed, response_length=0,
                 exception=exc, context=context)  # fmt: skip
        return None
    submitted = _ms(start)
    if in_flight is not None:
        in_flight.ids.add(job.job_id)
    context["job_id"] = job.job_id
    fire(request_type=SUBMIT, name=probe.task_type, response_time=submitted, response_length=0, exception=None,
         context=context)  # fmt: skip
    record: JobResponse | None = None
    error: BaseException | None = None
    try:
        record = job.wait(timeout)
    except JobTimeoutError as exc:
        error = exc
    except Exception as exc:  # a lost job, a server error while confirming: the job failed
        error = exc
    elapsed = _ms(start)
    if record is not None and error is None:
        if record.is_failed:
            error = ComputeClientError(f"job {record.job_id} ({record.task_type}) failed: {record.error_message}")
        else:
            try:
                probe.check(record, lambda path: client.read_job_file(job.job_id, path, timeout=30), item)
            except Exception as exc:
                error = exc
    fire(request_type=JOB, name=probe.task_type, response_time=elapsed, response_length=item.size,
         exception=error, context=context)  # fmt: skip
    if not keep:
        start = time.perf_counter()
        try:
            client.delete_job(job.job_id, timeout=30)
        except Exception as exc:
            fire(request_type=DELETE, name=probe.task_type, response_time=_ms(start), response_length=0,
                 exception=exc, context=context)  # fmt: skip
        else:
            if in_flight is not None:
                in_flight.ids.discard(job.job_id)
            fire(request_type=DELETE, name=probe.task_type, response_time=_ms(start), response_length=0,
                 exception=None, context=context)  # fmt: skip
    elif in_flight is not None:
        in_flight.ids.discard(job.job_id)
    return record


# -- the summary and the thresholds ------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One statistics row (Locust's ``StatsEntry`` reduced to plain numbers; times in milliseconds).

    Attributes:
        method: ``JOB``, ``SUBMIT``, ``DELETE`` (``JOB`` for the aggregate of every job).
        name: the plugin (``all`` for the aggregate).
        requests: how many were reported.
        failures: how many of them failed.
        rps: requests per second over the run.
        avg, p50, p95, p99, max: response times.
    """

    method: str
    name: str
    requests: int
    failures: int
    rps: float
    avg: float
    p50: float
    p95: float
    p99: float
    max: float

    @property
    def error_ratio(self) -> float:
        """Failures / requests (0 when there were none)."""
        return self.failures / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, object]:
        """The row as JSON-ready data."""
        return {
            "method": self.method, "name": self.name, "requests": self.requests, "failures": self.failures,
            "rps": self.rps, "avg": self.avg, "p50": self.p50, "p95": self.p95, "p99": self.p99, "max": self.max,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Row:
        """Read a row written by ``as_dict``."""

        def num(key: str) -> float:
            value = data.get(key)
            return float(value) if isinstance(value, int | float) else 0.0

        return cls(
            method=str(data.get("method", "")), name=str(data.get("name", "")),
            requests=int(num("requests")), failures=int(num("failures")), rps=num("rps"), avg=num("avg"),
            p50=num("p50"), p95=num("p95"), p99=num("p99"), max=num("max"),
        )  # fmt: skip


@dataclass(frozen=True)
class Summary:
    """What a load test measured: every job (``jobs``), each entry (``rows``) and the distinct errors.

    Written as JSON by the packaged locustfile on Locust's master (``--cl-summary PATH``) and read back by
    ``cl-client load``.
    """

    jobs: Row
    rows: tuple[Row, ...] = ()
    errors: tuple[tuple[str, str, str, int], ...] = ()
    duration: float = 0.0
    users: int = 0
    workers: int = 0

    def to_json(self) -> str:
        """The summary as JSON text."""
        return json.dumps(
            {
                "jobs": self.jobs.as_dict(),
                "rows": [row.as_dict() for row in self.rows],
                "errors": [{"method": m, "name": n, "error": e, "occurrences": c} for m, n, e, c in self.errors],
                "duration": self.duration,
                "users": self.users,
                "workers": self.workers,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Summary:
        """Read a summary written by ``to_json``."""
        data = cast("dict[str, object]", json.loads(text))
        rows = cast("list[Mapping[str, object]]", data.get("rows") or [])
        errors = cast("list[Mapping[str, object]]", data.get("errors") or [])
        return cls(
            jobs=Row.from_dict(cast("Mapping[str, object]", data["jobs"])),
            rows=tuple(Row.from_dict(row) for row in rows),
            errors=tuple(
                (str(e.get("method")), str(e.get("name")), str(e.get("error")), int(cast(int, e.get("occurrences", 0))))
                for e in errors
            ),
            duration=float(cast(float, data.get("duration", 0.0))),
            users=int(cast(int, data.get("users", 0))),
            workers=int(cast(int, data.get("workers", 0))),
        )

    def row(self, method: str, name: str) -> Row | None:
        """The row of one entry, if it was reported."""
        return next((row for row in self.rows if row.method == method and row.name == name), None)


@dataclass(frozen=True)
class Threshold:
    """One ``--fail-on`` limit: ``p95=2000`` (ms, upper), ``errors=1%`` / ``errors=3`` (upper), ``rps=10`` (lower).

    ``capacity<N`` (lower, jobs/s) applies to a capacity search's result (``cl_client._capacity``), not to a row.

    Attributes:
        metric: ``p50``, ``p95``, ``p99``, ``avg``, ``max``, ``errors``, ``rps`` (jobs per second) or ``capacity``.
        limit: the number.
        percent: ``errors`` given as a percentage of the jobs.
    """

    metric: str
    limit: float
    percent: bool = False

    def crossed(self, jobs: Row) -> str | None:
        """Why ``jobs`` crosses this threshold, or None (always None for ``capacity``: see ``capacity_crossed``)."""
        if self.metric == "capacity":
            return None
        if self.metric == "errors":
            value = jobs.error_ratio * 100 if self.percent else float(jobs.failures)
            unit = "%" if self.percent else " failed jobs"
            if value > self.limit:
                return f"errors {value:.4g}{unit} > {self.limit:g}{unit}"
            return None
        if self.metric == "rps":
            return f"jobs/s {jobs.rps:.4g} < {self.limit:g}" if jobs.rps < self.limit else None
        value = cast(float, getattr(jobs, self.metric))
        return f"{self.metric} {value:.0f} ms > {self.limit:g} ms" if value > self.limit else None

    def capacity_crossed(self, capacity: float) -> str | None:
        """Why a capacity search's result (jobs/s) crosses a ``capacity<N`` threshold, or None."""
        if self.metric != "capacity" or capacity >= self.limit:
            return None
        return f"capacity {capacity:.4g} jobs/s < {self.limit:g}"


THRESHOLD_METRICS = ("p50", "p95", "p99", "avg", "max", "errors", "rps", "capacity")


def parse_thresholds(texts: Iterable[str]) -> list[Threshold]:
    """Parse ``p95=2000,errors=1%`` (options may repeat) into thresholds.

    Raises:
        LoadUsageError: an unknown metric or a value that is not a non-negative number.
    """
    out: list[Threshold] = []
    for text in texts:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if part.lower().startswith("capacity") and "<" not in part:
                raise LoadUsageError(f"--fail-on: capacity takes a lower limit, capacity<JOBS_PER_S, got {part!r}")
            metric, _, raw = part.partition("<" if part.lower().startswith("capacity") else "=")
            metric = metric.strip().lower()
            if metric not in THRESHOLD_METRICS:
                raise LoadUsageError(f"--fail-on: unknown metric {metric!r}; known: {', '.join(THRESHOLD_METRICS)}")
            raw = raw.strip()
            percent = raw.endswith("%")
            if percent and metric != "errors":
                raise LoadUsageError(f"--fail-on: only errors takes a percentage, got {part!r}")
            number = raw.removesuffix("%").removesuffix("ms").strip()
            try:
                limit = float(number)
            except ValueError:
                raise LoadUsageError(f"--fail-on: {metric} needs a number, got {raw!r}") from None
            if limit < 0 or not math.isfinite(limit):
                raise LoadUsageError(f"--fail-on: {metric} must be a number >= 0, got {raw!r}")
            out.append(Threshold(metric, limit, percent))
    return out


def crossed(summary: Summary, thresholds: Sequence[Threshold]) -> list[str]:
    """The thresholds the run crossed, each as a short reason (empty: the run passes)."""
    return [reason for t in thresholds if (reason := t.crossed(summary.jobs)) is not None]


def format_summary(summary: Summary) -> str:
    """A short plain-text table of the job rows (one per plugin and the aggregate) and the first errors."""
    lines = [f"{'plugin':<18} {'jobs':>7} {'failed':>6} {'jobs/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"]
    jobs = [row for row in summary.rows if row.method == JOB]
    for row in [*jobs, summary.jobs]:
        lines.append(
            f"{row.name:<18} {row.requests:>7} {row.failures:>6} {row.rps:>8.2f} {row.p50:>8.0f} {row.p95:>8.0f} "
            f"{row.p99:>8.0f}"
        )
    for method, name, error, count in summary.errors[:5]:
        lines.append(f"error x{count} {method} {name}: {error}")
    return "\n".join(lines)
