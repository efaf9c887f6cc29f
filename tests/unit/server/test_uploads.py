"""Uploads of ``POST /jobs/<task_type>`` (issue 11 items 10 and 12), against real deployments over HTTP.

* the upload limit (``--max-upload-mb`` / ``CL_COMPUTE_MAX_UPLOAD_MB`` / ``Deployment(max_upload_mb=)``): 413
  ``{"detail": …}`` while the body streams, or at once when ``Content-Length`` already says too much; nothing is
  left behind (no job row, no file in the data directory);
* the upload is written once, straight into the job's folder (no spooled temporary copy);
* stored names drop invisible format characters (bidi overrides, zero-width characters).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlparse

import httpx
import pytest
from server_helpers import Recorder, UpProcess, run_job, test_plugin_spec, wait_until

from cl_client import ComputeClient, HTTPStatusError
from cl_compute.app import sanitize_upload_name
from cl_compute.deployment import Deployment

BOUNDARY = "cl-test-boundary-7d3f"
MIB = 1024 * 1024


def _part_head(filename: str = "big.bin") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def _part_tail() -> bytes:
    return (
        f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="mode"\r\n\r\nplain\r\n--{BOUNDARY}--\r\n'.encode()
    )


def multipart_body(size: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """A multipart body with a ``file`` part of ``size`` bytes, produced chunk by chunk (httpx sends it chunked)."""
    yield _part_head()
    sent = 0
    block = os.urandom(chunk)
    while sent < size:
        n = min(chunk, size - sent)
        yield block[:n]
        sent += n
    yield _part_tail()


def files_in(data_dir: Path) -> list[str]:
    """Every file under the data directory except the job database."""
    found = []
    for root, _dirs, files in os.walk(data_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), data_dir)
            if not rel.startswith("compute.db"):
                found.append(rel)
    return sorted(found)


class RawRequest:
    """A hand-driven HTTP/1.1 request on a socket: headers, then body pieces, the response read at any time."""

    def __init__(self, server_url: str, path: str, headers: dict[str, str]) -> None:
        parsed = urlparse(server_url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=60)
        lines = [f"POST {path} HTTP/1.1", f"Host: {parsed.hostname}:{parsed.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def send_chunk(self, data: bytes) -> None:
        """One piece of a ``Transfer-Encoding: chunked`` body."""
        self.sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def end_chunks(self) -> None:
        self.sock.sendall(b"0\r\n\r\n")

    def response(self) -> tuple[int, bytes]:
        """Status and body of the response (``Content-Length`` framed, as every JSON answer of the API)."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = self.sock.recv(65536)
            assert data, f"connection closed before a response: {buf!r}"
            buf += data
        head, _, body = buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            data = self.sock.recv(65536)
            assert data, "connection closed inside the response body"
            body += data
        return status, body[:length]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def limited() -> Iterator[Deployment]:
    """A deployment whose API accepts request bodies of 1 MiB at most."""
    dep = Deployment(workers=1, tasks=["echo"], extra_plugins=test_plugin_spec(), max_upload_mb=1)
    dep.start()
    try:
        yield dep
    finally:
        dep.stop()


def assert_nothing_stored(dep: Deployment) -> None:
    wait_until(lambda: files_in(dep.data_dir) == [], what=f"an empty data dir (has {files_in(dep.data_dir)})")
    assert not any((dep.data_dir / "jobs").iterdir())
    incoming = dep.data_dir / "incoming"
    assert not incoming.exists() or not any(incoming.iterdir())
    size = httpx.get(f"{dep.server_url}/admin/jobs/storage/size", timeout=10).json()
    assert size == {"total_size": 0, "job_count": 0}


def test_streamed_upload_over_the_limit_is_413_and_leaves_nothing(limited: Deployment) -> None:
    """4 MiB streamed by a generator (chunked, no Content-Length) over a 1 MiB limit."""
    r = httpx.post(
        f"{limited.server_url}/jobs/echo",
        content=multipart_body(4 * MIB),
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
        timeout=60,
    )
    assert r.status_code == 413, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    assert "1 MB" in detail and "--max-upload-mb" in detail, detail
    assert_nothing_stored(limited)


def test_over_size_upload_is_refused_before_the_body_ends(limited: Deployment) -> None:
    """The 413 comes while the client is still sending: 2 MiB of a body that is never finished."""
    req = RawRequest(
        limited.server_url,
        "/jobs/echo",
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Transfer-Encoding": "chunked"},
    )
    try:
        req.send_chunk(_part_head())
        block = os.urandom(64 * 1024)
        for _ in range(32):
            req.send_chunk(block)
        status, body = req.response()  # the body's end was never sent
    finally:
        req.close()
    assert status == 413, body
    assert_nothing_stored(limited)


def test_content_length_over_the_limit_is_refused_at_once(limited: Deployment) -> None:
    """``Content-Length: 10 GiB`` and not one byte of body: 413 without waiting for it."""
    req = RawRequest(
        limited.server_url,
        "/jobs/echo",
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(10 * 1024 * MIB)},
    )
    try:
        status, body = req.response()
    finally:
        req.close()
    assert status == 413, body
    assert b"Upload too large" in body
    assert_nothing_stored(limited)


def test_a_client_that_got_413_goes_on_with_its_next_jobs(limited: Deployment, tmp_path: Path) -> None:
    """cl_client: the 413 is a clear error naming the limit, and the same client's next uploads work.

    uvicorn answers the 413 before it has read the body and may keep the connection; the client must not
    send its next request into that half-read body. Three rounds, so that a pooled connection is reused.
    """
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * MIB))
    small = tmp_path / "small.bin"
    small.write_bytes(b"small upload")
    with ComputeClient(limited.server_url, mqtt_url=limited.mqtt_url) as client:
        for round_ in range(3):
            with pytest.raises(HTTPStatusError) as exc_info:
                client.submit("echo", big)
            assert exc_info.value.status_code == 413, f"round {round_}: {exc_info.value}"
            assert "1 MB" in str(exc_info.value) and "--max-upload-mb" in str(exc_info.value), exc_info.value
            record = client.submit("echo", small).wait(60)
            assert record.status == "completed", f"round {round_}: the upload after a 413 ended {record.status}"
            client.delete_job(record.job_id)
    assert_nothing_stored(limited)


def test_upload_under_the_limit_still_works(limited: Deployment) -> None:
    rec = Recorder(limited.mqtt_url)
    try:
        with httpx.Client(base_url=limited.server_url, timeout=30) as http:
            content = os.urandom(MIB - 4096)
            job = run_job(http, rec, "echo", filename="fits.bin", content=content)
            assert job["status"] == "completed"
            assert job["task_output"]["size"] == len(content)
    finally:
        rec.close()


def test_upload_is_written_once_straight_into_the_job_folder(deployment: Deployment, http: httpx.Client) -> None:
    """Mid-upload (3 MiB sent, more than Starlette's 1 MiB in-memory spool), the API holds exactly one file open
    for it: the job's ``input/<name>``, not a temporary file; the finished job has the bytes intact."""
    content = os.urandom(5 * MIB)
    req = RawRequest(
        deployment.server_url,
        "/jobs/echo",
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Transfer-Encoding": "chunked"},
    )
    try:
        req.send_chunk(_part_head("once.bin"))
        for i in range(0, 3 * MIB, 64 * 1024):
            req.send_chunk(content[i : i + 64 * 1024])

        def upload_fds() -> list[str]:
            targets = []
            for fd in os.listdir(f"/proc/{deployment.api_pid}/fd"):
                try:
                    targets.append(os.readlink(f"/proc/{deployment.api_pid}/fd/{fd}"))
                except OSError:
                    continue
            # the upload's file, or an unlinked temporary file (a spool: "/tmp/#123 (deleted)")
            return [t for t in targets if t.endswith("once.bin") or t.endswith("(deleted)")]

        open_files = wait_until(
            lambda: [t for t in upload_fds() if t.endswith("/input/once.bin")] and upload_fds(),
            what="the upload's file to be open in the API",
        )
        assert len(open_files) == 1, open_files
        assert Path(open_files[0]).parent.parent.parent == deployment.data_dir / "incoming", open_files
        for i in range(3 * MIB, len(content), 64 * 1024):
            req.send_chunk(content[i : i + 64 * 1024])
        req.send_chunk(_part_tail())
        req.end_chunks()
        status, body = req.response()
    finally:
        req.close()
    assert status == 200, body
    job_id = httpx.Response(200, content=body).json()["job_id"]
    job = wait_until(
        lambda: (j := http.get(f"/jobs/{job_id}").json())["status"] in ("completed", "error") and j, what="the job"
    )
    assert job["status"] == "completed", job
    assert job["task_output"]["size"] == len(content)
    assert (deployment.data_dir / "jobs" / job_id / "input" / "once.bin").read_bytes() == content


def test_up_takes_the_limit_from_the_environment(tmp_path: Path) -> None:
    """``CL_COMPUTE_MAX_UPLOAD_MB=1`` reaches ``up``'s API (through Deployment and ``serve --max-upload-mb``)."""
    env = dict(os.environ, CL_COMPUTE_MAX_UPLOAD_MB="1")
    data = tmp_path / "data"
    with UpProcess("--port", "0", "--mqtt-port", "0", "--workers", "0", "--data-dir", str(data), env=env) as up:
        lines = up.wait_banner()
        server = next(line.split()[-1] for line in lines if line.startswith("API server:"))
        small = httpx.post(f"{server}/jobs/hash", files={"file": ("a.bin", b"x" * 1000)}, timeout=30)
        assert small.status_code == 200, small.text
        big = httpx.post(f"{server}/jobs/hash", files={"file": ("b.bin", b"x" * (2 * MIB))}, timeout=60)
        assert big.status_code == 413, big.text
        assert "1 MB" in big.json()["detail"]
    assert up.proc.returncode is not None


def test_max_upload_option_is_documented() -> None:
    from click.testing import CliRunner

    from cl_compute.cli import main

    for command in ("up", "serve"):
        out = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
        assert "--max-upload-mb" in out and "CL_COMPUTE_MAX_UPLOAD_MB" in out, out


def test_openapi_documents_413(http: httpx.Client) -> None:
    responses = http.get("/openapi.json").json()["paths"]["/jobs/echo"]["post"]["responses"]
    assert "413" in responses


# -- stored names (item 12) ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("photo\u202egpj.exe", "photogpj.exe"),  # RIGHT-TO-LEFT OVERRIDE: shown as "photoexe.jpg"
        ("inv\u202doice\u202c.pdf", "invoice.pdf"),
        ("a\u2066b\u2067c\u2068d\u2069.png", "abcd.png"),  # bidi isolates
        ("\u200eleft\u200f.jpg", "left.jpg"),  # LRM / RLM
        ("zero\u200bwidth\u200c\u200d\ufeff.jpg", "zerowidth.jpg"),
        ("café 画像.jpg", "café 画像.jpg"),
        ("\u202e\u200b", "upload"),
    ],
)
def test_stored_names_drop_bidi_and_invisible_characters(
    deployment: Deployment, http: httpx.Client, recorder: Recorder, sent: str, stored: str
) -> None:
    job = run_job(http, recorder, "echo", filename=sent, content=b"named")
    assert job["params"]["input_path"] == f"input/{stored}"
    assert (deployment.data_dir / "jobs" / job["job_id"] / "input" / stored).read_bytes() == b"named"
    r = http.get(f"/jobs/{job['job_id']}/files/input/{quote(stored)}")
    assert r.status_code == 200
    assert r.content == b"named"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("x\u202e\u202a\u202b\u202c\u202dy", "xy"),
        ("\u202e", "upload"),
        ("tab\there.jpg", "tab_here.jpg"),  # control characters (Cc) stay visible as "_", as before
        ("c1\x85control.jpg", "c1_control.jpg"),
        ("line\u2028sep.txt", "line_sep.txt"),
    ],
)
def test_sanitize_upload_name_invisible_characters_unit(name: str, expected: str) -> None:
    assert sanitize_upload_name(name) == expected
