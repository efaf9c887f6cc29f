"""Every REST call as data: the request to send and how to read the answer. Both clients use these, so
request building and response parsing exist once; the clients only add ``await`` or not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

from cl_client._core import Request, Upload, form_value, job_path, parse_model
from cl_client._exceptions import ConfigurationError, HTTPStatusError, NotFoundError
from cl_client._models import (
    CleanupResult,
    GuestModeConfig,
    GuestModeRoutes,
    HealthResponse,
    JobCreatedResponse,
    JobResponse,
    StorageInfo,
    WorkerCapabilitiesResponse,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request and the function that turns its successful response into a value."""

    request: Request
    parse: Callable[[httpx.Response], T]


def _none(_response: httpx.Response) -> None:
    return None


def health(timeout: float | None = None) -> Call[HealthResponse]:
    """``GET /``."""
    return Call(Request("GET", "/", timeout=timeout, public=True), lambda r: parse_model(HealthResponse, r))


def capabilities(timeout: float | None = None) -> Call[WorkerCapabilitiesResponse]:
    """``GET /capabilities``."""
    return Call(
        Request("GET", "/capabilities", timeout=timeout, public=True),
        lambda r: parse_model(WorkerCapabilitiesResponse, r),
    )


def get_job(job_id: str, timeout: float | None = None) -> Call[JobResponse]:
    """``GET /jobs/{job_id}``."""
    return Call(
        Request("GET", job_path(job_id), job_id=job_id, timeout=timeout),
        lambda r: parse_model(JobResponse, r),
    )


def delete_job(job_id: str, timeout: float | None = None) -> Call[None]:
    """``DELETE /jobs/{job_id}``."""
    return Call(Request("DELETE", job_path(job_id), job_id=job_id, timeout=timeout), _none)


def create_job(
    task_type: str,
    upload: Upload | None,
    fields: Mapping[str, object],
    priority: int,
    timeout: float | None = None,
) -> Call[JobCreatedResponse]:
    """``POST /jobs/{task_type}`` with the file part (if any) and the form fields (``None`` values are left out).

    Never retried once it may have reached the server.
    """
    data = {name: form_value(value) for name, value in fields.items() if value is not None}
    data["priority"] = str(priority)
    return Call(
        Request("POST", f"/jobs/{task_type}", data=data, upload=upload, timeout=timeout, retry=False),
        lambda r: parse_model(JobCreatedResponse, r),
    )


def storage_size(timeout: float | None = None) -> Call[StorageInfo]:
    """``GET /admin/jobs/storage/size``."""
    return Call(Request("GET", "/admin/jobs/storage/size", timeout=timeout), lambda r: parse_model(StorageInfo, r))


def cleanup(days: int, timeout: float | None = None) -> Call[CleanupResult]:
    """``DELETE /admin/jobs/cleanup?days=N``."""
    return Call(
        Request("DELETE", "/admin/jobs/cleanup", params={"days": str(days)}, timeout=timeout),
        lambda r: parse_model(CleanupResult, r),
    )


def guest_mode_order(remembered: GuestModeRoutes | None) -> tuple[GuestModeRoutes, ...]:
    """The route sets to try, in order: the one that answered last time first, else February's, then January's."""
    if remembered is GuestModeRoutes.CONFIG:
        return (GuestModeRoutes.CONFIG, GuestModeRoutes.PREF)
    return (GuestModeRoutes.PREF, GuestModeRoutes.CONFIG)


def route_missing(exc: HTTPStatusError) -> bool:
    """True when an error means "this server has no such route" (404, or 405 for a path served with another
    method), so the other route set should be tried. 401/403 and every other status are real answers."""
    return isinstance(exc, NotFoundError) or exc.status_code == 405


def no_guest_routes(tried: Sequence[HTTPStatusError]) -> NotFoundError:
    """The error when neither route set exists: names every request tried and its status."""
    last = tried[-1]
    attempts = "; ".join(f"{e.method} {e.url} -> {e.status_code}" for e in tried)
    return NotFoundError(
        f"this server serves no guest-mode route (tried {attempts}); it may predate January 2026 or not be a "
        "CL compute service",
        method=last.method,
        url=last.url,
        status_code=last.status_code,
        detail=last.detail,
    )


def _guest_parse(routes: GuestModeRoutes) -> Callable[[httpx.Response], GuestModeConfig]:
    def parse(response: httpx.Response) -> GuestModeConfig:
        return parse_model(GuestModeConfig, response).model_copy(update={"routes": routes})

    return parse


def guest_mode_get(routes: GuestModeRoutes, timeout: float | None = None) -> Call[GuestModeConfig]:
    """Read guest mode: ``GET /admin/pref`` (February 2026) or ``GET /admin/config`` (January 2026)."""
    return Call(Request("GET", routes.read_path, timeout=timeout), _guest_parse(routes))


def guest_mode_set(enabled: bool, routes: GuestModeRoutes, timeout: float | None = None) -> Call[GuestModeConfig]:
    """Set guest mode: ``PUT /admin/pref/guest-mode`` (February 2026) or ``PUT /admin/config/guest-mode``
    (January 2026), form field ``guest_mode`` = ``true``/``false``.

    Raises:
        ConfigurationError: ``enabled`` is not a bool (nothing is sent).
    """
    if not isinstance(enabled, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ConfigurationError(f"guest_mode must be True or False, got {enabled!r}")
    return Call(
        Request("PUT", routes.write_path, data={"guest_mode": form_value(enabled)}, timeout=timeout),
        _guest_parse(routes),
    )
