"""The error tree of cl_client. Every error a client raises is a ``ComputeClientError``::

    ComputeClientError
    ├── ComputeConnectionError        network failure: refused, reset, DNS, TLS, read timeout
    ├── HTTPStatusError               the server answered with an error status (also httpx.HTTPStatusError)
    │   ├── AuthenticationError       401
    │   ├── PermissionDeniedError     403 (not the builtin PermissionError)
    │   ├── NotFoundError             404
    │   │   └── JobNotFoundError      404 on a job route
    │   ├── ValidationError           422 (and 400), with the field errors
    │   ├── RateLimitedError          429 after the retries
    │   └── ServerError               5xx
    ├── JobFailedError                a job ended in ``error``
    ├── JobTimeoutError               a wait ran out (also a builtin TimeoutError)
    ├── WorkerUnavailableError        no worker for a capability within the wait
    └── ConfigurationError            bad arguments or settings (also a ValueError)

HTTP errors carry the method, the URL, the status and the server's ``detail``; tokens never appear in them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, cast

import httpx

if TYPE_CHECKING:
    from cl_client._models import JobResponse


def format_seconds(seconds: float) -> str:
    """A duration for messages: ``600``, ``30``, ``2.5``, ``0.87`` (two significant digits below 10 s).

    Args:
        seconds: the duration.

    Returns:
        The number without a unit (callers add `` s``).
    """
    if seconds >= 10:
        return f"{seconds:.0f}"
    text = f"{seconds:.2g}"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") if "e" in text else text


class ComputeClientError(Exception):
    """Base class of every error raised by cl_client."""


class ConfigurationError(ComputeClientError, ValueError):
    """An argument or setting is invalid (for example a priority outside 0-10, or a bad URL)."""


class ComputeConnectionError(ComputeClientError):
    """The server could not be reached or the connection failed mid-request.

    Attributes:
        method: HTTP method of the failed request.
        url: the URL that was requested.
    """

    def __init__(self, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.url = url


class HTTPStatusError(ComputeClientError, httpx.HTTPStatusError):
    """The server answered with an error status. Also an ``httpx.HTTPStatusError`` (upstream's SDK raised
    httpx's own error, so code reading ``exc.response.status_code`` keeps working).

    Args:
        message: the error message.
        method: HTTP method of the request.
        url: the requested URL.
        status_code: the HTTP status (default: the class's ``default_status_code``).
        detail: the server's ``detail``.
        response: the httpx response; when omitted (an error built by hand, or upstream's one-argument
            constructors) a stand-in response with ``status_code`` and ``{"detail": ...}`` is made.

    Attributes:
        method: HTTP method of the request.
        url: the requested URL.
        status_code: the HTTP status.
        detail: the server's ``detail`` (a string, or FastAPI's list of field errors), or the raw body.
        response: the ``httpx.Response`` (``response.request`` is the request).
    """

    default_status_code: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        status_code: int | None = None,
        detail: object = None,
        response: httpx.Response | None = None,
    ) -> None:
        status = status_code if status_code is not None else self.default_status_code
        if response is None:
            response = _stand_in_response(method, url, status, detail if detail is not None else message)
        try:
            request = response.request
        except RuntimeError:  # a response built without a request
            request = _stand_in_request(method, url)
            response.request = request
        httpx.HTTPStatusError.__init__(self, message, request=request, response=response)
        self.method = method
        self.url = url
        self.status_code = status
        self.detail = detail

    def __reduce__(self) -> str | tuple[object, ...]:
        """Pickle support (the keyword-only constructor is replayed)."""
        return (_rebuild, (type(self), str(self), self.method, self.url, self.status_code, self.detail))


def _rebuild(
    cls: type[HTTPStatusError], message: str, method: str, url: str, status: int, detail: object
) -> HTTPStatusError:
    return cls(message, method=method, url=url, status_code=status, detail=detail)


def _stand_in_request(method: str, url: str) -> httpx.Request:
    try:
        return httpx.Request(
            method or "GET", url if url.startswith(("http://", "https://")) else "http://unknown.invalid/"
        )
    except (httpx.InvalidURL, ValueError, TypeError):
        return httpx.Request(method or "GET", "http://unknown.invalid/")


def _stand_in_response(method: str, url: str, status: int, detail: object) -> httpx.Response:
    body = cast(object, detail) if isinstance(detail, str | list | dict | int | float | bool) else str(detail)
    return httpx.Response(status, json={"detail": body}, request=_stand_in_request(method, url))


class AuthenticationError(HTTPStatusError):
    """401: no token, an expired token, or a token the server cannot validate (``AuthenticationError(msg)``
    as in upstream's SDK also works)."""

    default_status_code: ClassVar[int] = 401


class PermissionDeniedError(HTTPStatusError):
    """403: the token is valid but lacks a permission (``ai_inference_support`` or admin).

    ``cl_client.exceptions.PermissionError`` is this class (upstream's name).
    """

    default_status_code: ClassVar[int] = 403


class NotFoundError(HTTPStatusError):
    """404 on a route that is not about a specific job (or a file of a job that exists)."""

    default_status_code: ClassVar[int] = 404


class JobNotFoundError(NotFoundError):
    """404 for a job: unknown id, or a job that was deleted.

    Two ways to build one: ``JobNotFoundError(job_id)`` (upstream's SDK) or
    ``JobNotFoundError(message, job_id=..., method=..., url=..., status_code=404, detail=...)``.

    Attributes:
        job_id: the job that was not found.
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        method: str = "GET",
        url: str = "",
        status_code: int | None = None,
        detail: object = None,
        response: httpx.Response | None = None,
    ) -> None:
        if job_id is None:  # upstream: JobNotFoundError(job_id)
            job_id, message = message, f"Job not found: {message}"
        super().__init__(message, method=method, url=url, status_code=status_code, detail=detail, response=response)
        self.job_id = job_id

    def __reduce__(self) -> str | tuple[object, ...]:
        """Pickle support."""
        return (_rebuild_job, (str(self), self.job_id, self.method, self.url, self.status_code, self.detail))


def _rebuild_job(message: str, job_id: str, method: str, url: str, status: int, detail: object) -> JobNotFoundError:
    return JobNotFoundError(message, job_id=job_id, method=method, url=url, status_code=status, detail=detail)


class ValidationError(HTTPStatusError):
    """422 (or 400): the server rejected the request's fields.

    Attributes:
        errors: the field errors as ``(location, message)`` pairs, e.g. ``("body.priority", "…")``.
    """

    default_status_code: ClassVar[int] = 422

    @property
    def errors(self) -> list[tuple[str, str]]:
        """The field errors from FastAPI's ``detail`` list, as ``(dotted location, message)`` pairs."""
        out: list[tuple[str, str]] = []
        detail = self.detail
        if isinstance(detail, list):
            for item in cast(list[object], detail):
                if isinstance(item, Mapping):
                    entry = cast(Mapping[str, object], item)
                    loc = entry.get("loc", ())
                    parts = [str(p) for p in cast(list[object], loc)] if isinstance(loc, list | tuple) else [str(loc)]
                    out.append((".".join(parts), str(entry.get("msg", ""))))
        elif detail:
            out.append(("", str(detail)))
        return out


class RateLimitedError(HTTPStatusError):
    """429 that persisted through every retry."""

    default_status_code: ClassVar[int] = 429


class ServerError(HTTPStatusError):
    """5xx from the server (after retries, for idempotent requests)."""


class JobFailedError(ComputeClientError):
    """A job ended in ``error`` (upstream: ``failed``).

    Attributes:
        job: the final job record; ``job.error_message`` holds the server's reason.
        job_id: the job's id.
    """

    def __init__(self, job: JobResponse) -> None:
        reason = job.error_message or "no error message given"
        super().__init__(f"job {job.job_id} ({job.task_type}) failed: {reason}")
        self.job = job
        self.job_id = job.job_id


class JobTimeoutError(ComputeClientError, TimeoutError):
    """Waiting for a job ran out of time. The job may still finish on the server.

    When an event said the job ended but the server never confirmed it (``GET /jobs/{id}`` kept failing or
    still answered a running status), the message says exactly that and ``unconfirmed_status`` holds the
    status the event claimed.

    Args:
        job_id: the job waited for.
        last_status: the last status seen (``None`` if none was seen).
        timeout: the timeout in seconds.
        unconfirmed_status: a terminal status an event reported that the server did not confirm.
        server_said: what the confirming request last got, as a clause (``"GET /jobs/<id> answered
            'processing'"``, ``"the confirming request failed: ..."``), if anything.

    Attributes:
        job_id: the job waited for.
        last_status: the last status the server confirmed or a progress event reported (``None`` if none).
        timeout: the timeout in seconds.
        unconfirmed_status: see above (``None`` in the ordinary case).
    """

    def __init__(
        self,
        job_id: str,
        last_status: str | None,
        timeout: float,
        *,
        unconfirmed_status: str | None = None,
        server_said: str | None = None,
    ) -> None:
        within = f"within {format_seconds(timeout)} s"
        if unconfirmed_status is not None:
            said = f"; {server_said}" if server_said else ""
            message = (
                f"job {job_id}: an event reported {unconfirmed_status!r}, but the server did not confirm it "
                f"{within}{said}"
            )
        else:
            message = f"job {job_id} did not finish {within} (last status: {last_status or 'unknown'})"
        super().__init__(message)
        self.job_id = job_id
        self.last_status = last_status
        self.timeout = timeout
        self.unconfirmed_status = unconfirmed_status


class WorkerUnavailableError(ComputeClientError):
    """No live worker offers a required capability within the wait.

    Built as ``WorkerUnavailableError(task_type, available_capabilities)`` (upstream's SDK: a dict of
    capability -> idle worker count) or with a list of available capability names, plus ``missing``.

    Attributes:
        task_type: the first missing capability.
        missing: every missing capability.
        available: capabilities that do have a live worker (sorted names).
        available_capabilities: capability -> idle worker count (upstream's attribute; counts are 0 when only
            names were known).
    """

    def __init__(
        self,
        task_type: str,
        available_capabilities: Mapping[str, int] | Sequence[str] = (),
        missing: Sequence[str] = (),
    ) -> None:
        self.task_type = task_type
        self.missing = list(missing) or [task_type]
        if isinstance(available_capabilities, Mapping):
            self.available_capabilities = dict(available_capabilities)
        else:
            self.available_capabilities = dict.fromkeys(available_capabilities, 0)
        self.available = sorted(self.available_capabilities)
        super().__init__(
            f"no worker offers {', '.join(self.missing)}; available: {', '.join(self.available) or 'none'}"
        )
