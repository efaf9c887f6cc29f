"""The xdist shared folder names its owner; the folders of owners that are gone are swept (``pytest_cl._tmp``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_cl import _tmp
from pytest_cl._tmp import make_shared_dir, process_start, sweep_stale_shared_dirs


def _folder(root: Path, name: str) -> Path:
    folder = root / name
    (folder / "pids").mkdir(parents=True)
    (folder / "state.json").write_text("{}")
    return folder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_the_folders_of_owners_that_are_gone_are_removed(tmp_path: Path) -> None:
    me = f"{os.getpid()}.{process_start(os.getpid())}"
    dead = _folder(tmp_path, f"pytest-cl-{_dead_pid()}.123-abc")
    reused = _folder(tmp_path, f"pytest-cl-{os.getpid()}.1-abc")  # our pid, another start time
    alive = _folder(tmp_path, f"pytest-cl-{me}-abc")
    unowned = _folder(tmp_path, "pytest-cl-k2j3h4")  # an older version's name
    probe = _folder(tmp_path, "pytest-cl-probe-k2j3h4")  # the broker probe's own temporary folder
    foreign = _folder(tmp_path, f"other-{_dead_pid()}.123-abc")
    assert sorted(sweep_stale_shared_dirs(tmp_path)) == sorted([dead, reused])
    assert not dead.exists() and not reused.exists()
    assert all(f.exists() for f in (alive, unowned, probe, foreign))
    assert (alive / "state.json").read_text() == "{}"


def test_a_new_folder_names_this_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    folder = make_shared_dir()
    assert folder.parent == tmp_path and folder.is_dir()
    assert folder.name.startswith(f"pytest-cl-{os.getpid()}.{process_start(os.getpid())}-")
    assert sweep_stale_shared_dirs(tmp_path) == [] and folder.is_dir()


def test_without_proc_nothing_is_swept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Where /proc cannot say who is alive (simulated: ``process_start`` answers None), nothing is removed."""
    dead = _folder(tmp_path, f"pytest-cl-{_dead_pid()}.123-abc")
    monkeypatch.setattr(_tmp, "process_start", lambda pid: None)
    assert sweep_stale_shared_dirs(tmp_path) == []
    assert dead.is_dir()


def test_a_missing_root_sweeps_nothing(tmp_path: Path) -> None:
    assert sweep_stale_shared_dirs(tmp_path / "absent") == []
