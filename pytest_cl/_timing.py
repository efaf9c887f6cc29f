"""Certification time against the deployment's own limit: how long the deployment was busy, idle with jobs
queued, and how long the suites spent on their own (from the jobs' time lines of the report).

Per job (``Results.all_timelines``: the tests' jobs and those that module or session fixtures created; epoch
seconds): ``submitted`` (the POST), ``queued`` / ``processing`` (the first such MQTT events the witness saw),
``terminal`` (the witness's terminal event, or when a fixture client first saw the terminal record if that was
earlier or there was no event: not when a polling client next looked).

* **busy**: the sum of the jobs' processing times (processing → terminal) divided by the workers the deployment
  announced: the shortest wall time in which these workers could have run these jobs (the deployment's limit).
* **idle with jobs queued**: wall time during which at least one job waited (queued → processing) while fewer
  jobs ran than there are workers: the deployment's own latency, e.g. a worker that polls every 5 s (upstream's
  January stack), reported as the deployment's, not the suites'.
* **suites alone**: wall time during which no job of the run was in the deployment (submitted → terminal): the
  suites' own work (start-up, uploads, checks between jobs, fixtures).
* **wall**: the run's start to its end; ``wall / busy`` says how far the run is from the deployment's limit.

Jobs without a ``processing`` time (no witness, or the job never started) count in none of the deployment's
figures but do in "jobs in the deployment".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def _time(job: Mapping[str, object], key: str) -> float | None:
    value = job.get(key)
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class CertificationTime:
    """Where a certification run's wall time went (seconds; see the module).

    Attributes:
        wall: the run's start to its end.
        busy: the jobs' processing time divided by ``workers``.
        idle_queued: wall time with a job queued and a worker free.
        suites: wall time with no job in the deployment.
        workers: the workers the deployment announced (1 when unknown).
        jobs: jobs counted (with a processing time).
    """

    wall: float
    busy: float
    idle_queued: float
    suites: float
    workers: int
    jobs: int

    @property
    def ratio(self) -> float | None:
        """wall / busy (None without busy time)."""
        return self.wall / self.busy if self.busy > 0 else None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready data (the report's ``certification_time``)."""
        ratio = self.ratio
        return {
            "wall_s": round(self.wall, 2),
            "busy_s": round(self.busy, 2),
            "idle_with_jobs_queued_s": round(self.idle_queued, 2),
            "suites_alone_s": round(self.suites, 2),
            "workers": self.workers,
            "jobs": self.jobs,
            "wall_over_busy": round(ratio, 2) if ratio is not None else None,
        }

    def line(self) -> str:
        """One line for the terminal summary."""
        ratio = self.ratio
        limit = f" = {ratio:.1f}x the deployment's limit" if ratio is not None else ""
        return (
            f"wall {self.wall:.1f} s{limit}; deployment busy {self.busy:.1f} s ({self.jobs} jobs / {self.workers} "
            f"worker(s)), idle with jobs queued {self.idle_queued:.1f} s; suites alone {self.suites:.1f} s"
        )


def _union(intervals: Iterable[tuple[float, float]], start: float, end: float) -> float:
    """Length of the union of ``intervals`` clipped to [start, end]."""
    total, reach = 0.0, start
    for a, b in sorted((max(a, start), min(b, end)) for a, b in intervals):
        if b <= reach:
            continue
        total += b - max(a, reach)
        reach = b
    return total


def certification_time(
    jobs: Iterable[Mapping[str, object]], workers: int, started: float | None, finished: float | None
) -> CertificationTime:
    """Account for a run's wall time from its jobs' time lines (see the module)."""
    rows = list(jobs)
    workers = max(1, workers)
    if started is None or finished is None or finished <= started:
        times = [t for job in rows for k in ("submitted", "terminal") if (t := _time(job, k)) is not None]
        started = min(times, default=0.0) if started is None else started
        finished = max(times, default=started) if finished is None or finished <= started else finished
    in_deployment: list[tuple[float, float]] = []
    running: list[tuple[float, float]] = []
    waiting: list[tuple[float, float]] = []
    for job in rows:
        submitted, terminal = _time(job, "submitted"), _time(job, "terminal")
        queued, processing = _time(job, "queued"), _time(job, "processing")
        if submitted is not None:
            in_deployment.append((submitted, terminal if terminal is not None else finished))
        if processing is not None:
            running.append((processing, max(processing, terminal if terminal is not None else finished)))
            waiting.append((queued if queued is not None else submitted or processing, processing))
    busy = sum(b - a for a, b in running) / workers
    # sweep: +1/-1 changes of waiting and running jobs; idle-with-queued where waiting > 0 and running < workers
    changes: list[tuple[float, int, int]] = []
    for a, b in waiting:
        if b > a:
            changes += [(a, 1, 0), (b, -1, 0)]
    for a, b in running:
        if b > a:
            changes += [(a, 0, 1), (b, 0, -1)]
    changes.sort()
    idle, queued_now, running_now, last = 0.0, 0, 0, started
    for at, dq, dr in changes:
        at = min(max(at, started), finished)
        if queued_now > 0 and running_now < workers:
            idle += at - last
        queued_now, running_now, last = queued_now + dq, running_now + dr, at
    wall = finished - started
    suites = wall - _union(in_deployment, started, finished)
    return CertificationTime(wall, busy, idle, max(0.0, suites), workers, len(running))


def from_report(
    timelines: Mapping[str, Iterable[Mapping[str, object]]],
    header: Mapping[str, object] | None,
    started: float | None,
    finished: float | None,
) -> CertificationTime:
    """``certification_time`` of a report: every test's jobs (each job once), the workers of its header."""
    jobs: dict[str, Mapping[str, object]] = {}
    for items in timelines.values():
        for job in items:
            jobs.setdefault(str(job.get("id", len(jobs))), job)
    workers = (header or {}).get("num_workers")
    return certification_time(jobs.values(), workers if isinstance(workers, int) else 1, started, finished)
