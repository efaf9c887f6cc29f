"""The nine plugin clients against a real cl_compute deployment: parameters on the wire, typed results equal to
the files, failures, and the async twins."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import m3u8
import numpy as np
import pytest
from PIL import Image

from cl_client import (
    AsyncComputeClient,
    ComputeClient,
    ConfigurationError,
    EmbeddingResult,
    FaceEmbeddingResult,
    HlsVariant,
    JobFailedError,
    JobTimeoutError,
)
from cl_client.plugins import BatchItem, BatchUpdate, run_batch, run_batch_async
from cl_compute.deployment import Deployment
from pytest_cl._media import MediaCatalogue


# -- parameters reach the server under the protocol's names -------------------------------------------------
def test_clip_params_and_vector_match_file(client: ComputeClient, media: MediaCatalogue, tmp_path: Path) -> None:
    job = client.clip_embedding.embed_image(media["face_astronaut"].path, normalize=False, priority=7)
    assert job.params["normalize"] is False
    assert job.priority == 7
    result = job.result(timeout=60)
    assert isinstance(result, EmbeddingResult)
    raw = np.load(client.download_job_file(job.job_id, "output/clip_embedding.npy", tmp_path / "v.npy"))
    assert result.embedding.dtype == np.float32
    assert np.array_equal(result.embedding, raw)
    assert result.dim == 512 == job.task_output["embedding_dim"]  # type: ignore[index]
    assert result.normalized is False
    assert job.result() is result  # cached: read once


def test_dino_normalized_vector(client: ComputeClient, media: MediaCatalogue) -> None:
    job = client.dino_embedding.embed_image(media["png_800x600"].path, wait=True, timeout=60)
    assert job.status == "completed"
    assert job.params["normalize"] is True
    result = job.result()
    assert result.dim == 384
    assert result.normalized
    assert abs(float(np.linalg.norm(result.embedding)) - 1.0) < 1e-4


def test_face_embedding_quality_score(client: ComputeClient, media: MediaCatalogue) -> None:
    job = client.face_embedding.embed_faces(media["face_astronaut"].path, normalize=True)
    result = job.result(timeout=60)
    assert isinstance(result, FaceEmbeddingResult)
    assert result.dim == 512
    assert result.quality_score == job.task_output["quality_score"]  # type: ignore[index]


def test_exif_tags_and_typed_fields(
    client: ComputeClient, deployment: Deployment, media: MediaCatalogue, tmp_path: Path
) -> None:
    """The typed fields equal the file's; upstream leaves them null with the default tags (PROTOCOL.md §3.1), and
    then the client fills them from ``raw_metadata`` (signed GPS), so the result is the same for the user."""
    item = media["jpeg_exif"]
    job = client.exif.extract(item.path, tags=["Make", "Model", "ISO"])
    tags = job.params["tags"]
    assert (tags if isinstance(tags, list) else str(tags).split(",")) == ["Make", "Model", "ISO"]
    full = client.exif.extract(item.path).result(timeout=60)
    data = json.loads(client.download_job_file(full.job_id, "output/exif_metadata.json", tmp_path).read_text())
    assert full.raw_metadata == data["raw_metadata"]
    assert full.get("Make") == "Canon"
    if deployment.profile == "fixed":
        assert full.make == data["make"] == "Canon"
        assert full.iso == data["iso"]
        assert full.gps_latitude == pytest.approx(data["gps_latitude"])
        return
    assert (data["make"], data["iso"], data["gps_latitude"], data["gps_longitude"]) == (None, None, None, None)
    raw = data["raw_metadata"]
    assert full.make == raw["EXIF:Make"] == "Canon"
    assert full.iso == raw["EXIF:ISO"]
    assert full.gps_latitude == pytest.approx(raw["Composite:GPSLatitude"])
    assert full.gps_longitude == pytest.approx(raw["Composite:GPSLongitude"])
    assert full.gps_longitude is not None and full.gps_longitude < 0  # west: the sign from Composite, not EXIF


def test_face_detection_params_faces_and_crops(client: ComputeClient, media: MediaCatalogue, tmp_path: Path) -> None:
    item = media["group_4_faces"]
    job = client.face_detection.detect(item.path, confidence_threshold=0.5, nms_threshold=0.3)
    assert job.params["confidence_threshold"] == 0.5
    assert job.params["nms_threshold"] == 0.3
    result = job.result(timeout=60)
    data = json.loads(client.download_job_file(job.job_id, "output/face_detection.json", tmp_path).read_text())
    assert result.num_faces == data["num_faces"] == item.face_count
    assert (result.image_width, result.image_height) == (1600, 500)
    first = result.faces[0]
    assert first.bbox.x1 == data["faces"][0]["bbox"]["x1"]
    assert first.landmarks["left_eye"] == tuple(data["faces"][0]["landmarks"]["left_eye"])
    x1, _y1, _x2, y2 = first.pixel_bbox()
    assert x1 == round(first.bbox.x1 * 1600) and y2 == round(first.bbox.y2 * 500)
    assert first.pixel_landmarks()["nose_tip"][0] == pytest.approx(first.landmarks["nose_tip"][0] * 1600)
    crops = result.download_crops(tmp_path / "crops")
    assert [p.name for p in crops] == [f"face_{i}.png" for i in range(result.num_faces)]
    with Image.open(crops[0]) as im:
        assert im.size == (112, 112)
    assert result.download_crop(1, tmp_path / "one.png").read_bytes() == crops[1].read_bytes()
    with pytest.raises(IndexError):
        result.download_crop(99, tmp_path)


def test_hash_md5_known_answer(client: ComputeClient, media: MediaCatalogue) -> None:
    item = media["png_800x600"]
    job = client.hash.compute(item.path, algorithm="md5")
    assert job.params["algorithm"] == "md5"
    result = job.result(timeout=60)
    assert result.hash_value == hashlib.md5(item.path.read_bytes()).hexdigest()
    assert (result.algorithm, result.media_type) == ("md5", "image")
    assert client.hash.compute(item.path).result(timeout=60).algorithm == "sha512_image"


def test_hls_variants_and_stream_tree(client: ComputeClient, media: MediaCatalogue, tmp_path: Path) -> None:
    video = media["video_720p_3s_silent"]
    job = client.hls_streaming.generate_manifest(
        video.path, variants=[HlsVariant(240, 300), (144, 200)], include_original=True
    )
    assert job.params["include_original"] is True
    variants = job.params["variants"]
    parsed = variants if isinstance(variants, list) else json.loads(str(variants))
    assert parsed == [{"resolution": 240, "bitrate": 300}, {"resolution": 144, "bitrate": 200}]
    result = job.result(timeout=90)
    assert result.master_playlist == "output/adaptive.m3u8"
    assert sorted(s.height for s in result.streams if s.height) == [144, 240]
    written = result.download_stream(tmp_path / "hls")
    master = m3u8.load(str(tmp_path / "hls" / "adaptive.m3u8"))
    assert len(master.playlists) == 2
    segments = 0
    for playlist in master.playlists:
        media_pl = m3u8.load(str(tmp_path / "hls" / playlist.uri))
        assert media_pl.segments, playlist.uri
        for seg in media_pl.segments:
            assert (tmp_path / "hls" / seg.uri).stat().st_size > 0
            segments += 1
        total = sum(s.duration for s in media_pl.segments)
        assert total == pytest.approx(video.fact_float("duration"), abs=0.6)
    assert segments == result.total_segments
    assert (tmp_path / "hls" / "adaptive-orig.m3u8") in written


def test_image_conversion_format_quality(client: ComputeClient, media: MediaCatalogue, tmp_path: Path) -> None:
    job = client.image_conversion.convert(media["png_rgba"].path, "webp", 40)
    assert (job.params["format"], job.params["quality"]) == ("webp", 40)
    result = job.result(timeout=60)
    assert result.output_path == "output/converted_rgba_transparent.webp"
    path = result.download(tmp_path)
    assert path.name == "converted_rgba_transparent.webp"
    with Image.open(path) as im:
        assert im.format == "WEBP"
    assert result.read_bytes() == path.read_bytes()


def test_thumbnail_box(client: ComputeClient, media: MediaCatalogue, tmp_path: Path) -> None:
    job = client.media_thumbnail.generate(media["png_800x600"].path, 64, 64, maintain_aspect_ratio=True)
    assert (job.params["width"], job.params["height"], job.params["maintain_aspect_ratio"]) == (64, 64, True)
    result = job.result(timeout=60)
    with Image.open(result.download(tmp_path / "t.jpg")) as im:
        assert im.format == "JPEG"
        assert im.size == (64, 48)
    assert result.media_type == "image"


# -- failures -----------------------------------------------------------------------------------------------
def test_failed_job_raises_with_server_message(client: ComputeClient, media: MediaCatalogue) -> None:
    job = client.hls_streaming.generate_manifest(media["audio_3s"].path, wait=True, timeout=60)
    assert job.status == "error"  # wait=True returns the failed job like upstream
    assert job.error_message and "video stream" in job.error_message
    with pytest.raises(JobFailedError) as info:
        job.result()
    assert info.value.job.error_message == job.error_message
    assert job.job_id in str(info.value)


BAD_CALLS = [
    ("clip_embedding", "embed_image", {"normalize": "yes"}),
    ("exif", "extract", {"tags": 5}),
    ("exif", "extract", {"tags": ["-ExifTool"]}),
    ("face_detection", "detect", {"confidence_threshold": 1.5}),
    ("face_detection", "detect", {"nms_threshold": -0.1}),
    ("hash", "compute", {"algorithm": "sha1"}),
    ("hls_streaming", "generate_manifest", {"variants": []}),
    ("hls_streaming", "generate_manifest", {"variants": [(720, 50)]}),
    ("hls_streaming", "generate_manifest", {"variants": ["720x3500"]}),
    ("hls_streaming", "generate_manifest", {"variants": [(720, 3500), (720, 3500)]}),
    ("media_thumbnail", "generate", {"width": 0}),
    ("media_thumbnail", "generate", {"height": 2.5}),
    ("hash", "compute", {"priority": 11}),
    ("hash", "compute", {"timeout": -1}),
]


@pytest.mark.parametrize(("plugin", "method", "kwargs"), BAD_CALLS)
def test_validation_before_sending(plugin: str, method: str, kwargs: dict[str, object], media: MediaCatalogue) -> None:
    # Nothing listens on port 9: anything sent would be a ComputeConnectionError, not a ConfigurationError.
    with ComputeClient("http://127.0.0.1:9", mqtt_url="off") as c:
        call = getattr(getattr(c, plugin), method)
        with pytest.raises(ConfigurationError):
            call(media["png_800x600"].path, **kwargs)


def test_image_conversion_rejects_bad_format_and_quality(media: MediaCatalogue) -> None:
    with ComputeClient("http://127.0.0.1:9", mqtt_url="off") as c:
        with pytest.raises(ConfigurationError, match="format"):
            c.image_conversion.convert(media["png_800x600"].path, "jfif")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="quality"):
            c.image_conversion.convert(media["png_800x600"].path, "jpg", 101)
        with pytest.raises(ConfigurationError, match="unknown parameter"):
            c.hash.submit(media["png_800x600"].path, {"algo": "md5"})


# -- batch --------------------------------------------------------------------------------------------------
def test_batch_order_progress_and_failures(client: ComputeClient, media: MediaCatalogue) -> None:
    updates: list[BatchUpdate] = []
    items = [
        BatchItem("hash", media["png_800x600"].path, {"algorithm": "md5"}),
        BatchItem("hls-streaming", media["audio_3s"].path),
        BatchItem("clip_embedding", media["face_hopper"].path),
        BatchItem("hash", media["face_hopper"].path, {"algorithm": "md5"}),
    ]
    outcomes = run_batch(client, items, timeout=60, on_progress=updates.append)
    assert [o.index for o in outcomes] == [0, 1, 2, 3]
    assert [o.ok for o in outcomes] == [True, False, True, True]
    assert isinstance(outcomes[1].error, JobFailedError)
    with pytest.raises(JobFailedError):
        outcomes[1].unwrap()
    expected = hashlib.md5(media["face_hopper"].path.read_bytes()).hexdigest()
    assert outcomes[3].unwrap().as_dict()["hash_value"] == expected
    finals = [u for u in updates if u.status in ("completed", "error")]
    assert sorted(u.index for u in finals) == [0, 1, 2, 3]
    assert max(u.finished for u in updates) == 4 == updates[-1].total


def test_batch_validates_everything_first(media: MediaCatalogue) -> None:
    with ComputeClient("http://127.0.0.1:9", mqtt_url="off") as c:
        items = [BatchItem("hash", media["png_800x600"].path), BatchItem("hash", media["png_800x600"].path, {"x": 1})]
        with pytest.raises(ConfigurationError, match="batch item 1"):
            run_batch(c, items)
        with pytest.raises(ConfigurationError, match="unknown plugin"):
            run_batch(c, [BatchItem("nope", media["png_800x600"].path)])


def test_batch_deadline(client: ComputeClient, media: MediaCatalogue) -> None:
    items = [BatchItem("hls_streaming", media["video_720p_5s_audio"].path)]
    outcomes = run_batch(client, items, timeout=0.05)
    assert isinstance(outcomes[0].error, JobTimeoutError)
    assert outcomes[0].job_id is not None
    client.wait_for_job(outcomes[0].job_id, 60)  # let it finish before the next test


# -- async twins --------------------------------------------------------------------------------------------
async def test_async_plugins(aclient: AsyncComputeClient, media: MediaCatalogue, tmp_path: Path) -> None:
    job = await aclient.dino_embedding.embed_image(media["face_hopper"].path, normalize=False, wait=True)
    assert job.status == "completed"
    vec = await job.result()
    assert vec.dim == 384 and not vec.normalized
    detection = await (await aclient.face_detection.detect(media["face_astronaut"].path)).result(timeout=60)
    crops = await detection.adownload_crops(tmp_path / "c")
    assert len(crops) == detection.num_faces == 1
    hls = await (
        await aclient.hls_streaming.generate_manifest(media["video_720p_3s_silent"].path, variants=["144:200"])
    ).result(timeout=60)
    files = await hls.adownload_stream(tmp_path / "h")
    assert files[0].name == "adaptive.m3u8" and any(f.suffix == ".ts" for f in files)
    thumb = await (await aclient.media_thumbnail.generate(media["png_800x600"].path, 32)).result(timeout=60)
    assert (await thumb.adownload(tmp_path / "t.jpg")).stat().st_size > 0
    failed = await aclient.hls_streaming.generate_manifest(media["audio_3s"].path)
    with pytest.raises(JobFailedError):
        await failed.result(timeout=60)
    outcomes = await run_batch_async(aclient, [BatchItem("hash", media["png_grey"].path)] * 3, timeout=60)
    assert [o.ok for o in outcomes] == [True, True, True]


async def test_async_validation_raises_at_call_time(media: MediaCatalogue) -> None:
    async with AsyncComputeClient("http://127.0.0.1:9", mqtt_url="off") as c:
        with pytest.raises(ConfigurationError):
            c.hash.compute(media["png_800x600"].path, priority=99)
        with pytest.raises(ConfigurationError):
            c.face_detection.detect(media["png_800x600"].path, confidence_threshold=2)
