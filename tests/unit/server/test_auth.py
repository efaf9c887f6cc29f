"""The auth matrix of PROTOCOL.md §6 on a deployment started with --auth-public-key (no workers needed)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from server_helpers import test_plugin_spec

from cl_compute.auth import generate_keypair, mint_token
from cl_compute.deployment import Deployment

PRIVATE, PUBLIC = generate_keypair()
OTHER_PRIVATE, _ = generate_keypair()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


USER = bearer(mint_token(PRIVATE, user_id="u1", permissions=["ai_inference_support"]))
ADMIN = bearer(mint_token(PRIVATE, user_id="root", permissions=[], is_admin=True))
NOPERM = bearer(mint_token(PRIVATE, user_id="u2", permissions=["media_store_read"]))
FAKE_ADMIN = bearer(mint_token(PRIVATE, user_id="u3", permissions=["admin", "ai_inference_support"]))


@pytest.fixture(scope="module")
def authdep() -> Iterator[tuple[Deployment, httpx.Client]]:
    dep = Deployment(workers=0, auth_public_key=PUBLIC, extra_plugins=test_plugin_spec())
    dep.start()
    try:
        with httpx.Client(base_url=dep.server_url, timeout=10) as client:
            yield dep, client
    finally:
        dep.stop()


def post_echo(client: httpx.Client, headers: dict[str, str] | None) -> httpx.Response:
    return client.post("/jobs/echo", files={"file": ("a.txt", b"x")}, headers=headers)


def test_public_endpoints_need_no_token(authdep: tuple[Deployment, httpx.Client]) -> None:
    _, client = authdep
    assert client.get("/").json()["guestMode"] == "off"
    assert client.get("/capabilities").status_code == 200
    assert client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        (None, "Authentication required"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "Authentication required"),
        ({"Authorization": "Bearer"}, "Authentication required"),
        (bearer("not.a.jwt"), "Could not validate credentials"),
        (bearer(mint_token(OTHER_PRIVATE)), "Could not validate credentials"),
        (
            bearer(jwt.encode({"id": "x", "exp": 9999999999}, "s" * 40, algorithm="HS256")),
            "Could not validate credentials",
        ),
        (bearer(mint_token(PRIVATE, expires_in=-60)), "JWT token has expired"),
        (bearer(mint_token(PRIVATE, expires_in=None)), "JWT payload is invalid"),  # [fix] exp required
        (bearer(jwt.encode({"exp": 9999999999}, PRIVATE, algorithm="ES256")), "JWT payload is invalid"),
        (bearer(jwt.encode({"id": 1, "exp": 9999999999}, PRIVATE, algorithm="ES256")), "JWT payload is invalid"),
        (
            bearer(jwt.encode({"id": "x", "is_admin": "true", "exp": 9999999999}, PRIVATE, algorithm="ES256")),
            "JWT payload is invalid",
        ),
    ],
)
def test_401_messages(authdep: tuple[Deployment, httpx.Client], headers: dict[str, str] | None, detail: str) -> None:
    _, client = authdep
    for r in (client.get("/jobs/whatever", headers=headers), post_echo(client, headers)):
        assert r.status_code == 401
        assert r.json() == {"detail": detail}
        assert r.headers["www-authenticate"] == "Bearer"


def test_auth_is_decided_before_validation(authdep: tuple[Deployment, httpx.Client]) -> None:
    _, client = authdep
    r = client.post("/jobs/echo", data={"priority": "99"})
    assert r.status_code == 401
    r = client.post("/jobs/echo", data={"priority": "99"}, headers=NOPERM)
    assert r.status_code == 403


def test_job_routes_permission_matrix(authdep: tuple[Deployment, httpx.Client]) -> None:
    _, client = authdep
    r = post_echo(client, NOPERM)
    assert r.status_code == 403
    assert r.json() == {"detail": "Insufficient permissions. Required: ai_inference_support"}
    for headers in (USER, ADMIN, FAKE_ADMIN):
        r = post_echo(client, headers)
        assert r.status_code == 200, r.text
        job_id = r.json()["job_id"]
        assert client.get(f"/jobs/{job_id}", headers=headers).status_code == 200
        assert client.get(f"/jobs/{job_id}/files/input/a.txt", headers=headers).content == b"x"
        assert client.get(f"/jobs/{job_id}", headers=NOPERM).status_code == 403
        assert client.get(f"/jobs/{job_id}/files/input/a.txt").status_code == 401
        assert client.delete(f"/jobs/{job_id}", headers=NOPERM).status_code == 403
        assert client.delete(f"/jobs/{job_id}", headers=headers).status_code == 204


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/jobs/storage/size"),
        ("DELETE", "/admin/jobs/cleanup?days=3650"),
        ("GET", "/admin/config"),
        ("GET", "/admin/pref/guest-mode"),
    ],
)
def test_admin_routes_need_is_admin(authdep: tuple[Deployment, httpx.Client], method: str, path: str) -> None:
    _, client = authdep
    assert client.request(method, path).status_code == 401
    for headers in (USER, FAKE_ADMIN):  # a "admin" permission string is not is_admin
        r = client.request(method, path, headers=headers)
        assert r.status_code == 403
        assert r.json() == {"detail": "Insufficient permissions. Admin access required"}
    assert client.request(method, path, headers=ADMIN).status_code == 200


def test_guest_mode_opens_job_routes_but_never_admin(authdep: tuple[Deployment, httpx.Client]) -> None:
    _, client = authdep
    assert client.put("/admin/config/guest-mode", data={"guest_mode": "true"}).status_code == 401
    r = client.put("/admin/config/guest-mode", data={"guest_mode": "true"}, headers=ADMIN)
    assert r.json() == {"guest_mode": True, "message": "Configuration updated successfully"}
    try:
        assert client.get("/").json()["guestMode"] == "on"
        assert post_echo(client, None).status_code == 200
        assert post_echo(client, bearer("garbage")).status_code == 200  # tokens are not decoded
        assert client.get("/admin/config").status_code == 401  # [fix] admin stays protected
        assert client.get("/admin/config", headers=USER).status_code == 403
        config = client.get("/admin/config", headers=ADMIN).json()
        assert config["guest_mode"] is True
        assert config["updated_by"] == "root"
        assert isinstance(config["updated_at"], int)
        assert client.get("/admin/pref/guest-mode", headers=ADMIN).json() == {"guest_mode": True}
    finally:
        r = client.put("/admin/pref/guest-mode", data={"guest_mode": "false"}, headers=ADMIN)
        assert r.json()["guest_mode"] is False
    assert client.get("/").json()["guestMode"] == "off"
    assert post_echo(client, None).status_code == 401


def test_cleanup_deletes_old_jobs_and_reports_freed_space(authdep: tuple[Deployment, httpx.Client]) -> None:
    _, client = authdep
    ids = [post_echo(client, USER).json()["job_id"] for _ in range(3)]
    size = client.get("/admin/jobs/storage/size", headers=ADMIN).json()
    assert size["job_count"] >= 3
    assert size["total_size"] >= 3
    r = client.delete("/admin/jobs/cleanup", params={"days": 0}, headers=ADMIN)
    body = r.json()
    assert body["deleted_count"] == size["job_count"]
    assert body["freed_space"] == size["total_size"]
    for job_id in ids:
        assert client.get(f"/jobs/{job_id}", headers=USER).status_code == 404
    assert client.get("/admin/jobs/storage/size", headers=ADMIN).json() == {"total_size": 0, "job_count": 0}


def test_token_command_mints_a_working_token(authdep: tuple[Deployment, httpx.Client], tmp_path: Path) -> None:
    _, client = authdep
    key = tmp_path / "private_key.pem"
    key.write_text(PRIVATE)
    out = subprocess.run(
        [sys.executable, "-m", "cl_compute.cli", "token", "--private-key", str(key), "--admin", "--expires-in", "60"],
        capture_output=True,
        text=True,
        check=True,
    )
    token = out.stdout.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["is_admin"] is True
    assert claims["permissions"] == ["ai_inference_support"]
    assert client.get("/admin/config", headers=bearer(token)).status_code == 200


def test_mint_token_claims() -> None:
    token = mint_token(PRIVATE, user_id="7", permissions=["a", "b"], is_admin=False, expires_in=100)
    claims = jwt.decode(token, PUBLIC, algorithms=["ES256"])
    assert claims["id"] == "7"
    assert claims["permissions"] == ["a", "b"]
    assert claims["is_admin"] is False
    assert "exp" in claims
    assert "exp" not in jwt.decode(mint_token(PRIVATE, expires_in=None), PUBLIC, algorithms=["ES256"])
