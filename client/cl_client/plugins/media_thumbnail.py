"""media_thumbnail: a JPEG thumbnail of an image, or a 4x4 key-frame grid of a video (``output/thumbnail.jpg``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import JsonValue

from cl_client._models import JobResponse
from cl_client._tracker import JobCallback
from cl_client.plugins._base import OutT_co, PathLike, PluginClient, PluginSpec
from cl_client.plugins._fields import BoolField, IntField
from cl_client.plugins._files import JobFiles, Plan
from cl_client.plugins._output_file import OutputFileResult
from cl_client.plugins._parse import as_str, output_file, task_output_value


@dataclass(frozen=True, kw_only=True)
class ThumbnailResult(OutputFileResult):
    """The thumbnail on the server (``download`` / ``read_bytes`` fetch it).

    Attributes:
        media_type: ``image`` or ``video``.
    """

    media_type: str | None = None

    def as_dict(self) -> dict[str, JsonValue]:
        """output_path, media_type."""
        return {"output_path": self.output_path, "media_type": self.media_type}


def build(record: JobResponse, files: JobFiles) -> Plan[ThumbnailResult]:
    """Build the result (no download needed: the output path is in ``params``)."""
    return ThumbnailResult(
        job=record,
        files=files,
        output_path=output_file(record, "output/thumbnail.jpg"),
        media_type=as_str(task_output_value(record, "media_type")),
    )
    yield  # pragma: no cover - makes this a generator


SPEC: PluginSpec[ThumbnailResult] = PluginSpec(
    task_type="media_thumbnail",
    fields=(
        IntField("width", "thumbnail width in pixels", minimum=1, maximum=100_000),
        IntField("height", "thumbnail height in pixels", minimum=1, maximum=100_000),
        BoolField("maintain_aspect_ratio", "fit inside the box keeping the aspect ratio", value_default=True),
    ),
    build=build,
    method="generate",
    command="generate",
    metavar="MEDIA",
    summary="JPEG thumbnail of an image or video",
)


class MediaThumbnailClient(PluginClient[OutT_co]):
    """``client.media_thumbnail``: thumbnails; ``result()`` gives a ``ThumbnailResult``."""

    TASK_TYPE: ClassVar[str] = "media_thumbnail"

    def generate(
        self,
        media: PathLike,
        width: int | None = None,
        height: int | None = None,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        *,
        maintain_aspect_ratio: bool = True,
        priority: int | None = None,
        filename: str | None = None,
    ) -> OutT_co:
        """Make a thumbnail (never upscaled).

        Args:
            media: an image or a video.
            width: width in pixels (optional; the server derives it from ``height`` or uses its default).
            height: height in pixels (optional).
            wait: wait for the job to end before returning (a failed job is returned, not raised).
            timeout: seconds ``wait`` may take.
            on_progress: called with a JobResponse on every update.
            on_complete: called once with the final JobResponse.
            maintain_aspect_ratio: fit inside width x height keeping the aspect ratio (default true).
            priority: 0-10.
            filename: upload name.

        Returns:
            ``PluginJob[ThumbnailResult]`` (awaitable ``AsyncPluginJob`` on the async client).

        Raises:
            ConfigurationError: a bad argument (nothing sent). FileNotFoundError: no such file.
        """
        params: dict[str, object] = {"width": width, "height": height, "maintain_aspect_ratio": maintain_aspect_ratio}
        return self.submit(
            media, params, priority=priority, wait=wait, timeout=timeout,
            on_progress=on_progress, on_complete=on_complete, filename=filename,
        )  # fmt: skip
