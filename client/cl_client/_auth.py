"""Auth providers: headers for every request, with a refresh hook.

``NoAuthProvider`` sends nothing. ``JWTAuthProvider`` sends ``Authorization: Bearer <jwt>``, either a static
token or one obtained from the auth service (``POST /auth/token``), refreshed through
``POST /auth/token/refresh`` when fewer than ``refresh_margin`` seconds remain, and obtained again by a
new login when refreshing fails. Tokens never appear in reprs, logs or error messages.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from typing import cast

import httpx

from cl_client._config import redact_url
from cl_client._core import response_detail
from cl_client._exceptions import AuthenticationError, ComputeConnectionError, ConfigurationError
from cl_client._tls import shared_ssl_context


class AuthProvider:
    """Supplies request headers. Subclass it for another scheme.

    ``headers`` (sync) and ``aheaders`` (async) are called before every request, downloads included, so a
    provider can refresh its credentials; ``invalidate`` is called after a 401 so that the next call fetches
    fresh ones.

    A subclass implements ``headers()`` or, as with upstream's SDK, ``get_headers()`` (and may override
    ``refresh_token_if_needed()``, which the async clients await before each request's headers). A subclass
    with neither raises NotImplementedError on its first request.
    """

    def headers(self) -> dict[str, str]:
        """Return the headers to add to a request (sync clients). Defaults to upstream's ``get_headers()``.

        Raises:
            AuthenticationError: credentials were refused.
            ComputeConnectionError: the auth service could not be reached.
            NotImplementedError: the subclass implements neither ``headers()`` nor ``get_headers()``.
        """
        if type(self).get_headers is AuthProvider.get_headers:
            raise NotImplementedError(f"{type(self).__name__} must implement headers() or upstream's get_headers()")
        return self.get_headers()

    def get_headers(self) -> dict[str, str]:
        """Upstream's name of ``headers()``: the headers of one request (defaults to ``headers()``)."""
        return self.headers()

    async def refresh_token_if_needed(self) -> None:
        """Upstream's refresh hook, awaited by ``aheaders()`` before the headers are taken (default: nothing)."""

    async def aheaders(self) -> dict[str, str]:
        """Return the headers to add to a request (async clients): ``refresh_token_if_needed()``, then
        ``headers()``."""
        await self.refresh_token_if_needed()
        return self.headers()

    def invalidate(self) -> bool:
        """Forget cached credentials after a 401. Returns True when retrying the request may succeed."""
        return False

    @property
    def sends_credentials(self) -> bool:
        """True when ``headers()`` adds credentials (a 401 on a public route is then retried with them)."""
        return True

    def close(self) -> None:
        """Release resources (HTTP connections to the auth service)."""

    async def aclose(self) -> None:
        """Release resources (async)."""
        self.close()


class NoAuthProvider(AuthProvider):
    """No authentication (guest mode or an open deployment): sends no header."""

    async def refresh_token_if_needed(self) -> None:
        """Nothing to refresh."""

    def headers(self) -> dict[str, str]:
        """Return no headers."""
        return {}

    @property
    def sends_credentials(self) -> bool:
        """False: there is nothing to retry a refused public request with."""
        return False

    def __repr__(self) -> str:
        return "NoAuthProvider()"


def token_expiry(token: str) -> float | None:
    """Return the ``exp`` claim (epoch seconds) of a JWT without verifying it, or None if absent/unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        data = cast(object, json.loads(base64.urlsafe_b64decode(payload)))
    except (ValueError, binascii.Error):
        return None
    if isinstance(data, dict):
        exp = cast(dict[str, object], data).get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            return float(exp)
    return None


class _Action(enum.Enum):
    USE = "use"
    LOGIN = "login"
    REFRESH = "refresh"


class JWTAuthProvider(AuthProvider):
    """Bearer-token auth with a static JWT, a token getter, or login credentials against the auth service.

    Args:
        token: a static JWT. Used as is; with credentials too, it is replaced when it nears expiry.
        get_cached_token: upstream's token getter (sync), asked for the token before each request.
        get_valid_token_async: upstream's async token getter (refreshing), awaited before each request of an
            async client; its token is used.
        username: user name for ``POST {auth_url}/auth/token``.
        password: password for the login.
        auth_url: auth service base URL (default ``http://localhost:8000``).
        refresh_margin: refresh when fewer seconds than this remain (default 60).
        timeout: HTTP timeout for the auth service.
        clock: time source (seconds), replaceable in tests.

    Raises:
        ConfigurationError: neither a token nor a user name and password were given.
    """

    def __init__(
        self,
        token: str | None = None,
        get_cached_token: Callable[[], str] | None = None,
        get_valid_token_async: Callable[[], Awaitable[str]] | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        auth_url: str = "http://localhost:8000",
        refresh_margin: float = 60.0,
        timeout: float = 10.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not token and get_cached_token is None and not (username and password):
            raise ConfigurationError(
                "JWTAuthProvider needs a token, a get_cached_token function, or a username and a password"
            )
        self._token = token or None
        self._given_token = token or None
        self.get_cached_token = get_cached_token
        self.get_valid_token_async = get_valid_token_async
        self._username = username
        self._password = password
        self._auth_url = auth_url.rstrip("/")
        self._margin = refresh_margin
        self._timeout = timeout
        self._now = clock or time.time
        self._lock = threading.Lock()
        self._sync_http: httpx.Client | None = None
        self._async_http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        if self._username:
            who = f"username={self._username!r}"
        else:
            who = "static token" if self._given_token else "token getter"
        return f"JWTAuthProvider({who}, auth_url={redact_url(self._auth_url)!r})"

    @property
    def has_credentials(self) -> bool:
        """True when the provider can log in again by itself."""
        return bool(self._username and self._password)

    # -- the decision, shared by the sync and async paths -------------------------------------------
    def _plan(self) -> _Action:
        if self.get_cached_token is not None and not self.has_credentials and self._given_token is None:
            self._token = self.get_cached_token()
        token = self._token
        if token is None:
            return _Action.LOGIN
        if not self.has_credentials:
            return _Action.USE
        exp = token_expiry(token)
        if exp is not None and exp - self._now() < self._margin:
            return _Action.REFRESH
        return _Action.USE

    def _bearer(self) -> dict[str, str]:
        assert self._token is not None
        return {"Authorization": f"Bearer {self._token}"}

    def _login_form(self) -> dict[str, str]:
        return {"username": self._username or "", "password": self._password or ""}

    def _accept(self, response: httpx.Response, what: str) -> None:
        if response.status_code >= 400:
            verb = "refused by" if response.status_code in (401, 403) else "failed at"
            raise AuthenticationError(
                f"{what} {verb} the auth service ({response.status_code})",
                method="POST",
                url=str(response.request.url),
                status_code=response.status_code,
                detail=response_detail(response),
                response=response,
            )
        data = cast(object, response.json())
        token = cast(dict[str, object], data).get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(
                f"{what}: the auth service answered without an access_token",
                method="POST",
                url=str(response.request.url),
                status_code=response.status_code,
                detail=None,
                response=response,
            )
        self._token = token

    def _flow(self) -> Generator[httpx.Request, httpx.Response, None]:
        """The token logic without I/O: yields the requests to send and receives their responses.

        Refresh when close to expiry; if the refresh is refused, log in again; with no token, log in.
        """
        action = self._plan()
        if action is _Action.USE:
            return
        if action is _Action.REFRESH:
            refresh = httpx.Request("POST", f"{self._auth_url}/auth/token/refresh", headers=self._bearer())
            try:
                self._accept((yield refresh), "token refresh")
                return
            except AuthenticationError:
                self._token = None
        login = httpx.Request("POST", f"{self._auth_url}/auth/token", data=self._login_form())
        self._accept((yield login), "login")

    def _unreachable(self, exc: httpx.TransportError) -> ComputeConnectionError:
        return ComputeConnectionError(
            f"cannot reach the auth service at {self._auth_url}: {type(exc).__name__}",
            method="POST",
            url=self._auth_url,
        )

    # -- sync ---------------------------------------------------------------------------------------
    def headers(self) -> dict[str, str]:
        """Return a fresh ``Authorization`` header, logging in or refreshing first when needed.

        Raises:
            AuthenticationError: the auth service refused the credentials.
            ComputeConnectionError: the auth service could not be reached.
        """
        with self._lock:
            flow = self._flow()
            try:
                request = next(flow)
                if self._sync_http is None:
                    self._sync_http = httpx.Client(timeout=self._timeout, verify=shared_ssl_context())
                http = self._sync_http
                while True:
                    request = flow.send(http.send(request))
            except StopIteration:
                return self._bearer()
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from None

    # -- async --------------------------------------------------------------------------------------
    async def aheaders(self) -> dict[str, str]:
        """Async twin of ``headers`` (the same flow, sent with an ``httpx.AsyncClient``); with upstream's
        getters, ``get_valid_token_async()`` is awaited first."""
        if not self.has_credentials and (self.get_cached_token is not None or self.get_valid_token_async):
            return await self._aheaders_from_getter()
        flow = self._flow()
        try:
            request = next(flow)
            if self._async_http is None:
                self._async_http = httpx.AsyncClient(timeout=self._timeout, verify=shared_ssl_context())
            http = self._async_http
            while True:
                request = flow.send(await http.send(request))
        except StopIteration:
            return self._bearer()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    # -- upstream's names ---------------------------------------------------------------------------
    def get_token(self) -> str:
        """The current token (the static one, else ``get_cached_token()``), without logging in.

        Raises:
            ConfigurationError: no token yet (a provider with credentials logs in on its first request).
        """
        if self._token is None and self.get_cached_token is not None:
            return self.get_cached_token()
        if self._token is None:
            raise ConfigurationError("no token available yet")
        return self._token

    def should_refresh(self, token: str) -> bool:
        """True when ``token`` expires in under ``refresh_margin`` seconds (False when it has no ``exp``)."""
        exp = token_expiry(token)
        return exp is not None and exp - self._now() < self._margin

    def get_headers(self) -> dict[str, str]:
        """Upstream's name of ``headers()``."""
        return self.headers()

    async def refresh_token_if_needed(self) -> None:
        """Await ``get_valid_token_async()`` when one was given and keep its token."""
        if self.get_valid_token_async is not None:
            self._token = await self.get_valid_token_async()

    async def _aheaders_from_getter(self) -> dict[str, str]:
        await self.refresh_token_if_needed()
        if self.get_valid_token_async is None and self._given_token is None and self.get_cached_token is not None:
            self._token = self.get_cached_token()
        if self._token is None:
            raise ConfigurationError("the token getter gave no token")
        return self._bearer()

    def invalidate(self) -> bool:
        """Drop the cached token after a 401; a retry helps only when the provider can log in again."""
        if self.has_credentials:
            self._token = None
            return True
        return False

    def close(self) -> None:
        """Close the connection pool to the auth service."""
        if self._sync_http is not None:
            self._sync_http.close()
            self._sync_http = None

    async def aclose(self) -> None:
        """Close both connection pools."""
        self.close()
        if self._async_http is not None:
            await self._async_http.aclose()
            self._async_http = None


def get_default_auth() -> AuthProvider:
    """The default provider, as upstream's SDK has it: ``NoAuthProvider()``."""
    return NoAuthProvider()
