"""What the pip-only path (``.ci/pip-only``: no mosquitto, exiftool, ffmpeg, chromium) relies on, and the
temporary folder left clean by the tests' own helpers."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from server_helpers import DEFAULT_PORTS_LOCK, default_ports_lock, path_lock

from cl_compute._extra import missing_extra_module
from cl_compute.broker import MOSQUITTO_ENV, find_mosquitto, start_broker
from cl_compute.plugins import _media
from cl_compute.plugins.base import BackendUnavailable
from tests import tmp_guard


def test_mosquitto_none_hides_mosquitto_also_in_the_sbin_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CL_COMPUTE_MOSQUITTO=none``: no mosquitto, wherever it is installed; the broker started is amqtt."""
    monkeypatch.setenv(MOSQUITTO_ENV, "none")
    assert find_mosquitto() is None
    broker = start_broker()
    try:
        assert broker.kind == "amqtt"
    finally:
        broker.stop()


def test_mosquitto_names_the_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A path or a name on PATH is used as given; one that is not an executable means none."""
    fake = tmp_path / "my-mosquitto"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv(MOSQUITTO_ENV, str(fake))
    assert find_mosquitto() == str(fake)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv(MOSQUITTO_ENV, "my-mosquitto")
    assert find_mosquitto() == str(fake)
    monkeypatch.setenv(MOSQUITTO_ENV, str(tmp_path / "absent"))
    assert find_mosquitto() is None


def test_no_ffmpeg_without_imageio_ffmpeg_is_the_missing_server_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without ffmpeg on PATH and without imageio-ffmpeg (part of the server extra), the worker is told the extra
    is missing (one line for every plugin), not that hls_streaming has no ffmpeg (a line of its own)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(_media.FFMPEG_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    _media._find_ffmpeg_cached.cache_clear()  # pyright: ignore[reportPrivateUsage]
    try:
        with pytest.raises(BackendUnavailable, match="No ffmpeg found") as info:
            _media.require_ffmpeg()
    finally:
        _media._find_ffmpeg_cached.cache_clear()  # pyright: ignore[reportPrivateUsage]
    assert missing_extra_module(info.value) == "imageio_ffmpeg"


def test_the_default_ports_lock_leaves_no_file() -> None:
    """The machine-wide lock file is gone once the last holder let go."""
    path = Path(tempfile.gettempdir()) / DEFAULT_PORTS_LOCK
    with default_ports_lock():
        assert path.exists()
    deadline = time.monotonic() + 60  # another session on this machine may take it meanwhile
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not path.exists()


def test_the_lock_stays_exclusive_while_holders_remove_its_file(tmp_path: Path) -> None:
    """Threads taking the lock over and over: never two inside at once, and no file at the end."""
    path = tmp_path / "x.lock"
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(40):
            with path_lock(path):
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.001)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert most == 1
    assert not path.exists()


def test_the_session_check_finds_a_new_entry_and_ignores_old_and_held_ones(tmp_path: Path) -> None:
    """The root conftest's check: new and unheld counts; present before, or held open by a process, does not."""
    (tmp_path / "cl-old").mkdir()
    (tmp_path / "other").mkdir()
    before = tmp_guard.snapshot(tmp_path)
    assert before == {"cl-old"}
    (tmp_path / "cl-new.lock").write_text("")
    held = tmp_path / "cl-held"
    held.write_text("")
    with open(held):
        assert tmp_guard.leftovers(before, tmp_path, wait=0) == ["cl-new.lock"]
    owned = tmp_path / f"cl-compute-data-{os.getpid()}.0-x"
    owned.mkdir()  # an owned_tmp folder whose start time does not match: its owner is gone
    assert "cl-compute-data-" + str(os.getpid()) + ".0-x" in tmp_guard.leftovers(before, tmp_path, wait=0)
