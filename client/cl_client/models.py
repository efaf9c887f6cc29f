"""Upstream's module path ``cl_client.models``: the wire models and upstream's type names."""

from typing import TypeAlias

from pydantic import JsonValue

from cl_client._models import (
    JobCreatedResponse,
    JobEvent,
    JobResponse,
    JobStatus,
    JsonObject,
    StatusText,
    WorkerCapabilitiesResponse,
    WorkerCapability,
)
from cl_client._tracker import JobCallback

#: a JSON value (upstream: ``JSONValue``).
JSONValue: TypeAlias = JsonValue
#: a JSON object (upstream: ``JSONObject``).
JSONObject: TypeAlias = JsonObject
#: a job callback, sync or async, or None (upstream: ``OnJobResponseCallback``).
OnJobResponseCallback: TypeAlias = JobCallback | None

__all__ = [
    "JSONObject",
    "JSONValue",
    "JobCreatedResponse",
    "JobEvent",
    "JobResponse",
    "JobStatus",
    "OnJobResponseCallback",
    "StatusText",
    "WorkerCapabilitiesResponse",
    "WorkerCapability",
]
