"""The xdist shared folder names its owner, and making one removes those of owners that are gone.

The owner logic itself (``cl_compute.owned_tmp``: dead and reused pids, live owners, no /proc) is tested with
the deployment's folders in ``tests/unit/server/test_tmp_sweep.py``; here, what pytest_cl adds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cl_compute.owned_tmp import process_start
from pytest_cl._tmp import make_shared_dir


def test_the_shared_folder_names_this_process_and_replaces_those_of_gone_owners(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    me = f"{os.getpid()}.{process_start(os.getpid())}"
    gone = tmp_path / f"pytest-cl-{os.getpid()}.1-abc"  # our pid, another start time: its owner is gone
    alive = tmp_path / f"pytest-cl-{me}-abc"
    probe = tmp_path / "pytest-cl-probe-k2j3h4"  # the broker probe's own temporary folder
    unowned = tmp_path / "pytest-cl-k2j3h4"  # an older version's name
    for folder in (gone, alive, probe, unowned):
        (folder / "pids").mkdir(parents=True)
    made = make_shared_dir()
    assert made.parent == tmp_path and made.is_dir()
    assert made.name.startswith(f"pytest-cl-{me}-")
    assert not gone.exists()
    assert alive.is_dir() and probe.is_dir() and unowned.is_dir()
