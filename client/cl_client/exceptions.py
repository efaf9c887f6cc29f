"""Upstream's module path ``cl_client.exceptions``: the error tree, with upstream's ``PermissionError`` name.

``PermissionError`` here is ``PermissionDeniedError`` (403), as upstream's SDK named it; it shadows the
builtin only for code that imports it from this module.
"""

from cl_client._exceptions import (
    AuthenticationError,
    ComputeClientError,
    ComputeConnectionError,
    ConfigurationError,
    HTTPStatusError,
    JobFailedError,
    JobNotFoundError,
    JobTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    ValidationError,
    WorkerUnavailableError,
)

PermissionError = PermissionDeniedError  # upstream's name

__all__ = [
    "AuthenticationError",
    "ComputeClientError",
    "ComputeConnectionError",
    "ConfigurationError",
    "HTTPStatusError",
    "JobFailedError",
    "JobNotFoundError",
    "JobTimeoutError",
    "NotFoundError",
    "PermissionDeniedError",
    "PermissionError",
    "RateLimitedError",
    "ServerError",
    "ValidationError",
    "WorkerUnavailableError",
]
