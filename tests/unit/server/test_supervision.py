"""Worker supervision (issue 11 item 11): a worker process that dies is restarted, within a limit.

Real processes: ``kill -9`` of a worker's pid (not ``Deployment.kill_worker``, which stops a worker for good).
Every wait has a generous deadline; nothing asserts how fast a restart was.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import UpProcess, test_plugin_spec, wait_until

from cl_compute.deployment import Deployment

DEADLINE = 90.0


def submit(http: httpx.Client, task_type: str, data: dict[str, str] | None = None, content: bytes = b"x") -> str:
    r = http.post(f"/jobs/{task_type}", files={"file": ("in.bin", content)}, data=data or {})
    assert r.status_code == 200, r.text
    return str(r.json()["job_id"])


def final(http: httpx.Client, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = http.get(f"/jobs/{job_id}").json()
        return job if job["status"] in ("completed", "error") else None

    return wait_until(done, f"job {job_id} to end")


def announced_pid(http: httpx.Client, worker_id: str) -> int | None:
    payload = http.get("/internal/workers").json()["workers"].get(worker_id)
    return int(payload["pid"]) if payload else None


def idle_worker(http: httpx.Client, task_type: str) -> bool:
    caps = http.get("/capabilities").json()
    return bool(caps["num_workers"] == 1 and caps["capabilities"].get(task_type) == 1)


def test_killed_worker_is_restarted_and_its_job_ends_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cl_compute.deployment")
    dep = Deployment(workers=1, tasks=["sleep", "echo"], extra_plugins=test_plugin_spec(), worker_shutdown_grace=0.5)
    dep.start()
    try:
        with httpx.Client(base_url=dep.server_url, timeout=10) as http:
            wid = dep.worker_ids[0]
            old_pid = dep.worker_pids[wid]
            assert announced_pid(http, wid) == old_pid
            job_id = submit(http, "sleep", {"seconds": "60", "steps": "600"})
            wait_until(lambda: http.get(f"/jobs/{job_id}").json()["status"] == "processing", "the job to start")

            os.kill(old_pid, signal.SIGKILL)

            job = final(http, job_id)  # as before: the dead worker's job ends error naming it
            assert job["status"] == "error"
            assert job["error_message"] == f"Worker {wid} disappeared while running this job"
            new_pid = wait_until(
                lambda: (pid := announced_pid(http, wid)) not in (None, old_pid) and pid, "the restarted worker"
            )
            assert dep.worker_pids[wid] == new_pid
            assert dep.worker_restarts == {wid: 1}
            wait_until(lambda: idle_worker(http, "echo"), "/capabilities to show the worker again")
            assert final(http, submit(http, "echo"))["status"] == "completed"
            assert http.get(f"/jobs/{job_id}").json()["status"] == "error"  # not resurrected by the new worker
        messages = [r.getMessage() for r in caplog.records if r.name == "cl_compute.deployment"]
        assert any(f"worker {wid} died (killed by SIGKILL)" in m for m in messages), messages
        assert any(f"worker {wid} restarted (pid {new_pid})" in m for m in messages), messages
    finally:
        dep.stop()
    assert _gone(new_pid)


def test_restarts_stop_at_the_limit(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cl_compute.deployment")
    dep = Deployment(workers=1, tasks=["echo"], extra_plugins=test_plugin_spec(), worker_shutdown_grace=0.5)
    dep.worker_restart_limit = 1  # the default is 5 within 60 s; 1 keeps the test short
    dep.start()
    try:
        with httpx.Client(base_url=dep.server_url, timeout=10) as http:
            wid = dep.worker_ids[0]
            first = dep.worker_pids[wid]
            os.kill(first, signal.SIGKILL)
            second = wait_until(
                lambda: (pid := announced_pid(http, wid)) not in (None, first) and pid, "the restarted worker"
            )
            os.kill(second, signal.SIGKILL)
            wait_until(lambda: any("giving up" in r.getMessage() for r in caplog.records), "the supervisor to give up")
            wait_until(lambda: http.get("/capabilities").json()["num_workers"] == 0, "the worker to stay gone")
            assert dep.worker_restarts == {wid: 1}
            assert dep.worker_pids[wid] == second
        (gave_up,) = [r for r in caplog.records if "giving up" in r.getMessage()]
        assert gave_up.levelno == logging.ERROR
        assert f"worker {wid} died (killed by SIGKILL) after 1 restarts within 60 s" in gave_up.getMessage()
    finally:
        dep.stop()


def test_kill_worker_helper_does_not_restart() -> None:
    """``Deployment.kill_worker`` (worker-death tests) keeps the worker stopped."""
    dep = Deployment(workers=1, tasks=["echo"], extra_plugins=test_plugin_spec(), worker_shutdown_grace=0.5)
    dep.start()
    try:
        with httpx.Client(base_url=dep.server_url, timeout=10) as http:
            dep.kill_worker(dep.worker_ids[0])
            wait_until(lambda: http.get("/capabilities").json()["num_workers"] == 0, "the worker to be gone")
            time.sleep(3)  # longer than the first back-off: a restart would have begun
            assert http.get("/capabilities").json()["num_workers"] == 0
            assert dep.worker_restarts == {}
    finally:
        dep.stop()


def test_up_restarts_a_killed_worker(tmp_path: Path) -> None:
    """``cl-compute up``: kill -9 of a worker is logged, the worker is back in /capabilities, a job completes."""
    args = ("--port", "0", "--mqtt-port", "0", "--workers", "1", "--tasks", "hash", "--data-dir", str(tmp_path))
    with UpProcess(*args) as up:
        lines = up.wait_banner()
        server = next(line.split()[-1] for line in lines if line.startswith("API server:"))
        with httpx.Client(base_url=server, timeout=10) as http:
            old_pid = announced_pid(http, "worker-1")
            assert old_pid is not None
            os.kill(old_pid, signal.SIGKILL)
            up.wait_stderr("worker worker-1 died (killed by SIGKILL); restarting it", timeout=DEADLINE)
            up.wait_stderr("worker worker-1 restarted", timeout=DEADLINE)
            wait_until(
                lambda: announced_pid(http, "worker-1") not in (None, old_pid) and idle_worker(http, "hash"),
                "/capabilities to show the restarted worker",
            )
            job = final(http, submit(http, "hash", {"algorithm": "md5"}, b"supervised"))
            assert job["status"] == "completed", job
        up.stop()
        assert up.proc.returncode == 0, up.output()


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] == "Z"
    except FileNotFoundError:
        return True
