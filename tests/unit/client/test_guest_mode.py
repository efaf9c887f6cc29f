"""Guest mode on both upstream releases (PROTOCOL.md §2, §9): January 2026 serves ``/admin/config``, February 2026
``/admin/pref``; the client finds the one the server has, says which it used, remembers it, and never takes a
401/403 for a missing route. Against MOCKS of upstream's exact routes (``upstream_mocks.py``) and against the real
reference deployment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cl_client import (
    AsyncComputeClient,
    AuthenticationError,
    ComputeClient,
    ComputeClientConfig,
    ConfigurationError,
    GuestModeRoutes,
    NotFoundError,
    PermissionDeniedError,
)
from cl_compute.auth import generate_keypair, mint_token
from cl_compute.deployment import Deployment
from tests.unit.client.upstream_mocks import FEBRUARY, JANUARY, NEITHER, UpstreamMock

CFG = ComputeClientConfig(retry_backoff_base=0.01, retry_backoff_max=0.05, mqtt_url=None)
ROUTES = {JANUARY: GuestModeRoutes.CONFIG, FEBRUARY: GuestModeRoutes.PREF}


@pytest.fixture
def mock(request: pytest.FixtureRequest) -> Iterator[UpstreamMock]:
    release, auth = request.param if isinstance(request.param, tuple) else (request.param, False)
    server = UpstreamMock(release, auth=auth)
    server.start()
    yield server
    server.stop()


def client_for(server: UpstreamMock, token: str | None = None) -> ComputeClient:
    return ComputeClient(server.url, mqtt_url="off", config=CFG, token=token)


@pytest.mark.parametrize("mock", [JANUARY, FEBRUARY], indirect=True)
def test_get_then_set_on_each_release_probes_once(mock: UpstreamMock) -> None:
    """MOCK of each release: the first read finds the route set, every later call goes straight to it."""
    expected = ROUTES[mock.release]
    with client_for(mock) as client:
        assert client.guest_mode_routes is None
        config = client.get_guest_mode_config()
        assert (config.guest_mode, config.routes, config.updated_at, config.updated_by) == (True, expected, None, None)
        assert client.guest_mode_routes is expected
        assert client.set_guest_mode(False) is False
        assert client.get_guest_mode() is False
        assert client.update_guest_mode(guest_mode=True) is True
        later = client.get_guest_mode_config()
        assert later.guest_mode is True and isinstance(later.updated_at, int)
    probe = [("GET", "/admin/pref")] if mock.release == JANUARY else []
    read, write = expected.read_path, expected.write_path
    assert mock.calls() == [*probe, ("GET", read), ("PUT", write), ("GET", read), ("PUT", write), ("GET", read)]
    assert ("GET", "/admin/pref/guest-mode") not in mock.calls()


@pytest.mark.parametrize("mock", [JANUARY, FEBRUARY], indirect=True)
def test_set_first_finds_the_write_route(mock: UpstreamMock) -> None:
    """MOCK of each release: a fresh client that writes first probes with PUTs (the January one after a 404)."""
    expected = ROUTES[mock.release]
    with client_for(mock) as client:
        config = client.set_guest_mode_config(False)
        assert (config.guest_mode, config.routes, config.message) == (
            False,
            expected,
            "Configuration updated successfully",
        )
    assert mock.guest_mode is False
    probe = [("PUT", "/admin/pref/guest-mode")] if mock.release == JANUARY else []
    assert mock.calls() == [*probe, ("PUT", expected.write_path)]


@pytest.mark.parametrize("mock", [JANUARY, FEBRUARY], indirect=True)
async def test_async_client_on_each_release(mock: UpstreamMock) -> None:
    """MOCK of each release, async client: the same results, route sets and probing."""
    expected = ROUTES[mock.release]
    async with AsyncComputeClient(mock.url, mqtt_url="off", config=CFG) as client:
        assert await client.get_guest_mode() is True
        assert client.guest_mode_routes is expected
        assert await client.update_guest_mode(guest_mode=False) is False
        config = await client.set_guest_mode_config(True)
        assert (config.guest_mode, config.routes) == (True, expected)
        assert (await client.get_guest_mode_config()).updated_by is None
    probes = 1 if mock.release == JANUARY else 0
    assert len(mock.calls()) == 4 + probes


@pytest.mark.parametrize("mock", [(FEBRUARY, True)], indirect=True)
def test_february_401_and_403_are_answers_not_missing_routes(mock: UpstreamMock) -> None:
    """MOCK of February with auth: a 401 or 403 on /admin/pref is raised at once; /admin/config is never tried."""
    with client_for(mock) as client, pytest.raises(AuthenticationError):
        client.get_guest_mode()
    with client_for(mock, token="user") as client:
        with pytest.raises(PermissionDeniedError):
            client.set_guest_mode(True)
        assert client.guest_mode_routes is None
    assert mock.calls() == [("GET", "/admin/pref"), ("PUT", "/admin/pref/guest-mode")]
    with client_for(mock, token="admin") as client:
        assert client.get_guest_mode_config().routes is GuestModeRoutes.PREF
        assert client.update_guest_mode(guest_mode=False) is False
        assert client.get_guest_mode_config().updated_by == "admin-user"


@pytest.mark.parametrize("mock", [(JANUARY, True)], indirect=True)
def test_january_403_after_the_probe_is_raised(mock: UpstreamMock) -> None:
    """MOCK of January with auth: /admin/pref is 404 (missing), /admin/config is 403 (an answer): raised."""
    with client_for(mock, token="user") as client, pytest.raises(PermissionDeniedError):
        client.get_guest_mode()
    assert mock.calls() == [("GET", "/admin/pref"), ("GET", "/admin/config")]


@pytest.mark.parametrize("mock", [FEBRUARY], indirect=True)
def test_remembered_route_gone_probes_again(mock: UpstreamMock) -> None:
    """MOCK: the server behind the URL is replaced by the other release; the next call finds the other set."""
    with client_for(mock) as client:
        assert client.get_guest_mode_config().routes is GuestModeRoutes.PREF
        mock.release = JANUARY
        assert client.set_guest_mode_config(False).routes is GuestModeRoutes.CONFIG
        assert client.guest_mode_routes is GuestModeRoutes.CONFIG
        assert client.get_guest_mode() is False
    assert mock.calls()[1:] == [
        ("PUT", "/admin/pref/guest-mode"),
        ("PUT", "/admin/config/guest-mode"),
        ("GET", "/admin/config"),
    ]


@pytest.mark.parametrize("mock", [NEITHER], indirect=True)
def test_no_guest_routes_is_one_clear_error(mock: UpstreamMock) -> None:
    """MOCK of a server with neither route set: a NotFoundError naming both requests."""
    with client_for(mock) as client, pytest.raises(NotFoundError) as info:
        client.get_guest_mode()
    message = str(info.value)
    assert "GET" in message and "/admin/pref -> 404" in message and "/admin/config -> 404" in message
    assert "\n" not in message


@pytest.mark.parametrize("mock", [FEBRUARY], indirect=True)
def test_bad_value_is_refused_before_sending(mock: UpstreamMock) -> None:
    with client_for(mock) as client:
        with pytest.raises(ConfigurationError, match="guest_mode must be True or False"):
            client.set_guest_mode("off")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.update_guest_mode(enabled=True)  # type: ignore[call-arg]
    assert mock.calls() == []


# -- the real reference deployment -------------------------------------------------------------------------------
PRIVATE, PUBLIC = generate_keypair()
ADMIN = mint_token(PRIVATE, user_id="root", permissions=[], is_admin=True)
USER = mint_token(PRIVATE, user_id="u1")


@pytest.fixture(scope="module")
def secured() -> Iterator[Deployment]:
    """The reference deployment with auth configured (guest mode starts off; /admin needs an admin)."""
    with Deployment(workers=0, auth_public_key=PUBLIC) as dep:
        yield dep


def test_reference_deployment_guest_mode_round_trip(secured: Deployment) -> None:
    url = secured.server_url
    with ComputeClient(url, mqtt_url="off", config=CFG) as anonymous, pytest.raises(AuthenticationError):
        anonymous.get_guest_mode()
    with ComputeClient(url, mqtt_url="off", config=CFG, token=USER) as user, pytest.raises(PermissionDeniedError):
        user.set_guest_mode(True)
    with ComputeClient(url, mqtt_url="off", config=CFG, token=ADMIN) as admin:
        first = admin.get_guest_mode_config()
        assert first.guest_mode is False and first.routes in (GuestModeRoutes.PREF, GuestModeRoutes.CONFIG)
        changed = admin.update_guest_mode(guest_mode=True)
        assert changed is True
        now = admin.get_guest_mode_config()
        assert (now.guest_mode, now.updated_by) == (True, "root")
        assert isinstance(now.updated_at, int) and now.updated_at > 0
        assert admin.set_guest_mode(False) is False
        assert admin.get_guest_mode() is False
        assert admin.guest_mode_routes is not None


async def test_reference_deployment_guest_mode_async(secured: Deployment) -> None:
    async with AsyncComputeClient(secured.server_url, mqtt_url="off", config=CFG, token=ADMIN) as admin:
        assert (await admin.set_guest_mode_config(True)).guest_mode is True
        assert await admin.get_guest_mode() is True
        assert await admin.update_guest_mode(guest_mode=False) is False
        assert (await admin.get_guest_mode_config()).updated_by == "root"
