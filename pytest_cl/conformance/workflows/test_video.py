"""Video workflow: hash, thumbnail, HLS and exif on one video in parallel; the whole HLS tree downloaded.

Expectations come from the file itself: the SHA-512 over the key-frame packets is computed here with PyAV,
duration and size from the manifest, the HLS tree is parsed with ``m3u8`` from the downloaded copy and each
variant's first segment is decoded with PyAV.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import av
import m3u8
import pytest
from PIL import Image

from cl_client import ComputeClient
from pytest_cl._media import MediaCatalogue, MediaItem

pytestmark = [
    pytest.mark.cl_requires("hash", "media_thumbnail", "hls_streaming", "exif"),
    pytest.mark.timeout(180),
]

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


def test_four_plugins_on_one_video_in_parallel_and_the_full_hls_tree(
    compute_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path
) -> None:
    """hash/thumbnail/hls/exif on ``video_720p_5s_audio`` submitted together finish under one deadline; each
    result agrees with the file; every playlist and segment the master references is downloaded and valid."""
    video = cl_media["video_720p_5s_audio"]
    duration = video.fact_float("duration")
    width, height = video.fact_int("width"), video.fact_int("height")

    started = time.monotonic()
    jobs = {
        "hash": compute_client.hash.compute(video.path, algorithm="sha512"),
        "thumbnail": compute_client.media_thumbnail.generate(video.path, width=256, height=256),
        "hls": compute_client.hls_streaming.generate_manifest(video.path),
        "exif": compute_client.exif.extract(video.path),
    }
    records = {name: job.wait(max(1.0, DEADLINE_S - (time.monotonic() - started))) for name, job in jobs.items()}
    assert time.monotonic() - started < DEADLINE_S
    assert {n: r.status for n, r in records.items()} == dict.fromkeys(jobs, "completed"), records

    hashed = jobs["hash"].result(5)
    assert hashed.algorithm == "sha512_video" and hashed.media_type == "video"
    assert hashed.hash_value == _keyframe_sha512(video)

    thumb = jobs["thumbnail"].result(5).read_bytes()
    assert thumb[:3] == b"\xff\xd8\xff"
    with Image.open(io.BytesIO(thumb)) as im:
        tw, th = im.size
    assert max(tw, th) == 256 and abs((tw / th) / (width / height) - 1) < 0.01 + 1 / th, (tw, th)

    exif = jobs["exif"].result(5)
    assert exif.get("ImageWidth") == width and exif.get("ImageHeight") == height, exif.raw_metadata
    reported = exif.get("Duration")
    assert isinstance(reported, int | float) and abs(float(reported) - duration) < 0.5, reported

    hls = jobs["hls"].result(5)
    dest = tmp_path / "hls"
    written = {p.resolve() for p in hls.download_stream(dest)}
    master_path = dest / Path(hls.master_playlist).name
    assert master_path.resolve() in written, (master_path, sorted(written))

    master = m3u8.load(str(master_path))
    assert master.is_variant
    resolutions = {pl.stream_info.resolution[1]: pl for pl in master.playlists if pl.stream_info.resolution}
    assert set(resolutions) == set(DEFAULT_VARIANTS), [pl.stream_info.resolution for pl in master.playlists]
    referenced = {master_path.resolve()}
    for res_height, playlist in resolutions.items():
        assert playlist.stream_info.bandwidth >= DEFAULT_VARIANTS[res_height] * 1000 * 0.5, playlist.stream_info
        variant_path = (master_path.parent / playlist.uri).resolve()
        assert variant_path.is_file(), f"variant playlist {playlist.uri} was not downloaded"
        referenced.add(variant_path)
        variant = m3u8.load(str(variant_path))
        assert variant.segments, f"{playlist.uri} lists no segment"
        total = 0.0
        for segment in variant.segments:
            seg_path = (variant_path.parent / segment.uri).resolve()
            assert seg_path.is_file() and seg_path.stat().st_size > 0, f"segment {segment.uri} missing"
            assert seg_path.read_bytes()[:1] == b"\x47", f"{segment.uri} is not an MPEG-TS segment"
            referenced.add(seg_path)
            total += float(segment.duration or 0)
        assert abs(total - duration) < 0.5, f"{playlist.uri}: segments last {total:.2f} s, video {duration} s"
        first = (variant_path.parent / variant.segments[0].uri).resolve()
        assert _video_height(first) == res_height, f"{variant.segments[0].uri} is not {res_height}p"
    # everything referenced was downloaded, and nothing else was
    assert written == referenced, {"extra": sorted(written - referenced), "missing": sorted(referenced - written)}
