"""HTTP I/O for the sync and async clients. The retry decisions live in ``_RetryState`` (shared); the two
transports differ only in ``await`` and in how they sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Generator
from pathlib import Path
from typing import IO

import httpx

from cl_client._auth import AuthProvider
from cl_client._config import ComputeClientConfig, redact_url
from cl_client._core import Request, backoff_delay, map_error, should_retry_status
from cl_client._exceptions import ComputeConnectionError
from cl_client._partials import owner_tag, sweep_partials
from cl_client._tls import shared_ssl_context

log = logging.getLogger("cl_client.http")


#: how often a request that died on a stale pooled connection is sent again (each try evicts one such connection).
_STALE_RETRIES = 3


class _ConnectionTrace:
    """How far one attempt got, from httpcore's ``trace`` extension: a new connection? any response?

    A request sent on a pooled keep-alive connection that the server had already given up (upstream closes the
    connection after an unhandled 500 without saying ``Connection: close``) fails with "Server disconnected
    without sending a response" or a reset before any response byte: the server never handled it, so it is
    safe to send again on a fresh connection, job creation included.
    """

    def __init__(self) -> None:
        self.seen = False
        self.new_connection = False
        self.response_started = False

    def __call__(self, name: str, info: object) -> None:
        """Record one trace event (sync clients)."""
        self.seen = True
        if ".connect_tcp." in name or ".connect_unix_socket." in name:
            self.new_connection = True
        elif name.endswith(("receive_response_headers.complete", "receive_response_body.started")):
            self.response_started = True

    async def atrace(self, name: str, info: object) -> None:
        """Record one trace event (async clients)."""
        self(name, info)

    def stale(self, exc: httpx.TransportError) -> bool:
        """Whether ``exc`` is a reused idle connection failing before any response byte."""
        dropped = isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError)
        return dropped and self.seen and not self.new_connection and not self.response_started


class _RetryState:
    """Decides, attempt by attempt, whether to try a request again and after how long."""

    def __init__(self, config: ComputeClientConfig, request: Request, auth: AuthProvider) -> None:
        self.config = config
        self.request = request
        self.auth = auth
        self.attempt = 0
        self.stale_retries = 0
        self.reauthenticated = False
        # public routes go without credentials first; a 401 there (a proxy in front) retries with them
        self.with_auth = not request.public

    def url(self) -> str:
        return redact_url(self.config.base_url + self.request.path) or ""

    def after_exception(self, exc: httpx.TransportError, trace: _ConnectionTrace | None = None) -> float:
        """Return the delay before the next attempt, or raise ``ComputeConnectionError``."""
        if trace is not None and trace.stale(exc) and self.stale_retries < _STALE_RETRIES:
            # a pooled connection the server had closed: it never saw the request; the pool dropped that
            # connection, so the next attempt goes out again at once (POST included)
            self.stale_retries += 1
            log.debug("%s %s: %s on a reused connection, sent again", self.request.method, self.url(), exc)
            return 0.0
        # A connection that was never established cannot have delivered the request: always safe.
        safe = self.request.may_retry or isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        if safe and self.attempt < self.config.max_retries:
            delay = backoff_delay(self.config, self.attempt)
            self.attempt += 1
            log.debug("%s %s: %s, retry %d in %.2fs", self.request.method, self.url(), exc, self.attempt, delay)
            return delay
        kind = type(exc).__name__
        hint = "" if safe else " (not retried: the request may have reached the server)"
        raise ComputeConnectionError(
            f"{self.request.method} {self.url()} failed: {kind}: {exc}{hint}",
            method=self.request.method,
            url=self.url(),
        ) from None

    def after_response(self, response: httpx.Response) -> float | None:
        """Return a delay to retry after, or None when the response is final (success or error)."""
        status = response.status_code
        if status == 401 and not self.with_auth and self.auth.sends_credentials:
            self.with_auth = True
            return 0.0
        if status == 401 and not self.reauthenticated and self.auth.invalidate():
            self.reauthenticated = True
            return 0.0
        if should_retry_status(self.config, self.request, status) and self.attempt < self.config.max_retries:
            delay = backoff_delay(self.config, self.attempt, response)
            self.attempt += 1
            log.debug("%s %s -> %d, retry %d in %.2fs", self.request.method, self.url(), status, self.attempt, delay)
            return delay
        return None


def _timeout(config: ComputeClientConfig, request: Request) -> httpx.Timeout:
    total = request.timeout if request.timeout is not None else config.timeout
    return httpx.Timeout(total, connect=min(config.connect_timeout, total))


@contextlib.contextmanager
def _files(request: Request) -> Generator[dict[str, tuple[str, IO[bytes], str]] | None, None, None]:
    if request.upload is None:
        yield None
        return
    with request.upload.path.open("rb") as fh:
        yield {"file": (request.upload.filename, fh, request.upload.content_type)}


def _create_part(dest: Path) -> tuple[int, Path]:
    """Create ``.<name>.<pid>.<start>-<random>.part`` beside ``dest``, exclusively, with mode 0666 minus the umask.

    The name names this process (``cl_client._partials``): a later download into the same folder removes it if
    this process is killed before it could.

    ``tempfile.mkstemp`` would make it 0600, and the rename would hand the user a file only they can read;
    creating it with 0666 lets the kernel apply the umask (and any default ACL) exactly as for any new file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    owner = owner_tag()
    for _ in range(100):
        path = dest.parent / f".{dest.name}.{owner}{secrets.token_hex(4)}.part"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {dest}")  # pragma: no cover - 100 collisions


class _PartFile:
    """A temporary file beside the destination, renamed into place only when complete."""

    def __init__(self, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, self.path = _create_part(dest)
        self.dest = dest
        self.fh = os.fdopen(fd, "wb")

    def commit(self) -> Path:
        self.fh.close()
        os.replace(self.path, self.dest)
        return self.dest

    def discard(self) -> None:
        self.fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def as_destination(dest: str | Path) -> Path:
    """``dest`` as a Path; a string ending in ``/`` names a folder, which is created."""
    target = Path(dest)
    if isinstance(dest, str) and dest.endswith(("/", os.sep)):
        target.mkdir(parents=True, exist_ok=True)
    return target


def folders_to_create(dest: str | Path) -> list[Path]:
    """The folders a download to ``dest`` may create that do not exist yet, deepest first.

    ``dest`` itself when it names a folder (a string ending in ``/``), and the missing parents.

    Args:
        dest: the destination as given.
    """
    target = Path(os.path.abspath(dest))
    start = target if isinstance(dest, str) and dest.endswith(("/", os.sep)) else target.parent
    missing: list[Path] = []
    for folder in (start, *start.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


@contextlib.contextmanager
def removing_created_folders(dest: str | Path) -> Generator[None]:
    """Remove again, when the block fails, the empty folders a download to ``dest`` created.

    Args:
        dest: the destination as given.
    """
    missing = folders_to_create(dest)
    try:
        yield
    except BaseException:
        for folder in missing:  # deepest first; a folder that holds something stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def download_target(dest: str | Path, file_path: str) -> Path:
    """Where a download lands: ``dest`` itself, or ``dest/<basename>`` when ``dest`` is a directory (an existing
    one, or a string ending in ``/``)."""
    target = as_destination(dest)
    if target.is_dir():
        target = target / (file_path.rstrip("/").rsplit("/", 1)[-1] or "download")
    return target


class SyncHTTP:
    """Sync transport: one ``httpx.Client`` with retries, auth headers per attempt and streamed downloads.

    Args:
        config: the client configuration.
        auth: the auth provider.
        transport: an optional httpx transport (tests use ``httpx.MockTransport`` for statuses a real
            server won't produce on demand).
    """

    def __init__(
        self, config: ComputeClientConfig, auth: AuthProvider, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.config = config
        self.auth = auth
        self.client = httpx.Client(
            base_url=config.base_url,
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            headers={"User-Agent": config.user_agent},
            transport=transport,
            verify=shared_ssl_context(),
        )

    def send(self, request: Request) -> httpx.Response:
        """Send a request, retrying as the policy allows; error statuses raise the mapped exception.

        Raises:
            HTTPStatusError: a subclass matching the status.
            ComputeConnectionError: the server could not be reached.
        """
        state = _RetryState(self.config, request, self.auth)
        while True:
            trace = _ConnectionTrace()
            try:
                with _files(request) as files:
                    response = self.client.request(
                        request.method,
                        request.path,
                        params=dict(request.params),
                        data=dict(request.data) if request.data is not None else None,
                        files=files,
                        headers=self.auth.headers() if state.with_auth else {},
                        timeout=_timeout(self.config, request),
                        extensions={"trace": trace},
                    )
            except httpx.TransportError as exc:
                time.sleep(state.after_exception(exc, trace))
                continue
            delay = state.after_response(response)
            if delay is not None:
                time.sleep(delay)
                continue
            if response.status_code >= 400:
                raise map_error(request, response)
            return response

    def download(self, request: Request, dest: Path) -> Path:
        """Stream a GET into ``dest`` through a temporary file (no partial file is left on error).

        Raises:
            HTTPStatusError: the server refused (404, 403, 400, ...).
            ComputeConnectionError: the connection failed, also mid-body.
        """
        sweep_partials(dest.parent)  # the partials of downloads whose process was killed
        state = _RetryState(self.config, request, self.auth)
        while True:
            part: _PartFile | None = None
            try:
                with self.client.stream(
                    "GET", request.path, headers=self.auth.headers(), timeout=_timeout(self.config, request)
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        delay = state.after_response(response)
                        if delay is not None:
                            time.sleep(delay)
                            continue
                        raise map_error(request, response)
                    part = _PartFile(dest)
                    for chunk in response.iter_bytes(self.config.download_chunk_size):
                        part.fh.write(chunk)
                    return part.commit()
            except httpx.TransportError as exc:
                if part is not None:
                    part.discard()
                time.sleep(state.after_exception(exc))
            except BaseException:
                if part is not None:
                    part.discard()
                raise

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class AsyncHTTP:
    """Async twin of ``SyncHTTP`` on ``httpx.AsyncClient`` (same arguments and errors)."""

    def __init__(
        self,
        config: ComputeClientConfig,
        auth: AuthProvider,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.auth = auth
        self.client = httpx.AsyncClient(
            base_url=config.base_url,
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            headers={"User-Agent": config.user_agent},
            transport=transport,
            verify=shared_ssl_context(),
        )

    async def send(self, request: Request) -> httpx.Response:
        """Async twin of ``SyncHTTP.send``."""
        state = _RetryState(self.config, request, self.auth)
        while True:
            trace = _ConnectionTrace()
            try:
                with _files(request) as files:
                    response = await self.client.request(
                        request.method,
                        request.path,
                        params=dict(request.params),
                        data=dict(request.data) if request.data is not None else None,
                        files=files,
                        headers=await self.auth.aheaders() if state.with_auth else {},
                        timeout=_timeout(self.config, request),
                        extensions={"trace": trace.atrace},
                    )
            except httpx.TransportError as exc:
                await asyncio.sleep(state.after_exception(exc, trace))
                continue
            delay = state.after_response(response)
            if delay is not None:
                await asyncio.sleep(delay)
                continue
            if response.status_code >= 400:
                raise map_error(request, response)
            return response

    async def download(self, request: Request, dest: Path) -> Path:
        """Async twin of ``SyncHTTP.download``."""
        sweep_partials(dest.parent)  # the partials of downloads whose process was killed
        state = _RetryState(self.config, request, self.auth)
        while True:
            part: _PartFile | None = None
            try:
                async with self.client.stream(
                    "GET",
                    request.path,
                    headers=await self.auth.aheaders(),
                    timeout=_timeout(self.config, request),
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        delay = state.after_response(response)
                        if delay is not None:
                            await asyncio.sleep(delay)
                            continue
                        raise map_error(request, response)
                    part = _PartFile(dest)
                    async for chunk in response.aiter_bytes(self.config.download_chunk_size):
                        part.fh.write(chunk)
                    return part.commit()
            except httpx.TransportError as exc:
                if part is not None:
                    part.discard()
                await asyncio.sleep(state.after_exception(exc))
            except BaseException:
                if part is not None:
                    part.discard()
                raise

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
