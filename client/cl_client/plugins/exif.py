"""exif: EXIF/XMP/QuickTime metadata by ExifTool (``output/exif_metadata.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import JsonValue

from cl_client._models import JobResponse
from cl_client._tracker import JobCallback
from cl_client.plugins._base import OutT_co, PathLike, PluginClient, PluginResult, PluginSpec
from cl_client.plugins._fields import TagsField
from cl_client.plugins._files import JobFiles, Plan
from cl_client.plugins._parse import as_float, as_int, as_str, output_file, read_json_object

#: typed field -> the ExifTool tag it comes from.
_TAGS: dict[str, str] = {
    "make": "Make",
    "model": "Model",
    "date_time_original": "DateTimeOriginal",
    "create_date": "CreateDate",
    "exposure_time": "ExposureTime",
    "software": "Software",
    "image_width": "ImageWidth",
    "image_height": "ImageHeight",
    "orientation": "Orientation",
    "iso": "ISO",
    "f_number": "FNumber",
    "focal_length": "FocalLength",
    "gps_latitude": "GPSLatitude",
    "gps_longitude": "GPSLongitude",
    "gps_altitude": "GPSAltitude",
}

#: signed GPS field -> (its reference tag, the reference values that make it negative). ExifTool's ``EXIF:`` and
#: ``XMP:`` GPS coordinates are unsigned with the sign in the reference tag; ``Composite:`` ones are signed.
_GPS_SIGN: dict[str, tuple[str, tuple[JsonValue, ...]]] = {
    "gps_latitude": ("GPSLatitudeRef", ("S", "s", "South")),
    "gps_longitude": ("GPSLongitudeRef", ("W", "w", "West")),
    "gps_altitude": ("GPSAltitudeRef", (1, "1", "Below Sea Level")),
}


@dataclass(frozen=True, kw_only=True)
class ExifResult(PluginResult):
    """The metadata of a file: typed fields (None when absent) and every tag in ``raw_metadata``.

    A typed field the server left null is filled from ``raw_metadata`` when the tag is there (upstream leaves
    every typed field null with the default ``tags``; group-prefixed keys such as ``EXIF:Make`` are matched,
    ``Composite:`` preferred when several groups carry a tag). Filled GPS coordinates and altitude are signed:
    from ``Composite:`` as they are, else with the sign of ``GPSLatitudeRef`` (``S``), ``GPSLongitudeRef``
    (``W``) or ``GPSAltitudeRef`` (1 = below sea level). A numeric ``ExposureTime`` (ExifTool's ``-n``) is
    written the way ExifTool prints it (``0.004`` → ``"1/250"``).

    Attributes:
        make, model, date_time_original, create_date, exposure_time, software: strings.
        image_width, image_height, orientation, iso: integers.
        f_number, focal_length, gps_latitude, gps_longitude, gps_altitude: floats.
        raw_metadata: ExifTool's output (``-G -n -j`` keys like ``"EXIF:Make"``).
    """

    make: str | None = None
    model: str | None = None
    date_time_original: str | None = None
    create_date: str | None = None
    exposure_time: str | None = None
    software: str | None = None
    image_width: int | None = None
    image_height: int | None = None
    orientation: int | None = None
    iso: int | None = None
    f_number: float | None = None
    focal_length: float | None = None
    gps_latitude: float | None = None
    gps_longitude: float | None = None
    gps_altitude: float | None = None
    raw_metadata: dict[str, JsonValue] = field(default_factory=dict[str, JsonValue])

    def get(self, tag: str) -> JsonValue:
        """Return a raw tag by name, with or without its group prefix (``Make`` finds ``EXIF:Make``).

        An exact key wins; otherwise ``Composite:<tag>`` (ExifTool's derived, signed values), then the first
        other group that carries the tag.
        """
        key = self.key_of(tag)
        return None if key is None else self.raw_metadata[key]

    def key_of(self, tag: str) -> str | None:
        """Return the ``raw_metadata`` key that ``get(tag)`` reads (None when no group carries the tag)."""
        if tag in self.raw_metadata:
            return tag
        if f"Composite:{tag}" in self.raw_metadata:
            return f"Composite:{tag}"
        for key in self.raw_metadata:
            if key.rsplit(":", 1)[-1] == tag:
                return key
        return None

    def summary(self) -> str:
        """Return the main fields that are set, e.g. ``make=Canon model=EOS R5 iso=400``."""
        parts = [
            f"{name}={value}"
            for name, value in (
                ("make", self.make), ("model", self.model), ("date", self.date_time_original),
                ("size", f"{self.image_width}x{self.image_height}" if self.image_width else None),
                ("iso", self.iso), ("f", self.f_number),
                ("gps", f"{self.gps_latitude},{self.gps_longitude}" if self.gps_latitude is not None else None),
            )
            if value is not None
        ]  # fmt: skip
        return " ".join(parts) or f"{len(self.raw_metadata)} raw tags"

    def as_dict(self) -> dict[str, JsonValue]:
        """Return the typed fields and ``raw_metadata``."""
        return {
            "make": self.make,
            "model": self.model,
            "date_time_original": self.date_time_original,
            "create_date": self.create_date,
            "exposure_time": self.exposure_time,
            "software": self.software,
            "image_width": self.image_width,
            "image_height": self.image_height,
            "orientation": self.orientation,
            "iso": self.iso,
            "f_number": self.f_number,
            "focal_length": self.focal_length,
            "gps_latitude": self.gps_latitude,
            "gps_longitude": self.gps_longitude,
            "gps_altitude": self.gps_altitude,
            "raw_metadata": self.raw_metadata,
        }


def build(record: JobResponse, files: JobFiles) -> Plan[ExifResult]:
    """Read ``exif_metadata.json`` into an ``ExifResult``."""
    data = yield from read_json_object(record, output_file(record, "output/exif_metadata.json"))
    raw_value = data.get("raw_metadata")
    raw: dict[str, JsonValue] = raw_value if isinstance(raw_value, dict) else {}
    probe = ExifResult(job=record, files=files, raw_metadata=raw)

    def pick(name: str) -> JsonValue:
        value = data.get(name)
        if value is not None:
            return value
        key = probe.key_of(_TAGS[name])
        if key is None:
            return None
        raw_value = raw[key]
        if name in _GPS_SIGN and not key.startswith("Composite:"):
            return _signed(raw_value, probe.get(_GPS_SIGN[name][0]), _GPS_SIGN[name][1])
        if name == "exposure_time":
            return _exposure_text(raw_value)
        return raw_value

    return ExifResult(
        job=record,
        files=files,
        make=as_str(pick("make")),
        model=as_str(pick("model")),
        date_time_original=as_str(pick("date_time_original")),
        create_date=as_str(pick("create_date")),
        exposure_time=as_str(pick("exposure_time")),
        software=as_str(pick("software")),
        image_width=as_int(pick("image_width")),
        image_height=as_int(pick("image_height")),
        orientation=as_int(pick("orientation")),
        iso=as_int(pick("iso")),
        f_number=as_float(pick("f_number")),
        focal_length=as_float(pick("focal_length")),
        gps_latitude=as_float(pick("gps_latitude")),
        gps_longitude=as_float(pick("gps_longitude")),
        gps_altitude=as_float(pick("gps_altitude")),
        raw_metadata=raw,
    )


def _signed(value: JsonValue, ref: JsonValue, negative: tuple[JsonValue, ...]) -> JsonValue:
    """Give an unsigned GPS value the sign its reference tag says (a value already negative is kept)."""
    number = as_float(value)
    if number is None or number < 0 or ref not in negative:
        return value
    return -number


def _exposure_text(value: JsonValue) -> JsonValue:
    """Write a numeric exposure time as ExifTool prints it: ``1/N`` below 0.25 s, else seconds, one decimal."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return value
    if value < 0.25001:
        return f"1/{int(0.5 + 1 / value)}"
    return f"{value:.1f}".removesuffix(".0")


SPEC: PluginSpec[ExifResult] = PluginSpec(
    task_type="exif",
    fields=(TagsField("tags", "ExifTool tag names to read"),),
    build=build,
    method="extract",
    command="extract",
    metavar="FILE",
    summary="EXIF and other metadata by ExifTool",
)


class ExifClient(PluginClient[OutT_co]):
    """``client.exif``: metadata extraction; ``result()`` gives an ``ExifResult``."""

    TASK_TYPE: ClassVar[str] = "exif"

    def extract(
        self,
        image: PathLike,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        *,
        tags: str | list[str] | tuple[str, ...] | None = None,
        priority: int | None = None,
        filename: str | None = None,
    ) -> OutT_co:
        """Extract metadata from a file (image, video, PDF, ...).

        Args:
            image: the file.
            wait: wait for the job to end before returning (a failed job is returned, not raised).
            timeout: seconds ``wait`` may take.
            on_progress: called with a JobResponse on every update.
            on_complete: called once with the final JobResponse.
            tags: tag names to read (list or comma-separated string); None/empty = all tags.
            priority: 0-10.
            filename: upload name.

        Returns:
            ``PluginJob[ExifResult]`` (awaitable ``AsyncPluginJob`` on the async client).

        Raises:
            ConfigurationError: a bad argument (nothing sent). FileNotFoundError: no such file.
        """
        return self.submit(
            image, {"tags": tags}, priority=priority, wait=wait, timeout=timeout,
            on_progress=on_progress, on_complete=on_complete, filename=filename,
        )  # fmt: skip
