"""Conformance of the ``media_thumbnail`` plugin (PROTOCOL.md §3: ``width``, ``height``, ``maintain_aspect_ratio``).

Every thumbnail is downloaded from ``params.output_path`` (``output/thumbnail.jpg``) and measured with Pillow:
JPEG bytes, size inside the box, aspect ratio within 1 % of the source's, never larger than the source. Video
grids are compared with key frames the test decodes itself with PyAV.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import av
import numpy as np
import pytest
from PIL import Image

from cl_client import ComputeClient, JobResponse, ValidationError
from pytest_cl._media import MediaCatalogue, MediaItem
from pytest_cl.conformance._checks import expect, expect_field, expect_param, expect_value, has_magic, job_label
from pytest_cl.conformance.plugins._media_helpers import (
    completed,
    decode,
    failed,
    fit_size,
    grid_defect,
    output_path,
    read_file,
    thumbnail_size_answers,
)

pytestmark = [pytest.mark.cl_requires("media_thumbnail"), pytest.mark.timeout(120)]

TASK = "media_thumbnail"
DEFAULT_BOX = 256


def _thumbnail(client: ComputeClient, item: MediaItem, **fields: object) -> tuple[Image.Image, JobResponse]:
    """Make a thumbnail of ``item``; check the file is a JPEG at ``output/thumbnail.jpg``; return it decoded."""
    job = completed(client, TASK, item.path, fields)
    for name, value in fields.items():
        expect_param(job, name, value)
    expect_param(job, "maintain_aspect_ratio", fields.get("maintain_aspect_ratio", True))
    expect_param(job, "output_path", "output/thumbnail.jpg")
    path = output_path(job)
    data = read_file(client, job, path)
    assert has_magic(data, "jpg"), f"{job_label(job)} on {item.path.name}: {path} starts with {data[:8]!r}, not a JPEG"
    img = decode(data)
    expect(img.format, "JPEG", f"{job_label(job)} on {item.path.name}: {path} as Pillow reads it")
    expect_field(
        job.task_output,
        "media_type",
        item.fact_str("media_type"),
        where=f"{job_label(job)} on {item.path.name}: task_output",
    )
    return img, job


def _label(job: JobResponse) -> str:
    """How a failure names a thumbnail job: ``"media_thumbnail job <id> on <input file>"``."""
    return f"{job_label(job)} on {PurePosixPath(str(job.params.get('input_path', '?'))).name}"


def _source_size(item: MediaItem) -> tuple[int, int]:
    return item.fact_int("width"), item.fact_int("height")


def _expect_size(
    img: Image.Image, job: JobResponse, item: MediaItem, fields: dict[str, int], expected: tuple[int, int], what: str
) -> None:
    """The thumbnail is ``expected`` in size; a wrong size is named when it is a common wrong answer (upscaled,
    width and height swapped, the box exactly, the source's size, …)."""
    keep = bool(fields.get("maintain_aspect_ratio", True))
    width, height = fields.get("width"), fields.get("height")
    if width is None and height is None:
        width = height = DEFAULT_BOX
    expect_value(
        img.size,
        expected,
        f"{_label(job)}: size {what}",
        wrong=thumbnail_size_answers(_source_size(item), width, height, keep, expected),
    )


def _assert_aspect(size: tuple[int, int], source: tuple[int, int], what: str) -> None:
    """Aspect ratio within 1 % (plus the rounding of one pixel on the short side)."""
    (w, h), (w0, h0) = size, source
    tolerance = 0.01 + 1 / min(w, h)
    assert abs((w / h) / (w0 / h0) - 1) <= tolerance, (
        f"{what}: the {w}×{h} thumbnail does not keep the aspect ratio of the {w0}×{h0} source"
        f" (ratio off by {abs((w / h) / (w0 / h0) - 1):.1%}, allowed {tolerance:.1%})"
    )


# -- box sizing -------------------------------------------------------------------------------------------------
def test_fits_the_box_through_events_and_polling(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """1920×1080 into 320×240 (events, polling): 320×180, a JPEG, ``media_type`` image."""
    item = cl_media["jpeg_1920x1080"]
    img, job = _thumbnail(any_client, item, width=320, height=240)
    _expect_size(img, job, item, {"width": 320, "height": 240}, (320, 180), "of a 1920×1080 image fitted into 320×240")


@pytest.mark.parametrize(
    ("name", "box"),
    [
        ("png_800x600", (200, 150)),
        ("png_800x600", (100, 400)),
        ("png_800x600", (300, 300)),
        ("jpeg_1920x1080", (500, 500)),
        ("face_kafka", (200, 100)),
        ("jpeg_6000x4000", (300, 300)),
    ],
)
def test_box_bounds_and_aspect_ratio(
    compute_client: ComputeClient, cl_media: MediaCatalogue, name: str, box: tuple[int, int]
) -> None:
    """With both sides: inside the box, touching it on one side, aspect ratio within 1 %."""
    item = cl_media[name]
    img, job = _thumbnail(compute_client, item, width=box[0], height=box[1])
    fitted = fit_size(_source_size(item), box[0], box[1])
    if abs(img.size[0] - fitted[0]) > 1 or abs(img.size[1] - fitted[1]) > 1:  # off by more than rounding
        _expect_size(img, job, item, {"width": box[0], "height": box[1]}, fitted, f"fitted into {box[0]}×{box[1]}")
    w, h = img.size
    assert w <= box[0] and h <= box[1], f"{_label(job)}: the {w}×{h} thumbnail is outside the {box[0]}×{box[1]} box"
    assert w >= box[0] - 1 or h >= box[1] - 1, (
        f"{_label(job)}: the {w}×{h} thumbnail does not fill the {box[0]}×{box[1]} box on either side"
    )
    _assert_aspect(img.size, _source_size(item), _label(job))


def test_without_aspect_ratio_the_size_is_exact(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """``maintain_aspect_ratio=false`` with both sides: exactly width×height (the 4:3 image is squeezed)."""
    item = cl_media["png_800x600"]
    fields = {"width": 200, "height": 200, "maintain_aspect_ratio": False}
    img, job = _thumbnail(compute_client, item, **fields)
    _expect_size(img, job, item, fields, (200, 200), "with maintain_aspect_ratio=false and a 200×200 box")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({"width": 300}, (300, 225)), ({"height": 150}, (200, 150)), ({"width": 640}, (640, 480))],
    ids=["width-only", "height-only", "width-only-640"],
)
def test_one_side_derives_the_other(
    compute_client: ComputeClient, cl_media: MediaCatalogue, fields: dict[str, int], expected: tuple[int, int]
) -> None:
    """Only one side given: the other follows the 4:3 aspect ratio of the 800×600 source."""
    item = cl_media["png_800x600"]
    img, job = _thumbnail(compute_client, item, **fields)
    _expect_size(img, job, item, fields, expected, f"with only {fields} (the other side from the 4:3 aspect ratio)")


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("face_hopper", {"width": 512, "height": 512}),
        ("png_800x600", {"width": 1000}),
        ("png_800x600", {"height": 2000}),
        ("face_hopper", {}),
    ],
    ids=["box-larger", "width-larger", "height-larger", "default-larger"],
)
def test_never_upscales(
    compute_client: ComputeClient, cl_media: MediaCatalogue, name: str, fields: dict[str, int]
) -> None:
    """A box larger than the source (also the 256 default on a 128×128 image) gives the source's own size."""
    item = cl_media[name]
    img, job = _thumbnail(compute_client, item, **fields)
    _expect_size(img, job, item, fields, _source_size(item), f"with {fields or 'no size'} (never upscaled)")


def test_default_size_of_a_square_image_is_256(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """No width or height on a 512×512 image: 256×256 (upstream's and the reference's default agree here)."""
    img, job = _thumbnail(compute_client, cl_media["face_astronaut"])
    expect(img.size, (DEFAULT_BOX, DEFAULT_BOX), f"{_label(job)}: default size of a 512×512 image")
    assert job.params.get("width") is None and job.params.get("height") is None, (
        f"{_label(job)}: no size was sent, but params has width {job.params.get('width')!r},"
        f" height {job.params.get('height')!r} (expected null or absent)"
    )


def test_default_size_of_a_wide_image(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """No size on 1920×1080: upstream gives exactly 256×256 (PROTOCOL.md §3); a deployment keeping the aspect ratio
    fits it inside 256×256 (256×144). Either way the longer side is 256 and nothing exceeds the box."""
    item = cl_media["jpeg_1920x1080"]
    img, job = _thumbnail(compute_client, item)
    assert max(img.size) == DEFAULT_BOX and min(img.size) <= DEFAULT_BOX, (
        f"{_label(job)}: default size {img.size[0]}×{img.size[1]}, expected the longer side {DEFAULT_BOX}"
    )
    if img.size != (DEFAULT_BOX, DEFAULT_BOX):
        _assert_aspect(img.size, _source_size(item), _label(job))


# -- source modes -------------------------------------------------------------------------------------------------
def test_greyscale_image(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """A greyscale (L) PNG gives a greyscale-looking JPEG of the right size."""
    img, job = _thumbnail(compute_client, cl_media["png_grey"], width=320)
    expect(img.size, (320, 240), f"{_label(job)}: size with width 320")
    rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    assert np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 8, (
        f"{_label(job)}: a grey source gained colour (R-G differs by up to {np.abs(rgb[..., 0] - rgb[..., 1]).max()})"
    )


@pytest.mark.cl_needs_fix("thumbnails of RGBA and paletted images (upstream fails to save them as JPEG)")
@pytest.mark.parametrize("name", ["png_rgba", "gif_palette"])
def test_rgba_and_paletted_images(compute_client: ComputeClient, cl_media: MediaCatalogue, name: str) -> None:
    """RGBA PNG and paletted GIF: a JPEG fitting 200×200 with the source's aspect ratio."""
    item = cl_media[name]
    img, job = _thumbnail(compute_client, item, width=200, height=200)
    assert max(img.size) == 200, f"{_label(job)}: {img.size[0]}×{img.size[1]}, expected the longer side 200"
    _assert_aspect(img.size, _source_size(item), _label(job))


# -- videos -------------------------------------------------------------------------------------------------------
def _keyframes(item: MediaItem) -> list[Image.Image]:
    with av.open(str(item.path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        return [frame.to_image() for frame in container.decode(stream)]


@pytest.mark.cl_needs_fix("video thumbnails (upstream hands ffmpeg a relative input path and fails)")
@pytest.mark.parametrize("name", ["video_720p_5s_audio", "video_720p_3s_silent"])
def test_video_gives_a_grid_of_its_key_frames(
    compute_client: ComputeClient, cl_media: MediaCatalogue, name: str
) -> None:
    """A video: a 4×4 JPEG grid; the first cells, in reading order, are its key frames, the rest are black."""
    item = cl_media[name]
    img, job = _thumbnail(compute_client, item, width=640)
    expect(img.size[0], 640, f"{_label(job)}: width of the grid with width 640")
    _assert_aspect(img.size, _source_size(item), _label(job))  # 4×4 cells of the frame's shape
    frames = _keyframes(item)
    assert len(frames) == item.fact_int("keyframes") < 16, (
        f"test media {name}: PyAV decodes {len(frames)} key frames, the manifest says {item.fact_int('keyframes')}"
    )
    grid = np.asarray(img.convert("RGB"), dtype=np.float64)
    cell_h, cell_w = grid.shape[0] // 4, grid.shape[1] // 4
    cells = [grid[r * cell_h : (r + 1) * cell_h, c * cell_w : (c + 1) * cell_w] for r in range(4) for c in range(4)]
    small = [np.asarray(f.convert("RGB").resize((cell_w, cell_h)), dtype=np.float64) for f in frames]
    defect = grid_defect(cells, small)
    assert defect is None, f"{_label(job)}: {defect}"


def test_default_video_grid_fits_256(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """A video with no size: the grid fits the 256 box (a JPEG, ``media_type`` video), or the job fails cleanly
    on a deployment without video thumbnails (checked strictly above)."""
    item = cl_media["video_720p_3s_silent"]
    job = compute_client.submit(TASK, item.path, {}).wait()
    if job.is_failed:
        assert job.error_message and job.error_message.strip(), (
            f"{_label(job)}: ended {job.status!r} without an error_message"
        )
        return
    img = decode(read_file(compute_client, job, output_path(job)))
    assert img.format == "JPEG" and max(img.size) <= DEFAULT_BOX, (
        f"{_label(job)}: expected a JPEG inside {DEFAULT_BOX}×{DEFAULT_BOX}, got a {img.format}"
        f" of {img.size[0]}×{img.size[1]}"
    )
    expect(job.task_output, {"media_type": "video"}, f"{_label(job)}: task_output")


# -- bad parameters and hostile inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [{"width": 0}, {"height": -5}, {"width": "abc"}, {"maintain_aspect_ratio": "perhaps"}],
    ids=["width-0", "height-negative", "width-text", "aspect-not-bool"],
)
def test_bad_fields_are_a_422(
    compute_client: ComputeClient, cl_media: MediaCatalogue, fields: dict[str, object]
) -> None:
    """Non-positive or non-integer sizes and a non-boolean flag: 422 naming the field, no job."""
    with pytest.raises(ValidationError) as info:
        compute_client.submit(TASK, cl_media["png_800x600"].path, fields)
    expect(info.value.status_code, 422, f"POST /jobs/{TASK} with {fields}: HTTP status")
    assert next(iter(fields)) in str(info.value.detail), (
        f"POST /jobs/{TASK} with {fields}: the 422 does not name {next(iter(fields))!r}: {info.value.detail}"
    )


def test_decompression_bomb_fails_with_a_message(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """A 30000×30000 PNG is refused, not decoded: ``error`` with a message (events, polling), no hang."""
    failed(any_client, TASK, cl_media["hostile_bomb_png"].path, {"width": 128})


@pytest.mark.parametrize("name", ["hostile_empty", "hostile_text_as_jpeg", "audio_3s"])
def test_unusable_input_fails_with_a_message(
    compute_client: ComputeClient, cl_media: MediaCatalogue, name: str
) -> None:
    """Empty, text named ``.jpg``, audio only: ``error`` with a message, no hang."""
    failed(compute_client, TASK, cl_media[name].path, {"width": 128})
