"""Auth (PROTOCOL.md §6): the 401/403/200 matrix of public, job and admin routes.

Which deployment is checked:

* embedded run (no ``--cl-server``): the shared embedded deployment has no auth, so this module starts a
  second, small ``cl_compute`` deployment (1 worker, ``hash`` only, guest mode off, the same
  ``--cl-embedded-profile``) with a fresh ES256 key pair and mints its own tokens;
* ``--cl-server``: the deployment under test, when ``GET /`` says ``guestMode: off``. Tokens with chosen
  claims (expired, wrong permission, admin) need the auth service's private key: set
  ``CL_AUTH_PRIVATE_KEY`` to its PEM file (or the PEM text); without it only the token-less checks and the
  ``--cl-token`` check run, the others skip and say why.

Every request is plain httpx without the suite's ``--cl-token`` (``RawHTTP`` with chosen headers).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cl_client import ComputeClient
from cl_client._tls import shared_ssl_context
from pytest_cl._media import MediaCatalogue
from pytest_cl.config import resolve_settings
from pytest_cl.conformance._checks import expect, expect_field, expect_status, get_field
from pytest_cl.conformance.protocol._helpers import RawHTTP
from pytest_cl.deployment import DeploymentInfo

pytestmark = pytest.mark.timeout(120)

JOB_PERMISSION = "ai_inference_support"
PRIVATE_KEY_ENV = "CL_AUTH_PRIVATE_KEY"

Mint = Callable[..., str]


@dataclass
class AuthTarget:
    """The deployment whose auth is checked.

    Attributes:
        server_url: its compute API.
        mqtt_url: its broker (None: poll).
        mint: ``mint(permissions=[...], is_admin=False, expires_in=1800.0)`` -> token, or None without a key.
        why_no_mint: why ``mint`` is None.
        private: True for the deployment this module started itself.
        token: a working token from ``--cl-token`` (remote only), if any.
    """

    server_url: str
    mqtt_url: str | None
    mint: Mint | None
    why_no_mint: str = ""
    private: bool = False
    token: str | None = None

    def need_mint(self) -> Mint:
        """The token minter, or skip the test with the reason."""
        if self.mint is None:
            pytest.skip(self.why_no_mint)
        return self.mint


def _minter(private_pem: str) -> Mint:
    jwt = pytest.importorskip("jwt", reason="minting test tokens needs PyJWT: pip install 'pyjwt[crypto]'")

    def mint(
        permissions: list[str] | tuple[str, ...] = (JOB_PERMISSION,),
        is_admin: bool = False,
        expires_in: float | None = 1800.0,
        user_id: str = "conformance-user",
    ) -> str:
        claims: dict[str, object] = {"id": user_id, "is_admin": is_admin, "permissions": list(permissions)}
        if expires_in is not None:
            claims["exp"] = int(time.time() + expires_in)
        return str(jwt.encode(claims, private_pem, algorithm="ES256"))

    return mint


@pytest.fixture(scope="module")
def auth_target(request: pytest.FixtureRequest, cl_deployment: DeploymentInfo) -> Iterator[AuthTarget]:
    settings = resolve_settings(request.config)
    if cl_deployment.embedded:
        from cl_compute.auth import generate_keypair
        from cl_compute.deployment import Deployment

        private_pem, public_pem = generate_keypair()
        dep = Deployment(
            workers=1,
            tasks=["hash"],
            auth_public_key=public_pem,
            worker_shutdown_grace=1.0,
            guest_mode=False,  # upstream's default is on; an operator who wants auth turns it off
            profile=settings.embedded_profile,  # the same behaviour as the embedded deployment under test
        )
        dep.start()
        try:
            mqtt_url = dep.mqtt_url if cl_deployment.mqtt_url else None  # --cl-mqtt off: poll here too
            yield AuthTarget(dep.server_url, mqtt_url, _minter(private_pem), private=True)
        finally:
            dep.stop()
        return
    if cl_deployment.guest_mode != "off":
        pytest.skip(
            f"{cl_deployment.server_url} reports guestMode {cl_deployment.guest_mode!r}: its job routes are open to "
            "everyone, so there is no 401/403 matrix to check (turn guest mode off to check auth)"
        )
    raw_key = os.environ.get(PRIVATE_KEY_ENV, "")
    mint: Mint | None = None
    why = (
        f"tokens with chosen claims need the auth service's ES256 private key: set {PRIVATE_KEY_ENV} to its PEM "
        "file (or PEM text)"
    )
    if raw_key:
        pem = raw_key if raw_key.lstrip().startswith("-----BEGIN") else Path(raw_key).read_text()
        mint = _minter(pem)
    yield AuthTarget(cl_deployment.server_url, cl_deployment.mqtt_url, mint, why, token=settings.token)


@pytest.fixture
def http(auth_target: AuthTarget) -> Iterator[RawHTTP]:
    client = RawHTTP(auth_target.server_url)
    try:
        yield client
    finally:
        client.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _job_routes(http: RawHTTP, headers: dict[str, str], file: bytes = b"abc") -> dict[str, httpx.Response]:
    """One request to every job route (an unknown job id: auth is decided before the lookup)."""
    job_id = str(uuid.uuid4())
    return {
        "POST /jobs/hash": http.post_job("hash", file=("a.txt", file), fields={"algorithm": "md5"}, headers=headers),
        "GET /jobs/{id}": http.client.get(f"/jobs/{job_id}", headers=headers),
        "DELETE /jobs/{id}": http.client.delete(f"/jobs/{job_id}", headers=headers),
        "GET /jobs/{id}/files/...": http.client.get(f"/jobs/{job_id}/files/output/hash.json", headers=headers),
    }


#: the route that reads the guest-mode setting: January 2026 upstream's, then February 2026 upstream's (§2, §9)
CONFIG_ROUTES = ("/admin/config", "/admin/pref")


@pytest.fixture(scope="module")
def config_routes(auth_target: AuthTarget) -> tuple[str, ...]:
    """The settings routes this deployment has: ``GET /admin/config`` (January 2026), ``GET /admin/pref``
    (February 2026), or both (the reference deployment). A route that does not exist answers 404 before any
    auth check; a deployment with neither fails every check that uses them, saying so."""
    with httpx.Client(base_url=auth_target.server_url, timeout=30, verify=shared_ssl_context()) as client:
        statuses = {path: client.get(path).status_code for path in CONFIG_ROUTES}
    found = tuple(path for path, status in statuses.items() if status != 404)
    if not found:
        pytest.fail(
            "neither January 2026's GET /admin/config nor February 2026's GET /admin/pref exists on "
            f"{auth_target.server_url} (both answer 404 without a token): the deployment has no route that reads "
            "the guest-mode setting (PROTOCOL.md §2)",
            pytrace=False,
        )
    return found


def _admin_routes(http: RawHTTP, headers: dict[str, str], config_routes: tuple[str, ...]) -> dict[str, httpx.Response]:
    return {
        "GET /admin/jobs/storage/size": http.client.get("/admin/jobs/storage/size", headers=headers),
        **{f"GET {path}": http.client.get(path, headers=headers) for path in config_routes},
        "DELETE /admin/jobs/cleanup?days=36500": http.client.delete("/admin/jobs/cleanup?days=36500", headers=headers),
    }


def _statuses(responses: dict[str, httpx.Response]) -> dict[str, int]:
    return {route: r.status_code for route, r in responses.items()}


def _cleanup_created(http: RawHTTP, responses: dict[str, httpx.Response], headers: dict[str, str]) -> None:
    post = responses["POST /jobs/hash"]
    if post.status_code == 200:
        http.client.delete(f"/jobs/{post.json()['job_id']}", headers=headers)


# -- public routes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/capabilities", "/openapi.json"])
def test_public_routes_need_no_token(http: RawHTTP, path: str) -> None:
    """``/``, ``/capabilities`` and ``/openapi.json`` answer 200 without any token."""
    response = http.client.get(path)
    expect_status(response, 200, what=f"GET {path} without a token (a public route)")


def test_health_reports_guest_mode_off(http: RawHTTP) -> None:
    """With auth on and guest mode off, ``GET /`` says ``guestMode: off``."""
    expect_field(http.client.get("/").json(), "guestMode", "off", where="GET / with auth on and guest mode off")


# -- 401 ---------------------------------------------------------------------------------------------------
def test_job_routes_without_token_are_401_authentication_required(http: RawHTTP) -> None:
    """No ``Authorization`` header: every job route answers 401 ``Authentication required``."""
    responses = _job_routes(http, {})
    expect(_statuses(responses), dict.fromkeys(responses, 401), "job routes without a token: HTTP status per route")
    for route, r in responses.items():
        expect_field(r.json(), "detail", "Authentication required", where=f"{route} without a token: the 401 body")


def test_auth_is_decided_before_validation(http: RawHTTP) -> None:
    """A POST that is invalid too (no file, bad priority) and has no token is a 401, not a 422 (§1)."""
    response = http.post_job("hash", file=None, fields={"priority": "99"})
    expect_status(response, 401, what="POST /jobs/hash without a token, file or valid priority (auth before 422)")


def test_bad_tokens_are_401(auth_target: AuthTarget, http: RawHTTP) -> None:
    """Expired, garbage, foreign-key and non-Bearer credentials: 401 on a job route, with §6's messages."""
    mint = auth_target.need_mint()
    foreign = _minter(_other_private_key())  # same claims, signed by a key the deployment does not trust
    cases = {
        "expired": (_bearer(mint(expires_in=-120)), "JWT token has expired"),
        "garbage": (_bearer("not.a.jwt"), "Could not validate credentials"),
        "foreign key": (_bearer(foreign()), "Could not validate credentials"),
        "basic scheme": ({"Authorization": "Basic dXNlcjpwYXNz"}, None),
        "bearer without token": ({"Authorization": "Bearer"}, None),
    }
    job_id = str(uuid.uuid4())
    for name, (headers, message) in cases.items():
        response = http.client.get(f"/jobs/{job_id}", headers=headers)
        expect_status(response, 401, what=f"GET /jobs/{{id}} with a {name} credential")
        if message is not None:
            expect_field(
                response.json(), "detail", message, where=f"GET /jobs/{{id}} with a {name} token: the 401 body"
            )


def _other_private_key() -> str:
    crypto = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec", reason="needs cryptography")
    from cryptography.hazmat.primitives import serialization

    key = crypto.generate_private_key(crypto.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.cl_security("tokens without 'exp' accepted (a leaked token never expires)")
def test_token_without_expiry_is_401(auth_target: AuthTarget, http: RawHTTP) -> None:
    """A correctly signed token without ``exp`` never expires: refused with 401."""
    mint = auth_target.need_mint()
    response = http.client.get(f"/jobs/{uuid.uuid4()}", headers=_bearer(mint(expires_in=None)))
    expect_status(response, 401, what="GET /jobs/{id} with a signed token without 'exp'")


# -- 403 ---------------------------------------------------------------------------------------------------
def test_job_routes_without_the_permission_are_403(auth_target: AuthTarget, http: RawHTTP) -> None:
    """A valid token lacking ``ai_inference_support`` (and not admin): 403 ``Insufficient permissions…`` on
    every job route."""
    headers = _bearer(auth_target.need_mint()(permissions=["media_store_read"]))
    responses = _job_routes(http, headers)
    try:
        expect(
            _statuses(responses),
            dict.fromkeys(responses, 403),
            "job routes with a token lacking ai_inference_support: HTTP status per route",
        )
        for route, r in responses.items():
            detail = get_field(r.json(), "detail", where=f"{route} without the permission: the 403 body")
            assert str(detail).startswith("Insufficient permissions"), (
                f"{route} without the permission: the 403 detail is {detail!r}, expected 'Insufficient permissions…'"
            )
    finally:
        _cleanup_created(http, responses, headers)


def test_admin_routes_need_is_admin(auth_target: AuthTarget, http: RawHTTP, config_routes: tuple[str, ...]) -> None:
    """``/admin/*``: 401 without a token, 403 for a user with the job permission, 200 for ``is_admin``; the
    settings route (``/admin/config`` or ``/admin/pref``, whichever exists) answers ``guest_mode`` as a boolean."""
    mint = auth_target.need_mint()
    anonymous = _admin_routes(http, {}, config_routes)
    expect(_statuses(anonymous), dict.fromkeys(anonymous, 401), "admin routes without a token: HTTP status per route")
    user = _admin_routes(http, _bearer(mint()), config_routes)
    expect(_statuses(user), dict.fromkeys(user, 403), "admin routes with a non-admin user token: HTTP status per route")
    admin = _admin_routes(http, _bearer(mint(permissions=[], is_admin=True)), config_routes)
    expect(_statuses(admin), dict.fromkeys(admin, 200), "admin routes with an is_admin token: HTTP status per route")
    where = "GET /admin/jobs/storage/size as admin"
    size = admin["GET /admin/jobs/storage/size"].json()
    job_count, total_size = get_field(size, "job_count", where=where), get_field(size, "total_size", where=where)
    assert isinstance(job_count, int) and isinstance(total_size, int), (
        f"{where}: expected integer job_count and total_size, got {job_count!r} and {total_size!r}"
    )
    for path in config_routes:
        guest_mode = get_field(admin[f"GET {path}"].json(), "guest_mode", where=f"GET {path} as admin")
        assert isinstance(guest_mode, bool), f"GET {path} as admin: guest_mode is {guest_mode!r}, not a boolean"


# -- 200 ---------------------------------------------------------------------------------------------------
def test_user_token_runs_a_whole_job(auth_target: AuthTarget, cl_media: MediaCatalogue) -> None:
    """With a token carrying ``ai_inference_support`` (minted, or ``--cl-token`` remotely) a job is created,
    runs, its result downloads (md5 of the upload) and it is deleted: 200/200/200/204 through the client."""
    token = auth_target.mint() if auth_target.mint is not None else auth_target.token
    if token is None:
        pytest.skip(f"no token for a user: pass --cl-token or set {PRIVATE_KEY_ENV}")
    item = cl_media["name_spaces"]
    with ComputeClient(auth_target.server_url, mqtt_url=auth_target.mqtt_url or "off", token=token) as client:
        job = client.hash.compute(item.path, algorithm="md5")
        try:
            result = job.result(60)
            expect(
                result.hash_value,
                hashlib.md5(item.read_bytes()).hexdigest(),
                f"hash job {job.job_id} with a user token: hash_value (the MD5 of the uploaded bytes)",
            )
        finally:
            client.delete_job(job.job_id)


def test_admin_token_may_use_job_routes(auth_target: AuthTarget, http: RawHTTP) -> None:
    """``is_admin`` without the permission passes the job routes' check (§6: "permission or admin")."""
    headers = _bearer(auth_target.need_mint()(permissions=[], is_admin=True))
    responses = _job_routes(http, headers)
    try:
        statuses = _statuses(responses)
        expect_status(responses["POST /jobs/hash"], 200, what="POST /jobs/hash with an is_admin token")
        expect(
            (statuses["GET /jobs/{id}"], statuses["DELETE /jobs/{id}"]),
            (404, 404),
            "GET and DELETE /jobs/{unknown id} with an is_admin token: HTTP statuses (past auth, not found)",
        )
    finally:
        _cleanup_created(http, responses, headers)


# -- guest mode --------------------------------------------------------------------------------------------
def _set_guest_mode(http: RawHTTP, admin: dict[str, str], on: bool) -> None:
    """PUT February 2026's ``/admin/pref/guest-mode``, else (404) January 2026's ``/admin/config/guest-mode``."""
    value = "true" if on else "false"
    tried: list[str] = []
    for path in ("/admin/pref/guest-mode", "/admin/config/guest-mode"):
        response = http.client.put(path, data={"guest_mode": value}, headers=admin)
        if response.status_code != 404:
            break
        tried.append(path)
    else:
        pytest.fail(
            f"PUT guest_mode={value} as admin: neither route exists ({' and '.join(tried)} answer 404): the deployment "
            "has no way to switch guest mode (PROTOCOL.md §2)",
            pytrace=False,
        )
    expect_status(response, 200, what=f"PUT {path} guest_mode={value} as admin")
    guest_mode = get_field(response.json(), "guest_mode", where=f"the answer to PUT guest-mode {value}")
    assert guest_mode is on, f"PUT guest-mode {value}: the answer says guest_mode {guest_mode!r}"


@pytest.mark.cl_destructive
def test_guest_mode_opens_the_job_routes_and_closes_again(auth_target: AuthTarget, http: RawHTTP) -> None:
    """An admin turns guest mode on: job routes answer without a token and ``/`` says ``on``; off again: 401."""
    admin = _bearer(auth_target.need_mint()(permissions=[], is_admin=True))
    job_id = str(uuid.uuid4())
    _set_guest_mode(http, admin, True)
    try:
        expect_field(http.client.get("/").json(), "guestMode", "on", where="GET / after guest mode was turned on")
        expect_status(
            http.client.get(f"/jobs/{job_id}"), 404, what="GET /jobs/{unknown id} without a token in guest mode"
        )
    finally:
        _set_guest_mode(http, admin, False)
    expect_field(http.client.get("/").json(), "guestMode", "off", where="GET / after guest mode was turned off")
    expect_status(
        http.client.get(f"/jobs/{job_id}"), 401, what="GET /jobs/{id} without a token after guest mode was turned off"
    )


@pytest.mark.cl_destructive
@pytest.mark.cl_security("admin routes open in guest mode while auth is configured")
def test_guest_mode_keeps_admin_routes_closed(
    auth_target: AuthTarget, http: RawHTTP, config_routes: tuple[str, ...]
) -> None:
    """In guest mode the admin routes still need an admin token (401 without, 403 for a user)."""
    mint = auth_target.need_mint()
    admin = _bearer(mint(permissions=[], is_admin=True))
    _set_guest_mode(http, admin, True)
    try:
        anonymous = _admin_routes(http, {}, config_routes)
        expect(
            _statuses(anonymous),
            dict.fromkeys(anonymous, 401),
            "admin routes without a token in guest mode: HTTP status per route",
        )
        user = _admin_routes(http, _bearer(mint()), config_routes)
        expect(
            _statuses(user),
            dict.fromkeys(user, 403),
            "admin routes with a non-admin token in guest mode: HTTP status per route",
        )
    finally:
        _set_guest_mode(http, admin, False)
