"""Error answers and the log as attack surfaces (issue 22 items 4 and 6), against real deployments over HTTP.

* every error body is bounded: a 900 KB part sent under an empty file name is not echoed back whole, nor is a
  long bad query value (FastAPI's own validation answer);
* a client that disconnects mid-upload costs one log line, not a traceback;
* ``priority=''`` and two ``file`` parts are refused with 422 (no job).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from server_helpers import wait_until

from cl_compute.app import ECHO_LIMIT, bounded
from cl_compute.deployment import Deployment

BIG = 900 * 1024
#: an error answer stays under this many bytes whatever the request carried
SMALL_ANSWER = 16 * 1024


def _job_count(http: httpx.Client) -> int:
    return int(http.get("/admin/jobs/storage/size").json()["job_count"])


def test_an_empty_file_name_does_not_echo_the_part(http: httpx.Client) -> None:
    """``filename=""`` makes the part a plain field (422): the answer names it, but does not carry its 900 KB."""
    r = http.post("/jobs/echo", files={"file": ("", b"x" * BIG, "application/octet-stream")})
    assert r.status_code == 422, r.text[:500]
    assert len(r.content) < SMALL_ANSWER, f"a {len(r.content)}-byte answer to a {BIG}-byte part"
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "file"]
    assert str(error["input"]).startswith("x" * ECHO_LIMIT) and f"[{BIG} characters]" in error["input"]


def test_fastapis_validation_answer_is_bounded(http: httpx.Client) -> None:
    """FastAPI's own 422 (a query parameter that is no integer) echoes the value: cut to ECHO_LIMIT."""
    value = "9" * 6000 + "x"
    r = http.delete("/admin/jobs/cleanup", params={"days": value})
    assert r.status_code == 422, r.text[:500]
    assert len(r.content) < SMALL_ANSWER
    (error,) = r.json()["detail"]
    assert error["loc"] == ["query", "days"]
    assert error["input"] == f"{value[:ECHO_LIMIT]}…[{len(value)} characters]"


def test_http_errors_keep_their_detail(http: httpx.Client) -> None:
    r = http.get("/jobs/no-such-job")
    assert r.status_code == 404
    assert r.json() == {"detail": "Job no-such-job not found"}


def test_bounded_cuts_strings_lists_and_dicts() -> None:
    assert bounded("a" * 5, 3) == "aaa…[5 characters]"
    assert bounded({"k": ["b" * 4, 1]}, 3) == {"k": ["bbb…[4 characters]", 1]}
    assert len(bounded(list(range(1000)))) == 50  # pyright: ignore[reportArgumentType]
    assert bounded(None) is None


def test_an_empty_priority_is_refused(http: httpx.Client) -> None:
    before = _job_count(http)
    r = http.post("/jobs/echo", files={"file": ("a.txt", b"x")}, data={"priority": ""})
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "priority"]]
    assert _job_count(http) == before


def test_two_file_parts_are_refused(http: httpx.Client) -> None:
    before = _job_count(http)
    r = http.post("/jobs/echo", files=[("file", ("a.txt", b"x")), ("file", ("b.txt", b"y"))])
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "file"] and "received 2" in error["msg"]
    assert _job_count(http) == before


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A deployment without workers whose API logs at INFO into a folder of the test."""
    dep = Deployment(workers=0, log_dir=tmp_path_factory.mktemp("logs"), log_level="INFO")
    dep.start()
    try:
        yield dep
    finally:
        dep.stop()


def _disconnect_mid_upload(server_url: str) -> None:
    url = urlparse(server_url)
    boundary = "b0undary"
    head = (
        f"POST /jobs/hash HTTP/1.1\r\nHost: {url.hostname}\r\nContent-Length: {10 * 1024 * 1024}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
    ).encode()
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=10) as sock:
        sock.sendall(head + b"x" * 256 * 1024)
        time.sleep(0.2)  # let the server start reading the body (the disconnect must come mid-body)


def test_a_client_disconnect_mid_upload_logs_one_line(logged: Deployment) -> None:
    assert logged.log_dir is not None
    log = Path(logged.log_dir) / "api.log"
    for _ in range(3):
        _disconnect_mid_upload(logged.server_url)
    text = wait_until(
        lambda: (t := log.read_text(errors="replace")).count("disconnected during the upload") >= 3 and t,
        "three disconnect lines in api.log",
    )
    assert "Traceback" not in text and "ClientDisconnect" not in text, text[-3000:]
