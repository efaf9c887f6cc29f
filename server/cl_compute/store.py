"""The job store: one SQLite database (WAL) in the data directory, shared by the API server and the workers.

Why workers claim straight from SQLite instead of through an internal HTTP endpoint: upstream's workers
already share the data directory with the server (they read inputs and write outputs in ``jobs/<id>/``), so
the database file is reachable anyway; one ``UPDATE … RETURNING`` is an atomic claim with no extra hop, no
extra failure mode (API down while workers run) and sub-millisecond latency. WAL mode lets readers (the API)
run while a worker writes; ``busy_timeout`` absorbs the short write-lock waits.

Layout::

    <data_dir>/compute.db
    <data_dir>/jobs/<job_id>/{input,output,faces}/
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cl_compute.profile import quirks

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT UNIQUE NOT NULL,
    task_type TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    params TEXT NOT NULL,
    task_output TEXT,
    error_message TEXT,
    priority INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER,
    started_at INTEGER,
    completed_at INTEGER,
    created_by TEXT,
    worker_id TEXT,
    lease_until INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, priority DESC, seq);
CREATE TABLE IF NOT EXISTS service_config (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at INTEGER,
    updated_by TEXT
);
"""

TERMINAL_STATUSES = frozenset({"completed", "error"})


def now_ms() -> int:
    """Current time in integer milliseconds since the Unix epoch."""
    return int(time.time() * 1000)


@dataclass
class Job:
    """One row of the ``jobs`` table, decoded."""

    job_id: str
    task_type: str
    status: str
    progress: int
    params: dict[str, object]
    task_output: dict[str, object] | None
    error_message: str | None
    priority: int
    created_at: int
    updated_at: int | None
    started_at: int | None
    completed_at: int | None
    worker_id: str | None

    def to_response(self) -> dict[str, object]:
        """The JobResponse of PROTOCOL.md §4 (``updated_at`` echoes ``created_at`` in a profile with the
        ``updated_at_is_created_at`` quirk, as upstream's service copies the wrong column)."""
        updated_at = self.created_at if quirks().updated_at_is_created_at else self.updated_at
        return {
            "job_id": self.job_id,
            "task_type": self.task_type,
            "status": self.status,
            "progress": self.progress,
            "params": self.params,
            "task_output": self.task_output,
            "error_message": self.error_message,
            "priority": self.priority,
            "created_at": self.created_at,
            "updated_at": updated_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
        }


def _one(cur: sqlite3.Cursor) -> sqlite3.Row | None:
    """The cursor's next row: the connection's row factory is ``sqlite3.Row`` (the stubs say Any)."""
    return cast("sqlite3.Row | None", cur.fetchone())


def _all(cur: sqlite3.Cursor) -> list[sqlite3.Row]:
    """The cursor's remaining rows (``sqlite3.Row``, see ``_one``)."""
    return cast("list[sqlite3.Row]", cur.fetchall())


def _job_from_row(row: sqlite3.Row) -> Job:
    # Column values are typed by _SCHEMA (sqlite3 returns them as Any); params and task_output hold the
    # JSON objects insert_job and finish_job stored.
    output = cast("str | None", row["task_output"])
    return Job(
        job_id=cast(str, row["job_id"]),
        task_type=cast(str, row["task_type"]),
        status=cast(str, row["status"]),
        progress=cast(int, row["progress"]),
        params=cast("dict[str, object]", json.loads(cast(str, row["params"]))),
        task_output=cast("dict[str, object]", json.loads(output)) if output is not None else None,
        error_message=cast("str | None", row["error_message"]),
        priority=cast(int, row["priority"]),
        created_at=cast(int, row["created_at"]),
        updated_at=cast("int | None", row["updated_at"]),
        started_at=cast("int | None", row["started_at"]),
        completed_at=cast("int | None", row["completed_at"]),
        worker_id=cast("str | None", row["worker_id"]),
    )


class JobStore:
    """Thread-safe access to the job database (one connection per thread, autocommit).

    Args:
        data_dir: the deployment's data directory; the database is ``<data_dir>/compute.db``.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.jobs_dir = self.data_dir / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / "compute.db"
        self._local = threading.local()
        conn = self._conn()
        conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=30, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def job_dir(self, job_id: str) -> Path:
        """``<data_dir>/jobs/<job_id>`` (not created)."""
        return self.jobs_dir / job_id

    # -- jobs -------------------------------------------------------------------------------------------

    def insert_job(
        self,
        job_id: str,
        task_type: str,
        params: dict[str, object],
        priority: int,
        created_by: str | None,
        created_at: int | None = None,
    ) -> Job:
        """Insert a ``queued`` job (created ``created_at``, default now) and return it."""
        ts = now_ms() if created_at is None else created_at
        self._conn().execute(
            "INSERT INTO jobs (job_id, task_type, status, progress, params, priority, created_at, updated_at,"
            " created_by) VALUES (?, ?, 'queued', 0, ?, ?, ?, ?, ?)",
            (job_id, task_type, json.dumps(params), priority, ts, ts, created_by),
        )
        job = self.get_job(job_id)
        assert job is not None
        return job

    def get_job(self, job_id: str) -> Job | None:
        """The job, or None."""
        row = _one(self._conn().execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)))
        return _job_from_row(row) if row is not None else None

    def job_exists(self, job_id: str) -> bool:
        """True while the job's row exists (False once deleted)."""
        row = _one(self._conn().execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)))
        return row is not None

    def delete_job(self, job_id: str) -> Job | None:
        """Delete the row; returns the job as it was, or None if it did not exist."""
        row = _one(self._conn().execute("DELETE FROM jobs WHERE job_id = ? RETURNING *", (job_id,)))
        return _job_from_row(row) if row is not None else None

    def claim_next(self, task_types: Iterable[str], worker_id: str, lease_ms: int) -> Job | None:
        """Atomically move the best queued job (priority desc, then FIFO) to ``processing`` for this worker.

        In a profile with the ``priority_ignored`` quirk the best job is the oldest one (``created_at``), whatever
        its priority, as upstream's queue does. One ``UPDATE … RETURNING`` statement: SQLite holds the write lock
        for its duration, so two workers can never claim the same job.
        """
        types = sorted(set(task_types))
        if not types:
            return None
        order = "created_at ASC, seq ASC" if quirks().priority_ignored else "priority DESC, seq ASC"
        ts = now_ms()
        marks = ",".join("?" * len(types))
        row = _one(
            self._conn().execute(
                "UPDATE jobs SET status='processing', worker_id=?, started_at=?, updated_at=?, lease_until=?"
                " WHERE seq = (SELECT seq FROM jobs WHERE status='queued' AND task_type IN ("
                + marks
                + ") ORDER BY "
                + order
                + " LIMIT 1) AND status='queued' RETURNING *",
                (worker_id, ts, ts, ts + lease_ms, *types),
            )
        )
        return _job_from_row(row) if row is not None else None

    def set_progress(self, job_id: str, worker_id: str, progress: int, lease_ms: int) -> bool:
        """Store progress (and extend the lease) of a job this worker runs; False if it is gone or not ours."""
        ts = now_ms()
        cur = self._conn().execute(
            "UPDATE jobs SET progress=?, updated_at=?, lease_until=? WHERE job_id=? AND worker_id=?"
            " AND status='processing'",
            (progress, ts, ts + lease_ms, job_id, worker_id),
        )
        return cur.rowcount > 0

    def extend_lease(self, job_id: str, worker_id: str, lease_ms: int) -> bool:
        """Extend the lease of a running job; False if the job is gone or no longer this worker's."""
        cur = self._conn().execute(
            "UPDATE jobs SET lease_until=? WHERE job_id=? AND worker_id=? AND status='processing'",
            (now_ms() + lease_ms, job_id, worker_id),
        )
        return cur.rowcount > 0

    def finish_job(
        self,
        job_id: str,
        worker_id: str | None,
        *,
        status: str,
        task_output: dict[str, object] | None = None,
        error_message: str | None = None,
    ) -> Job | None:
        """Move a processing job to ``completed`` or ``error``; returns it, or None if it was not processing.

        ``worker_id`` None finishes the job whoever runs it (used by the reaper).
        """
        ts = now_ms()
        progress_sql = "100" if status == "completed" else "progress"
        sql = (
            f"UPDATE jobs SET status=?, progress={progress_sql}, task_output=?, error_message=?,"
            " completed_at=?, updated_at=?, lease_until=NULL WHERE job_id=? AND status='processing'"
        )
        args: list[object] = [
            status,
            json.dumps(task_output) if task_output is not None else None,
            error_message,
            ts,
            ts,
            job_id,
        ]
        if worker_id is not None:
            sql += " AND worker_id=?"
            args.append(worker_id)
        row = _one(self._conn().execute(sql + " RETURNING *", args))
        return _job_from_row(row) if row is not None else None

    def processing_jobs(self, worker_id: str | None = None) -> list[Job]:
        """Jobs in ``processing`` (of one worker, or all)."""
        if worker_id is None:
            rows = _all(self._conn().execute("SELECT * FROM jobs WHERE status='processing'"))
        else:
            rows = _all(
                self._conn().execute("SELECT * FROM jobs WHERE status='processing' AND worker_id=?", (worker_id,))
            )
        return [_job_from_row(r) for r in rows]

    def expired_jobs(self) -> list[Job]:
        """Processing jobs whose lease ran out (their worker stopped heart-beating)."""
        rows = _all(
            self._conn().execute("SELECT * FROM jobs WHERE status='processing' AND lease_until < ?", (now_ms(),))
        )
        return [_job_from_row(r) for r in rows]

    def ended_since(self, since_ms: int) -> list[Job]:
        """Jobs that ended (``completed`` or ``error``) at or after ``since_ms``."""
        rows = _all(
            self._conn().execute(
                "SELECT * FROM jobs WHERE status IN ('completed', 'error') AND completed_at >= ?", (since_ms,)
            )
        )
        return [_job_from_row(r) for r in rows]

    def has_queued(self, task_types: Sequence[str]) -> bool:
        """True when a queued job of one of these types waits."""
        if not task_types:
            return False
        marks = ",".join("?" * len(task_types))
        row = _one(
            self._conn().execute(
                f"SELECT 1 FROM jobs WHERE status='queued' AND task_type IN ({marks}) LIMIT 1", task_types
            )
        )
        return row is not None

    def jobs_created_before(self, cutoff_ms: int) -> list[str]:
        """Ids of jobs created before ``cutoff_ms``."""
        rows = _all(self._conn().execute("SELECT job_id FROM jobs WHERE created_at < ?", (cutoff_ms,)))
        return [cast(str, r["job_id"]) for r in rows]

    # -- config -----------------------------------------------------------------------------------------

    def get_config(self, key: str) -> tuple[str, int | None, str | None] | None:
        """``(value, updated_at, updated_by)`` of a config key, or None."""
        row = _one(self._conn().execute("SELECT value, updated_at, updated_by FROM service_config WHERE key=?", (key,)))
        if row is None:
            return None
        # Column types per _SCHEMA's service_config.
        return (cast(str, row["value"]), cast("int | None", row["updated_at"]), cast("str | None", row["updated_by"]))

    def set_config(self, key: str, value: str, updated_by: str | None) -> None:
        """Insert or replace a config key."""
        self._conn().execute(
            "INSERT INTO service_config (key, value, updated_at, updated_by) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at,"
            " updated_by=excluded.updated_by",
            (key, value, now_ms(), updated_by),
        )
