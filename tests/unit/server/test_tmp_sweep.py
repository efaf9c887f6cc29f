"""A SIGKILLed caller's temporary folders are removed by the next deployment start (``sweep_stale_tmp_dirs``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cl_compute import owned_tmp
from cl_compute.deployment import Deployment, sweep_stale_tmp_dirs
from cl_compute.owned_tmp import process_start


def _folder(root: Path, name: str) -> Path:
    folder = root / name
    (folder / "jobs" / "x").mkdir(parents=True)
    (folder / "jobs" / "x" / "f.bin").write_bytes(b"data")
    return folder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_folders_of_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    me = f"{os.getpid()}.{process_start(os.getpid())}"
    dead = _folder(tmp_path, f"cl-compute-data-{_dead_pid()}.123-abc")
    reused = _folder(tmp_path, f"cl-compute-logs-{os.getpid()}.1-abc")  # our pid, another start time
    alive = _folder(tmp_path, f"cl-compute-data-{me}-abc")
    unowned = _folder(tmp_path, "cl-compute-key-abc123")  # an older version's name: no owner in it
    foreign = _folder(tmp_path, f"someone-else-data-{_dead_pid()}.123-abc")
    removed = sweep_stale_tmp_dirs(tmp_path)
    assert sorted(removed) == sorted([dead, reused])
    assert not dead.exists() and not reused.exists()
    assert alive.exists() and unowned.exists() and foreign.exists()
    assert (alive / "jobs" / "x" / "f.bin").read_bytes() == b"data"


def test_without_proc_nothing_is_swept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Where /proc cannot say who is alive (simulated: ``process_start`` answers None), nothing is removed."""
    dead = _folder(tmp_path, f"cl-compute-data-{_dead_pid()}.123-abc")
    monkeypatch.setattr(owned_tmp, "process_start", lambda pid: None)
    assert sweep_stale_tmp_dirs(tmp_path) == []
    assert dead.is_dir()


def test_a_missing_root_sweeps_nothing(tmp_path: Path) -> None:
    assert sweep_stale_tmp_dirs(tmp_path / "absent") == []


def test_the_next_start_removes_what_a_sigkilled_caller_left() -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from cl_compute.deployment import Deployment
        dep = Deployment(workers=1, tasks=["hash"]).start()
        import glob, os, tempfile
        from cl_compute.broker import AMQTT_DIR_PREFIX, MOSQUITTO_DIR_PREFIX
        [broker_dir] = [d for prefix in (MOSQUITTO_DIR_PREFIX, AMQTT_DIR_PREFIX)
                        for d in glob.glob(os.path.join(tempfile.gettempdir(), f"{prefix}{os.getpid()}.*"))]
        print(dep.data_dir, dep.log_dir, broker_dir, flush=True)
        time.sleep(600)
        """
    )
    caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert caller.stdout is not None
    line = caller.stdout.readline().split()
    assert len(line) == 3, f"the caller did not start its deployment: {line}"
    data_dir, log_dir, broker_dir = Path(line[0]), Path(line[1]), Path(line[2])
    assert data_dir.is_dir() and log_dir.is_dir() and broker_dir.is_dir()
    caller.send_signal(signal.SIGKILL)
    caller.wait()
    time.sleep(1.0)  # its children got SIGTERM from the kernel (PR_SET_PDEATHSIG) and stop
    # (a deployment started meanwhile by another test process may already have removed them: that is the point)
    with Deployment(workers=0) as dep:
        assert dep.data_dir != data_dir
        assert not data_dir.exists(), f"{data_dir} of the SIGKILLed caller is still there after the next start"
        assert not log_dir.exists(), f"{log_dir} of the SIGKILLed caller is still there after the next start"
        assert not broker_dir.exists(), f"{broker_dir} of the SIGKILLed caller's broker is still there"
        assert dep.data_dir.name.startswith(f"cl-compute-data-{os.getpid()}.")
