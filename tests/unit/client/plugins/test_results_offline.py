"""Result parsing without a server: the plans run against an in-memory job directory (a fake file store, since
a real server will not serve upstream's quirks or hostile playlists on demand)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import pytest

from cl_client import ComputeClientError, NotFoundError
from cl_client.plugins import REGISTRY, get_spec
from cl_client.plugins._fields import HlsVariant
from cl_client.plugins._files import safe_relative
from cl_client.plugins._parse import job_relative, parse_npy
from cl_client.plugins.exif import ExifResult
from cl_client.plugins.face_detection import FaceDetectionResult
from cl_client.plugins.hls_streaming import HlsResult, playlist_references

from .offline_files import JOB, fake_files, record


def test_upstream_absolute_master_playlist_is_normalised(tmp_path: Path) -> None:
    master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\nv/360.m3u8\n"
    variant = b'#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.0,\nseg-000.ts\n#EXT-X-ENDLIST\n'
    store = {"output/adaptive.m3u8": master, "output/v/360.m3u8": variant, "output/v/init.mp4": b"i",
             "output/v/seg-000.ts": b"s"}  # fmt: skip
    absolute = f"/srv/compute/jobs/{JOB}/output/adaptive.m3u8"
    rec = record("hls_streaming", {"output_path": "output"}, {"master_playlist": absolute, "include_original": True})
    files = fake_files(store)
    result = files.run(get_spec("hls_streaming").build(rec, files))
    assert isinstance(result, HlsResult)
    assert result.master_playlist == "output/adaptive.m3u8"
    assert (result.streams[0].width, result.streams[0].height, result.streams[0].bandwidth) == (640, 360, 800000)
    written = result.download_stream(tmp_path)  # the missing -orig playlist is optional
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "adaptive.m3u8", "v/360.m3u8", "v/init.mp4", "v/seg-000.ts"]  # fmt: skip
    assert asyncio.run(result.adownload_stream(tmp_path / "again"))[0].name == "adaptive.m3u8"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "http://evil/x.ts", "a/../../b.ts"])
def test_stream_tree_refuses_escaping_references(tmp_path: Path, bad: str) -> None:
    master = f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n{bad}\n".encode()
    rec = record("hls_streaming", {"output_path": "output"}, {"master_playlist": "output/adaptive.m3u8"})
    files = fake_files({"output/adaptive.m3u8": master})
    with pytest.raises(ComputeClientError, match="unsafe"):
        files.run(get_spec("hls_streaming").build(rec, files))
    ok = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n"
    files = fake_files({"output/adaptive.m3u8": ok, "output/v.m3u8": f"#EXTM3U\n{bad}\n".encode()})
    result = files.run(get_spec("hls_streaming").build(rec, files))
    with pytest.raises(ComputeClientError, match="unsafe"):
        result.download_stream(tmp_path)
    assert not any(tmp_path.rglob("passwd"))


def test_path_helpers() -> None:
    assert job_relative(f"C:/data/jobs/{JOB}/output/a.m3u8", JOB) == "output/a.m3u8"
    assert job_relative("output/./a.m3u8", JOB) == "output/a.m3u8"
    with pytest.raises(ComputeClientError, match="lacks"):
        job_relative("/srv/elsewhere/output/a.m3u8", JOB)
    with pytest.raises(ComputeClientError):
        safe_relative("", where="x")
    assert playlist_references('#EXT-X-KEY:METHOD=AES-128,URI="k.key"\n\nseg.ts\n', where="x") == ["k.key", "seg.ts"]


def test_exif_typed_fields_filled_from_prefixed_raw_metadata() -> None:
    # upstream's quirk: with the default tags every typed field is null and only raw_metadata has the values
    data = {k: None for k in ("make", "model", "iso", "f_number")}
    data["raw_metadata"] = {"EXIF:Make": "Nikon", "EXIF:ISO": 200, "EXIF:FNumber": 4, "EXIF:ExposureTime": 0.004}
    files = fake_files({"output/exif_metadata.json": json.dumps(data).encode()})
    result = files.run(get_spec("exif").build(record("exif", {}, {}), files))
    assert isinstance(result, ExifResult)
    assert (result.make, result.iso, result.f_number, result.exposure_time) == ("Nikon", 200, 4.0, "1/250")
    assert result.model is None
    assert "make=Nikon" in result.summary()


def test_face_detection_accepts_list_forms() -> None:
    data = {"faces": [{"bbox": [0.1, 0.2, 0.3, 0.4], "confidence": 0.9,
                       "landmarks": [[0.1, 0.1], [0.2, 0.1], [0.15, 0.2], [0.1, 0.3], [0.2, 0.3]]},
                      {"x1": 0.5, "y1": 0.5, "x2": 0.6, "y2": 0.7, "confidence": 0.8}],
            "image_width": 100, "image_height": 50}  # fmt: skip
    files = fake_files({"output/face_detection.json": json.dumps(data).encode()})
    result = files.run(get_spec("face_detection").build(record("face_detection", {}, {}), files))
    assert isinstance(result, FaceDetectionResult)
    assert result.faces[0].pixel_bbox() == (10, 10, 30, 20)
    assert result.faces[0].landmarks["mouth_left"] == (0.2, 0.3)
    assert result.faces[1].bbox.height == pytest.approx(0.2)
    with pytest.raises(ComputeClientError, match="no crop"):
        result.download_crop(1, "x.png")
    bad = fake_files({"output/face_detection.json": b'{"faces": [{"confidence": 1}]}'})
    with pytest.raises(ComputeClientError, match="bbox"):
        bad.run(get_spec("face_detection").build(record("face_detection", {}, {}), bad))


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"not numpy", "not a valid .npy"),
        (npy(np.array([{"a": 1}], dtype=object)), "not a valid .npy"),
        (npy(np.zeros((2, 3), dtype=np.float32)), "shape"),
        (npy(np.array([1.0, np.nan], dtype=np.float32)), "non-finite"),
        (npy(np.array(["a"])), "not numbers"),
    ],
)
def test_parse_npy_refuses_bad_files(data: bytes, match: str) -> None:
    with pytest.raises(ComputeClientError, match=match):
        parse_npy(data, where="job x output/v.npy")


def test_parse_npy_flattens_row_vector_and_outputs_without_second_download(tmp_path: Path) -> None:
    vec = parse_npy(npy(np.arange(4, dtype=np.float64).reshape(1, 4)), where="x")
    assert vec.dtype == np.float32 and vec.shape == (4,)
    raw = npy(np.ones(8, dtype=np.float32))
    store = {"output/clip_embedding.npy": raw}
    files = fake_files(store)
    rec = record("clip_embedding", {"normalize": True, "output_path": "output/clip_embedding.npy"}, {})
    result = files.run(get_spec("clip_embedding").build(rec, files))
    store.clear()  # a second download would fail now
    assert result.download_outputs(tmp_path)[0].read_bytes() == raw
    assert result.as_dict()["dim"] == 8 and result.normalized


def test_missing_or_malformed_output_files() -> None:
    files = fake_files({"output/hash.json": b"[1]"})
    with pytest.raises(ComputeClientError, match="not a JSON object"):
        files.run(get_spec("hash").build(record("hash", {}, {}), files))
    files = fake_files({"output/hash.json": b'{"algorithm": "md5"}'})
    with pytest.raises(ComputeClientError, match="lacks"):
        files.run(get_spec("hash").build(record("hash", {}, {}), files))
    files = fake_files({})
    with pytest.raises(NotFoundError):
        files.run(get_spec("hash").build(record("hash", {}, {}), files))


def test_registry_and_variant_parsing() -> None:
    assert list(REGISTRY) == ["clip_embedding", "dino_embedding", "exif", "face_detection", "face_embedding", "hash",
                              "hls_streaming", "image_conversion", "media_thumbnail"]  # fmt: skip
    assert HlsVariant.parse("720p:3500k") == HlsVariant(720, 3500)
    assert get_spec("hls_streaming").check({"variants": [{"resolution": 480, "bitrate": 900}]})["variants"] == [
        {"resolution": 480, "bitrate": 900}]  # fmt: skip
    assert get_spec("exif").check({"tags": " Make , Model,"})["tags"] == "Make,Model"
    assert get_spec("media_thumbnail").check({}) == {"maintain_aspect_ratio": True}
