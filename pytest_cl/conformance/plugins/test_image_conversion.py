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
from pytest_cl.conformance._checks import expect, expect_param, has_magic, job_label
from pytest_cl.conformance.plugins._media_helpers import (
    completed,
    decode,
    failed,
    format_defect,
    output_path,
    quality_defect,
    read_file,
    run_job,
)

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
    """Convert ``item``; check the output name and ``task_output`` ``{}``; return (bytes, "<job>: <path>")."""
    params: dict[str, object] = {"format": fmt}
    if quality is not None:
        params["quality"] = quality
    job = completed(client, TASK, item.path, params)
    expect_param(job, "format", fmt)
    expect_param(job, "quality", 85 if quality is None else quality)
    expect_param(job, "output_path", f"output/converted_{item.path.stem}.{FORMATS[fmt][1]}")
    path = output_path(job)
    expect(job.task_output, {}, f"{job_label(job)}: task_output")
    return read_file(client, job, path), f"{job_label(job)}: {path}"


def _rgb_pixels(img: Image.Image) -> bytes:
    return img.convert("RGB").tobytes()


# -- formats -------------------------------------------------------------------------------------------------
def test_conversion_through_events_and_polling(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """PNG → WebP (events, polling): a RIFF/WEBP file Pillow reads as WEBP, same 800×600 size."""
    item = cl_media["png_800x600"]
    data, where = _convert(any_client, item, "webp")
    defect = format_defect(data, "webp")
    assert defect is None, f"{where}: {defect}"
    img = decode(data)
    expect((img.format, img.size), ("WEBP", (800, 600)), f"{where}: format and size")


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_really_is_that_format(compute_client: ComputeClient, cl_media: MediaCatalogue, fmt: str) -> None:
    """Each ``format``: the bytes start with its magic number, Pillow names it, the pixel size is the source's;
    lossless targets (png, bmp, tiff) keep every pixel of the source."""
    item = cl_media["png_800x600"]
    data, where = _convert(compute_client, item, fmt)
    pil_format = FORMATS[fmt][0]
    defect = format_defect(data, fmt)
    assert defect is None, f"{where}: {defect}"
    img = decode(data)
    expect(img.format, pil_format, f"{where}: format={fmt}, the file as Pillow reads it")
    expect(img.size, (item.fact_int("width"), item.fact_int("height")), f"{where}: size (the source's)")
    if fmt in LOSSLESS:
        with Image.open(item.path) as source:
            assert _rgb_pixels(img) == _rgb_pixels(source), f"{where}: {fmt} is lossless but the pixels changed"


def test_jpeg_to_png_keeps_the_size(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """JPEG → PNG of a 640×427 photo: a PNG of 640×427 (odd sizes and the input format do not matter)."""
    item = cl_media["no_face_rocket"]
    data, where = _convert(compute_client, item, "png")
    img = decode(data)
    defect = format_defect(data, "png")
    assert defect is None, f"{where}: {defect}"
    expect((img.format, img.size), ("PNG", (640, 427)), f"{where}: format and size")


# -- quality ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_higher_quality_gives_a_larger_file(compute_client: ComputeClient, cl_media: MediaCatalogue, fmt: str) -> None:
    """``quality`` 10 < 50 < default (85) < 100 in file size, and the pixels get closer to the source."""
    item = cl_media["png_800x600"]
    outputs = {q: _convert(compute_client, item, fmt, q)[0] for q in (10, 50, 100)}
    default = len(_convert(compute_client, item, fmt)[0])
    sizes = {q: len(data) for q, data in outputs.items()} | {85: default}
    defect = quality_defect(sizes)
    assert defect is None, f"{TASK} to {fmt} (85 = the default): {defect}"
    with Image.open(item.path) as source:
        ref = np.asarray(source.convert("RGB"), dtype=np.float64)

    def error(q: int) -> float:
        return float(np.abs(np.asarray(decode(outputs[q]).convert("RGB"), dtype=np.float64) - ref).mean())

    errors = {q: error(q) for q in (10, 50, 100)}
    assert errors[10] > errors[50] > errors[100], (
        f"{TASK} to {fmt}: the pixels do not get closer to the source as quality rises (mean absolute error per"
        f" quality {errors})"
    )


# -- source modes -----------------------------------------------------------------------------------------------
def test_rgba_to_jpeg_works(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """An RGBA PNG converted to JPEG: a valid 640×480 JPEG without alpha (JPEG cannot store it)."""
    item = cl_media["png_rgba"]
    data, where = _convert(any_client, item, "jpg")
    img = decode(data)
    assert has_magic(data, "jpg") and img.format == "JPEG", (
        f"{where}: expected a JPEG, the file starts with {data[:8]!r} and Pillow reads {img.format}"
    )
    assert img.size == (640, 480) and img.mode in ("RGB", "L"), (
        f"{where}: expected a 640×480 RGB or L JPEG, got {img.size[0]}×{img.size[1]} mode {img.mode}"
    )


def test_rgba_to_png_keeps_the_alpha_channel(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """RGBA → PNG is lossless: mode RGBA and the alpha channel (with its transparent pixels) unchanged."""
    item = cl_media["png_rgba"]
    data, where = _convert(compute_client, item, "png")
    img = decode(data)
    expect(img.mode, "RGBA", f"{where}: mode of an RGBA source converted to PNG")
    with Image.open(item.path) as source:
        assert img.getchannel("A").tobytes() == source.getchannel("A").tobytes(), (
            f"{where}: the alpha channel differs from the source's"
        )
    expect(
        img.getchannel("A").histogram()[0],
        item.fact_int("transparent_pixels"),
        f"{where}: number of fully transparent pixels",
    )


def test_palette_gif_to_jpeg_works(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """A paletted GIF converted to JPEG: a valid 480×360 JPEG."""
    data, where = _convert(compute_client, cl_media["gif_palette"], "jpeg")
    img = decode(data)
    defect = format_defect(data, "jpeg")
    assert defect is None, f"{where}: {defect}"
    expect((img.format, img.size), ("JPEG", (480, 360)), f"{where}: format and size")


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
    expect(info.value.status_code, 422, f"POST /jobs/{TASK} with {fields}: HTTP status")
    assert field in str(info.value.detail), (
        f"POST /jobs/{TASK} with {fields}: the 422 does not name {field!r}: {info.value.detail}"
    )


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
        assert job.error_message and job.error_message.strip(), (
            f"{job_label(job)} of a truncated JPEG ended {job.status!r} without an error_message"
        )
        return
    img = decode(read_file(compute_client, job, output_path(job)))
    expect((img.format, img.size), ("PNG", (640, 480)), f"{job_label(job)} of a truncated JPEG: format and size")
