"""Every REST call as data: the request to send and how to read the answer. Both clients use these, so
request building and response parsing exist once; the clients only add ``await`` or not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

from cl_client._core import Request, Upload, form_value, job_path, parse_model
from cl_client._models import (
    CleanupResult,
    GuestModeConfig,
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
    upload: Upload,
    fields: Mapping[str, object],
    priority: int,
    timeout: float | None = None,
) -> Call[JobCreatedResponse]:
    """``POST /jobs/{task_type}`` with the file part and the form fields (``None`` values are left out).

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


def guest_mode_get(newer: bool, timeout: float | None = None) -> Call[GuestModeConfig]:
    """Read guest mode: ``GET /admin/pref/guest-mode`` (newer servers) or ``GET /admin/config`` (older)."""
    path = "/admin/pref/guest-mode" if newer else "/admin/config"
    return Call(Request("GET", path, timeout=timeout), lambda r: parse_model(GuestModeConfig, r))


def guest_mode_set(enabled: bool, newer: bool, timeout: float | None = None) -> Call[GuestModeConfig]:
    """Set guest mode: ``PUT /admin/pref/guest-mode`` (newer) or ``PUT /admin/config/guest-mode`` (older)."""
    path = "/admin/pref/guest-mode" if newer else "/admin/config/guest-mode"
    return Call(
        Request("PUT", path, data={"guest_mode": form_value(enabled)}, timeout=timeout),
        lambda r: parse_model(GuestModeConfig, r),
    )
