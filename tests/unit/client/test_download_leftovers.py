"""Downloads leave nothing behind (issue 22 item 5): partials of killed downloads are swept, SIGTERM cleans up,
a failed ``job download … DIR/`` removes the DIR it created.

The downloads are real: ``cl-client`` processes and ``ComputeClient`` against a small stdlib HTTP server of this
module whose ``/jobs/<id>/files/…`` answers either 404, or sends half of a declared body and then stalls (a
download that is in progress when the signal comes). Killed downloads are real processes killed with
SIGKILL/SIGTERM once their partial exists (condition waits).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cl_client import ComputeClient, NotFoundError
from cl_client._partials import owner_tag, process_start, sweep_partials

PATIENCE_S = 60.0


class _Handler(BaseHTTPRequestHandler):
    server: _StallServer

    def do_GET(self) -> None:
        if self.path.endswith("/missing.bin"):
            body = b'{"detail": "File not found: output/missing.bin"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(10 * 1024 * 1024))
        self.end_headers()
        self.wfile.write(b"x" * 64 * 1024)
        self.wfile.flush()
        self.server.release.wait(PATIENCE_S)  # stalls mid-body until the test ends

    def log_message(self, format: str, *args: object) -> None:
        del format, args


class _StallServer(ThreadingHTTPServer):
    daemon_threads = True
    release = threading.Event()


@pytest.fixture
def stall_server() -> Iterator[str]:
    server = _StallServer(("127.0.0.1", 0), _Handler)
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def _cli(server: str, *args: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "cl_client", "--server", server, "--mqtt", "off", *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_partial(folder: Path, proc: subprocess.Popen[bytes]) -> list[Path]:
    deadline = time.monotonic() + PATIENCE_S
    while True:
        found = sorted(folder.glob(".*.part*")) if folder.exists() else []
        if found:
            return found
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert time.monotonic() < deadline, "no partial download appeared"
        time.sleep(0.05)


def test_sigterm_removes_the_partial_and_the_folder_it_made(stall_server: str, tmp_path: Path) -> None:
    dest = tmp_path / "new-dir"
    proc = _cli(stall_server, "job", "download", "job-1", "output/big.bin", f"{dest}/")
    (partial,) = _wait_for_partial(dest, proc)
    assert f".big.bin.{proc.pid}." in partial.name, "the partial names its owner"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 143, out.decode()
    assert not partial.exists() and not dest.exists(), f"left behind: {list(tmp_path.rglob('*'))}"


def test_sigkill_leaves_a_partial_that_the_next_download_sweeps(stall_server: str, tmp_path: Path) -> None:
    proc = _cli(stall_server, "job", "download", "job-1", "output/big.bin", f"{tmp_path}/")
    (partial,) = _wait_for_partial(tmp_path, proc)
    proc.kill()
    proc.wait(PATIENCE_S)
    assert partial.exists(), "SIGKILL: nothing could clean up"
    live = tmp_path / f".other.bin.{owner_tag()}abcd1234.part"  # a download of a live process (this one)
    live.write_bytes(b"")
    foreign = tmp_path / ".notes.txt"  # no partial: never touched
    foreign.write_text("mine")
    with ComputeClient(stall_server, mqtt_url=None) as client, pytest.raises(NotFoundError):
        client.download_job_file("job-2", "output/missing.bin", tmp_path)  # the next download (fails: 404)
    assert not partial.exists(), "the dead owner's partial was not swept"
    assert live.exists() and foreign.exists()


def test_a_dead_owners_staging_folder_is_swept(tmp_path: Path) -> None:
    """A staging folder (``.NAME.<pid>.<start>-<random>.partial``, several files) of a killed process."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = tmp_path / f".faces.{child.pid}.{process_start(os.getpid())}-k2j3.partial"
    (dead / "faces").mkdir(parents=True)
    (dead / "faces" / "face_0.png").write_bytes(b"png")
    reused = tmp_path / f".faces.{os.getpid()}.1-k2j3.partial"  # this pid, another start time: a reused pid
    reused.mkdir()
    mine = tmp_path / f".faces.{owner_tag()}k2j3.partial"
    mine.mkdir()
    assert sorted(sweep_partials(tmp_path)) == sorted([dead, reused])
    assert mine.exists() and not dead.exists() and not reused.exists()


def test_a_failed_download_into_a_new_folder_removes_it(stall_server: str, tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b"
    proc = _cli(stall_server, "job", "download", "job-1", "output/missing.bin", f"{dest}/")
    out, _ = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 1, out.decode()
    assert "File not found" in out.decode()
    assert list(tmp_path.iterdir()) == [], f"left behind: {list(tmp_path.rglob('*'))}"


def test_a_failed_download_into_an_existing_folder_keeps_it(stall_server: str, tmp_path: Path) -> None:
    dest = tmp_path / "there"
    dest.mkdir()
    proc = _cli(stall_server, "job", "download", "job-1", "output/missing.bin", f"{dest}/")
    proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 1
    assert dest.is_dir()
