"""Conformance of the ``exif`` plugin (PROTOCOL.md §3, §3.1: ``tags``, ``output/exif_metadata.json``).

Known answers: ``jpeg_exif``'s manifest facts ``exif.exiftool`` (the exact ``exiftool -G -n -j`` values) and
``exif.typed`` (the protocol's typed fields), written by ``media/generate.py``. The server's own typed fields are
read from ``task_output`` and the output file, never through ``ExifResult`` (which fills gaps client-side).

Upstream differences handled here: with ``tags`` upstream's ``raw_metadata`` keys are bare (``Make``), the
reference keeps ``Group:Tag`` (``EXIF:Make``), so a requested tag matches either form; with the default empty
``tags`` upstream's typed fields are all null (its quirk), so that check is ``cl_needs_fix``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pytest

from cl_client import ComputeClient
from pytest_cl._media import MediaCatalogue, MediaItem
from pytest_cl.conformance._checks import expect, expect_param, get_field
from pytest_cl.conformance.plugins._media_helpers import completed, exif_typed_defect, failed, output_path, read_json

pytestmark = [pytest.mark.cl_requires("exif"), pytest.mark.timeout(120)]

TASK = "exif"
TYPED_FIELDS = {
    "make": str,
    "model": str,
    "date_time_original": str,
    "create_date": str,
    "exposure_time": str,
    "software": str,
    "image_width": int,
    "image_height": int,
    "orientation": int,
    "iso": int,
    "f_number": float,
    "focal_length": float,
    "gps_latitude": float,
    "gps_longitude": float,
    "gps_altitude": float,
}
#: typed field -> the ExifTool tag it comes from
SOURCE_TAG = {
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
CAMERA_FIELDS = ("make", "model", "date_time_original", "iso", "f_number", "focal_length", "exposure_time")
GPS_FIELDS = ("gps_latitude", "gps_longitude", "gps_altitude")


class ExifJson(dict[str, object]):
    """``output/exif_metadata.json`` of one job, with ``where`` naming the job and file in failures."""

    where: str = ""


def _exif(client: ComputeClient, path: Path, tags: str | None = None) -> ExifJson:
    """Run exif; check that the output file equals ``task_output`` and the typed fields' types; return it."""
    job = completed(client, TASK, path, {} if tags is None else {"tags": tags})
    expect_param(job, "output_path", "output/exif_metadata.json")
    data = ExifJson(read_json(client, job, output_path(job)))
    data.where = f"exif job {job.job_id} on {path.name}" + ("" if tags is None else f" (tags={tags!r})")
    data.where += ": output/exif_metadata.json"
    assert data == job.task_output, f"{data.where} differs from the job's task_output"
    missing = sorted((set(TYPED_FIELDS) | {"raw_metadata"}) - set(data))
    assert not missing, f"{data.where} lacks the fields {missing} (PROTOCOL.md §3.1)"
    for name, kind in TYPED_FIELDS.items():
        value = data[name]
        if value is not None:
            assert not isinstance(value, bool), (
                f"{data.where}: {name!r} is a boolean {value!r}, expected {kind.__name__}"
            )
            assert isinstance(value, int | float) if kind is float else isinstance(value, kind), (
                f"{data.where}: {name!r} is {value!r}, expected a {kind.__name__} or null"
            )
    assert isinstance(data["raw_metadata"], dict), f"{data.where}: 'raw_metadata' is not an object"
    return data


def _known(item: MediaItem, key: str) -> dict[str, object]:
    """The fixture's known EXIF values: ``exiftool`` (Group:Tag -> value) or ``typed`` (field -> value)."""
    values = item.fact_mapping("exif")[key]
    assert isinstance(values, Mapping) and values, f"{item.name} has no exif.{key} facts"
    return {str(k): v for k, v in values.items()}


def _raw(data: ExifJson) -> dict[str, object]:
    raw = get_field(data, "raw_metadata", where=data.where)
    assert isinstance(raw, dict), f"{data.where}: 'raw_metadata' is not an object"
    return raw


def _matching(raw: Mapping[str, object], tag: str) -> dict[str, object]:
    """The raw keys naming ``tag``: bare (upstream with tags) or ``Group:tag`` (ExifTool ``-G``)."""
    return {k: v for k, v in raw.items() if k == tag or k.rsplit(":", 1)[-1] == tag}


def _same(a: object, b: object) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


# -- known values ------------------------------------------------------------------------------------------
def test_raw_metadata_has_the_known_exiftool_values(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """Default ``tags`` (all): ``raw_metadata`` holds every known ``Group:Tag`` value of the EXIF fixture."""
    item = cl_media["jpeg_exif"]
    expected = _known(item, "exiftool")
    assert len(expected) >= 20, f"test media {item.name}: only {len(expected)} known exiftool values, expected ≥ 20"
    data = _exif(any_client, item.path)
    raw = _raw(data)
    wrong = {k: (v, raw.get(k, "<missing>")) for k, v in expected.items() if not _same(raw.get(k), v)}
    assert not wrong, f"{data.where}: raw_metadata differs (expected, got): {wrong}"
    expect(raw.get("EXIF:LensModel"), "RF24-105mm F4 L IS USM", f"{data.where}: raw_metadata 'EXIF:LensModel'")


@pytest.mark.cl_needs_fix("typed exif fields with the default empty tags (upstream leaves them all null)")
def test_typed_fields_with_default_tags(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """Default ``tags``: every typed field equals the fixture's known value (GPS signed, exposure as a string)."""
    item = cl_media["jpeg_exif"]
    typed = _known(item, "typed")
    data = _exif(compute_client, item.path)
    defect = exif_typed_defect(typed, data, _same)
    assert defect is None, f"{data.where}: {defect}"


def test_typed_fields_with_requested_tags(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """``tags`` naming each typed field's source: the typed values are the fixture's, ``raw_metadata`` has each tag.

    Upstream leaves ``exposure_time`` null under ``-n`` and may report the unsigned EXIF longitude, so those two
    are checked loosely here (strictly in ``test_typed_fields_with_default_tags``).
    """
    item = cl_media["jpeg_exif"]
    typed = _known(item, "typed")
    data = _exif(compute_client, item.path, ",".join(SOURCE_TAG.values()))
    for name, value in typed.items():
        got = data[name]
        if name == "exposure_time":
            assert got in (None, value), f"{data.where}: 'exposure_time' is {got!r}, expected {value!r} or null"
        elif name == "gps_longitude":
            assert isinstance(got, int | float) and _same(abs(got), abs(float(str(value)))), (
                f"{data.where}: 'gps_longitude' is {got!r}, expected ±{abs(float(str(value)))}"
            )
        else:
            assert _same(got, value), f"{data.where}: {name!r} is {got!r}, expected {value!r}"
    raw = _raw(data)
    for tag in SOURCE_TAG.values():
        assert _matching(raw, tag), f"{data.where}: requested tag {tag} missing from raw_metadata: {sorted(raw)}"


# -- the tags parameter ----------------------------------------------------------------------------------------
def test_tags_filter_raw_metadata(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """``tags=Make,ISO``: raw_metadata keeps those tags (plus ``SourceFile``) and nothing else, with their values."""
    item = cl_media["jpeg_exif"]
    filtered = _exif(compute_client, item.path, "Make, ISO")
    raw = _raw(filtered)
    make, iso = _matching(raw, "Make"), _matching(raw, "ISO")
    assert make and all(v == "Canon" for v in make.values()), (
        f"{filtered.where}: expected raw_metadata Make 'Canon', got {make or 'no Make key'}"
    )
    assert iso and all(v == 400 for v in iso.values()), (
        f"{filtered.where}: expected raw_metadata ISO 400, got {iso or 'no ISO key'}"
    )
    extra = set(raw) - set(make) - set(iso) - {"SourceFile"}
    assert not extra, f"{filtered.where}: tags=Make,ISO but raw_metadata also has {sorted(extra)}"
    full = _raw(_exif(compute_client, item.path))
    assert len(full) > len(raw) + 10, (
        f"{filtered.where}: the unfiltered raw_metadata has {len(full)} keys, the filtered {len(raw)}: expected more"
        " than 10 more without tags"
    )


def test_stripped_image_has_no_camera_fields(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """The EXIF-stripped copy: no camera or GPS field, no ``EXIF:`` key; the file-level size is still known."""
    item = cl_media["jpeg_exif_stripped"]
    data = _exif(compute_client, item.path)
    filled = {k: data[k] for k in (*CAMERA_FIELDS, *GPS_FIELDS, "software", "orientation") if data[k] is not None}
    assert not filled, f"{data.where}: camera fields on an image without EXIF: {filled}"
    raw = _raw(data)
    exif_keys = [k for k in raw if k.startswith(("EXIF:", "Composite:GPS"))]
    assert not exif_keys, f"{data.where}: EXIF keys in raw_metadata of an image without EXIF: {exif_keys}"
    widths, heights = _matching(raw, "ImageWidth"), _matching(raw, "ImageHeight")
    assert widths and all(v == 640 for v in widths.values()), (
        f"{data.where}: expected raw_metadata ImageWidth 640, got {widths or 'no ImageWidth key'}"
    )
    assert all(v == 480 for v in heights.values()), (
        f"{data.where}: expected raw_metadata ImageHeight 480, got {heights}"
    )


@pytest.mark.parametrize("name", ["video_720p_5s_audio", "video_720p_3s_silent"])
def test_video_gives_duration_and_size(compute_client: ComputeClient, cl_media: MediaCatalogue, name: str) -> None:
    """A video: raw_metadata has its duration (s, ±0.1) and frame size; no camera fields."""
    item = cl_media[name]
    data = _exif(compute_client, item.path)
    raw = _raw(data)
    durations = _matching(raw, "Duration")
    assert durations, f"{data.where}: no Duration in raw_metadata {sorted(raw)}"
    for key, value in durations.items():
        assert isinstance(value, int | float) and abs(value - item.fact_float("duration")) <= 0.1, (
            f"{data.where}: raw_metadata {key!r} is {value!r}, expected {item.fact_float('duration')} s ± 0.1"
        )
    widths, heights = _matching(raw, "ImageWidth"), _matching(raw, "ImageHeight")
    assert widths and set(widths.values()) == {item.fact_int("width")}, (
        f"{data.where}: expected raw_metadata ImageWidth {item.fact_int('width')}, got {widths or 'no ImageWidth key'}"
    )
    assert heights and set(heights.values()) == {item.fact_int("height")}, (
        f"{data.where}: expected raw_metadata ImageHeight {item.fact_int('height')},"
        f" got {heights or 'no ImageHeight key'}"
    )
    mime = _matching(raw, "MIMEType")
    expect(set(mime.values()), {"video/mp4"}, f"{data.where}: raw_metadata MIMEType values {mime}")


def test_video_duration_with_tags(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """``tags=Duration,ImageWidth,ImageHeight`` on a video: exactly those, with the known values."""
    item = cl_media["video_720p_5s_audio"]
    data = _exif(compute_client, item.path, "Duration,ImageWidth,ImageHeight")
    raw = _raw(data)
    durations = _matching(raw, "Duration")
    assert all(abs(float(str(v)) - 5.0) <= 0.1 for v in durations.values()), (
        f"{data.where}: expected raw_metadata Duration 5 s ± 0.1, got {durations}"
    )
    expect(set(_matching(raw, "ImageWidth").values()), {1280}, f"{data.where}: raw_metadata ImageWidth values")
    expect(set(_matching(raw, "ImageHeight").values()), {720}, f"{data.where}: raw_metadata ImageHeight values")
    expect((data["image_width"], data["image_height"]), (1280, 720), f"{data.where}: image_width, image_height")
    expect((data["make"], data["iso"]), (None, None), f"{data.where}: make, iso of a video")


# -- unusual and hostile inputs --------------------------------------------------------------------------------
def test_text_named_jpg_is_read_as_text_or_refused(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """Text renamed ``.jpg``: either refused (``error`` with a message: the reference deployment) or read by
    content (FileType TXT) with no camera fields (upstream, PROTOCOL §8) — never camera data, never a hang."""
    item = cl_media["hostile_text_as_jpeg"]
    record = compute_client.submit(TASK, item.path, {}).wait()
    if record.status == "error":
        assert record.error_message, f"exif job {record.job_id} on {item.path.name} failed without an error_message"
        return
    data = _exif(compute_client, item.path)
    filled = {k: data[k] for k in (*CAMERA_FIELDS, *GPS_FIELDS, "image_width") if data[k] is not None}
    assert not filled, f"{data.where}: camera fields on a text file: {filled}"
    expect(set(_matching(_raw(data), "FileType").values()), {"TXT"}, f"{data.where}: raw_metadata FileType values")


def test_decompression_bomb_metadata_without_decoding(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """Metadata only needs the header: the 30000×30000 PNG completes with its declared size, no decoding."""
    item = cl_media["hostile_bomb_png"]
    data = _exif(compute_client, item.path)
    raw = _raw(data)
    expect(
        set(_matching(raw, "ImageWidth").values()),
        {item.fact_int("declared_width")},
        f"{data.where}: raw_metadata ImageWidth values (the declared width)",
    )
    expect(
        set(_matching(raw, "ImageHeight").values()),
        {item.fact_int("declared_height")},
        f"{data.where}: raw_metadata ImageHeight values (the declared height)",
    )


@pytest.mark.cl_needs_fix("exif fails on an empty file (upstream completes silently with null fields)")
def test_empty_file_fails_with_a_message(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """Zero bytes: the job ends ``error`` with a message (no metadata to invent)."""
    failed(any_client, TASK, cl_media["hostile_empty"].path)
