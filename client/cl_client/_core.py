"""The I/O-free core shared by the sync and async clients: request building, response parsing, error
mapping and the retry policy. ``_http.py`` does the I/O; nothing here touches the network.
"""

from __future__ import annotations

import datetime
import json
import mimetypes
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TypeVar, cast
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from cl_client._config import ComputeClientConfig, redact_url
from cl_client._exceptions import (
    AuthenticationError,
    ComputeClientError,
    HTTPStatusError,
    JobNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    ValidationError,
)

M = TypeVar("M", bound=BaseModel)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "DELETE", "PUT", "OPTIONS"})


@dataclass(frozen=True)
class Upload:
    """A file to send as the multipart part ``file``, streamed from disk.

    Attributes:
        path: the file on disk.
        filename: the name sent to the server (defaults to the file's own name, unicode kept).
        content_type: the part's media type (guessed from the name when omitted).
    """

    path: Path
    filename: str
    content_type: str

    @classmethod
    def from_path(cls, path: str | Path, filename: str | None = None) -> Upload:
        """Describe an upload, checking the file exists and is a regular file.

        Raises:
            FileNotFoundError: the path does not exist.
            IsADirectoryError: the path is a directory.
        """
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no such file to upload: {p}")
        if p.is_dir():
            raise IsADirectoryError(f"cannot upload a directory: {p}")
        name = filename or p.name
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return cls(path=p, filename=name, content_type=ctype)


@dataclass(frozen=True)
class Request:
    """One API request, described without doing it.

    Attributes:
        method: HTTP method.
        path: path below the server URL, already URL-quoted.
        params: query parameters.
        data: multipart/form fields (strings).
        upload: the file part, if any.
        job_id: the job the request is about (404 then means ``JobNotFoundError``).
        timeout: per-call timeout override in seconds.
        retry: whether the request may be retried (idempotent methods only; never job creation).
        public: a route that needs no credentials (PROTOCOL.md §6: ``/``, ``/capabilities``): sent without
            auth headers, so a failed login does not hide whether the server is up (a 401 there, e.g. from
            a proxy in front, repeats the request with credentials).
    """

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict[str, str])
    data: Mapping[str, str] | None = None
    upload: Upload | None = None
    job_id: str | None = None
    timeout: float | None = None
    retry: bool = True
    public: bool = False

    @property
    def may_retry(self) -> bool:
        """True when a failed attempt may be repeated safely."""
        return self.retry and self.method in IDEMPOTENT_METHODS and self.upload is None


def quote_segment(segment: str) -> str:
    """URL-quote one path segment; ``.`` and ``..`` are encoded so no client-side layer collapses them."""
    if segment in (".", ".."):
        return segment.replace(".", "%2E")
    return quote(segment, safe="")


def quote_path(path: str) -> str:
    """Quote every segment of a relative path (``faces/face 0.png`` -> ``faces/face%200.png``)."""
    return "/".join(quote_segment(s) for s in path.split("/"))


def job_path(job_id: str) -> str:
    """``/jobs/{job_id}`` with the id quoted."""
    return f"/jobs/{quote_segment(job_id)}"


def job_file_path(job_id: str, file_path: str) -> str:
    """``/jobs/{job_id}/files/{file_path}`` with every segment quoted."""
    return f"{job_path(job_id)}/files/{quote_path(file_path)}"


def form_value(value: object) -> str:
    """Encode a form field: bools as ``true``/``false``, lists/dicts as JSON, others with ``str``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# -- responses -------------------------------------------------------------------------------------
def response_url(response: httpx.Response, fallback: str) -> str:
    """The URL a response answers, without a password (``fallback`` when the response carries no request)."""
    try:
        return redact_url(str(response.request.url)) or fallback
    except RuntimeError:
        return fallback


def response_detail(response: httpx.Response) -> object:
    """The server's ``detail`` (string or list), else the JSON body, else the start of the text body."""
    try:
        data = cast(object, response.json())
    except (ValueError, UnicodeDecodeError):
        return response.text[:500] if response.content else None
    if isinstance(data, dict):
        mapping = cast(dict[str, object], data)
        return mapping.get("detail", mapping)
    return data


def _detail_text(detail: object) -> str:
    if detail is None or detail == "":
        return ""
    if isinstance(detail, str):
        return detail
    return json.dumps(detail, default=str)[:500]


def map_error(request: Request, response: httpx.Response) -> HTTPStatusError:
    """Turn an error response into the matching exception (never includes the Authorization header)."""
    status = response.status_code
    detail = response_detail(response)
    url = response_url(response, request.path)
    method = request.method
    text = _detail_text(detail)
    message = f"{method} {url} -> {status}" + (f": {text}" if text else "")
    if status == 401:
        return AuthenticationError(
            message, method=method, url=url, status_code=status, detail=detail, response=response
        )
    if status == 403:
        return PermissionDeniedError(
            message, method=method, url=url, status_code=status, detail=detail, response=response
        )
    if status == 404:
        # A job route whose job is missing; a missing *file* of an existing job is a plain NotFoundError.
        job_missing = request.job_id is not None and (
            "/files/" not in request.path or (isinstance(detail, str) and detail.lower().startswith("job "))
        )
        if job_missing and request.job_id is not None:
            return JobNotFoundError(
                message,
                job_id=request.job_id,
                method=method,
                url=url,
                status_code=status,
                detail=detail,
                response=response,
            )
        return NotFoundError(message, method=method, url=url, status_code=status, detail=detail, response=response)
    if status in (400, 422):
        return ValidationError(message, method=method, url=url, status_code=status, detail=detail, response=response)
    if status == 429:
        return RateLimitedError(message, method=method, url=url, status_code=status, detail=detail, response=response)
    if status >= 500:
        return ServerError(message, method=method, url=url, status_code=status, detail=detail, response=response)
    return HTTPStatusError(message, method=method, url=url, status_code=status, detail=detail, response=response)


def parse_model(model: type[M], response: httpx.Response) -> M:
    """Validate a JSON response body as ``model``.

    Raises:
        ComputeClientError: the body is not JSON or does not match the model (names the URL).
    """
    try:
        return model.model_validate_json(response.content)
    except PydanticValidationError as exc:
        url = response_url(response, "?")
        raise ComputeClientError(
            f"unexpected response from {url} ({response.status_code}): not a valid {model.__name__}: "
            f"{exc.error_count()} error(s), first: {exc.errors()[0]['msg']}"
        ) from None


# -- retry policy ----------------------------------------------------------------------------------
def retry_after_seconds(response: httpx.Response | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if response is None:
        return None
    value = cast(str | None, response.headers.get("Retry-After"))
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.datetime.now(tz=when.tzinfo or datetime.UTC)).total_seconds())


def should_retry_status(config: ComputeClientConfig, request: Request, status: int) -> bool:
    """True when an idempotent request that got ``status`` should be tried again."""
    return request.may_retry and status in config.retry_statuses


def backoff_delay(
    config: ComputeClientConfig,
    attempt: int,
    response: httpx.Response | None = None,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry number ``attempt`` (0-based): exponential with full jitter, or ``Retry-After``.

    ``Retry-After`` is honoured (capped at ``retry_backoff_max``); otherwise
    ``uniform(base/2, min(max, base * 2**attempt))``.
    """
    hinted = retry_after_seconds(response)
    if hinted is not None:
        return min(hinted, config.retry_backoff_max)
    ceiling = min(config.retry_backoff_max, config.retry_backoff_base * (1 << attempt))
    return (rng or random).uniform(ceiling / 2, ceiling)
