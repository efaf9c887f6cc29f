"""The API-side switches of the upstream profiles (``cl_compute.profile``), each against the fixed profile.

Every check runs with the fixed profile (the default: the [fix] holds, the quirk is absent) and with the upstream
profiles ``upstream-2026-01`` and ``upstream-2026-02`` (the quirk appears; where February differs from January the
check says so). Most use the app in-process (``CL_COMPUTE_PROFILE`` set with monkeypatch; the
profile is read per request), with a real broker where a job is created; the 500 that closes the connection and
the id-only capability messages are checked against real deployments.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from server_helpers import wait_until
from starlette.exceptions import StarletteDeprecationWarning

from cl_compute import __version__
from cl_compute.app import ServerSettings, ServerState, create_app, upload_name_as_sent
from cl_compute.auth import generate_keypair, mint_token
from cl_compute.broker import Broker, start_broker
from cl_compute.deployment import Deployment
from cl_compute.profile import (
    FIXED,
    PROFILE_ENV,
    PROFILES,
    UPSTREAM_2026_01,
    UPSTREAM_2026_02,
    UPSTREAM_2026_02_20,
    Quirks,
    profile_warning,
)
from cl_compute.store import JobStore

with warnings.catch_warnings():
    # Starlette 1.x asks for its ``httpx2`` backend; with the httpx installed here the TestClient works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

PRIVATE, PUBLIC = generate_keypair()
USER = {"Authorization": f"Bearer {mint_token(PRIVATE, user_id='u1')}"}
NO_EXP = {"Authorization": f"Bearer {mint_token(PRIVATE, user_id='u1', expires_in=None)}"}
EXPIRED = {"Authorization": f"Bearer {mint_token(PRIVATE, user_id='u1', expires_in=-60)}"}
GARBAGE = {"Authorization": "Bearer not.a.jwt"}
UNREACHABLE_MQTT = "mqtt://127.0.0.1:9"  # never connected: TestClient without ``with`` skips the lifespan
BAD_VARIANTS = ["[]", "not json", '{"resolution": 720}', '[{"resolution": "tall", "bitrate": 800}]']


@pytest.fixture(params=[FIXED, UPSTREAM_2026_01, UPSTREAM_2026_02])
def profile(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The fixed profile and the January and February upstream ones, as ``CL_COMPUTE_PROFILE`` of this process."""
    name = str(request.param)
    monkeypatch.setenv(PROFILE_ENV, name)
    return name


def upstream(profile: str) -> bool:
    """Any upstream profile (the quirks January and February share)."""
    return profile != FIXED


def january(profile: str) -> bool:
    return profile == UPSTREAM_2026_01


def february(profile: str) -> bool:
    return profile == UPSTREAM_2026_02


def guest_mode_put_path(profile: str) -> str:
    """The guest-mode PUT route the profile serves (January: ``/admin/config/…``; others ``/admin/pref/…``)."""
    return "/admin/config/guest-mode" if january(profile) else "/admin/pref/guest-mode"


def guest_mode_get_path(profile: str) -> str:
    """The guest-mode GET route the profile serves (February: ``/admin/pref``; others ``/admin/config``)."""
    return "/admin/pref" if february(profile) else "/admin/config"


def app_client(data_dir: Path, **settings: Any) -> TestClient:
    """The API in-process, lifespan not run (no broker, no reaper): every route that creates no job works."""
    return TestClient(create_app(ServerSettings(data_dir=data_dir, mqtt_url=UNREACHABLE_MQTT, **settings)))


def state_of(client: TestClient) -> ServerState:
    state = client.app.state.cl  # type: ignore[attr-defined]
    assert isinstance(state, ServerState)
    return state


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    b = start_broker()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def live_client(broker: Broker, tmp_path: Path) -> Iterator[TestClient]:
    """The API in-process with its lifespan (MQTT connected): jobs can be created (no worker runs them); an
    unhandled exception is answered 500 as uvicorn's stack would."""
    app = create_app(ServerSettings(data_dir=tmp_path, mqtt_url=broker.url))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


# -- upstream_identity ---------------------------------------------------------------------------------------


def test_root_identity(profile: str, tmp_path: Path) -> None:
    body = app_client(tmp_path).get("/").json()
    if upstream(profile):
        assert body == {"status": "healthy", "service": "Task Server", "version": "v1", "guestMode": "on"}
    else:
        assert body == {"status": "healthy", "service": "cl_compute", "version": __version__, "guestMode": "on"}


def test_root_identity_keeps_guest_mode_off(profile: str, tmp_path: Path) -> None:
    body = app_client(tmp_path, auth_public_key_pem=PUBLIC, guest_mode_default=False).get("/").json()
    assert body["guestMode"] == "off"
    assert body["service"] == ("Task Server" if upstream(profile) else "cl_compute")


# -- lazy_capabilities and id-only capability payloads ---------------------------------------------------------


def announce(state: ServerState, worker_id: str, payload: dict[str, object]) -> None:
    """Feed a retained capability message to the API's listener, as the broker would."""
    state._on_message(f"inference/workers/{worker_id}", json.dumps(payload).encode(), True)


def test_first_capabilities_call_is_empty_only_january(profile: str, tmp_path: Path) -> None:
    client = app_client(tmp_path)
    announce(
        state_of(client),
        "w1",
        {"id": "w1", "worker_id": "w1", "capabilities": ["hash"], "idle_count": 1, "timestamp": 1},
    )
    real = {"num_workers": 1, "capabilities": {"hash": 1}}
    first = client.get("/capabilities").json()
    # February subscribes at start-up, as the fixed profile does
    assert first == ({"num_workers": 0, "capabilities": {}} if january(profile) else real)
    assert client.get("/capabilities").json() == real
    assert client.get("/capabilities").json() == real


def test_capability_payload_with_id_only_is_accepted(profile: str, tmp_path: Path) -> None:
    client = app_client(tmp_path)
    state = state_of(client)
    announce(state, "jan-worker", {"id": "jan-worker", "capabilities": ["hash", "exif"], "idle_count": 1})
    announce(state, "busy-one", {"id": "busy-one", "capabilities": ["hash"], "idle_count": 0, "timestamp": 5})
    client.get("/capabilities")  # the upstream profile's lazy first call
    assert client.get("/capabilities").json() == {"num_workers": 2, "capabilities": {"hash": 1, "exif": 1}}
    assert set(client.get("/internal/workers").json()["workers"]) == {"jan-worker", "busy-one"}
    state._on_message("inference/workers/jan-worker", b"", True)  # gone
    assert client.get("/capabilities").json() == {"num_workers": 1, "capabilities": {"hash": 0}}


# -- updated_at_is_created_at ----------------------------------------------------------------------------------


def test_updated_at_echoes_created_at_only_upstream(profile: str, tmp_path: Path) -> None:
    client = app_client(tmp_path)
    store = state_of(client).store
    store.insert_job("j1", "hash", {"input_path": "input/a"}, 5, None, created_at=1_000)
    claimed = store.claim_next(["hash"], "w1", 60_000)
    assert claimed is not None
    assert claimed.updated_at is not None
    assert claimed.updated_at > 1_000
    body = client.get("/jobs/j1").json()
    assert body["created_at"] == 1_000
    assert body["started_at"] == claimed.started_at
    assert body["updated_at"] == (1_000 if upstream(profile) else claimed.updated_at)


# -- priority_ignored ------------------------------------------------------------------------------------------


def test_claim_order_ignores_priority_only_upstream(profile: str, tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.insert_job("low-old", "hash", {}, 0, None, created_at=1_000)
    store.insert_job("high", "hash", {}, 10, None, created_at=2_000)
    store.insert_job("low-oldest", "hash", {}, 0, None, created_at=500)  # inserted last, created first
    order = []
    while (job := store.claim_next(["hash"], "w1", 60_000)) is not None:
        order.append(job.job_id)
    if upstream(profile):
        assert order == ["low-oldest", "low-old", "high"]  # created_at order, priority ignored
    else:
        assert order == ["high", "low-old", "low-oldest"]  # priority first, then FIFO (insertion order)


# -- octet_stream_downloads ------------------------------------------------------------------------------------


def test_download_media_type(profile: str, tmp_path: Path) -> None:
    client = app_client(tmp_path)
    store = state_of(client).store
    store.insert_job("j1", "hash", {}, 5, None)
    (store.job_dir("j1") / "output").mkdir(parents=True)
    (store.job_dir("j1") / "output" / "hash.json").write_text('{"hash_value": "x"}')
    r = client.get("/jobs/j1/files/output/hash.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == ("application/octet-stream" if upstream(profile) else "application/json")
    assert r.headers["content-disposition"] == 'attachment; filename="hash.json"'
    assert r.content == b'{"hash_value": "x"}'


# -- upload_names_as_sent --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("photo.jpg", "photo.jpg"),
        ("my holiday photo.jpg", "my holiday photo.jpg"),
        ("été 漢字 📷.jpg", "été 漢字 📷.jpg"),
        ("what#is?this%20.jpg", "what#is?this%20.jpg"),
        ("photo\u202egpj.exe", "photo\u202egpj.exe"),
        ("tab\there\x7f.jpg", "tab\there\x7f.jpg"),
        (" .hidden. ", " .hidden. "),
        ("../../escape.jpg", ".._.._escape.jpg"),
        ("/tmp/abs.jpg", "_tmp_abs.jpg"),
        ("..\\win\\back.jpg", ".._win_back.jpg"),
        ("x\x00y", "x_y"),
        ("", "upload"),
        (".", "upload"),
        ("..", "upload"),
        (None, "upload"),
    ],
)
def test_upload_name_as_sent_unit(sent: str | None, stored: str) -> None:
    assert upload_name_as_sent(sent) == stored


def post_hash(client: TestClient, filename: str, data: bytes = b"payload") -> dict[str, Any]:
    r = client.post("/jobs/hash", files={"file": (filename, data)}, data={"algorithm": "md5"})
    assert r.status_code == 200, r.text
    job = client.get(f"/jobs/{r.json()['job_id']}").json()
    assert isinstance(job, dict)
    return job


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and not p.name.startswith("compute.db")}


@pytest.mark.parametrize(
    ("sent", "fixed_name", "upstream_name"),
    [
        ("my photo\u202egpj.exe", "my photogpj.exe", "my photo\u202egpj.exe"),
        ("what#is?this.jpg", "what_is_this.jpg", "what#is?this.jpg"),
        # the four names of the conformance check test_upload_names_with_paths_are_reduced_to_a_basename: the
        # fixed profile stores the last path segment, the upstream profile does not (the check fails there)
        ("../../escape.jpg", "escape.jpg", ".._.._escape.jpg"),
        ("/tmp/abs.jpg", "abs.jpg", "_tmp_abs.jpg"),
        ("a/b/c/nested.jpg", "nested.jpg", "a_b_c_nested.jpg"),
        ("..\\win\\back.jpg", "back.jpg", ".._win_back.jpg"),
    ],
)
def test_upload_stored_under_the_name_as_sent_only_upstream(
    profile: str, live_client: TestClient, tmp_path: Path, sent: str, fixed_name: str, upstream_name: str
) -> None:
    job = post_hash(live_client, sent)
    name = upstream_name if upstream(profile) else fixed_name
    assert job["params"]["input_path"] == f"input/{name}"
    job_dir = tmp_path / "jobs" / job["job_id"]
    assert files_under(tmp_path) == {job_dir / "input" / name}  # nothing outside the job's input folder
    assert (job_dir / "input" / name).read_bytes() == b"payload"


# -- queued_after_insert ---------------------------------------------------------------------------------------


def test_queued_event_published_after_the_insert_only_upstream(profile: str, live_client: TestClient) -> None:
    state = state_of(live_client)
    original = state.mqtt.publish_event
    seen: list[tuple[str, bool]] = []

    def recording(job_id: str, event_type: str, progress: int, timestamp: int, wait: bool = False) -> None:
        seen.append((event_type, state.store.job_exists(job_id)))
        original(job_id, event_type, progress, timestamp, wait)

    state.mqtt.publish_event = recording  # type: ignore[method-assign]
    r = live_client.post("/jobs/hash", files={"file": ("a.bin", b"x")})
    assert r.status_code == 200
    # published before the answer in both profiles; the row exists at that moment only upstream
    assert seen == [("queued", upstream(profile))]


# -- bad_variants_500 (in-process: the answer; real deployments below: the connection) -------------------------


@pytest.mark.parametrize("variants", BAD_VARIANTS)
def test_bad_variants_status(profile: str, live_client: TestClient, tmp_path: Path, variants: str) -> None:
    r = live_client.post("/jobs/hls_streaming", files={"file": ("v.mp4", b"x")}, data={"variants": variants})
    if upstream(profile):
        assert r.status_code == 500
        assert r.text == "Internal Server Error"
    else:
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "variants"]
    assert files_under(tmp_path) == set()  # no job folder, no staging leftovers
    assert state_of(live_client).store.jobs_created_before(2**62) == []


def test_other_validation_errors_still_422_with_bad_variants(profile: str, live_client: TestClient) -> None:
    r = live_client.post(
        "/jobs/hls_streaming", files={"file": ("v.mp4", b"x")}, data={"variants": "[]", "priority": "11"}
    )
    assert r.status_code == 422  # FastAPI's validation runs before upstream's route body


# -- hls_server_paths (February): in-process, the API side; the worker side is in test_profile_worker.py -------

REFUSED_FIELD = "is not accepted: this deployment never reads or writes server paths named by a client"


@pytest.mark.parametrize("field", ["input_absolute_path", "output_absolute_path"])
def test_hls_server_path_fields_refused_unless_february(
    profile: str, live_client: TestClient, tmp_path: Path, field: str
) -> None:
    target = tmp_path / "srv" / "out"
    value = "/etc/hostname" if field == "input_absolute_path" else str(target)
    r = live_client.post("/jobs/hls_streaming", files={"file": ("v.mp4", b"x")}, data={field: value})
    if february(profile):  # with a file upstream ignores both fields
        assert r.status_code == 200, r.text
        params = live_client.get(f"/jobs/{r.json()['job_id']}").json()["params"]
        assert params["input_path"] == "input/v.mp4"
        assert params["output_path"] == "output"
        assert "input_absolute_path" not in params and "output_absolute_path" not in params
    else:
        assert r.status_code == 422, r.text
        [error] = r.json()["detail"]
        assert error["loc"] == ["body", field]
        assert error["msg"].startswith(f"{field} {REFUSED_FIELD}"), error
        assert files_under(tmp_path) == set()
    assert not target.exists()


def test_hls_without_a_file_names_server_paths_only_february(
    profile: str, live_client: TestClient, tmp_path: Path
) -> None:
    out = tmp_path / "fresh" / "hls"
    r = live_client.post(
        "/jobs/hls_streaming",
        data={"input_absolute_path": "/etc/hostname", "output_absolute_path": str(out), "priority": "3"},
    )
    if february(profile):
        assert r.status_code == 200, r.text
        job = live_client.get(f"/jobs/{r.json()['job_id']}").json()
        assert job["status"] == "queued" and job["priority"] == 3
        params = job["params"]
        assert (params["input_path"], params["output_path"]) == ("", "")
        assert params["input_absolute_path"] == "/etc/hostname"
        assert params["output_absolute_path"] == str(out)
        # the default output path is upstream's relative "output"
        r = live_client.post("/jobs/hls_streaming", data={"input_absolute_path": "/nonexistent/in.mp4"})
        assert r.status_code == 200, r.text
        params = live_client.get(f"/jobs/{r.json()['job_id']}").json()["params"]
        assert params["output_absolute_path"] == "output"
    else:
        assert r.status_code == 422, r.text
        locs = [e["loc"] for e in r.json()["detail"]]
        assert ["body", "file"] in locs or ["body", "input_absolute_path"] in locs, locs
    assert not out.exists()  # the API never touches the paths; the worker does


def test_hls_without_file_or_input_path(profile: str, live_client: TestClient, tmp_path: Path) -> None:
    r = live_client.post("/jobs/hls_streaming", data={"variants": '[{"resolution":72,"bitrate":100}]'})
    if february(profile):
        assert (r.status_code, r.json()) == (400, {"detail": "Either file or input_absolute_path must be provided"})
    else:
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "file"]
    assert files_under(tmp_path) == set()
    assert state_of(live_client).store.jobs_created_before(2**62) == []
    # FastAPI's validation comes first, then upstream's variants parsing (500), then the 400
    r = live_client.post("/jobs/hls_streaming", data={"priority": "11"})
    assert r.status_code == 422
    r = live_client.post("/jobs/hls_streaming", data={"variants": "[]"})
    assert r.status_code == (500 if february(profile) else 422)  # January: the missing file comes first


def test_other_plugins_still_need_a_file(profile: str, live_client: TestClient) -> None:
    r = live_client.post("/jobs/hash", data={"input_absolute_path": "/etc/hostname"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "file"]


# -- the profiles themselves ---------------------------------------------------------------------------------------

JANUARY_SWITCHES = {
    "upstream_identity", "lazy_capabilities", "updated_at_is_created_at", "priority_ignored", "queued_after_insert",
    "bad_variants_500", "octet_stream_downloads", "upload_names_as_sent", "guest_mode_default_on",
    "guest_mode_opens_admin", "exp_optional", "silent_failures", "no_progress_events", "capability_id_only",
    "idle_poll", "late_will", "exif_typed_null", "exif_hash_accept_empty", "thumbnail_mode_fails",
    "thumbnail_video_fails", "video_hash_csv_defect", "hls_master_absolute", "hls_accepts_stills",
    "admin_config_routes_only",
}  # fmt: skip
#: PROTOCOL.md §9: what February fixed, and what it added
FEBRUARY_FIXED = {"lazy_capabilities", "silent_failures", "no_progress_events", "capability_id_only",
                  "admin_config_routes_only"}  # fmt: skip
FEBRUARY_ADDED = {"admin_pref_routes_only", "capability_worker_id_only", "fast_idle_poll", "hls_server_paths",
                  "hls_manifest_progress"}  # fmt: skip


def switches_on(q: Quirks) -> set[str]:
    return {name for name, on in vars(q).items() if on}


def test_profiles_are_explicit_switch_sets() -> None:
    assert switches_on(PROFILES[FIXED]) == set()
    assert switches_on(PROFILES[UPSTREAM_2026_01]) == JANUARY_SWITCHES
    assert switches_on(PROFILES[UPSTREAM_2026_02]) == (JANUARY_SWITCHES - FEBRUARY_FIXED) | FEBRUARY_ADDED
    assert switches_on(PROFILES[UPSTREAM_2026_02_20]) == switches_on(PROFILES[UPSTREAM_2026_02]) | {
        "ml_tools_broken_plugins"
    }


def test_only_the_february_profiles_warn() -> None:
    assert profile_warning(FIXED) is None
    assert profile_warning(UPSTREAM_2026_01) is None
    for name in (UPSTREAM_2026_02, UPSTREAM_2026_02_20):
        warning = profile_warning(name)
        assert warning is not None
        assert name in warning and "read and write" in warning and "input_absolute_path" in warning


# -- guest_mode_default_on, guest_mode_opens_admin, exp_optional ---------------------------------------------


def test_guest_mode_default_with_auth(profile: str, tmp_path: Path) -> None:
    client = app_client(tmp_path, auth_public_key_pem=PUBLIC)
    assert client.get("/").json()["guestMode"] == ("on" if upstream(profile) else "off")
    r = client.get("/jobs/nope")
    if upstream(profile):
        assert r.status_code == 404  # open
    else:
        assert (r.status_code, r.json()) == (401, {"detail": "Authentication required"})
    assert client.get("/jobs/nope", headers=USER).status_code == 404


def test_explicit_guest_mode_wins_over_the_default(profile: str, tmp_path: Path) -> None:
    assert app_client(tmp_path, auth_public_key_pem=PUBLIC, guest_mode_default=False).get("/").json()["guestMode"] == (
        "off"
    )


@pytest.mark.parametrize("headers", [None, GARBAGE, EXPIRED, USER], ids=["none", "garbage", "expired", "user"])
def test_guest_mode_opens_admin_only_upstream(profile: str, tmp_path: Path, headers: dict[str, str] | None) -> None:
    client = app_client(tmp_path, auth_public_key_pem=PUBLIC, guest_mode_default=True)
    assert client.get("/").json()["guestMode"] == "on"
    assert client.get("/jobs/nope", headers=headers).status_code == 404  # job routes: open in both profiles
    r = client.get(guest_mode_get_path(profile), headers=headers)
    if upstream(profile):
        assert r.status_code == 200, r.text
        assert r.json()["guest_mode"] is True
        put = client.put(guest_mode_put_path(profile), data={"guest_mode": "false"}, headers=headers)
        assert put.status_code == 200
        assert client.get("/").json()["guestMode"] == "off"
    else:
        assert r.status_code == (403 if headers is USER else 401)


def test_guest_mode_off_still_closes_admin_upstream(profile: str, tmp_path: Path) -> None:
    client = app_client(tmp_path, auth_public_key_pem=PUBLIC, guest_mode_default=False)
    assert client.get(guest_mode_get_path(profile)).status_code == 401
    assert client.get(guest_mode_get_path(profile), headers=GARBAGE).status_code == 401


# -- admin_config_routes_only (January), admin_pref_routes_only (February) ----------------------------------------

ADMIN_GUEST_MODE_ROUTES = [
    ("GET", "/admin/config"),
    ("PUT", "/admin/config/guest-mode"),
    ("GET", "/admin/pref"),
    ("GET", "/admin/pref/guest-mode"),
    ("PUT", "/admin/pref/guest-mode"),
]
#: status of each route of ADMIN_GUEST_MODE_ROUTES per profile (no auth configured: everything open)
ADMIN_STATUS = {
    FIXED: [200, 200, 200, 200, 200],
    UPSTREAM_2026_01: [200, 200, 404, 404, 404],
    UPSTREAM_2026_02: [404, 404, 200, 405, 200],
}
#: the guest-mode paths in /openapi.json per profile
ADMIN_OPENAPI = {
    FIXED: {"/admin/config": ["get"], "/admin/config/guest-mode": ["put"], "/admin/pref": ["get"],
            "/admin/pref/guest-mode": ["get", "put"]},
    UPSTREAM_2026_01: {"/admin/config": ["get"], "/admin/config/guest-mode": ["put"]},
    UPSTREAM_2026_02: {"/admin/pref": ["get"], "/admin/pref/guest-mode": ["put"]},
}  # fmt: skip


def test_guest_mode_routes_per_profile(profile: str, tmp_path: Path) -> None:
    client = app_client(tmp_path)
    statuses = []
    for method, path in ADMIN_GUEST_MODE_ROUTES:
        data = {"guest_mode": "true"} if method == "PUT" else None
        r = client.request(method, path, data=data)
        statuses.append(r.status_code)
        if r.status_code == 200:
            body = r.json()
            assert body["guest_mode"] is True, (path, body)
            if method == "PUT":
                assert set(body) == {"guest_mode", "message"}, (path, body)
            elif path == "/admin/pref/guest-mode":
                assert body == {"guest_mode": True}
            else:
                assert {"guest_mode", "updated_at", "updated_by"} <= set(body), (path, body)
    assert statuses == ADMIN_STATUS[profile], list(zip(ADMIN_GUEST_MODE_ROUTES, statuses, strict=True))
    paths = client.get("/openapi.json").json()["paths"]
    documented = {p: sorted(ops) for p, ops in paths.items() if p.startswith(("/admin/config", "/admin/pref"))}
    assert documented == ADMIN_OPENAPI[profile]
    # the job-storage admin routes stay in every profile
    assert {"/admin/jobs/storage/size", "/admin/jobs/cleanup"} <= set(paths)


def test_february_guest_mode_round_trip_through_pref(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(PROFILE_ENV, UPSTREAM_2026_02)
    client = app_client(tmp_path, auth_public_key_pem=PUBLIC)  # guest mode on by default, admin open
    assert client.get("/admin/pref").json() == {
        "guest_mode": True,
        "updated_at": None,
        "updated_by": None,
        "auth_configured": True,
    }
    r = client.put("/admin/pref/guest-mode", data={"guest_mode": "false"})
    assert r.json() == {"guest_mode": False, "message": "Configuration updated successfully"}
    assert client.get("/").json()["guestMode"] == "off"
    pref = client.get("/admin/pref", headers=USER)
    assert pref.status_code == 403  # guest mode off: admin only
    assert client.get("/admin/pref").status_code == 401


def test_token_without_exp_accepted_only_upstream(profile: str, tmp_path: Path) -> None:
    client = app_client(tmp_path, auth_public_key_pem=PUBLIC, guest_mode_default=False)
    r = client.get("/jobs/nope", headers=NO_EXP)
    if upstream(profile):
        assert (r.status_code, r.json()) == (404, {"detail": "Job nope not found"})
    else:
        assert (r.status_code, r.json()) == (401, {"detail": "JWT payload is invalid"})
    r = client.get("/jobs/nope", headers=EXPIRED)  # an exp that is there is still checked
    assert (r.status_code, r.json()) == (401, {"detail": "JWT token has expired"})


# -- real deployments: the closed connection, id-only capability messages --------------------------------------


@pytest.fixture(scope="module")
def upstream_dep() -> Iterator[Deployment]:
    dep = Deployment(profile=UPSTREAM_2026_01, workers=1, tasks=["hash"], worker_shutdown_grace=0.5)
    dep.start()
    try:
        yield dep
    finally:
        dep.stop()


def hls_request(host: str, port: int, variants: str) -> bytes:
    boundary = "cl-profile-test"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\nnot a video\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="variants"\r\n\r\n{variants}\r\n--{boundary}--\r\n'
    ).encode()
    head = (
        f"POST /jobs/hls_streaming HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: keep-alive\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a ``Content-Length`` body: status, headers (lower-case names), body."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a complete response head: {buf!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the body"
        rest += chunk
    return int(status_line.split()[1]), headers, rest[:length]


def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def job_rows(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "compute.db") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM jobs").fetchone()
    return int(count)


def job_entries(data_dir: Path) -> list[str]:
    found = [p.name for p in (data_dir / "jobs").iterdir()] if (data_dir / "jobs").is_dir() else []
    incoming = data_dir / "incoming"
    return found + ([f"incoming/{p.name}" for p in incoming.iterdir()] if incoming.is_dir() else [])


@pytest.mark.parametrize("variants", BAD_VARIANTS)
def test_upstream_bad_variants_500_then_closes_without_connection_close(
    upstream_dep: Deployment, variants: str
) -> None:
    parsed = urlparse(upstream_dep.server_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    rows, entries = job_rows(upstream_dep.data_dir), job_entries(upstream_dep.data_dir)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(hls_request(host, port, variants))
        status, headers, body = read_response(sock)
        assert status == 500
        assert body == b"Internal Server Error"
        assert headers["content-type"].startswith("text/plain")
        assert "connection" not in headers, headers  # nothing tells the client the connection ends
        assert closed_by_peer(sock), "the server kept the connection open after the 500"
    assert job_rows(upstream_dep.data_dir) == rows
    assert job_entries(upstream_dep.data_dir) == entries
    with httpx.Client(base_url=upstream_dep.server_url, timeout=10) as http:
        assert http.get("/").json()["service"] == "Task Server"  # the server itself is fine


def test_fixed_bad_variants_422_and_connection_stays_open(deployment: Deployment) -> None:
    parsed = urlparse(deployment.server_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(hls_request(host, port, "[]"))
        status, headers, body = read_response(sock)
        assert status == 422
        assert json.loads(body)["detail"][0]["loc"] == ["body", "variants"]
        assert "connection" not in headers
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())  # same connection
        status, _, body = read_response(sock)
        assert status == 200
        assert json.loads(body)["service"] == "cl_compute"


def test_upstream_deployment_takes_id_only_capability_messages(upstream_dep: Deployment) -> None:
    parsed = urlparse(upstream_dep.mqtt_url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-jan-worker-{time.monotonic_ns()}")
    client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883)
    client.loop_start()
    topic = "inference/workers/jan-style-worker"
    try:
        payload = {"id": "jan-style-worker", "capabilities": ["exif"], "idle_count": 1, "timestamp": 1}
        client.publish(topic, json.dumps(payload), qos=1, retain=True).wait_for_publish(10)
        with httpx.Client(base_url=upstream_dep.server_url, timeout=10) as http:

            def listed() -> dict[str, Any] | None:
                caps: dict[str, Any] = http.get("/capabilities").json()
                return caps if caps["capabilities"].get("exif") == 1 else None

            caps = wait_until(listed, "the id-only worker in /capabilities", timeout=30)
            assert caps["num_workers"] == 1 + len(upstream_dep.worker_ids)
            assert "hash" in caps["capabilities"]
            assert http.get("/internal/workers").json()["workers"]["jan-style-worker"] == payload
    finally:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
        client.disconnect()
        client.loop_stop()
