"""image_conversion plugin: real formats, quality ordering, modes, names, errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image
from plugin_test_images import encode

from cl_compute.plugins import get_plugin
from cl_compute.plugins.base import ParamError, PluginError
from cl_compute.plugins.image_conversion import ImageConversionPlugin

MAGIC = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
    "bmp": (b"BM",),
    "tiff": (b"II*\x00", b"MM\x00*"),
}
PIL_NAME = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "gif": "GIF",
    "bmp": "BMP",
    "tiff": "TIFF",
}


def _noisy(size: tuple[int, int] = (96, 64), mode: str = "RGB") -> Image.Image:
    rnd = random.Random(7)
    w, h = size
    img = Image.new("RGB", size)
    img.putdata(
        [(rnd.randrange(256), (x * 4) % 256, (y * 4 + rnd.randrange(40)) % 256) for y in range(h) for x in range(w)]
    )
    return img.convert(mode) if mode != "RGB" else img


def _is_format(path: Path, fmt: str) -> None:
    data = path.read_bytes()
    if fmt == "webp":
        assert data[:4] == b"RIFF"
        assert data[8:12] == b"WEBP"
    else:
        assert data.startswith(MAGIC[fmt]), data[:12]
    with Image.open(path) as img:
        assert img.format == PIL_NAME[fmt]
        img.load()


def test_params() -> None:
    plugin = get_plugin("image_conversion")
    assert isinstance(plugin, ImageConversionPlugin)
    params = plugin.parse_params({"format": "jpeg"}, "photo.png")
    assert params == {"format": "jpeg", "quality": 85, "output_path": "output/converted_photo.jpg"}
    assert plugin.parse_params({"format": "WEBP", "quality": "1"}, "a.b.png")["output_path"] == (
        "output/converted_a.b.webp"
    )
    assert plugin.parse_params({"format": "tiff", "quality": "100"}, "x.gif")["quality"] == 100
    for form, field in (
        ({}, "format"),
        ({"format": ""}, "format"),
        ({"format": "heic"}, "format"),
        ({"format": "png", "quality": "0"}, "quality"),
        ({"format": "png", "quality": "101"}, "quality"),
        ({"format": "png", "quality": "high"}, "quality"),
        ({"format": "png", "quality": "85.5"}, "quality"),
    ):
        with pytest.raises(ParamError) as err:
            plugin.parse_params(form, "a.png")
        assert err.value.field == field


@pytest.mark.parametrize(
    ("upload", "expected"),
    [
        ("../../etc/passwd.png", "output/converted_passwd.png"),
        ("..\\..\\win dows.png", "output/converted_win_dows.png"),
        ("a b;rm -rf $(x).png", "output/converted_a_b_rm_-rf_x.png"),
        (".hidden", "output/converted_hidden.png"),
        ("...png", "output/converted_image.png"),
    ],
)
def test_stem_sanitised(upload: str, expected: str) -> None:
    params = ImageConversionPlugin().parse_params({"format": "png"}, upload)
    assert params["output_path"] == expected
    assert "/" not in str(params["output_path"])[len("output/") :]


@pytest.mark.parametrize("fmt", sorted(PIL_NAME))
def test_every_format_is_real(mp_job, fmt: str) -> None:
    src = _noisy()
    job = mp_job(ImageConversionPlugin(), encode(src), {"format": fmt}, upload_name="in.png")
    assert job.task_output == {}
    ext = "jpg" if fmt == "jpeg" else fmt
    assert job.params["output_path"] == f"output/converted_in.{ext}"
    _is_format(job.out(), fmt)
    with Image.open(job.out()) as img:
        assert img.size == src.size
    assert job.progress[-1] == 100


@pytest.mark.parametrize("fmt", ["png", "bmp", "tiff"])
def test_lossless_formats_keep_pixels(mp_job, fmt: str) -> None:
    src = _noisy((40, 30))
    job = mp_job(ImageConversionPlugin(), encode(src, "WEBP", lossless=True), {"format": fmt}, upload_name="a.webp")
    with Image.open(job.out()) as img:
        assert img.convert("RGB").tobytes() == src.tobytes()


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_quality_ordering(mp_job, fmt: str) -> None:
    data = encode(_noisy((160, 120)))
    sizes = [
        mp_job(ImageConversionPlugin(), data, {"format": fmt, "quality": str(q)}, upload_name="q.png")
        .out()
        .stat()
        .st_size
        for q in (10, 50, 95)
    ]
    assert sizes[0] < sizes[1] < sizes[2], sizes


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp", "gif", "bmp", "tiff"])
@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "L", "1", "I;16"])
def test_modes(mp_job, fmt: str, mode: str) -> None:
    src = _noisy((24, 16), "RGB")
    if mode == "I;16":
        img = Image.new("I;16", (24, 16))
        img.putdata([x * 1000 for x in range(24 * 16)])
        src_bytes = encode(img, "PNG")
    else:
        img = src.convert(mode)
        src_bytes = encode(img, "TIFF" if mode == "CMYK" else "PNG")
    job = mp_job(ImageConversionPlugin(), src_bytes, {"format": fmt}, upload_name="m.png")
    _is_format(job.out(), fmt)


def test_jpeg_composites_alpha_on_white(mp_job) -> None:
    img = Image.new("RGBA", (32, 32), (255, 0, 0, 255))
    for x in range(16):
        for y in range(32):
            img.putpixel((x, y), (0, 0, 255, 0))  # fully transparent (blue underneath)
    job = mp_job(ImageConversionPlugin(), encode(img), {"format": "jpg", "quality": "95"}, upload_name="a.png")
    with Image.open(job.out()) as out:
        assert out.mode == "RGB"
        left = out.getpixel((4, 16))
        right = out.getpixel((28, 16))
    assert all(c > 240 for c in left), left  # white, not blue or black
    assert right[0] > 200
    assert right[1] < 40


def test_paletted_transparency_to_jpeg(mp_job) -> None:
    img = Image.new("P", (16, 16), 0)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    for x in range(8, 16):
        for y in range(16):
            img.putpixel((x, y), 1)
    data = encode(img, "PNG", transparency=0)
    job = mp_job(ImageConversionPlugin(), data, {"format": "jpeg"}, upload_name="p.png")
    with Image.open(job.out()) as out:
        assert all(c > 240 for c in out.getpixel((2, 8)))
        g = out.getpixel((13, 8))
    assert g[1] > 200
    assert g[0] < 60


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is plain text, not an image\n",
        encode(Image.new("RGB", (64, 64), "red"))[:60],
    ],
    ids=["empty", "text", "truncated"],
)
def test_bad_inputs(mp_job, data: bytes) -> None:
    with pytest.raises(PluginError) as err:
        mp_job(ImageConversionPlugin(), data, {"format": "png"}, upload_name="bad.png")
    assert "Traceback" not in str(err.value)
    assert str(err.value)


def test_video_is_not_an_image(mp_job, mp_video_silent: Path) -> None:
    with pytest.raises(PluginError, match="not an image"):
        mp_job(ImageConversionPlugin(), mp_video_silent, {"format": "png"})


def test_decompression_bomb(mp_job, monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.new("L", (300, 300)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50 * 50)
    with pytest.raises(PluginError, match="decompression bomb"):
        mp_job(ImageConversionPlugin(), data, {"format": "jpg"}, upload_name="bomb.png")


def test_heic_input(mp_job) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    job = mp_job(ImageConversionPlugin(), encode(_noisy((48, 32)), "HEIF"), {"format": "png"}, upload_name="a.heic")
    _is_format(job.out(), "png")
