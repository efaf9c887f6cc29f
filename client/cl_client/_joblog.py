"""The command's record of the jobs it created, so that ``cl-client jobs list|clean --mine`` can find them.

The server has no route that lists its jobs, so "the jobs this machine created" can only come from a local
record. The plugin commands (``cl-client hash compute …``) append each job as soon as its id is known, and a
job deleted through ``cl-client`` (``job delete``, ``jobs clean``) or found gone is marked so. The file is the
same kind as pytest_cl's ledger (``pytest_cl/_ledgerfile.py``), beside it:
``$XDG_CACHE_HOME/cl-client/jobs.jsonl`` (else ``~/.cache/cl-client/jobs.jsonl``; ``CL_JOBS_RECORD`` names
another file). JSON lines, appended with ``O_APPEND`` under an exclusive ``fcntl.flock``::

    {"op": "created", "server": URL, "job": ID, "task": TYPE, "input": NAME, "at": EPOCH}
    {"op": "deleted", "server": URL, "job": ID, "at": EPOCH}

Entries are keyed by the server URL: the same id on another deployment is another job. A record that cannot be
written (a read-only home) never fails the command that created the job; it says so once on stderr.

Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

__all__ = ["RECORD_ENV", "JobRecord", "RecordedJob", "default_record_path"]

#: the environment variable naming the record file
RECORD_ENV = "CL_JOBS_RECORD"
RECORD_NAME = "jobs.jsonl"


def default_record_path(environ: dict[str, str] | None = None) -> Path:
    """``$CL_JOBS_RECORD``, else ``$XDG_CACHE_HOME/cl-client/jobs.jsonl``, else ``~/.cache/cl-client/jobs.jsonl``.

    Args:
        environ: the environment (``os.environ`` when omitted).
    """
    env = os.environ if environ is None else environ
    named = env.get(RECORD_ENV, "").strip()
    if named:
        return Path(named).expanduser()
    base = env.get("XDG_CACHE_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "cl-client" / RECORD_NAME


@dataclass(frozen=True)
class RecordedJob:
    """A job the command created and has not seen deleted.

    Attributes:
        job_id: the server's id.
        task_type: the plugin.
        input: the file (or server path) it was given, as named on the command line.
        created: when it was created (epoch seconds, this machine's clock).
    """

    job_id: str
    task_type: str
    input: str
    created: float


class JobRecord:
    """The record file, for one deployment.

    Args:
        server: the deployment's compute API URL (the key of every entry).
        path: the file (default :func:`default_record_path`); created with its folder on the first write.
    """

    def __init__(self, server: str, path: Path | None = None) -> None:
        self.server = server.rstrip("/")
        self.path = path if path is not None else default_record_path()

    def _append(self, entries: Iterable[dict[str, object]]) -> None:
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
        if not data:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, data)
        finally:
            os.close(fd)  # closing drops the lock

    def created(self, job_id: str, task_type: str, input_name: str) -> None:
        """Note a job this command created.

        Raises:
            OSError: the file cannot be written.
        """
        entry = {"op": "created", "server": self.server, "job": job_id, "task": task_type, "input": input_name}
        self._append([{**entry, "at": time.time()}])

    def deleted(self, job_ids: Iterable[str]) -> None:
        """Note jobs deleted (or found gone).

        Raises:
            OSError: the file cannot be written.
        """
        now = time.time()
        self._append({"op": "deleted", "server": self.server, "job": j, "at": now} for j in job_ids)

    def outstanding(self) -> list[RecordedJob]:
        """The jobs created on this server and not noted deleted, oldest first (an unreadable line is skipped)."""
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        jobs: dict[str, RecordedJob] = {}
        for line in lines:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                raw = cast(object, json.loads(line))
                if not isinstance(raw, dict):
                    continue
                entry = cast(dict[str, object], raw)
                if str(entry["server"]).rstrip("/") != self.server:
                    continue
                job = str(entry["job"])
                if entry["op"] == "created":
                    at = entry.get("at", 0.0)
                    created = float(at) if isinstance(at, int | float) else 0.0
                    jobs[job] = RecordedJob(job, str(entry.get("task", "")), str(entry.get("input", "")), created)
                elif entry["op"] == "deleted":
                    jobs.pop(job, None)
        return sorted(jobs.values(), key=lambda j: j.created)
