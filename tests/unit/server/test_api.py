"""Every endpoint of PROTOCOL.md §2 against a real deployment (broker, API server, workers as processes)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
from pathlib import Path
from urllib.parse import quote, urlparse

import httpx
import pytest
from server_helpers import Recorder, retained_now, run_job, submit

from cl_compute.app import media_type_for, sanitize_upload_name
from cl_compute.deployment import Deployment


def raw_get(server_url: str, raw_path: str) -> tuple[int, dict[str, object]]:
    """GET a path byte-for-byte (httpx would normalise ``..``)."""
    parsed = urlparse(server_url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    try:
        conn.request("GET", raw_path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, (json.loads(body) if resp.getheader("content-type") == "application/json" else {})
    finally:
        conn.close()


# -- public endpoints ---------------------------------------------------------------------------------------


def test_root_reports_health_service_version_and_guest_mode(http: httpx.Client) -> None:
    body = http.get("/").json()
    assert body["status"] == "healthy"
    assert body["service"] == "cl_compute"
    assert isinstance(body["version"], str)
    assert body["version"]
    assert body["guestMode"] == "on"  # no auth configured


def test_openapi_and_docs_are_served(http: httpx.Client) -> None:
    assert http.get("/openapi.json").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert "/jobs/{task_type}" not in paths  # one route per plugin instead (test_openapi.py checks them)
    for task in ("hash", "exif", "hls_streaming"):
        schema = paths[f"/jobs/{task}"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert schema["required"] == ["file"]
        assert schema["properties"]["priority"]["maximum"] == 10
    assert http.get("/docs").status_code == 200


def test_capabilities_right_on_first_call(deployment: Deployment, http: httpx.Client) -> None:
    # [fix] the server subscribed at start-up; Deployment.start() waited for every worker.
    caps = http.get("/capabilities").json()
    assert caps["num_workers"] == 2
    for name in ("sleep", "echo", "fail", "crash"):
        assert name in caps["capabilities"], caps
    assert "unavailable" not in caps["capabilities"]  # load() raised BackendUnavailable
    assert "broken" not in caps["capabilities"]  # module cannot be imported


def test_capability_message_shape(deployment: Deployment) -> None:
    retained = retained_now(deployment.mqtt_url, "inference/workers/+")

    payloads = [json.loads(p) for p in retained if p]
    assert sorted(p["worker_id"] for p in payloads) == sorted(deployment.worker_ids)
    for p in payloads:
        assert p["id"] == p["worker_id"]
        assert p["idle_count"] in (0, 1)
        assert isinstance(p["timestamp"], int)
        assert p["timestamp"] > 1_600_000_000_000
        assert "echo" in p["capabilities"]
        assert p["details"]["echo"] == {"kind": "test echo"}
        assert "never loads" in p["unavailable"]["unavailable"]


# -- job lifecycle ------------------------------------------------------------------------------------------


def test_completed_job_record_and_params_echo(http: httpx.Client, recorder: Recorder) -> None:
    job = run_job(http, recorder, "echo", {"mode": "fancy"}, filename="photo.jpg", content=b"12345")
    assert job["status"] == "completed", job
    assert job["progress"] == 100
    assert job["task_type"] == "echo"
    assert job["params"] == {"mode": "fancy", "output_path": "output/echo.json", "input_path": "input/photo.jpg"}
    assert job["task_output"] == {"size": 5, "mode": "fancy"}
    assert job["error_message"] is None
    assert job["priority"] == 5
    assert job["created_at"] <= job["started_at"] <= job["completed_at"]
    assert job["updated_at"] == job["completed_at"]  # [fix] real updated_at


def test_event_sequence_of_a_completed_job(http: httpx.Client, recorder: Recorder) -> None:
    job_id = submit(http, "sleep", {"seconds": "0.5", "steps": "5"})
    recorder.wait_terminal(job_id)
    events = recorder.job_events(job_id)
    kinds = [e.event_type for e in events]
    assert kinds[0] == "queued"
    assert events[0].progress == 0
    assert kinds[-1] == "completed"
    assert events[-1].progress == 100
    assert set(kinds[1:-1]) == {"processing"}, kinds
    progresses = [e.progress for e in events[1:-1]]
    assert progresses == sorted(progresses), progresses
    assert any(0 < p < 100 for p in progresses), progresses  # progress events are published
    assert all(p <= 99 for p in progresses)
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)


def test_failed_job_stores_message_and_publishes_error(http: httpx.Client, recorder: Recorder) -> None:
    job = run_job(http, recorder, "fail", {"message": "corrupt input: cannot decode"})
    assert job["status"] == "error"
    assert job["error_message"] == "corrupt input: cannot decode"
    assert job["task_output"] is None
    kinds = [e.event_type for e in recorder.job_events(job["job_id"])]
    assert kinds[0] == "queued", kinds
    assert kinds[-1] == "error", kinds


def test_crashing_plugin_ends_error_naming_the_worker_and_worker_survives(
    deployment: Deployment, http: httpx.Client, recorder: Recorder
) -> None:
    job = run_job(http, recorder, "crash", {"code": "7"})
    assert job["status"] == "error"
    assert "died (exit code 7)" in job["error_message"]
    assert any(w in job["error_message"] for w in deployment.worker_ids)
    after = run_job(http, recorder, "echo")
    assert after["status"] == "completed"


def test_get_and_delete_unknown_job_404(http: httpx.Client) -> None:
    r = http.get("/jobs/nope-123")
    assert r.status_code == 404
    assert r.json() == {"detail": "Job nope-123 not found"}
    r = http.delete("/jobs/nope-123")
    assert r.status_code == 404
    assert r.json() == {"detail": "Job nope-123 not found"}


def test_delete_finished_job_removes_row_and_directory(
    deployment: Deployment, http: httpx.Client, recorder: Recorder
) -> None:
    job = run_job(http, recorder, "echo")
    job_dir = deployment.data_dir / "jobs" / job["job_id"]
    assert (job_dir / "output" / "echo.json").is_file()
    r = http.delete(f"/jobs/{job['job_id']}")
    assert r.status_code == 204
    assert r.content == b""
    assert not job_dir.exists()
    assert http.get(f"/jobs/{job['job_id']}").status_code == 404


# -- job creation errors ------------------------------------------------------------------------------------


def test_unknown_task_type_404(http: httpx.Client) -> None:
    r = http.post("/jobs/no_such_task", files={"file": ("a.jpg", b"x")})
    assert r.status_code == 404
    assert r.json() == {"detail": "Unknown task type: no_such_task"}


def test_plugin_that_cannot_be_imported_answers_503(http: httpx.Client) -> None:
    r = http.post("/jobs/broken", files={"file": ("a.jpg", b"x")})
    assert r.status_code == 503
    assert r.json()["detail"].startswith("Plugin broken is not available on this deployment")


def test_missing_file_422(http: httpx.Client) -> None:
    r = http.post("/jobs/echo", data={"mode": "plain"})
    assert r.status_code == 422
    assert r.json() == {
        "detail": [{"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None}]
    }


def test_file_sent_as_plain_field_422(http: httpx.Client) -> None:
    r = http.post("/jobs/echo", data={"file": "not a file"}, files={"other": ("x", b"y")})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "file"]
    assert "Expected UploadFile" in err["msg"]


@pytest.mark.parametrize(
    ("value", "error_type", "ctx"),
    [
        ("11", "less_than_equal", {"le": 10}),
        ("-1", "greater_than_equal", {"ge": 0}),
        ("high", "int_parsing", None),
    ],
)
def test_bad_priority_422(http: httpx.Client, value: str, error_type: str, ctx: dict[str, int] | None) -> None:
    r = http.post("/jobs/echo", files={"file": ("a", b"x")}, data={"priority": value})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["type"] == error_type
    assert err["loc"] == ["body", "priority"]
    assert err["input"] == value
    assert err.get("ctx") == ctx


def test_plugin_param_error_and_several_errors_together(http: httpx.Client) -> None:
    r = http.post("/jobs/echo", data={"mode": "weird", "priority": "99"})
    assert r.status_code == 422
    errors = r.json()["detail"]
    assert [e["loc"] for e in errors] == [["body", "file"], ["body", "priority"], ["body", "mode"]]
    assert errors[2] == {
        "type": "literal_error",
        "loc": ["body", "mode"],
        "msg": "Input should be 'plain' or 'fancy'",
        "input": "weird",
    }


def test_non_multipart_body_422(http: httpx.Client) -> None:
    r = http.post("/jobs/echo", content=b'{"file": 1}', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "file"]


def test_priority_empty_string_is_refused(http: httpx.Client) -> None:
    """An empty ``priority`` is no integer: 422 (issue 22), as for any other value that is not one."""
    r = http.post("/jobs/echo", files={"file": ("a.txt", b"x")}, data={"priority": "  "})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "priority"]


# -- upload names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../x", "x"),
        ("../../etc/passwd", "passwd"),
        ("/abs/path/img.png", "img.png"),
        ("C:\\Users\\me\\pic.jpg", "pic.jpg"),
        ("my holiday photo.jpg", "my holiday photo.jpg"),
        ("été 漢字 📷.jpg", "été 漢字 📷.jpg"),
        ("what#is?this.jpg", "what_is_this.jpg"),
        ("..", "upload"),
    ],
)
def test_upload_names_are_sanitised(
    deployment: Deployment, http: httpx.Client, recorder: Recorder, sent: str, stored: str
) -> None:
    job = run_job(http, recorder, "echo", filename=sent, content=b"data")
    assert job["params"]["input_path"] == f"input/{stored}"
    path = deployment.data_dir / "jobs" / job["job_id"] / "input" / stored
    assert path.read_bytes() == b"data"
    r = http.get(f"/jobs/{job['job_id']}/files/input/{quote(stored)}")
    assert r.status_code == 200
    assert r.content == b"data"


def test_empty_filename_part_becomes_upload(http: httpx.Client, recorder: Recorder) -> None:
    boundary = "XyZ123"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename=""\r\n'
        f"Content-Type: application/octet-stream\r\n\r\nabc\r\n--{boundary}--\r\n"
    ).encode()
    r = http.post("/jobs/echo", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 200, r.text
    recorder.wait_terminal(r.json()["job_id"])
    assert http.get(f"/jobs/{r.json()['job_id']}").json()["params"]["input_path"] == "input/upload"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("", "upload"), ("a/b\\c.txt", "c.txt"), ("  .hidden. ", "hidden"), ("x\x00y", "x_y"), ("%%", "upload")],
)
def test_sanitize_upload_name_unit(name: str, expected: str) -> None:
    assert sanitize_upload_name(name) == expected


def test_sanitize_keeps_long_names_bounded() -> None:
    name = sanitize_upload_name("é" * 300 + ".jpeg")
    assert name.endswith(".jpeg")
    assert len(name.encode()) <= 200


def test_upload_is_streamed_to_disk_intact(deployment: Deployment, http: httpx.Client, recorder: Recorder) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)
    job = run_job(http, recorder, "echo", filename="big.bin", content=content)
    assert job["task_output"]["size"] == len(content)
    assert (deployment.data_dir / "jobs" / job["job_id"] / "input" / "big.bin").read_bytes() == content


# -- downloads ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def echo_job(http: httpx.Client, recorder: Recorder) -> dict[str, object]:
    return run_job(http, recorder, "echo", filename="in.txt", content=b"input bytes")


def test_download_output_with_real_media_type(http: httpx.Client, echo_job: dict[str, object]) -> None:
    r = http.get(f"/jobs/{echo_job['job_id']}/files/output/echo.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"  # [fix] upstream: application/octet-stream
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.json()["output_path"] == "output/echo.json"
    r = http.get(f"/jobs/{echo_job['job_id']}/files/faces/face_0.png")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("a.npy", "application/octet-stream"),
        ("a.m3u8", "application/vnd.apple.mpegurl"),
        ("a.ts", "video/mp2t"),
        ("a.jpg", "image/jpeg"),
        ("a.webp", "image/webp"),
    ],
)
def test_media_types_unit(name: str, media_type: str) -> None:
    assert media_type_for(Path(name)) == media_type


@pytest.mark.parametrize(
    ("path_suffix", "status", "detail"),
    [
        ("output", 400, "Path is not a file: output"),
        ("", 400, "Path is not a file: "),
        ("output/missing.json", 404, "File not found: output/missing.json"),
        ("../../compute.db", 403, "Access denied: path traversal detected"),
        ("output/../../../compute.db", 403, "Access denied: path traversal detected"),
        ("%2e%2e/%2e%2e/compute.db", 403, "Access denied: path traversal detected"),
        ("%2E%2E%2F%2E%2E%2Fcompute.db", 403, "Access denied: path traversal detected"),
        ("/etc/passwd", 403, "Access denied: path traversal detected"),
        ("output/./echo.json/..", 400, "Path is not a file: output/./echo.json/.."),
    ],
)
def test_download_errors(
    deployment: Deployment, echo_job: dict[str, object], path_suffix: str, status: int, detail: str
) -> None:
    code, body = raw_get(deployment.server_url, f"/jobs/{echo_job['job_id']}/files/{path_suffix}")
    assert (code, body) == (status, {"detail": detail})


def test_download_unknown_job_404(deployment: Deployment) -> None:
    code, body = raw_get(deployment.server_url, "/jobs/unknown/files/output/x")
    assert (code, body) == (404, {"detail": "Job unknown not found"})


def test_download_symlinks(deployment: Deployment, http: httpx.Client, echo_job: dict[str, object]) -> None:
    job_dir = deployment.data_dir / "jobs" / str(echo_job["job_id"])
    (job_dir / "output" / "escape").symlink_to(deployment.data_dir / "compute.db")
    (job_dir / "output" / "inside").symlink_to(job_dir / "input" / "in.txt")
    r = http.get(f"/jobs/{echo_job['job_id']}/files/output/escape")
    assert r.status_code == 403
    assert r.json() == {"detail": "Access denied: path traversal detected"}
    r = http.get(f"/jobs/{echo_job['job_id']}/files/output/inside")
    assert r.status_code == 200
    assert r.content == b"input bytes"


def test_download_job_without_directory_404(deployment: Deployment, http: httpx.Client, recorder: Recorder) -> None:
    job = run_job(http, recorder, "echo")
    shutil.rmtree(deployment.data_dir / "jobs" / job["job_id"])
    r = http.get(f"/jobs/{job['job_id']}/files/output/echo.json")
    assert r.status_code == 404
    assert r.json() == {"detail": f"Job directory not found for job {job['job_id']}"}


# -- admin (auth not configured: open) ---------------------------------------------------------------------


def test_admin_storage_size_counts_job_directories(deployment: Deployment, http: httpx.Client) -> None:
    body = http.get("/admin/jobs/storage/size").json()
    dirs = [p for p in (deployment.data_dir / "jobs").iterdir() if p.is_dir()]
    assert body["job_count"] == len(dirs)
    assert body["total_size"] >= sum(
        f.stat().st_size for d in dirs for f in d.rglob("*") if f.is_file() and not f.is_symlink()
    )


def test_admin_cleanup_validation_and_nothing_old(http: httpx.Client) -> None:
    r = http.delete("/admin/jobs/cleanup", params={"days": -1})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "days"]
    r = http.delete("/admin/jobs/cleanup", params={"days": "x"})
    assert r.status_code == 422
    assert http.delete("/admin/jobs/cleanup", params={"days": 3650}).json() == {"deleted_count": 0, "freed_space": 0}


def test_guest_mode_endpoints_without_auth(http: httpx.Client) -> None:
    assert http.get("/admin/config").json()["guest_mode"] is True
    assert http.get("/admin/pref/guest-mode").json() == {"guest_mode": True}
    r = http.put("/admin/config/guest-mode", data={"guest_mode": "false"})
    assert r.status_code == 200
    assert r.json()["guest_mode"] is True
    assert "not configured" in r.json()["message"]
    r = http.put("/admin/pref/guest-mode", data={"guest_mode": "maybe"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "guest_mode"]
    r = http.put("/admin/pref/guest-mode", data={})
    assert r.status_code == 422
    assert http.get("/").json()["guestMode"] == "on"
