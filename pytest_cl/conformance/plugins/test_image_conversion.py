"""Conformance of the ``image_conversion`` plugin (PROTOCOL.md §3: ``format`` required, ``quality`` 1–100 (85)).

Every output is downloaded from ``params.output_path`` and judged by its bytes: magic number, Pillow's format
name, pixel size, and for lossless targets the exact pixels of the source.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cl_client import ComputeClient, ValidationError
from pytest_cl._media import MediaCatalogue, MediaItem
from pytest_cl.conformance._checks import has_magic
from pytest_cl.conformance.plugins._media_helpers import completed, decode, failed, output_path, read_file, run_job

pytestmark = [pytest.mark.cl_requires("image_conversion"), pytest.mark.timeout(120)]

TASK = "image_conversion"
#: form value -> (Pillow format name, file extension)
FORMATS = {
    "png": ("PNG", "png"),
    "jpg": ("JPEG", "jpg"),
    "jpeg": ("JPEG", "jpg"),
    "webp": ("WEBP", "webp"),
    "gif": ("GIF", "gif"),
    "bmp": ("BMP", "bmp"),
    "tiff": ("TIFF", "tiff"),
}
LOSSLESS = ("png", "bmp", "tiff")


def _convert(client: ComputeClient, item: MediaItem, fmt: str, quality: int | None = None) -> tuple[bytes, str]:
    """Convert ``item``; check the protocol's output name and ``task_output`` ``{}``; return (bytes, path)."""
    params: dict[str, object] = {"format": fmt}
    if quality is not None:
        params["quality"] = quality
    job = completed(client, TASK, item.path, params)
    assert job.params.get("format") == fmt
    assert job.params.get("quality") == (85 if quality is None else quality), job.params
    path = output_path(job)
    assert path == f"output/converted_{item.path.stem}.{FORMATS[fmt][1]}", path
    assert job.task_output == {}, f"task_output should be {{}}, got {job.task_output}"
    return read_file(client, job, path), path


def _rgb_pixels(img: Image.Image) -> bytes:
    return img.convert("RGB").tobytes()


# -- formats -------------------------------------------------------------------------------------------------
def test_conversion_through_events_and_polling(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """PNG → WebP (events, polling): a RIFF/WEBP file Pillow reads as WEBP, same 800×600 size."""
    item = cl_media["png_800x600"]
    data, _ = _convert(any_client, item, "webp")
    assert has_magic(data, "webp")
    img = decode(data)
    assert (img.format, img.size) == ("WEBP", (800, 600))


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_really_is_that_format(compute_client: ComputeClient, cl_media: MediaCatalogue, fmt: str) -> None:
    """Each ``format``: the bytes start with its magic number, Pillow names it, the pixel size is the source's;
    lossless targets (png, bmp, tiff) keep every pixel of the source."""
    item = cl_media["png_800x600"]
    data, _ = _convert(compute_client, item, fmt)
    pil_format, ext = FORMATS[fmt]
    assert has_magic(data, ext), f"{fmt}: output starts with {data[:12]!r}"
    img = decode(data)
    assert img.format == pil_format
    assert img.size == (item.fact_int("width"), item.fact_int("height"))
    if fmt in LOSSLESS:
        with Image.open(item.path) as source:
            assert _rgb_pixels(img) == _rgb_pixels(source), f"{fmt} is lossless but the pixels changed"


def test_jpeg_to_png_keeps_the_size(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """JPEG → PNG of a 640×427 photo: a PNG of 640×427 (odd sizes and the input format do not matter)."""
    item = cl_media["no_face_rocket"]
    data, _ = _convert(compute_client, item, "png")
    img = decode(data)
    assert has_magic(data, "png") and (img.format, img.size) == ("PNG", (640, 427))


# -- quality ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_higher_quality_gives_a_larger_file(compute_client: ComputeClient, cl_media: MediaCatalogue, fmt: str) -> None:
    """``quality`` 10 < 50 < default (85) < 100 in file size, and the pixels get closer to the source."""
    item = cl_media["png_800x600"]
    outputs = {q: _convert(compute_client, item, fmt, q)[0] for q in (10, 50, 100)}
    default = len(_convert(compute_client, item, fmt)[0])
    sizes = {q: len(data) for q, data in outputs.items()}
    assert sizes[10] < sizes[50] < default < sizes[100], (sizes, default)
    with Image.open(item.path) as source:
        ref = np.asarray(source.convert("RGB"), dtype=np.float64)

    def error(q: int) -> float:
        return float(np.abs(np.asarray(decode(outputs[q]).convert("RGB"), dtype=np.float64) - ref).mean())

    assert error(10) > error(50) > error(100)


# -- source modes -----------------------------------------------------------------------------------------------
def test_rgba_to_jpeg_works(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """An RGBA PNG converted to JPEG: a valid 640×480 JPEG without alpha (JPEG cannot store it)."""
    item = cl_media["png_rgba"]
    data, _ = _convert(any_client, item, "jpg")
    img = decode(data)
    assert has_magic(data, "jpg") and img.format == "JPEG"
    assert img.size == (640, 480) and img.mode in ("RGB", "L")


def test_rgba_to_png_keeps_the_alpha_channel(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """RGBA → PNG is lossless: mode RGBA and the alpha channel (with its transparent pixels) unchanged."""
    item = cl_media["png_rgba"]
    img = decode(_convert(compute_client, item, "png")[0])
    assert img.mode == "RGBA"
    with Image.open(item.path) as source:
        assert img.getchannel("A").tobytes() == source.getchannel("A").tobytes()
    assert img.getchannel("A").histogram()[0] == item.fact_int("transparent_pixels")


def test_palette_gif_to_jpeg_works(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """A paletted GIF converted to JPEG: a valid 480×360 JPEG."""
    data, _ = _convert(compute_client, cl_media["gif_palette"], "jpeg")
    img = decode(data)
    assert has_magic(data, "jpeg") and (img.format, img.size) == ("JPEG", (480, 360))


# -- bad parameters: refused before any job exists ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "format"),
        ({"format": "heic"}, "format"),
        ({"format": ""}, "format"),
        ({"format": "png", "quality": 0}, "quality"),
        ({"format": "png", "quality": 101}, "quality"),
        ({"format": "png", "quality": "high"}, "quality"),
    ],
    ids=["missing-format", "unknown-format", "empty-format", "quality-0", "quality-101", "quality-text"],
)
def test_bad_fields_are_a_422(
    compute_client: ComputeClient, cl_media: MediaCatalogue, fields: dict[str, object], field: str
) -> None:
    """A missing or unknown ``format``, or ``quality`` outside 1–100: 422 naming the field, no job."""
    with pytest.raises(ValidationError) as info:
        compute_client.submit(TASK, cl_media["png_800x600"].path, fields)
    assert info.value.status_code == 422
    assert field in str(info.value.detail)


# -- hostile inputs ---------------------------------------------------------------------------------------------------
def test_decompression_bomb_fails_with_a_message(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """A 30000×30000 PNG is refused, not decoded: ``error`` with a message (events, polling), no hang."""
    failed(any_client, TASK, cl_media["hostile_bomb_png"].path, {"format": "png"})


@pytest.mark.parametrize("name", ["hostile_empty", "hostile_text_as_jpeg"])
def test_undecodable_input_fails_with_a_message(
    compute_client: ComputeClient, cl_media: MediaCatalogue, name: str
) -> None:
    """Empty, text named ``.jpg``: ``error`` with a message, no hang."""
    failed(compute_client, TASK, cl_media[name].path, {"format": "png"})


def test_truncated_jpeg_fails_or_gives_a_full_size_image(
    compute_client: ComputeClient, cl_media: MediaCatalogue
) -> None:
    """A truncated JPEG: ``error`` with a message, or (upstream decodes truncated images) a 640×480 PNG."""
    job = run_job(compute_client, TASK, cl_media["hostile_truncated_jpeg"].path, {"format": "png"})
    if job.is_failed:
        assert job.error_message and job.error_message.strip()
        return
    img = decode(read_file(compute_client, job, output_path(job)))
    assert (img.format, img.size) == ("PNG", (640, 480))
