"""Upstream's ``SessionManager``: log in at the auth service, keep the token fresh, make compute clients.

``create_compute_client()`` returns ``cl_client.compute_client.ComputeClient`` (async, upstream's
signatures): with a login, its ``JWTAuthProvider`` takes the session's token before every request, refreshed
when fewer than 60 seconds remain; without one, ``NoAuthProvider`` (guest mode).
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING, Self, cast

import httpx
from pydantic import BaseModel, ConfigDict, Field

from cl_client._auth import AuthProvider, JWTAuthProvider, NoAuthProvider, token_expiry
from cl_client._config import redact_url
from cl_client._core import Request, map_error, response_detail
from cl_client._exceptions import AuthenticationError, ComputeConnectionError, ConfigurationError
from cl_client._tls import shared_ssl_context
from cl_client.server_pref import ServerPref

if TYPE_CHECKING:
    from cl_client.compute_client import ComputeClient

__all__ = ["SessionManager", "TokenResponse"]

_REFRESH_MARGIN = 60.0


class TokenResponse(BaseModel):
    """The auth service's answer to a login or refresh."""

    model_config = ConfigDict(extra="ignore")

    access_token: str = Field(repr=False)  # never in a repr or str
    token_type: str = "bearer"


class SessionManager:
    """Login, token refresh and client creation (async context manager), as upstream's SDK.

    Args:
        base_url: auth service URL (else ``server_pref.auth_url``).
        server_pref: service URLs (default: ``ServerPref.from_env()``).
    """

    def __repr__(self) -> str:
        """Show the auth URL (without a password) and whether a session is open; never the token or password."""
        return f"SessionManager(auth_url={redact_url(self._auth_url)!r}, logged_in={self._token is not None})"

    def __init__(self, base_url: str | None = None, server_pref: ServerPref | None = None) -> None:
        self._pref = server_pref or ServerPref.from_env()
        self._auth_url = (base_url or self._pref.auth_url).rstrip("/")
        self._http = httpx.AsyncClient(base_url=self._auth_url, timeout=30.0, verify=shared_ssl_context())
        self._token: str | None = None
        self._credentials: tuple[str, str] | None = None

    @property
    def server_pref(self) -> ServerPref:
        """The service URLs in use."""
        return self._pref

    async def _token_call(
        self, path: str, *, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> TokenResponse:
        url = self._auth_url + path
        try:
            response = await self._http.post(path, data=data, headers=headers)
        except httpx.TransportError as exc:
            raise ComputeConnectionError(
                f"cannot reach the auth service at {url}: {type(exc).__name__}", method="POST", url=url
            ) from None
        if response.status_code in (401, 403):
            raise AuthenticationError(
                f"POST {url} -> {response.status_code}",
                method="POST",
                url=url,
                status_code=response.status_code,
                detail=response_detail(response),
                response=response,
            )
        if response.status_code >= 400:
            raise map_error(Request("POST", path), response)
        return TokenResponse.model_validate(cast(object, response.json()))

    async def login(self, username: str, password: str) -> TokenResponse:
        """``POST /auth/token`` with the credentials; keeps the token (and the credentials, to log in again).

        Raises:
            AuthenticationError: refused (also an ``httpx.HTTPStatusError``).
            ComputeConnectionError: the auth service could not be reached.
        """
        token = await self._token_call("/auth/token", data={"username": username, "password": password})
        self._token = token.access_token
        self._credentials = (username, password)
        return token

    async def logout(self) -> None:
        """Forget the token and the credentials (tokens are stateless: nothing is sent)."""
        self._token = None
        self._credentials = None

    def is_authenticated(self) -> bool:
        """Return True after a successful login."""
        return self._token is not None

    def get_token(self) -> str:
        """Return the current token, without refreshing.

        Raises:
            ConfigurationError: not logged in (also a ValueError, as upstream raised).
        """
        if self._token is None:
            raise ConfigurationError("Not authenticated - call login() first")
        return self._token

    async def get_valid_token(self) -> str:
        """Return the token, refreshed first (``POST /auth/token/refresh``) when fewer than 60 s remain.

        When the refresh is refused, logs in again with the kept credentials.

        Raises:
            ConfigurationError: not logged in.
            AuthenticationError: refresh and login both refused.
        """
        token = self.get_token()
        exp = token_expiry(token)
        if exp is None or exp - time.time() >= _REFRESH_MARGIN:
            return token
        try:
            fresh = await self._token_call("/auth/token/refresh", headers={"Authorization": f"Bearer {token}"})
        except AuthenticationError:
            if self._credentials is None:
                raise
            fresh = await self.login(*self._credentials)
        self._token = fresh.access_token
        return self._token

    def create_compute_client(self, timeout: float | None = None) -> ComputeClient:
        """Return an async compute client on this session's URLs and auth (``NoAuthProvider`` without a login).

        Args:
            timeout: HTTP timeout in seconds.
        """
        from cl_client.compute_client import ComputeClient

        auth: AuthProvider
        if self.is_authenticated():
            auth = JWTAuthProvider(get_cached_token=self.get_token, get_valid_token_async=self.get_valid_token)
        else:
            auth = NoAuthProvider()
        return ComputeClient(
            base_url=self._pref.compute_url,
            mqtt_url=self._pref.mqtt_url,
            auth_provider=auth,
            server_pref=self._pref,
            timeout=timeout,
        )

    async def close(self) -> None:
        """Close the connection pool to the auth service."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
