"""hash plugin: known answers computed independently in the tests."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from cl_compute.plugins import get_plugin
from cl_compute.plugins._media import sniff_mime
from cl_compute.plugins.base import ParamError, PluginError
from cl_compute.plugins.hash import HashPlugin


def _png_bytes(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _gradient(size: tuple[int, int] = (40, 30), mode: str = "RGB") -> Image.Image:
    w, h = size
    img = Image.new("RGB", size)
    img.putdata([((x * 7) % 256, (y * 11) % 256, (x * y) % 256) for y in range(h) for x in range(w)])
    return img.convert(mode) if mode != "RGB" else img


def _result(job) -> dict[str, object]:
    return json.loads(job.out().read_text())


def test_registry_and_params() -> None:
    plugin = get_plugin("hash")
    assert isinstance(plugin, HashPlugin)
    assert plugin.parse_params({}, "a.jpg") == {"algorithm": "sha512", "output_path": "output/hash.json"}
    assert plugin.parse_params({"algorithm": "md5"}, "a.jpg")["algorithm"] == "md5"
    assert plugin.parse_params({"algorithm": ""}, "a.jpg")["algorithm"] == "sha512"
    for bad in ("sha256", "MD5x", "sha-512"):
        with pytest.raises(ParamError) as err:
            plugin.parse_params({"algorithm": bad}, "a.jpg")
        assert err.value.field == "algorithm"


def test_md5_of_bytes_for_every_type(mp_job, mp_video_av: Path) -> None:
    data_png = _png_bytes(_gradient())
    for source, name in ((data_png, "a.png"), (mp_video_av, "v.mp4"), (b"hello world\n", "t.txt")):
        job = mp_job(HashPlugin(), source, {"algorithm": "md5"}, upload_name=name)
        raw = source.read_bytes() if isinstance(source, Path) else source
        out = _result(job)
        assert out["hash_value"] == hashlib.md5(raw).hexdigest()
        assert out["algorithm"] == "md5"
        assert set(out) == {"hash_value", "algorithm", "media_type", "process_time"}
        assert isinstance(out["process_time"], float)
        assert job.task_output == {"media_type": out["media_type"]}
        assert job.progress
        assert job.progress[-1] == 100


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_sha512_image_is_pixel_hash(mp_job, mode: str) -> None:
    img = _gradient(mode=mode)
    job = mp_job(HashPlugin(), _png_bytes(img), upload_name="g.png")
    with Image.open(io.BytesIO(_png_bytes(img))) as again:
        expected = hashlib.sha512(again.tobytes()).hexdigest()
    out = _result(job)
    assert out == {**out, "hash_value": expected, "algorithm": "sha512_image", "media_type": "image"}
    assert job.task_output == {"media_type": "image"}


def test_same_pixels_png_and_lossless_webp_same_hash(mp_job) -> None:
    img = _gradient((33, 21))
    png = mp_job(HashPlugin(), _png_bytes(img), upload_name="x.png")
    webp = mp_job(HashPlugin(), _png_bytes(img, "WEBP", lossless=True), upload_name="x.webp")
    bmp = mp_job(HashPlugin(), _png_bytes(img, "BMP"), upload_name="x.bmp")
    values = {_result(j)["hash_value"] for j in (png, webp, bmp)}
    assert len(values) == 1
    assert values == {hashlib.sha512(img.tobytes()).hexdigest()}
    # The file bytes differ, so the raw-byte hash would not agree.
    assert _png_bytes(img) != _png_bytes(img, "WEBP", lossless=True)


def test_animated_gif_hashes_first_frame(mp_job) -> None:
    frames = [Image.new("P", (16, 16), i) for i in (1, 2, 3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    job = mp_job(HashPlugin(), buf.getvalue(), upload_name="a.gif")
    with Image.open(io.BytesIO(buf.getvalue())) as again:
        again.seek(0)
        expected = hashlib.sha512(again.tobytes()).hexdigest()
    assert _result(job)["hash_value"] == expected


def _keyframe_hash_independent(path: Path) -> str:
    """Upstream's method: ffprobe frame offsets, hash the I-frame byte ranges of the file."""
    ffprobe = shutil.which("ffprobe")
    assert ffprobe
    out = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries",
         "frame=pkt_pos,pkt_size,pict_type", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    data = path.read_bytes()
    digest = hashlib.sha512()
    count = 0
    for row in csv.reader(io.StringIO(out)):
        if len(row) >= 3 and row[2] == "I":
            offset, size = int(row[0]), int(row[1])
            digest.update(data[offset : offset + size])
            count += 1
    assert count >= 2
    return digest.hexdigest()


def _keyframe_hash_pyav(path: Path) -> str:
    import av

    digest = hashlib.sha512()
    with av.open(str(path)) as c:
        for pkt in c.demux(c.streams.video[0]):
            if pkt.size and pkt.is_keyframe:
                digest.update(bytes(pkt))
    return digest.hexdigest()


def test_sha512_video(mp_job, mp_video_av: Path, mp_video_silent: Path) -> None:
    first = mp_job(HashPlugin(), mp_video_av)
    again = mp_job(HashPlugin(), mp_video_av, upload_name="renamed.mp4")
    other = mp_job(HashPlugin(), mp_video_silent)
    out = _result(first)
    assert out["algorithm"] == "sha512_video"
    assert out["media_type"] == "video"
    assert first.task_output == {"media_type": "video"}
    assert out["hash_value"] == _result(again)["hash_value"]
    assert out["hash_value"] != _result(other)["hash_value"]
    assert out["hash_value"] != hashlib.sha512(mp_video_av.read_bytes()).hexdigest()
    if shutil.which("ffprobe"):
        assert out["hash_value"] == _keyframe_hash_independent(mp_video_av)
        assert _result(other)["hash_value"] == _keyframe_hash_independent(mp_video_silent)
    else:
        assert out["hash_value"] == _keyframe_hash_pyav(mp_video_av)


def test_sha512_webm_video(mp_job, mp_video_webm: Path) -> None:
    out = _result(mp_job(HashPlugin(), mp_video_webm))
    assert out["algorithm"] == "sha512_video"
    assert out["hash_value"] == _keyframe_hash_pyav(mp_video_webm)


def test_audio_only_container_is_generic(mp_job, mp_audio_only: Path) -> None:
    job = mp_job(HashPlugin(), mp_audio_only)
    out = _result(job)
    assert out["algorithm"] == "sha512_generic"
    assert out["media_type"] == "audio"
    assert out["hash_value"] == hashlib.sha512(mp_audio_only.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (b"just some words\nand another line\n", "text"),
        (b"https://example.com/a/b?c=d", "url"),
        (b"  http://example.com/x  ", "url"),
        (b"https://example.com/a/b?c=d\n", "text"),  # upstream: any line break makes it text
        (b"https://example.com/a\nhttps://example.com/b\n", "text"),
        (bytes(range(7, 256)) * 64, "file"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "file"),
    ],
)
def test_generic_hash_and_media_types(mp_job, data: bytes, media_type: str) -> None:
    job = mp_job(HashPlugin(), data, upload_name="f.dat")
    out = _result(job)
    assert out["media_type"] == media_type
    assert out["algorithm"] == "sha512_generic"
    assert out["hash_value"] == hashlib.sha512(data).hexdigest()


def test_large_file_streamed(mp_job) -> None:
    data = bytes(range(256)) * (3 * 4096 + 7)  # > 3 MiB, more than one chunk
    out = _result(mp_job(HashPlugin(), data, {"algorithm": "md5"}, upload_name="big.bin"))
    assert out["hash_value"] == hashlib.md5(data).hexdigest()


def test_empty_file_is_an_error(mp_job) -> None:
    with pytest.raises(PluginError, match="empty"):
        mp_job(HashPlugin(), b"", upload_name="empty.jpg")


def test_corrupt_image_and_video(mp_job, mp_video_av: Path) -> None:
    png = _png_bytes(_gradient((64, 64)))
    with pytest.raises(PluginError) as err:
        mp_job(HashPlugin(), png[: len(png) // 2], upload_name="cut.png")
    assert "Traceback" not in str(err.value)
    broken = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 64
    with pytest.raises(PluginError):
        mp_job(HashPlugin(), broken, upload_name="broken.mp4")


def test_decompression_bomb_refused(mp_job, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _png_bytes(Image.new("L", (200, 200)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(PluginError, match="decompression bomb"):
        mp_job(HashPlugin(), data, upload_name="bomb.png")


def test_sniffer_fallback(tmp_path: Path, mp_video_av: Path) -> None:
    cases = {
        "a.png": _png_bytes(_gradient()),
        "a.jpg": _png_bytes(_gradient(), "JPEG"),
        "a.webp": _png_bytes(_gradient(), "WEBP"),
        "a.gif": _png_bytes(_gradient(), "GIF"),
        "a.tif": _png_bytes(_gradient(), "TIFF"),
        "a.txt": "héllo\n".encode(),
        "a.mp4": mp_video_av.read_bytes(),
    }
    expected = {
        "a.png": "image/png", "a.jpg": "image/jpeg", "a.webp": "image/webp", "a.gif": "image/gif",
        "a.tif": "image/tiff", "a.txt": "text/plain", "a.mp4": "video/mp4",
    }  # fmt: skip
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert sniff_mime(path) == expected[name], name


def test_magic_failure_uses_sniffer(mp_job, monkeypatch: pytest.MonkeyPatch) -> None:
    import magic

    def boom(*_a: object, **_k: object) -> str:
        raise RuntimeError("no libmagic")

    monkeypatch.setattr(magic, "from_file", boom)
    img = _gradient()
    out = _result(mp_job(HashPlugin(), _png_bytes(img), upload_name="x.png"))
    assert out["media_type"] == "image"
    assert out["hash_value"] == hashlib.sha512(img.tobytes()).hexdigest()


def test_heic_image_hash(mp_job) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    _gradient((32, 24)).save(buf, format="HEIF", quality=90)
    job = mp_job(HashPlugin(), buf.getvalue(), upload_name="photo.heic")
    with Image.open(io.BytesIO(buf.getvalue())) as again:
        expected = hashlib.sha512(again.tobytes()).hexdigest()
    out = _result(job)
    assert (out["media_type"], out["algorithm"], out["hash_value"]) == ("image", "sha512_image", expected)
