"""cl_client: typed sync and async client for CL Server compute deployments.

Quick use::

    from cl_client import ComputeClient

    with ComputeClient("http://localhost:8002", mqtt_url="mqtt://localhost:1883") as client:
        job = client.submit("hash", "photo.jpg", {"algorithm": "md5"})
        record = job.result(timeout=60)
"""

# ruff: noqa: E402 - the re-exports below must come after httpx was imported without its CLI (see below)

import sys as _sys
from typing import cast as _cast


def _import_httpx_without_its_cli() -> None:
    """Import httpx without its command line (``httpx._main``), which pulls in click, rich and pygments.

    httpx's ``__init__`` does ``try: from ._main import main`` and falls back to a stub when that import
    fails. Blocking ``httpx._main`` for the duration of the first import selects the stub (``httpx.main()``
    then prints httpx's own "pip install 'httpx[cli]'" message), so ``import cl_client`` stays light. The
    block is removed right after: a later ``import httpx._main`` works as usual.
    """
    if "httpx" in _sys.modules or "httpx._main" in _sys.modules:
        return
    modules = _cast("dict[str, object]", _sys.modules)
    modules["httpx._main"] = None  # None in sys.modules makes that import fail with ImportError
    try:
        import httpx  # noqa: F401  # pyright: ignore[reportUnusedImport]
    finally:
        if modules.get("httpx._main", 0) is None:
            del modules["httpx._main"]


_import_httpx_without_its_cli()

from cl_client._auth import AuthProvider, JWTAuthProvider, NoAuthProvider
from cl_client._client import AsyncComputeClient, AsyncJob, ComputeClient, Job, WorkersReady
from cl_client._config import ENVIRONMENT_VARIABLES, ComputeClientConfig, MqttSettings, resolve_config
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
from cl_client._models import (
    CleanupResult,
    GuestModeConfig,
    GuestModeRoutes,
    HealthResponse,
    JobCreatedResponse,
    JobEvent,
    JobResponse,
    JobStatus,
    StatusText,
    StorageInfo,
    WorkerCapabilitiesResponse,
    WorkerCapability,
)
from cl_client.plugins import (
    AsyncPluginJob,
    BatchItem,
    BatchOutcome,
    BatchUpdate,
    BoundingBox,
    DetectedFace,
    EmbeddingResult,
    ExifResult,
    FaceDetectionResult,
    FaceEmbeddingResult,
    HashResult,
    HlsResult,
    HlsStream,
    HlsVariant,
    ImageConversionResult,
    PluginJob,
    PluginResult,
    ThumbnailResult,
    run_batch,
    run_batch_async,
)
from cl_client.server_config import ServerConfig
from cl_client.server_pref import ServerPref
from cl_client.session_manager import SessionManager

__version__ = "0.1.0"

__all__ = [
    "ENVIRONMENT_VARIABLES",
    "AsyncComputeClient",
    "AsyncJob",
    "AsyncPluginJob",
    "AuthProvider",
    "AuthenticationError",
    "BatchItem",
    "BatchOutcome",
    "BatchUpdate",
    "BoundingBox",
    "CleanupResult",
    "ComputeClient",
    "ComputeClientConfig",
    "ComputeClientError",
    "ComputeConnectionError",
    "ConfigurationError",
    "DetectedFace",
    "EmbeddingResult",
    "ExifResult",
    "FaceDetectionResult",
    "FaceEmbeddingResult",
    "GuestModeConfig",
    "GuestModeRoutes",
    "HTTPStatusError",
    "HashResult",
    "HealthResponse",
    "HlsResult",
    "HlsStream",
    "HlsVariant",
    "ImageConversionResult",
    "JWTAuthProvider",
    "Job",
    "JobCreatedResponse",
    "JobEvent",
    "JobFailedError",
    "JobNotFoundError",
    "JobResponse",
    "JobStatus",
    "JobTimeoutError",
    "MqttSettings",
    "NoAuthProvider",
    "NotFoundError",
    "PermissionDeniedError",
    "PluginJob",
    "PluginResult",
    "RateLimitedError",
    "ServerConfig",
    "ServerError",
    "ServerPref",
    "SessionManager",
    "StatusText",
    "StorageInfo",
    "ThumbnailResult",
    "ValidationError",
    "WorkerCapabilitiesResponse",
    "WorkerCapability",
    "WorkerUnavailableError",
    "WorkersReady",
    "__version__",
    "resolve_config",
    "run_batch",
    "run_batch_async",
]
