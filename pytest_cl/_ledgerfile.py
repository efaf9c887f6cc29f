"""The ledger file: the ids of the jobs a run created on a deployment, written before a job can be lost.

Fixture teardown deletes the jobs of each test, and SIGTERM/SIGHUP/Ctrl-C still run it. A hard stop does not:
pytest-timeout's ``thread`` method, SIGKILL, an OOM kill. So each job created through a fixture client is
appended to a file as soon as the POST's response names it (flushed and fsync'ed), and a record that it is
gone is appended once its deletion was verified. The next run against the same deployment (the same server
URL) deletes what an earlier run that no longer runs left there, before any test starts, and says so.

Format: JSON lines, appended with ``O_APPEND`` under an exclusive ``fcntl.flock`` (several xdist workers and
several runs share one file)::

    {"op": "created", "server": URL, "job": ID, "task": TYPE, "test": NODEID, "run": RUN, "pid": PID,
     "started": EPOCH, "at": EPOCH}
    {"op": "deleted", "server": URL, "job": ID, "run": RUN}

A run is the pytest process that owns the session (the xdist controller or the only process); its workers
write with its run id. While it lives it holds an exclusive lock on ``<ledger>.runs/<run>.lock``; a run whose
lock can be taken is over (it ended, or was killed: the kernel drops the locks of a dead process), so its
outstanding jobs are leftovers. Jobs of a run that is still going are never touched (another person's run
against the same deployment, for instance). ``compact`` rewrites the file without the settled entries (a
``created`` with its ``deleted``); writers reopen the file when it was replaced while they waited.

Only runs against a deployment given by ``--cl-server`` keep a ledger: the embedded deployment is stopped with
the run (its processes get SIGTERM when pytest dies, through the parent-death signal) and its temporary data
directory is not reused, so none of its jobs can outlive the run.

Standard library only (used by the controller before any test runs).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

__all__ = ["LedgerFile", "Leftover", "RunInfo", "RunLock", "default_ledger_path", "settle_leftovers"]

#: The ledger's file name, in pytest's cache directory (``.pytest_cache/d/cl/``) or the per-user fallback.
LEDGER_NAME = "ledger.jsonl"


def default_ledger_path(cache_dir: Path | None, environ: dict[str, str] | None = None) -> Path:
    """The ledger used without ``--cl-ledger``: in pytest's cache dir, else a per-user one.

    Args:
        cache_dir: ``config.cache.mkdir("cl")``, or None when the cache provider is disabled (``-p
            no:cacheprovider``, as ``cl-client certify`` runs pytest).
        environ: the environment (``os.environ`` when omitted): ``$XDG_CACHE_HOME/cl-client/ledger.jsonl``,
            else ``~/.cache/cl-client/ledger.jsonl``.
    """
    if cache_dir is not None:
        return cache_dir / LEDGER_NAME
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "cl-client" / LEDGER_NAME


@dataclass(frozen=True)
class RunInfo:
    """The run that writes entries: its id, the pid of the process that owns the session, its start time."""

    run: str
    pid: int
    started: float

    @classmethod
    def new(cls) -> RunInfo:
        """A new run owned by this process."""
        return cls(uuid.uuid4().hex, os.getpid(), time.time())

    def to_json(self) -> str:
        """Serialise (handed to xdist workers)."""
        return json.dumps({"run": self.run, "pid": self.pid, "started": self.started})

    @classmethod
    def from_json(cls, text: str) -> RunInfo:
        """Inverse of ``to_json``."""
        raw = cast(dict[str, object], json.loads(text))
        return cls(str(raw["run"]), int(cast(int, raw["pid"])), float(cast(float, raw["started"])))

    def describe(self) -> str:
        """``2026-11-30 18:02, pid 1234`` (local time)."""
        return f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(self.started))}, pid {self.pid}"


@dataclass(frozen=True)
class Leftover:
    """A job an earlier run created and did not delete.

    Attributes:
        job_id: the server's id.
        task_type: the plugin.
        nodeid: the test that created it.
        run: the run that created it.
    """

    job_id: str
    task_type: str
    nodeid: str
    run: RunInfo


def _locks_dir(path: Path) -> Path:
    return path.with_name(path.name + ".runs")


class RunLock:
    """The lock a run holds while it lives (``<ledger>.runs/<run>.lock``); ``release`` removes it."""

    def __init__(self, ledger: Path, run: RunInfo) -> None:
        self.path = _locks_dir(ledger) / f"{run.run}.lock"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = self.path.open("w")
        fcntl.flock(self._fh, fcntl.LOCK_EX)

    def release(self) -> None:
        """The run is over: drop the lock file and the lock."""
        if self._fh is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._fh.close()
        self._fh = None


def _run_is_over(ledger: Path, run: str) -> bool:
    """True when no live process holds the run's lock (taking it proves it); the lock file is then removed."""
    path = _locks_dir(ledger) / f"{run}.lock"
    try:
        fh = path.open("a")
    except OSError:
        return True
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        with contextlib.suppress(OSError):
            path.unlink()
        return True


@dataclass
class LedgerFile:
    """The ledger file of one deployment as one process writes it.

    Args:
        path: the file (created with its directory on the first write).
        server: the deployment (its compute API URL): the key of every entry.
        run: the run this process belongs to.
    """

    path: Path
    server: str
    run: RunInfo
    _own_jobs: set[str] = field(default_factory=set[str], repr=False)

    @contextlib.contextmanager
    def _locked(self) -> Generator[int]:
        """An fd of the current file, opened for appending and locked exclusively (reopened if it was replaced)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    yield fd
                    return
            finally:
                os.close(fd)  # closing drops the lock

    def _append(self, entry: dict[str, object], *, sync: bool) -> None:
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        with self._locked() as fd:
            os.write(fd, line)
            if sync:
                os.fsync(fd)

    def created(self, job_id: str, task_type: str, nodeid: str) -> None:
        """A fixture client's POST created a job: append it (flushed and fsync'ed before returning)."""
        if job_id in self._own_jobs:
            return
        self._own_jobs.add(job_id)
        self._append(
            {
                "op": "created",
                "server": self.server,
                "job": job_id,
                "task": task_type,
                "test": nodeid,
                "run": self.run.run,
                "pid": self.run.pid,
                "started": self.run.started,
                "at": time.time(),
            },
            sync=True,
        )

    def deleted(self, job_id: str) -> None:
        """The job's deletion was verified (or it was gone already): append that it is settled."""
        self._append({"op": "deleted", "server": self.server, "job": job_id, "run": self.run.run}, sync=False)

    def _read(self) -> list[dict[str, object]]:
        try:
            text = self.path.read_text()
        except OSError:
            return []
        entries: list[dict[str, object]] = []
        for line in text.splitlines():
            try:
                entry = cast(object, json.loads(line))
            except ValueError:
                continue  # a line cut by a crash mid-write
            if isinstance(entry, dict):
                entries.append(cast(dict[str, object], entry))
        return entries

    @staticmethod
    def _outstanding(entries: Sequence[dict[str, object]]) -> list[dict[str, object]]:
        """The ``created`` entries without a ``deleted`` one (any server, any run)."""
        settled = {(e.get("server"), e.get("job")) for e in entries if e.get("op") == "deleted"}
        seen: set[tuple[object, object]] = set()
        out: list[dict[str, object]] = []
        for e in entries:
            key = (e.get("server"), e.get("job"))
            if e.get("op") == "created" and key not in settled and key not in seen:
                seen.add(key)
                out.append(e)
        return out

    def leftovers(self) -> list[Leftover]:
        """The jobs on this deployment that runs which are over did not delete (oldest run first)."""
        with self._locked():
            entries = self._outstanding(self._read())
        runs: dict[str, bool] = {}
        found: list[Leftover] = []
        for e in entries:
            run = str(e.get("run", ""))
            if e.get("server") != self.server or run == self.run.run:
                continue
            if run not in runs:
                runs[run] = _run_is_over(self.path, run)
            if runs[run]:
                info = RunInfo(run, int(cast(int, e.get("pid", 0))), float(cast(float, e.get("started", 0.0))))
                found.append(Leftover(str(e.get("job")), str(e.get("task", "")), str(e.get("test", "")), info))
        found.sort(key=lambda item: item.run.started)
        return found

    def compact(self) -> None:
        """Rewrite the file with the outstanding entries only (removed when none is left)."""
        if not self.path.exists():
            return
        with self._locked():
            keep = self._outstanding(self._read())
            if not keep:
                self.path.unlink()
                return
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            with tmp.open("w") as fh:
                fh.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in keep)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(self.path)


@dataclass
class RunSettlement:
    """What became of one earlier run's leftovers.

    Attributes:
        run: the earlier run.
        deleted: jobs deleted (deletion verified).
        gone: jobs that were gone already (404).
        problems: jobs that could not be deleted (they stay in the ledger), one line each.
        kept: jobs kept because of ``--cl-keep-jobs``.
    """

    run: RunInfo
    deleted: int = 0
    gone: int = 0
    problems: list[str] = field(default_factory=list[str])
    kept: int = 0

    def lines(self, ledger: Path) -> list[str]:
        """Return the header/summary lines.

        For example ``cl: deleted 3 job(s) left by an earlier run (2026-11-30 18:02, pid 1234)``.
        """
        when = self.run.describe()
        out: list[str] = []
        if self.kept:
            out.append(
                f"cl: {self.kept} job(s) left by an earlier run ({when}) are kept (--cl-keep-jobs); the next run "
                "without it deletes them"
            )
        if self.deleted:
            gone = f"; {self.gone} more had been deleted already" if self.gone else ""
            out.append(f"cl: deleted {self.deleted} job(s) left by an earlier run ({when}){gone}")
        elif self.gone:
            out.append(f"cl: {self.gone} job(s) left by an earlier run ({when}) had been deleted already")
        if self.problems:
            out.append(
                f"cl: could not delete {len(self.problems)} job(s) left by an earlier run ({when}); they stay in "
                f"{ledger} for the next run: " + "; ".join(self.problems)
            )
        return out


def settle_leftovers(
    ledger: LedgerFile,
    delete: Callable[[Sequence[Leftover]], Sequence[tuple[Leftover, str]]],
    *,
    keep: bool,
) -> list[RunSettlement]:
    """Delete (or with ``keep`` only count) the leftovers of earlier runs on the ledger's deployment.

    Args:
        ledger: this run's ledger file.
        delete: deletes jobs and verifies each deletion; returns each job with ``deleted``, ``gone`` or
            ``failed: <why>``.
        keep: ``--cl-keep-jobs``: delete nothing, report what is there.

    Returns:
        One settlement per earlier run, oldest first; settled jobs are recorded and the file is compacted.
    """
    found = ledger.leftovers()
    by_run: dict[str, RunSettlement] = {}
    for item in found:
        by_run.setdefault(item.run.run, RunSettlement(item.run))
    if keep:
        for item in found:
            by_run[item.run.run].kept += 1
        return list(by_run.values())
    for item, outcome in delete(found):
        settlement = by_run[item.run.run]
        if outcome in ("deleted", "gone"):
            if outcome == "deleted":
                settlement.deleted += 1
            else:
                settlement.gone += 1
            ledger.deleted(item.job_id)
        else:
            settlement.problems.append(f"{item.job_id} ({item.task_type}, {item.nodeid}): {outcome}")
    ledger.compact()
    return list(by_run.values())
