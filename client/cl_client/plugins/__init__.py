"""The nine plugin clients, registered in one place.

``REGISTRY`` maps a task type to its spec (form fields, CLI naming, result builder); ``SyncPlugins`` and
``AsyncPlugins`` give ``ComputeClient`` and ``AsyncComputeClient`` their lazily created ``client.<plugin>``
properties. Adding a plugin: write its module (spec + client class) and add it to the three places below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, cast

from cl_client.plugins import (
    clip_embedding,
    dino_embedding,
    exif,
    face_detection,
    face_embedding,
    hash,
    hls_streaming,
    image_conversion,
    media_thumbnail,
)
from cl_client.plugins._base import (
    AsyncPluginJob,
    AsyncRunner,
    PluginClient,
    PluginJob,
    PluginResult,
    PluginSpec,
    SyncRunner,
)
from cl_client.plugins._batch import BatchItem, BatchOutcome, BatchUpdate, run_batch, run_batch_async
from cl_client.plugins._embedding import EmbeddingResult, FaceEmbeddingResult
from cl_client.plugins._fields import HlsVariant
from cl_client.plugins._files import JobFiles
from cl_client.plugins._output_file import OutputFileResult
from cl_client.plugins.clip_embedding import ClipEmbeddingClient
from cl_client.plugins.dino_embedding import DinoEmbeddingClient
from cl_client.plugins.exif import ExifClient, ExifResult
from cl_client.plugins.face_detection import BoundingBox, DetectedFace, FaceDetectionClient, FaceDetectionResult
from cl_client.plugins.face_embedding import FaceEmbeddingClient
from cl_client.plugins.hash import HashClient, HashResult
from cl_client.plugins.hls_streaming import HlsResult, HlsStream, HlsStreamingClient
from cl_client.plugins.image_conversion import ImageConversionClient, ImageConversionResult
from cl_client.plugins.media_thumbnail import MediaThumbnailClient, ThumbnailResult

if TYPE_CHECKING:
    from cl_client._client import AsyncComputeClient, ComputeClient

#: task type -> spec, in a stable order (the CLI lists the groups in this order).
REGISTRY: Mapping[str, PluginSpec[PluginResult]] = {
    spec.task_type: spec
    for spec in (
        clip_embedding.SPEC,
        dino_embedding.SPEC,
        exif.SPEC,
        face_detection.SPEC,
        face_embedding.SPEC,
        hash.SPEC,
        hls_streaming.SPEC,
        image_conversion.SPEC,
        media_thumbnail.SPEC,
    )
}


def get_spec(task_type: str) -> PluginSpec[PluginResult]:
    """The spec of a task type (``clip_embedding`` or ``clip-embedding``).

    Raises:
        ConfigurationError: unknown task type (lists the known ones).
    """
    from cl_client._exceptions import ConfigurationError

    spec = REGISTRY.get(task_type.replace("-", "_"))
    if spec is None:
        raise ConfigurationError(f"unknown plugin {task_type!r}; known: {', '.join(REGISTRY)}")
    return spec


class SyncPlugins:
    """The ``client.<plugin>`` properties of ``ComputeClient`` (each created on first use)."""

    def _sync(self) -> ComputeClient:
        return cast("ComputeClient", self)

    @cached_property
    def clip_embedding(self) -> ClipEmbeddingClient[PluginJob[EmbeddingResult]]:
        """CLIP image embeddings (``embed_image``)."""
        return ClipEmbeddingClient(SyncRunner(self._sync(), clip_embedding.SPEC))

    @cached_property
    def dino_embedding(self) -> DinoEmbeddingClient[PluginJob[EmbeddingResult]]:
        """DINOv2 image embeddings (``embed_image``)."""
        return DinoEmbeddingClient(SyncRunner(self._sync(), dino_embedding.SPEC))

    @cached_property
    def exif(self) -> ExifClient[PluginJob[ExifResult]]:
        """Metadata extraction (``extract``)."""
        return ExifClient(SyncRunner(self._sync(), exif.SPEC))

    @cached_property
    def face_detection(self) -> FaceDetectionClient[PluginJob[FaceDetectionResult]]:
        """Face detection (``detect``)."""
        return FaceDetectionClient(SyncRunner(self._sync(), face_detection.SPEC))

    @cached_property
    def face_embedding(self) -> FaceEmbeddingClient[PluginJob[FaceEmbeddingResult]]:
        """Face embeddings (``embed_faces``)."""
        return FaceEmbeddingClient(SyncRunner(self._sync(), face_embedding.SPEC))

    @cached_property
    def hash(self) -> HashClient[PluginJob[HashResult]]:
        """File hashes (``compute``)."""
        return HashClient(SyncRunner(self._sync(), hash.SPEC))

    @cached_property
    def hls_streaming(self) -> HlsStreamingClient[PluginJob[HlsResult]]:
        """HLS packaging (``generate_manifest``)."""
        return HlsStreamingClient(SyncRunner(self._sync(), hls_streaming.SPEC))

    @cached_property
    def image_conversion(self) -> ImageConversionClient[PluginJob[ImageConversionResult]]:
        """Image format conversion (``convert``)."""
        return ImageConversionClient(SyncRunner(self._sync(), image_conversion.SPEC))

    @cached_property
    def media_thumbnail(self) -> MediaThumbnailClient[PluginJob[ThumbnailResult]]:
        """Thumbnails (``generate``)."""
        return MediaThumbnailClient(SyncRunner(self._sync(), media_thumbnail.SPEC))


class AsyncPlugins:
    """The ``client.<plugin>`` properties of ``AsyncComputeClient`` (methods return awaitables)."""

    def _async(self) -> AsyncComputeClient:
        return cast("AsyncComputeClient", self)

    @cached_property
    def clip_embedding(self) -> ClipEmbeddingClient[Awaitable[AsyncPluginJob[EmbeddingResult]]]:
        """CLIP image embeddings (``await embed_image``)."""
        return ClipEmbeddingClient(AsyncRunner(self._async(), clip_embedding.SPEC))

    @cached_property
    def dino_embedding(self) -> DinoEmbeddingClient[Awaitable[AsyncPluginJob[EmbeddingResult]]]:
        """DINOv2 image embeddings (``await embed_image``)."""
        return DinoEmbeddingClient(AsyncRunner(self._async(), dino_embedding.SPEC))

    @cached_property
    def exif(self) -> ExifClient[Awaitable[AsyncPluginJob[ExifResult]]]:
        """Metadata extraction (``await extract``)."""
        return ExifClient(AsyncRunner(self._async(), exif.SPEC))

    @cached_property
    def face_detection(self) -> FaceDetectionClient[Awaitable[AsyncPluginJob[FaceDetectionResult]]]:
        """Face detection (``await detect``)."""
        return FaceDetectionClient(AsyncRunner(self._async(), face_detection.SPEC))

    @cached_property
    def face_embedding(self) -> FaceEmbeddingClient[Awaitable[AsyncPluginJob[FaceEmbeddingResult]]]:
        """Face embeddings (``await embed_faces``)."""
        return FaceEmbeddingClient(AsyncRunner(self._async(), face_embedding.SPEC))

    @cached_property
    def hash(self) -> HashClient[Awaitable[AsyncPluginJob[HashResult]]]:
        """File hashes (``await compute``)."""
        return HashClient(AsyncRunner(self._async(), hash.SPEC))

    @cached_property
    def hls_streaming(self) -> HlsStreamingClient[Awaitable[AsyncPluginJob[HlsResult]]]:
        """HLS packaging (``await generate_manifest``)."""
        return HlsStreamingClient(AsyncRunner(self._async(), hls_streaming.SPEC))

    @cached_property
    def image_conversion(self) -> ImageConversionClient[Awaitable[AsyncPluginJob[ImageConversionResult]]]:
        """Image format conversion (``await convert``)."""
        return ImageConversionClient(AsyncRunner(self._async(), image_conversion.SPEC))

    @cached_property
    def media_thumbnail(self) -> MediaThumbnailClient[Awaitable[AsyncPluginJob[ThumbnailResult]]]:
        """Thumbnails (``await generate``)."""
        return MediaThumbnailClient(AsyncRunner(self._async(), media_thumbnail.SPEC))


__all__ = [
    "REGISTRY",
    "AsyncPluginJob",
    "AsyncPlugins",
    "BatchItem",
    "BatchOutcome",
    "BatchUpdate",
    "BoundingBox",
    "ClipEmbeddingClient",
    "DetectedFace",
    "DinoEmbeddingClient",
    "EmbeddingResult",
    "ExifClient",
    "ExifResult",
    "FaceDetectionClient",
    "FaceDetectionResult",
    "FaceEmbeddingClient",
    "FaceEmbeddingResult",
    "HashClient",
    "HashResult",
    "HlsResult",
    "HlsStream",
    "HlsStreamingClient",
    "HlsVariant",
    "ImageConversionClient",
    "ImageConversionResult",
    "JobFiles",
    "MediaThumbnailClient",
    "OutputFileResult",
    "PluginClient",
    "PluginJob",
    "PluginResult",
    "PluginSpec",
    "SyncPlugins",
    "ThumbnailResult",
    "get_spec",
    "run_batch",
    "run_batch_async",
]
