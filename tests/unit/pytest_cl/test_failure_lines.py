"""Failure lines that name the defect (issue 19 item 4): each judge of the conformance suites is fed a wrong answer
of each kind it names, and the line it gives must say which wrong answer it is.

The judges are pure functions of ``pytest_cl.conformance`` (``_checks``, ``plugins/_media_helpers``,
``plugins/_ml_helpers``); the wrong answers are made here from the committed test media (hashlib, PyAV, Pillow,
numpy), as a deployment with the defect would make them.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from pytest_cl._media import MediaCatalogue, load_catalogue
from pytest_cl.conformance._checks import diagnose, expect_field, expect_value, show, which_wrong_answer
from pytest_cl.conformance.plugins._media_helpers import (
    byte_digest_answers,
    duration_defect,
    exif_typed_defect,
    fit_size,
    format_defect,
    grid_defect,
    image_hash_answers,
    pixel_bytes,
    quality_defect,
    sniff_format,
    thumbnail_size_answers,
    variants_defect,
    video_hash_answers,
)
from pytest_cl.conformance.plugins._ml_helpers import (
    box_defect,
    check_vector,
    landmark_defect,
    misplaced_box,
    vector_defect,
)


@pytest.fixture(scope="module")
def media() -> MediaCatalogue:
    return load_catalogue()


def _failure(expected: object, seen: object, **kwargs: object) -> str:
    with pytest.raises(AssertionError) as info:
        expect_value(seen, expected, "the value", **kwargs)  # type: ignore[arg-type]
    return str(info.value)


# -- the one mechanism ----------------------------------------------------------------------------------------------
def test_expect_value_names_the_wrong_answer_it_sees() -> None:
    calls: list[str] = []

    def lazy() -> int:
        calls.append("computed")
        return 7

    expect_value(3, 3, "the value", wrong={"seven": lazy})
    assert calls == [], "wrong answers are computed only when the check failed"
    line = _failure(3, 7, meaning="three", wrong={"four": 4, "seven": lazy})
    assert line == "the value: expected 3 (three), got 7: that is seven"
    line = _failure(3, 9, wrong={"four": 4, "seven": lazy})
    assert line.endswith("got 9 (none of the common wrong answers: four; seven)")
    assert _failure(3, 9) == "the value: expected 3, got 9"


def test_a_wrong_answer_that_cannot_be_computed_is_skipped() -> None:
    def broken() -> object:
        raise ValueError("not for this input")

    assert which_wrong_answer(5, {"broken": broken, "five": 5}) == "five"
    assert diagnose(5, {"broken": broken}) == " (none of the common wrong answers: broken)"


def test_expect_field_uses_the_comparison_and_the_wrong_answers() -> None:
    with pytest.raises(AssertionError, match=r"'size': expected 1\.0, got 2\.0: that is doubled"):
        expect_field({"size": 2.0}, "size", 1.0, where="job x", wrong={"doubled": 2.0})
    expect_field({"size": 1.0000001}, "size", 1.0, where="job x", same=lambda a, b: abs(a - b) < 1e-3)  # type: ignore[operator]


def test_long_digests_are_shown_by_their_start() -> None:
    digest = hashlib.sha512(b"x").hexdigest()
    assert show(digest) == f"'{digest[:16]}…'"
    assert show("short") == "'short'"


# -- hash ----------------------------------------------------------------------------------------------------------
def _keyframes(path: Path, *, every: bool = False) -> str:
    import av

    digest = hashlib.sha512()
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0]):
            if packet.size and (packet.is_keyframe or every):
                digest.update(bytes(packet))
    return digest.hexdigest()


def _first_frame_pixels(path: Path) -> str:
    import av

    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return hashlib.sha512(frame.to_ndarray(format="rgb24").tobytes()).hexdigest()


def test_video_hash_over_the_wrong_frames_or_bytes_is_named(media: MediaCatalogue) -> None:
    path = media["video_720p_5s_audio"].path
    expected = _keyframes(path)
    wrong = video_hash_answers(path, expected)
    cases = {
        _keyframes(path, every=True): "every video packet (all frames, not only the key frames)",
        hashlib.sha512(path.read_bytes()).hexdigest(): "the SHA-512 of the file's bytes",
        hashlib.md5(path.read_bytes()).hexdigest(): "the MD5 of the file's bytes",
        _first_frame_pixels(path): "the decoded first frame's pixels",
        expected.upper(): "upper-case hex",
    }
    for seen, words in cases.items():
        assert words in _failure(expected, seen, wrong=wrong)
    assert "none of the common wrong answers" in _failure(expected, "0" * 128, wrong=wrong)


def test_image_hash_of_the_wrong_bytes_or_mode_is_named(media: MediaCatalogue) -> None:
    path = media["png_rgba"].path
    expected = hashlib.sha512(pixel_bytes(path)).hexdigest()
    wrong = image_hash_answers(path, expected)
    with Image.open(path) as img:
        rgb = hashlib.sha512(img.convert("RGB").tobytes()).hexdigest()
    cases = {
        hashlib.sha512(path.read_bytes()).hexdigest(): "the file's bytes, not of its decoded pixels",
        hashlib.md5(pixel_bytes(path)).hexdigest(): "the MD5 of the decoded pixels",
        rgb: "converted to RGB",
    }
    for seen, words in cases.items():
        assert words in _failure(expected, seen, wrong=wrong)


def test_md5_answered_with_another_digest_is_named(media: MediaCatalogue) -> None:
    path = media["text_plain"].path
    expected = hashlib.md5(path.read_bytes()).hexdigest()
    wrong = byte_digest_answers(path, expected)
    assert "the SHA-512 of the file's bytes" in _failure(
        expected, hashlib.sha512(path.read_bytes()).hexdigest(), wrong=wrong
    )
    assert "the SHA-256 of the file's bytes" in _failure(
        expected, hashlib.sha256(path.read_bytes()).hexdigest(), wrong=wrong
    )
    assert "upper-case hex" in _failure(expected, expected.upper(), wrong=wrong)


# -- embeddings ----------------------------------------------------------------------------------------------------
def _unit(n: int, seed: int = 1) -> NDArray[np.float32]:
    vector = np.random.default_rng(seed).normal(size=n).astype(np.float32)
    return np.divide(vector, np.float32(np.linalg.norm(vector)), dtype=np.float32)


def test_vector_defects_are_named() -> None:
    good = _unit(384)
    assert vector_defect(good, 384, normalized=True) is None
    assert "float64" in str(vector_defect(good.astype(np.float64), 384, normalized=True))
    assert "float16" in str(vector_defect(good.astype(np.float16), 384, normalized=True))
    padded = np.concatenate([good, np.zeros(128, dtype=np.float32)])
    said = str(vector_defect(padded, 384, normalized=True))
    assert "512 values, expected 384" in said and "clip_embedding" in said and "padded" in said
    assert "dino_embedding" in str(vector_defect(_unit(384), 512, normalized=True))
    assert "batch axis" in str(vector_defect(good.reshape(1, 384), 384, normalized=True))
    assert "not normalised" in str(vector_defect(good * 23.0, 384, normalized=True))
    l1_norm = float(np.linalg.norm(good, ord=1))
    l1: NDArray[np.float32] = (good / l1_norm).astype(np.float32)
    assert "L1 norm" in str(vector_defect(l1, 384, normalized=True))
    assert "normalize=false" in str(vector_defect(good, 384, normalized=False))
    with_nan = good.copy()
    with_nan[3] = np.nan
    assert "non-finite" in str(vector_defect(with_nan, 384, normalized=True))
    with pytest.raises(AssertionError, match=r"^clip job x: stored as float64"):
        check_vector(_unit(512).astype(np.float64), 512, normalized=True, what="clip job x")


# -- face detection ------------------------------------------------------------------------------------------------
BOX = (0.40, 0.20, 0.60, 0.50)
SIZE = (1000, 500)
POINTS = {
    "right_eye": (0.45, 0.30),
    "left_eye": (0.55, 0.30),
    "nose_tip": (0.50, 0.36),
    "mouth_right": (0.46, 0.43),
    "mouth_left": (0.54, 0.43),
}


def test_landmarks_in_pixels_while_the_bbox_is_normalised() -> None:
    assert landmark_defect(BOX, POINTS, SIZE) is None
    pixels = {n: (x * SIZE[0], y * SIZE[1]) for n, (x, y) in POINTS.items()}
    said = str(landmark_defect(BOX, pixels, SIZE))
    assert "landmarks in pixels while the bbox is normalised" in said and "fall inside the bbox" in said


def test_landmark_swaps_are_named() -> None:
    eyes = dict(POINTS, right_eye=POINTS["left_eye"], left_eye=POINTS["right_eye"])
    assert "right_eye and left_eye swapped" in str(landmark_defect(BOX, eyes, SIZE))
    both = dict(eyes, mouth_right=POINTS["mouth_left"], mouth_left=POINTS["mouth_right"])
    assert "right and left swapped for the eyes and the mouth corners" in str(landmark_defect(BOX, both, SIZE))
    square = (0.30, 0.30, 0.60, 0.60)
    inside = {"right_eye": (0.38, 0.40), "left_eye": (0.52, 0.40), "nose_tip": (0.45, 0.47),
              "mouth_right": (0.40, 0.55), "mouth_left": (0.50, 0.55)}  # fmt: skip
    assert landmark_defect(square, inside, SIZE) is None
    yx = {n: (y, x) for n, (x, y) in inside.items()}
    assert "[y, x] pairs" in str(landmark_defect(square, yx, SIZE))
    assert "[y, x] pairs" in str(landmark_defect((0.36, 0.36, 0.56, 0.60), yx, SIZE))
    upside = {n: (x, 1.0 - y) for n, (x, y) in inside.items()}
    assert "upside down" in str(landmark_defect((0.30, 0.40, 0.60, 0.70), upside, SIZE))


def test_box_defects_are_named() -> None:
    assert box_defect(BOX, SIZE) is None
    pixels = (400.0, 100.0, 600.0, 250.0)
    assert "in pixels, not normalised" in str(box_defect(pixels, SIZE))
    assert "corners swapped" in str(box_defect((0.6, 0.2, 0.4, 0.5), SIZE))
    known = (0.40, 0.20, 0.60, 0.50)

    def iou(b: tuple[float, float, float, float]) -> float:
        ix = max(0.0, min(known[2], b[2]) - max(known[0], b[0]))
        iy = max(0.0, min(known[3], b[3]) - max(known[1], b[1]))
        inter = ix * iy
        area = (known[2] - known[0]) * (known[3] - known[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / area

    assert misplaced_box((0.20, 0.40, 0.50, 0.60), iou, 0.3) == "x and y swapped"
    assert misplaced_box((0.40, 0.50, 0.60, 0.80), iou, 0.3) == "y measured from the bottom (flipped)"
    assert misplaced_box((0.40, 0.20, 0.20, 0.30), iou, 0.3) == "(x, y, width, height), not corners"
    assert misplaced_box((0.0, 0.9, 0.05, 0.95), iou, 0.3) is None


# -- thumbnails ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "fields", "seen", "words"),
    [
        ((128, 128), (512, 512, True), (512, 512), "upscaled beyond the 128×128 source"),
        ((1920, 1080), (320, 240, True), (180, 320), "width and height swapped"),
        ((1920, 1080), (320, 240, True), (320, 240), "the aspect ratio ignored"),
        ((1920, 1080), (320, 240, True), (1920, 1080), "not resized"),
        ((800, 600), (300, None, True), (300, 300), "the one given side used for both"),
        ((800, 600), (200, 200, False), (200, 150), "kept although maintain_aspect_ratio=false"),
    ],
)
def test_wrong_thumbnail_sizes_are_named(
    source: tuple[int, int], fields: tuple[int, int | None, bool], seen: tuple[int, int], words: str
) -> None:
    width, height, keep = fields
    expected = fit_size(source, width, height) if keep else (width, height or width)
    wrong = thumbnail_size_answers(source, width, height, keep, expected)
    assert words in _failure(expected, seen, wrong=wrong)


def _cells(frames: list[np.ndarray], order: list[int | None]) -> list[np.ndarray]:
    black = np.zeros_like(frames[0])
    return [black if i is None else frames[i] for i in order]


def test_video_grid_defects_are_named() -> None:
    rng = np.random.default_rng(3)
    frames = [rng.uniform(20, 235, size=(18, 32, 3)) for _ in range(3)]
    right = _cells(frames, [0, 1, 2, *[None] * 13])
    assert grid_defect(right, frames) is None
    repeated = _cells(frames, [0] * 16)
    said = str(grid_defect(repeated, frames))
    assert "one frame repeated" in said and "first key frame" in said and "3 key frames" in said
    assert "one frame repeated" in str(grid_defect(_cells(frames, [0, 0, 0, *[None] * 13]), frames))
    assert "out of order" in str(grid_defect(_cells(frames, [0, 2, 1, *[None] * 13]), frames))
    assert "should be empty" in str(grid_defect(_cells(frames, [0, 1, 2, 2, *[None] * 12]), frames))


# -- image_conversion ----------------------------------------------------------------------------------------------
def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format=fmt)
    return buffer.getvalue()


def test_wrong_format_names_what_the_bytes_are() -> None:
    assert format_defect(_encoded("WEBP"), "webp") is None
    assert format_defect(_encoded("JPEG"), "jpeg") is None
    said = str(format_defect(_encoded("PNG"), "webp"))
    assert said.startswith("format=webp but the bytes are a PNG file")
    assert "are a JPEG file" in str(format_defect(_encoded("JPEG"), "png"))
    assert "are a GIF file" in str(format_defect(_encoded("GIF"), "bmp"))
    assert sniff_format(_encoded("TIFF")) == "TIFF" and sniff_format(_encoded("BMP")) == "BMP"
    assert sniff_format(b"") == "empty (0 bytes)" and sniff_format(b"hello").startswith("unknown")


def test_quality_defects_are_named() -> None:
    assert quality_defect({10: 5_000, 50: 9_000, 85: 14_000, 100: 40_000}) is None
    assert "quality is ignored" in str(quality_defect({10: 14_000, 50: 14_000, 85: 14_000, 100: 14_000}))
    assert "quality is inverted" in str(quality_defect({10: 40_000, 50: 14_000, 85: 9_000, 100: 5_000}))
    assert "do not grow" in str(quality_defect({10: 5_000, 50: 14_000, 85: 9_000, 100: 40_000}))


# -- exif ----------------------------------------------------------------------------------------------------------
def _same(a: object, b: object) -> bool:
    return a == b


def test_exif_gps_defects_are_named() -> None:
    expected = {"gps_latitude": 48.8584, "gps_longitude": -2.2945, "make": "Canon", "iso": 400}
    assert exif_typed_defect(expected, dict(expected), _same) is None
    said = str(exif_typed_defect(expected, dict(expected, gps_longitude=2.2945), _same))
    assert said.startswith("gps_longitude: the sign lost (GPSLongitudeRef ignored)")
    swapped = dict(expected, gps_latitude=-2.2945, gps_longitude=48.8584)
    assert "gps_latitude and gps_longitude swapped" in str(exif_typed_defect(expected, swapped, _same))
    assert "iso: a string '400', not a number" in str(exif_typed_defect(expected, dict(expected, iso="400"), _same))
    assert "make: missing (null)" in str(exif_typed_defect(expected, dict(expected, make=None), _same))


# -- hls -----------------------------------------------------------------------------------------------------------
def test_hls_variant_and_duration_defects_are_named() -> None:
    requested = [{"resolution": 240, "bitrate": 300}, {"resolution": 144, "bitrate": 200}]
    assert variants_defect([(240, "a-240.m3u8"), (144, "a-144.m3u8")], requested) is None
    said = str(variants_defect([(240, "a-240.m3u8")], requested))
    assert "requested variant(s) missing: 144p@200k" in said
    assert "nobody requested: 720p" in str(variants_defect([(240, "a"), (144, "b"), (720, "c")], requested))
    assert duration_defect([2.0, 2.0, 1.0], 5.0, 2.0) is None
    assert "a segment is missing" in str(duration_defect([2.0, 2.0], 5.0, 2.0))
    assert "only one segment" in str(duration_defect([2.0], 5.0, 2.0))
    assert "twice the source" in str(duration_defect([2.0] * 5, 5.0, 2.0))
