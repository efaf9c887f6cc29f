"""Conformance of the ``hash`` plugin (PROTOCOL.md §3: ``algorithm`` sha512|md5, ``output/hash.json``).

Known answers come from the test itself: MD5/SHA-512 of the bytes with hashlib, SHA-512 of the decoded pixel
buffer with Pillow (first frame, ``Image.tobytes()`` in the file's own mode, no conversion: upstream's
``cl_ml_tools`` ``sha512hash_image`` does ``im.seek(0); sha512(im.tobytes())``), SHA-512 of the key-frame
packets with PyAV, and the media facts of ``media/manifest.json``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import av
import pytest
from PIL import Image, ImageFile

from cl_client import ComputeClient, ValidationError
from pytest_cl._media import MediaCatalogue, MediaItem
from pytest_cl.conformance._checks import WrongAnswers, expect, expect_field, expect_param, expect_value, get_field
from pytest_cl.conformance.plugins._media_helpers import (
    byte_digest_answers,
    completed,
    failed,
    image_hash_answers,
    output_path,
    pixel_bytes,
    read_json,
    run_job,
    video_hash_answers,
)

pytestmark = [pytest.mark.cl_requires("hash"), pytest.mark.timeout(120)]

TASK = "hash"
HEX128 = re.compile(r"^[0-9a-f]{128}$")
MD5_EMPTY = "d41d8cd98f00b204e9800998ecf8427e"


@dataclass(frozen=True)
class HashJson:
    """``output/hash.json`` of one job; reading a field that is missing fails with a sentence naming it."""

    job_id: str
    where: str
    data: dict[str, object]

    def __getitem__(self, key: str) -> object:
        return get_field(self.data, key, where=self.where)

    def expect(self, key: str, expected: object, meaning: str = "", wrong: WrongAnswers | None = None) -> None:
        """``hash.json[key] == expected``, else the job, the file, the field, expected, seen and which of the
        ``wrong`` answers (by name) it is."""
        expect_field(self.data, key, expected, where=self.where, meaning=meaning, wrong=wrong)


def _hash_json(client: ComputeClient, item: MediaItem, algorithm: str | None) -> HashJson:
    """Hash ``item`` (``algorithm`` None: the server's default) and return ``output/hash.json``, checked."""
    params = {} if algorithm is None else {"algorithm": algorithm}
    job = completed(client, TASK, item.path, params)
    expect_param(job, "algorithm", algorithm or "sha512")
    expect_param(job, "output_path", "output/hash.json")
    data = read_json(client, job, output_path(job))
    where = f"hash job {job.job_id} on {item.path.name}: output/hash.json"
    for key in ("hash_value", "algorithm", "media_type", "process_time"):
        get_field(data, key, where=where)
    expect_field(job.task_output, "media_type", data["media_type"], where=f"hash job {job.job_id}: task_output")
    assert "hash_value" not in (job.task_output or {}), (
        f"hash job {job.job_id}: task_output carries 'hash_value'; the hash belongs in output/hash.json only"
    )
    return HashJson(job.job_id, where, data)


def _keyframe_sha512(item: MediaItem) -> tuple[str, int]:
    """SHA-512 over the key-frame packets of the first video stream, in file order, and their count."""
    digest = hashlib.sha512()
    count = 0
    with av.open(str(item.path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size and packet.is_keyframe:
                digest.update(bytes(packet))
                count += 1
    return digest.hexdigest(), count


# -- md5 ---------------------------------------------------------------------------------------------------
def test_md5_is_md5_of_the_uploaded_bytes(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """md5 = MD5 hex of the uploaded bytes; media_type image; hash.json and task_output agree (events, polling)."""
    item = cl_media["png_800x600"]
    data = _hash_json(any_client, item, "md5")
    md5 = hashlib.md5(item.read_bytes()).hexdigest()
    data.expect("hash_value", md5, "the MD5 of the uploaded bytes", byte_digest_answers(item.path, md5))
    data.expect("algorithm", "md5")
    data.expect("media_type", "image")
    process_time = data["process_time"]
    assert isinstance(process_time, int | float) and process_time >= 0, (
        f"{data.where}: expected 'process_time' a number ≥ 0, got {process_time!r}"
    )


@pytest.mark.parametrize("name", ["jpeg_exif", "video_720p_3s_silent", "text_plain", "audio_3s", "gif_palette"])
def test_md5_and_media_type_of_each_kind(compute_client: ComputeClient, cl_media: MediaCatalogue, name: str) -> None:
    """md5 of image, video, text and audio files is the MD5 of their bytes; media_type is the manifest's."""
    item = cl_media[name]
    data = _hash_json(compute_client, item, "md5")
    md5 = hashlib.md5(item.read_bytes()).hexdigest()
    data.expect("hash_value", md5, "the MD5 of the uploaded bytes", byte_digest_answers(item.path, md5))
    data.expect("algorithm", "md5")
    data.expect("media_type", item.fact_str("media_type"), f"{item.name} is a {item.fact_str('media_type')} file")


# -- sha512 of images: the decoded pixels ---------------------------------------------------------------------
def test_default_sha512_of_an_image_is_sha512_of_its_pixels(
    any_client: ComputeClient, cl_media: MediaCatalogue
) -> None:
    """Without ``algorithm`` (default sha512) an image hashes to SHA-512 of its pixel buffer, not of its bytes."""
    item = cl_media["png_rgba"]
    data = _hash_json(any_client, item, None)
    data.expect("algorithm", "sha512_image", "the default algorithm is sha512; on an image, of its pixels")
    data.expect("media_type", "image")
    expected = hashlib.sha512(pixel_bytes(item.path)).hexdigest()
    data.expect("hash_value", expected, "the SHA-512 of the decoded pixels", image_hash_answers(item.path, expected))
    assert data["hash_value"] != hashlib.sha512(item.read_bytes()).hexdigest(), (
        f"{data.where}: 'hash_value' is the SHA-512 of the file's bytes, expected the SHA-512 of its decoded pixels"
    )


@pytest.mark.parametrize(
    "name",
    ["png_800x600", "png_grey", "gif_palette", "jpeg_exif", "face_kafka", "webp_pixels_twin"],
)
def test_sha512_image_in_the_files_own_mode(compute_client: ComputeClient, cl_media: MediaCatalogue, name: str) -> None:
    """RGB, L, P (first frame), JPEG and WebP: SHA-512 of ``tobytes()`` in the file's mode (no conversion)."""
    item = cl_media[name]
    with Image.open(item.path) as img:
        assert img.mode == item.fact_str("mode"), (
            f"test media {item.name}: mode {img.mode}, the manifest says otherwise"
        )
    data = _hash_json(compute_client, item, "sha512")
    data.expect("algorithm", "sha512_image")
    data.expect("media_type", "image")
    assert HEX128.match(str(data["hash_value"])), (
        f"{data.where}: 'hash_value' is not 128 lowercase hex digits: {data['hash_value']!r}"
    )
    expected = hashlib.sha512(pixel_bytes(item.path)).hexdigest()
    data.expect(
        "hash_value",
        expected,
        f"the SHA-512 of the decoded {img.mode} pixels of the first frame",
        image_hash_answers(item.path, expected),
    )


def test_identical_pixels_in_png_and_lossless_webp_hash_alike(
    compute_client: ComputeClient, cl_media: MediaCatalogue
) -> None:
    """Two different files with the same decoded pixels (PNG, lossless WebP) get one image hash; MD5s differ."""
    png, webp = cl_media["png_pixels_twin"], cl_media["webp_pixels_twin"]
    assert hashlib.sha256(pixel_bytes(png.path)).hexdigest() == png.fact_str("pixels_sha256"), (
        f"test media {png.name}: its pixels differ from the manifest's pixels_sha256"
    )
    assert pixel_bytes(png.path) == pixel_bytes(webp.path), f"test media {png.name} and {webp.name}: pixels differ"
    expected = hashlib.sha512(pixel_bytes(png.path)).hexdigest()
    png_hash = _hash_json(compute_client, png, "sha512")
    webp_hash = _hash_json(compute_client, webp, "sha512")
    png_hash.expect("hash_value", expected, "the SHA-512 of the decoded pixels", image_hash_answers(png.path, expected))
    webp_hash.expect(
        "hash_value",
        expected,
        f"the SHA-512 of the decoded pixels, the same as {png.path.name}'s",
        image_hash_answers(webp.path, expected),
    )
    png_md5, webp_md5 = _hash_json(compute_client, png, "md5"), _hash_json(compute_client, webp, "md5")
    assert png_md5["hash_value"] != webp_md5["hash_value"], (
        f"md5 jobs {png_md5.job_id} and {webp_md5.job_id}: two different files ({png.path.name}, {webp.path.name})"
        f" got the same MD5 {png_md5['hash_value']!r}"
    )


def test_metadata_does_not_change_the_image_hash(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """The EXIF JPEG and its EXIF-stripped copy (same pixels, other bytes) share the image hash."""
    rich, stripped = cl_media["jpeg_exif"], cl_media["jpeg_exif_stripped"]
    assert rich.read_bytes() != stripped.read_bytes(), f"test media {rich.name} and {stripped.name} are identical"
    rich_hash = _hash_json(compute_client, rich, "sha512")
    stripped_hash = _hash_json(compute_client, stripped, "sha512")
    stripped_hash.expect(
        "hash_value",
        rich_hash["hash_value"],
        f"the same pixels as {rich.path.name} (job {rich_hash.job_id}), only the EXIF metadata is gone",
    )


# -- sha512 of videos, text, audio --------------------------------------------------------------------------
@pytest.mark.cl_needs_fix(
    "SHA-512 of ordinary videos with ffprobe 5.1 or newer (upstream's key-frame CSV parser rejects ffprobe's "
    "4-column lines and ends the job 'CSV data is invalid.')"
)
def test_video_hash_is_stable_and_covers_key_frames(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """A video: ``sha512_video`` = SHA-512 of its key-frame packets; the same under another upload name."""
    item = cl_media["video_720p_5s_audio"]
    expected, keyframes = _keyframe_sha512(item)
    assert keyframes == item.fact_int("keyframes"), "the test's own key-frame count disagrees with the manifest"
    first = _hash_json(compute_client, item, "sha512")
    job = compute_client.submit(TASK, item.path, {"algorithm": "sha512"}, filename="renamed copy.mp4")
    second_job = job.result()
    second = HashJson(
        second_job.job_id,
        f"hash job {second_job.job_id} on 'renamed copy.mp4': output/hash.json",
        read_json(compute_client, second_job, output_path(second_job)),
    )
    kind = (first["algorithm"], first["media_type"])
    assert kind == ("sha512_video", "video"), (
        f"hash job {first.job_id}, sha512 of {item.path.name}: expected algorithm 'sha512_video' and media_type"
        f" 'video', got {kind}"
    )
    expect_value(
        first["hash_value"],
        expected,
        f"{first.where}: 'hash_value' (sha512 of a video)",
        meaning=f"the SHA-512 of its {keyframes} key-frame packets",
        wrong=video_hash_answers(item.path, expected),
    )
    assert second["hash_value"] == expected, (
        f"job {second_job.job_id}: the same video uploaded as 'renamed copy.mp4' hashed differently "
        f"({str(second['hash_value'])[:16]}… instead of {expected[:16]}…)"
    )
    assert first["hash_value"] != hashlib.sha512(item.read_bytes()).hexdigest(), (
        f"hash job {first.job_id}: sha512_video is the SHA-512 of the whole file's bytes, not of the key-frame packets"
    )


@pytest.mark.parametrize("name", ["text_plain", "audio_3s", "hostile_text_as_jpeg"])
def test_sha512_of_other_files_is_sha512_of_the_bytes(
    compute_client: ComputeClient, cl_media: MediaCatalogue, name: str
) -> None:
    """Text (also text named ``.jpg``) and audio: ``sha512_generic`` = SHA-512 of the raw bytes."""
    item = cl_media[name]
    data = _hash_json(compute_client, item, "sha512")
    data.expect("media_type", item.fact_str("media_type"), f"{item.name} is a {item.fact_str('media_type')} file")
    data.expect("algorithm", "sha512_generic")
    expected = hashlib.sha512(item.read_bytes()).hexdigest()
    data.expect("hash_value", expected, "the SHA-512 of the raw bytes", byte_digest_answers(item.path, expected))


# -- hostile inputs and bad parameters -----------------------------------------------------------------------
def test_decompression_bomb_fails_with_a_message(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """A 30000×30000 PNG is not decoded for the image hash: the job ends ``error`` with a message, no hang."""
    failed(any_client, TASK, cl_media["hostile_bomb_png"].path, {"algorithm": "sha512"})


def test_md5_of_a_bomb_needs_no_decoding(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """md5 hashes bytes only, so even the decompression bomb completes with the MD5 of its bytes."""
    item = cl_media["hostile_bomb_png"]
    data = _hash_json(compute_client, item, "md5")
    data.expect("hash_value", hashlib.md5(item.read_bytes()).hexdigest(), "the MD5 of the uploaded bytes")


def test_empty_file_is_refused_or_hashed_as_empty(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """Zero bytes: either ``error`` with a message, or the MD5 of nothing (d41d8cd9…), never anything else."""
    item = cl_media["hostile_empty"]
    job = run_job(compute_client, TASK, item.path, {"algorithm": "md5"})
    if job.is_failed:
        assert job.error_message and job.error_message.strip(), (
            f"hash job {job.job_id} of an empty file ended {job.status!r} without an error_message"
        )
    else:
        expect(job.status, "completed", f"hash job {job.job_id} of an empty file: status")
        data = read_json(compute_client, job, output_path(job))
        where = f"hash job {job.job_id} of an empty file: output/hash.json"
        expect_field(data, "hash_value", MD5_EMPTY, where=where, meaning="the MD5 of no bytes")


def test_truncated_jpeg_is_refused_or_hashed_as_decoded(
    compute_client: ComputeClient, cl_media: MediaCatalogue
) -> None:
    """A truncated JPEG: ``error`` with a message, or (upstream decodes truncated images) the hash of that decode."""
    item = cl_media["hostile_truncated_jpeg"]
    job = run_job(compute_client, TASK, item.path, {"algorithm": "sha512"})
    if job.is_failed:
        assert job.error_message and job.error_message.strip(), (
            f"hash job {job.job_id} of a truncated JPEG ended {job.status!r} without an error_message"
        )
        return
    expect(job.status, "completed", f"hash job {job.job_id} of a truncated JPEG: status")
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        expected = hashlib.sha512(pixel_bytes(item.path)).hexdigest()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    data = read_json(compute_client, job, output_path(job))
    where = f"hash job {job.job_id} of a truncated JPEG: output/hash.json"
    expect_field(data, "algorithm", "sha512_image", where=where)
    expect_field(data, "hash_value", expected, where=where, meaning="the SHA-512 of the pixels Pillow decodes")


@pytest.mark.parametrize("algorithm", ["sha1", "MD5 ", "sha256"])
def test_unknown_algorithm_is_a_422(compute_client: ComputeClient, cl_media: MediaCatalogue, algorithm: str) -> None:
    """``algorithm`` outside sha512|md5 is refused at submission (422 naming the field), no job is created."""
    with pytest.raises(ValidationError) as info:
        compute_client.submit(TASK, cl_media["text_plain"].path, {"algorithm": algorithm})
    expect(info.value.status_code, 422, f"POST /jobs/hash with algorithm={algorithm!r}: HTTP status")
    assert "algorithm" in str(info.value.detail), (
        f"POST /jobs/hash with algorithm={algorithm!r}: the 422 does not name 'algorithm': {info.value.detail}"
    )
