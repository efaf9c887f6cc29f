"""image_conversion: convert an image to another format (``output/converted_<stem>.<ext>``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import JsonValue

from cl_client._models import JobResponse
from cl_client._tracker import JobCallback
from cl_client.plugins._base import OutT_co, PathLike, PluginClient, PluginSpec
from cl_client.plugins._fields import ChoiceField, IntField
from cl_client.plugins._files import JobFiles, Plan
from cl_client.plugins._output_file import OutputFileResult
from cl_client.plugins._parse import as_int, as_str, output_file

FORMATS = ("png", "jpg", "jpeg", "webp", "gif", "bmp", "tiff")
ImageFormat = Literal["png", "jpg", "jpeg", "webp", "gif", "bmp", "tiff"]


@dataclass(frozen=True, kw_only=True)
class ImageConversionResult(OutputFileResult):
    """The converted image on the server (``download`` / ``read_bytes`` fetch it).

    Attributes:
        format: the requested format.
        quality: the requested quality (jpg/webp).
    """

    format: str | None = None
    quality: int | None = None

    def as_dict(self) -> dict[str, JsonValue]:
        """output_path, format, quality."""
        return {"output_path": self.output_path, "format": self.format, "quality": self.quality}


def build(record: JobResponse, files: JobFiles) -> Plan[ImageConversionResult]:
    """Build the result (no download needed: the output path is in ``params``)."""
    fmt = as_str(record.params.get("format"))
    default = f"output/converted.{'jpg' if fmt == 'jpeg' else fmt or 'png'}"
    return ImageConversionResult(
        job=record,
        files=files,
        output_path=output_file(record, default),
        format=fmt,
        quality=as_int(record.params.get("quality")),
    )
    yield  # pragma: no cover - makes this a generator


SPEC: PluginSpec[ImageConversionResult] = PluginSpec(
    task_type="image_conversion",
    fields=(
        ChoiceField("format", "output format", required=True, choices=FORMATS),
        IntField("quality", "quality for jpg/webp", value_default=85, minimum=1, maximum=100),
    ),
    build=build,
    method="convert",
    command="convert",
    metavar="IMAGE",
    summary="convert an image to png, jpg, webp, gif, bmp or tiff",
)


class ImageConversionClient(PluginClient[OutT_co]):
    """``client.image_conversion``: format conversion; ``result()`` gives an ``ImageConversionResult``."""

    TASK_TYPE: ClassVar[str] = "image_conversion"

    def convert(
        self,
        image: PathLike,
        output_format: ImageFormat,
        quality: int | None = None,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        *,
        priority: int | None = None,
        filename: str | None = None,
    ) -> OutT_co:
        """Convert an image.

        Args:
            image: the image file.
            output_format: ``png``, ``jpg``, ``jpeg``, ``webp``, ``gif``, ``bmp`` or ``tiff`` (sent as ``format``).
            quality: 1-100 for jpg/webp (default 85).
            wait: wait for the job to end before returning (a failed job is returned, not raised).
            timeout: seconds ``wait`` may take.
            on_progress: called with a JobResponse on every update.
            on_complete: called once with the final JobResponse.
            priority: 0-10.
            filename: upload name.

        Returns:
            ``PluginJob[ImageConversionResult]`` (awaitable ``AsyncPluginJob`` on the async client).

        Raises:
            ConfigurationError: a bad argument (nothing sent). FileNotFoundError: no such image.
        """
        return self.submit(
            image, {"format": output_format, "quality": quality}, priority=priority, wait=wait,
            timeout=timeout, on_progress=on_progress, on_complete=on_complete, filename=filename,
        )  # fmt: skip
