"""Video workflow: hash, thumbnail, HLS and exif on one video in parallel; the whole HLS tree downloaded.

The four jobs are submitted together once (a module fixture) and must all end under one deadline; each
plugin's part is then its own check, so one plugin's defect does not hide the others passing. Two parts rely
on fixes of the reference deployment (PROTOCOL §8: upstream's video SHA-512 breaks on ffprobe 5.1's CSV, and its
video thumbnails hand ffmpeg a relative path) and say so with ``cl_needs_fix``.

Expectations come from the file itself: the SHA-512 over the key-frame packets is computed here with PyAV,
duration and size from the manifest, the HLS tree is parsed with ``m3u8`` from the downloaded copy and each
variant's first segment is decoded with PyAV.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import m3u8
import pytest
from PIL import Image

from cl_client import ComputeClient, JobResponse
from cl_client.plugins import PluginJob, PluginResult
from pytest_cl._media import MediaCatalogue, MediaItem
from pytest_cl.conformance._checks import expect_value
from pytest_cl.conformance.plugins._media_helpers import video_hash_answers
from pytest_cl.deployment import DeploymentInfo

PLUGINS = ("hash", "media_thumbnail", "hls_streaming", "exif")
#: part of the workflow -> the plugin (capability) that runs it
PARTS = {"hash": "hash", "thumbnail": "media_thumbnail", "hls": "hls_streaming", "exif": "exif"}
pytestmark = [pytest.mark.timeout(180)]

#: One deadline for the four parallel jobs (seconds).
DEADLINE_S = 120.0
#: The default variants of PROTOCOL.md §3 (resolution, bitrate kbit/s).
DEFAULT_VARIANTS = {720: 3500, 480: 1500}


def _keyframe_sha512(item: MediaItem) -> str:
    """SHA-512 over the video stream's key-frame packet bytes, in file order (PROTOCOL.md §3, hash)."""
    digest = hashlib.sha512()
    with av.open(str(item.path)) as container:
        for packet in container.demux(container.streams.video[0]):
            if packet.is_keyframe and packet.size:
                digest.update(bytes(packet))
    return digest.hexdigest()


def _video_height(path: Path) -> int:
    """Height of the first decoded frame of a media file."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.height


@dataclass
class VideoRun:
    """The four jobs of the workflow, their final records, and the video they ran on."""

    video: MediaItem
    jobs: dict[str, PluginJob[PluginResult]]
    records: dict[str, JobResponse]
    seconds: float

    def completed(self, part: str) -> PluginJob[PluginResult]:
        """The part's job, checked to have completed (else the failure names the job and the server's message)."""
        assert part in self.records, f"the workflow submitted no {PARTS[part]} job (no worker offered it)"
        record = self.records[part]
        assert record.status == "completed", (
            f"{part} of {self.video.path.name}: job {record.job_id} ended {record.status!r}"
            f" ({record.error_message or 'no error_message'}); expected 'completed'"
        )
        return self.jobs[part]


@pytest.fixture(scope="module")
def video_run(
    cl_session_client: ComputeClient, cl_media: MediaCatalogue, cl_deployment: DeploymentInfo
) -> VideoRun | None:
    """Submit the four jobs together once and wait for all of them under one deadline. Only the parts whose
    plugin the deployment offers are submitted (None when it offers none of them): the other parts' checks apply
    the missing-worker policy through their ``cl_requires``, and the parts that ran are still checked."""
    client = cl_session_client
    video = cl_media["video_720p_5s_audio"]
    submit: dict[str, Callable[[], PluginJob[PluginResult]]] = {
        "hash": lambda: client.hash.compute(video.path, algorithm="sha512"),
        "thumbnail": lambda: client.media_thumbnail.generate(video.path, width=256, height=256),
        "hls": lambda: client.hls_streaming.generate_manifest(video.path),
        "exif": lambda: client.exif.extract(video.path),
    }
    offered = [part for part in PARTS if cl_deployment.offers(PARTS[part])]
    if not offered:
        return None
    started = time.monotonic()
    jobs = {part: submit[part]() for part in offered}
    records = {name: job.wait(max(1.0, DEADLINE_S - (time.monotonic() - started))) for name, job in jobs.items()}
    return VideoRun(video, jobs, records, time.monotonic() - started)


def _run(video_run: VideoRun | None) -> VideoRun:
    assert video_run is not None, "the workflow's jobs were not submitted (a worker is missing)"
    return video_run


@pytest.mark.cl_requires(*PLUGINS)
def test_all_four_jobs_end_under_one_deadline(video_run: VideoRun | None) -> None:
    """hash/thumbnail/hls/exif submitted together all reach a terminal state within the deadline."""
    run = _run(video_run)
    assert run.seconds < DEADLINE_S, f"the four jobs took {run.seconds:.0f} s, the deadline is {DEADLINE_S:.0f} s"
    open_jobs = {n: (r.job_id, r.status) for n, r in run.records.items() if r.status not in ("completed", "error")}
    assert not open_jobs, f"jobs still not finished after {DEADLINE_S:.0f} s: {open_jobs}"


@pytest.mark.cl_requires("hash")
@pytest.mark.cl_needs_fix(
    "SHA-512 of ordinary videos with ffprobe 5.1 or newer (upstream's key-frame CSV parser rejects ffprobe's "
    "4-column lines and ends the job 'CSV data is invalid.')"
)
def test_hash_part(video_run: VideoRun | None) -> None:
    """The video's ``sha512_video`` is the SHA-512 of its key-frame packets, computed here with PyAV."""
    run = _run(video_run)
    hashed = run.completed("hash").result(5)
    kind = (getattr(hashed, "algorithm"), getattr(hashed, "media_type"))  # noqa: B009
    assert kind == ("sha512_video", "video"), f"expected ('sha512_video', 'video'), got {kind}"
    expected = _keyframe_sha512(run.video)
    value = str(getattr(hashed, "hash_value"))  # noqa: B009
    expect_value(
        value,
        expected,
        f"hash job {run.records['hash'].job_id}, sha512 of {run.video.path.name}: 'hash_value'",
        meaning="the SHA-512 of its key-frame packets",
        wrong=video_hash_answers(run.video.path, expected),
    )


@pytest.mark.cl_requires("media_thumbnail")
@pytest.mark.cl_needs_fix("video thumbnails (upstream hands ffmpeg a relative input path and fails)")
def test_thumbnail_part(video_run: VideoRun | None) -> None:
    """A JPEG that fits the 256 px box with the video's aspect ratio."""
    run = _run(video_run)
    width, height = run.video.fact_int("width"), run.video.fact_int("height")
    thumb = run.completed("thumbnail").result(5).read_bytes()
    assert thumb[:3] == b"\xff\xd8\xff", f"the thumbnail is not a JPEG (starts with {thumb[:4]!r})"
    with Image.open(io.BytesIO(thumb)) as im:
        tw, th = im.size
    assert max(tw, th) == 256, f"expected the longer side 256 px, got {tw}x{th}"
    assert abs((tw / th) / (width / height) - 1) < 0.01 + 1 / th, (
        f"a {width}x{height} video gave a {tw}x{th} thumbnail: the aspect ratio is not kept"
    )


@pytest.mark.cl_requires("exif")
def test_exif_part(video_run: VideoRun | None) -> None:
    """ExifTool's view of the video: its frame size and duration."""
    run = _run(video_run)
    width, height = run.video.fact_int("width"), run.video.fact_int("height")
    exif = run.completed("exif").result(5)
    get = getattr(exif, "get")  # noqa: B009
    size = (get("ImageWidth"), get("ImageHeight"))
    assert size == (width, height), f"expected ImageWidth/ImageHeight {width}x{height}, got {size}"
    reported = get("Duration")
    duration = run.video.fact_float("duration")
    assert isinstance(reported, int | float), f"expected a numeric Duration (-n), got {reported!r}"
    assert abs(float(reported) - duration) < 0.5, f"expected Duration ≈ {duration} s, got {reported}"


@pytest.mark.cl_requires("hls_streaming")
def test_hls_part_and_the_full_tree(video_run: VideoRun | None, tmp_path: Path) -> None:
    """Every playlist and segment the master references is downloaded and valid, and nothing else is."""
    run = _run(video_run)
    duration = run.video.fact_float("duration")
    hls = run.completed("hls").result(5)
    dest = tmp_path / "hls"
    written = {p.resolve() for p in hls.download_stream(dest)}
    master_path = dest / Path(str(hls.master_playlist)).name
    assert master_path.resolve() in written, f"the master playlist {master_path.name} was not downloaded"

    master = m3u8.load(str(master_path))
    assert master.is_variant, f"{master_path.name} is not a master playlist"
    resolutions = {pl.stream_info.resolution[1]: pl for pl in master.playlists if pl.stream_info.resolution}
    assert set(resolutions) == set(DEFAULT_VARIANTS), (
        f"expected the default variants {sorted(DEFAULT_VARIANTS)}p, the master lists {sorted(resolutions)}p"
    )
    referenced = {master_path.resolve()}
    for res_height, playlist in resolutions.items():
        floor = DEFAULT_VARIANTS[res_height] * 1000 * 0.5
        assert playlist.stream_info.bandwidth >= floor, (
            f"{res_height}p: BANDWIDTH {playlist.stream_info.bandwidth} is under half the requested "
            f"{DEFAULT_VARIANTS[res_height]} kbit/s"
        )
        variant_path = (master_path.parent / playlist.uri).resolve()
        assert variant_path.is_file(), f"variant playlist {playlist.uri} was not downloaded"
        referenced.add(variant_path)
        variant = m3u8.load(str(variant_path))
        assert variant.segments, f"{playlist.uri} lists no segment"
        total = 0.0
        for segment in variant.segments:
            seg_path = (variant_path.parent / segment.uri).resolve()
            assert seg_path.is_file() and seg_path.stat().st_size > 0, f"segment {segment.uri} is missing or empty"
            assert seg_path.read_bytes()[:1] == b"\x47", f"{segment.uri} is not an MPEG-TS segment (no 0x47 sync)"
            referenced.add(seg_path)
            total += float(segment.duration or 0)
        assert abs(total - duration) < 0.5, f"{playlist.uri}: segments last {total:.2f} s, the video {duration} s"
        first = (variant_path.parent / variant.segments[0].uri).resolve()
        seen_height = _video_height(first)
        assert seen_height == res_height, f"{variant.segments[0].uri} decodes at {seen_height}p, not {res_height}p"
    extra, missing = sorted(written - referenced), sorted(referenced - written)
    assert not extra and not missing, f"download_stream wrote files nobody references {extra}, or missed {missing}"
