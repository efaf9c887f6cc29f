"""cl_client: typed sync and async client for CL Server compute deployments.

Quick use::

    from cl_client import ComputeClient

    with ComputeClient("http://localhost:8002", mqtt_url="mqtt://localhost:1883") as client:
        job = client.submit("hash", "photo.jpg", {"algorithm": "md5"})
        record = job.result(timeout=60)
"""

from cl_client._auth import AuthProvider, JWTAuthProvider, NoAuthProvider
from cl_client._client import AsyncComputeClient, AsyncJob, ComputeClient, Job
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
    HealthResponse,
    JobCreatedResponse,
    JobEvent,
    JobResponse,
    JobStatus,
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
    "ServerError",
    "StorageInfo",
    "ThumbnailResult",
    "ValidationError",
    "WorkerCapabilitiesResponse",
    "WorkerCapability",
    "WorkerUnavailableError",
    "__version__",
    "resolve_config",
    "run_batch",
    "run_batch_async",
]
