"""media_thumbnail plugin: bounds, aspect, no upscaling, defaults, modes, video grids, errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from plugin_test_images import encode

from cl_compute.plugins import get_plugin
from cl_compute.plugins.base import ParamError, PluginError
from cl_compute.plugins.media_thumbnail import MediaThumbnailPlugin


def _quadrants(size: tuple[int, int]) -> Image.Image:
    """Red left half, blue right half: colour positions survive any resize."""
    w, h = size
    img = Image.new("RGB", size, (255, 0, 0))
    img.paste((0, 0, 255), (w // 2, 0, w, h))
    return img


def _thumb(mp_job, img: Image.Image, form: dict[str, str] | None = None) -> Image.Image:
    job = mp_job(MediaThumbnailPlugin(), encode(img), form or {}, upload_name="in.png")
    assert job.params["output_path"] == "output/thumbnail.jpg"
    assert job.task_output == {"media_type": "image"}
    data = job.out().read_bytes()
    assert data.startswith(b"\xff\xd8\xff")
    out = Image.open(io.BytesIO(data))
    assert out.format == "JPEG"
    out.load()
    return out


def test_params() -> None:
    plugin = get_plugin("media_thumbnail")
    assert isinstance(plugin, MediaThumbnailPlugin)
    assert plugin.parse_params({}, "a.jpg") == {
        "width": None,
        "height": None,
        "maintain_aspect_ratio": True,
        "output_path": "output/thumbnail.jpg",
    }
    p = plugin.parse_params({"width": "120", "height": "", "maintain_aspect_ratio": "No"}, "a.jpg")
    assert (p["width"], p["height"], p["maintain_aspect_ratio"]) == (120, None, False)
    for raw, expected in (("TRUE", True), ("1", True), ("yes", True), ("False", False), ("0", False)):
        assert plugin.parse_params({"maintain_aspect_ratio": raw}, "a")["maintain_aspect_ratio"] is expected
    for form, field in (
        ({"width": "0"}, "width"),
        ({"width": "-5"}, "width"),
        ({"height": "abc"}, "height"),
        ({"height": "1.5"}, "height"),
        ({"maintain_aspect_ratio": "maybe"}, "maintain_aspect_ratio"),
        ({"width": "100000"}, "width"),
    ):
        with pytest.raises(ParamError) as err:
            plugin.parse_params(form, "a.jpg")
        assert err.value.field == field


@pytest.mark.parametrize(
    ("src", "form", "expected"),
    [
        ((400, 200), {"width": "100", "height": "100"}, (100, 50)),  # fits inside the box
        ((200, 400), {"width": "100", "height": "100"}, (50, 100)),
        ((400, 200), {"width": "300", "height": "50"}, (100, 50)),
        ((400, 200), {"width": "100", "height": "100", "maintain_aspect_ratio": "false"}, (100, 100)),
        ((400, 200), {"width": "100"}, (100, 50)),  # one side derives the other
        ((400, 200), {"height": "50"}, (100, 50)),
        ((400, 200), {"width": "80", "maintain_aspect_ratio": "false"}, (80, 80)),
        ((400, 300), {}, (256, 192)),  # default 256 box
        ((300, 300), {}, (256, 256)),
        ((600, 300), {"maintain_aspect_ratio": "false"}, (256, 256)),
        ((100, 50), {}, (100, 50)),  # never upscales
        ((100, 50), {"width": "1000", "height": "1000"}, (100, 50)),
        ((100, 50), {"width": "1000"}, (100, 50)),
        ((100, 50), {"height": "500", "maintain_aspect_ratio": "false"}, (100, 50)),
        ((100, 50), {"width": "1000", "height": "20", "maintain_aspect_ratio": "false"}, (100, 20)),
        ((1, 500), {"width": "10", "height": "10"}, (1, 10)),
    ],
)
def test_sizes(mp_job, src: tuple[int, int], form: dict[str, str], expected: tuple[int, int]) -> None:
    out = _thumb(mp_job, _quadrants(src), form)
    assert out.size == expected
    if expected[0] >= 8:
        left = out.getpixel((1, expected[1] // 2))
        right = out.getpixel((expected[0] - 2, expected[1] // 2))
        assert left[0] > 180 > left[2], left
        assert right[2] > 180 > right[0], right


def _independent_fit(src: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    w0, h0 = src
    s = min(box[0] / w0, box[1] / h0, 1)
    return round(w0 * s), round(h0 * s)


@pytest.mark.parametrize("src", [(640, 480), (333, 777), (1000, 37), (257, 255)])
def test_fit_matches_independent_rule(mp_job, src: tuple[int, int]) -> None:
    out = _thumb(mp_job, _quadrants(src), {"width": "150", "height": "120"})
    assert out.size == _independent_fit(src, (150, 120))
    assert out.width <= 150
    assert out.height <= 120


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK", "1", "I;16"])
def test_modes_work(mp_job, mode: str) -> None:
    if mode == "I;16":
        img = Image.new("I;16", (64, 32))
        img.putdata([i * 30 for i in range(64 * 32)])
    else:
        img = _quadrants((64, 32)).convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    job = mp_job(MediaThumbnailPlugin(), encode(img, fmt), {"width": "32"}, upload_name="m.png")
    with Image.open(job.out()) as out:
        assert out.format == "JPEG"
        assert out.size == (32, 16)


def test_transparent_becomes_white(mp_job) -> None:
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    out = _thumb(mp_job, img, {"width": "20"})
    assert all(c > 240 for c in out.getpixel((10, 10)))


def _grid_cells(img: Image.Image) -> list[tuple[int, int, int]]:
    w, h = img.size
    return [img.getpixel((int((i % 4 + 0.5) * w / 4), int((i // 4 + 0.5) * h / 4))) for i in range(16)]


def test_video_grid(mp_job, mp_video_silent: Path) -> None:
    # 192x108, 30 fps, 2 s, key frame every 6 frames: 10 key frames -> 10 filled cells + 6 black ones.
    job = mp_job(MediaThumbnailPlugin(), mp_video_silent, {"width": "384"})
    assert job.task_output == {"media_type": "video"}
    with Image.open(job.out()) as out:
        assert out.format == "JPEG"
        # grid of 4x4 cells of 192x108 -> 768x432, scaled to width 384 keeping 16:9
        assert out.size == (384, 216)
        cells = [sum(c) for c in _grid_cells(out.convert("RGB"))]
    filled = [c > 60 for c in cells]
    assert filled[:10] == [True] * 10
    assert not any(filled[10:])
    assert job.progress[-1] == 100


def test_video_default_box(mp_job, mp_video_av: Path) -> None:
    job = mp_job(MediaThumbnailPlugin(), mp_video_av)
    with Image.open(job.out()) as out:
        # 160x120 cells -> 640x480 grid -> inside the 256 box keeping 4:3
        assert out.size == (256, 192)


def test_webm_video(mp_job, mp_video_webm: Path) -> None:
    job = mp_job(MediaThumbnailPlugin(), mp_video_webm, {"height": "96"})
    assert job.task_output == {"media_type": "video"}
    with Image.open(job.out()) as out:
        assert out.size == (128, 96)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"hello, I am text\n", "Unsupported media type"),
        (bytes(range(7, 256)) * 50, "Unsupported media type"),
        (encode(Image.new("RGB", (64, 64), "red"), "JPEG")[:100], "corrupt|truncated|Cannot"),
    ],
    ids=["empty", "text", "binary", "truncated-jpeg"],
)
def test_bad_inputs(mp_job, data: bytes, match: str) -> None:
    with pytest.raises(PluginError, match=match):
        mp_job(MediaThumbnailPlugin(), data, upload_name="x.jpg")


def test_audio_is_unsupported(mp_job, mp_audio_only: Path) -> None:
    with pytest.raises(PluginError):
        mp_job(MediaThumbnailPlugin(), mp_audio_only)


def test_corrupt_video(mp_job, mp_video_av: Path) -> None:
    data = mp_video_av.read_bytes()
    with pytest.raises(PluginError):
        mp_job(MediaThumbnailPlugin(), data[:64] + b"\x00" * 200, upload_name="broken.mp4")


def test_decompression_bomb(mp_job, monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.new("RGB", (300, 300)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60 * 60)
    with pytest.raises(PluginError, match="decompression bomb"):
        mp_job(MediaThumbnailPlugin(), data, upload_name="bomb.png")


def test_video_with_bundled_ffmpeg(mp_job, mp_video_silent: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    monkeypatch.setenv("CL_COMPUTE_FFMPEG", exe)
    plugin = MediaThumbnailPlugin()
    job = mp_job(plugin, mp_video_silent, {"width": "192"})
    assert plugin.details["ffmpeg"]
    with Image.open(job.out()) as out:
        assert out.size == (192, 108)


def test_video_without_any_ffmpeg(mp_job, mp_video_silent: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CL_COMPUTE_FFMPEG", "/nonexistent/ffmpeg")
    with pytest.raises(PluginError, match="ffmpeg"):
        mp_job(MediaThumbnailPlugin(), mp_video_silent)
    # images still work without ffmpeg
    job = mp_job(MediaThumbnailPlugin(), encode(_quadrants((50, 40))), upload_name="ok.png")
    assert job.task_output == {"media_type": "image"}


def test_heic_thumbnail(mp_job) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    job = mp_job(MediaThumbnailPlugin(), encode(_quadrants((80, 40)), "HEIF"), {"width": "40"}, upload_name="a.heic")
    assert job.task_output == {"media_type": "image"}
    with Image.open(job.out()) as out:
        assert out.size == (40, 20)
