"""Conformance of the ``hls_streaming`` plugin (PROTOCOL.md §3: ``variants`` JSON, ``include_original``).

The whole stream is fetched: the master playlist (found through ``task_output.master_playlist``, upstream's
absolute server path cut after ``jobs/<job_id>/``), every variant playlist it lists, every segment they list.
Playlists are parsed with the maintained ``m3u8`` package, segments are opened with PyAV. The 720p sources run
at 30 fps with a key frame every 2 s, so upstream's fixed 60-frame GOP and 2 s segments agree with the protocol.
"""

from __future__ import annotations

import io
import json
import posixpath
from dataclasses import dataclass, field

import av
import m3u8
import pytest

from cl_client import ComputeClient, HTTPStatusError, JobResponse, NotFoundError, ValidationError
from pytest_cl._media import MediaCatalogue, MediaItem
from pytest_cl.conformance._checks import expect, expect_field, get_field, job_label
from pytest_cl.conformance.plugins._media_helpers import completed, duration_defect, failed, read_file, variants_defect

pytestmark = [pytest.mark.cl_requires("hls_streaming"), pytest.mark.timeout(180)]

TASK = "hls_streaming"
SEGMENT_SECONDS = 2.0
SMALL = [{"resolution": 240, "bitrate": 300}, {"resolution": 144, "bitrate": 200}]
AUDIO_KBPS = 128


@dataclass
class Rendition:
    """One playlist with its segments, downloaded and parsed."""

    uri: str
    playlist: m3u8.M3U8
    segments: dict[str, bytes] = field(default_factory=dict[str, bytes])

    @property
    def durations(self) -> list[float]:
        return [float(s.duration) for s in self.playlist.segments]


@dataclass
class Stream:
    """The master playlist and everything it references."""

    job: JobResponse
    base: str
    master: m3u8.M3U8
    renditions: list[Rendition]


def _master_path(job: JobResponse) -> str:
    """``task_output.master_playlist`` relative to the job directory (upstream gives an absolute server path)."""
    master = get_field(job.task_output, "master_playlist", where=f"{job_label(job)}: task_output")
    assert isinstance(master, str) and master.endswith("adaptive.m3u8"), (
        f"{job_label(job)}: task_output.master_playlist is {master!r}, expected a path ending in adaptive.m3u8"
    )
    marker = f"jobs/{job.job_id}/"
    return master.split(marker, 1)[1] if marker in master else master


def _rendition(client: ComputeClient, job: JobResponse, base: str, uri: str) -> Rendition:
    """Download a media playlist and all its segments (each must be MPEG-TS)."""
    where = f"{job_label(job)}: {posixpath.join(base, uri)}"
    assert "/" not in uri and ".." not in uri, f"{job_label(job)}: the master references {uri!r}, outside its directory"
    playlist = m3u8.loads(read_file(client, job, posixpath.join(base, uri)).decode("utf-8"))
    assert not playlist.is_variant and playlist.segments, f"{where} lists no segments"
    assert playlist.is_endlist, f"{where} is not a finished (VOD) playlist (no #EXT-X-ENDLIST)"
    rendition = Rendition(uri, playlist)
    for segment in playlist.segments:
        data = read_file(client, job, posixpath.join(base, segment.uri))
        assert len(data) >= 188 * 2 and data[0] == 0x47 and data[188] == 0x47, (
            f"{job_label(job)}: segment {segment.uri} of {uri} is not MPEG-TS ({len(data)} bytes, starts {data[:4]!r})"
        )
        rendition.segments[segment.uri] = data
    return rendition


def _stream(client: ComputeClient, item: MediaItem, fields: dict[str, object]) -> Stream:
    """Run hls_streaming to completion and download the whole tree the master playlist references."""
    job = completed(client, TASK, item.path, fields)
    path = _master_path(job)
    base = posixpath.dirname(path)
    master = m3u8.loads(read_file(client, job, path).decode("utf-8"))
    assert master.is_variant, f"{job_label(job)}: the master playlist {path} lists no variant streams"
    renditions = [_rendition(client, job, base, p.uri) for p in master.playlists]
    expect_field(
        job.task_output,
        "total_segments",
        sum(len(r.segments) for r in renditions),
        where=f"{job_label(job)}: task_output",
        meaning="the segments its playlists list",
    )
    return Stream(job, base, master, renditions)


def _video_of(segment: bytes) -> tuple[int, int, bool]:
    """(width, height, has_audio) of an MPEG-TS segment, read with PyAV."""
    with av.open(io.BytesIO(segment), format="mpegts") as container:
        video = container.streams.video[0]
        return video.codec_context.width, video.codec_context.height, bool(container.streams.audio)


def _check_timing(rendition: Rendition, duration: float, job: JobResponse) -> None:
    """Segments of ≈ 2 s (the last may be shorter), adding up to the source's duration."""
    durations = rendition.durations
    where = f"{job_label(job)}: {rendition.uri}"
    assert all(abs(d - SEGMENT_SECONDS) <= 0.15 for d in durations[:-1]), (
        f"{where}: segment durations {durations}, expected {SEGMENT_SECONDS} s ± 0.15 (all but the last)"
    )
    assert 0 < durations[-1] <= SEGMENT_SECONDS + 0.15, (
        f"{where}: the last segment lasts {durations[-1]} s, expected more than 0 and at most {SEGMENT_SECONDS + 0.15}"
    )
    defect = duration_defect(durations, duration, SEGMENT_SECONDS)
    assert defect is None, f"{where}: {defect}"


def _check_variants(stream: Stream, item: MediaItem, requested: list[dict[str, int]]) -> None:
    """The master lists exactly the requested variants: height, width from the aspect ratio, bandwidth."""
    listed = stream.master.playlists
    master = f"{job_label(stream.job)}: master playlist"
    defect = variants_defect(
        [(p.stream_info.resolution[1] if p.stream_info.resolution else 0, str(p.uri)) for p in listed], requested
    )
    assert defect is None, f"{master}: {defect}"
    aspect = item.fact_int("width") / item.fact_int("height")
    audio = AUDIO_KBPS if item.fact_bool("has_audio") else 0
    by_height = {p.stream_info.resolution[1]: p for p in listed if p.stream_info.resolution}
    expect(
        sorted(by_height),
        sorted(v["resolution"] for v in requested),
        f"{master}: variant heights (RESOLUTION {[p.stream_info.resolution for p in listed]})",
    )
    for variant in requested:
        height, kbps = variant["resolution"], variant["bitrate"]
        info = by_height[height].stream_info
        width = info.resolution[0]
        assert abs(width - height * aspect) <= 2, (
            f"{master}: the {height}p variant is {width} wide, expected {height * aspect:.0f}"
            " (the source's aspect ratio)"
        )
        assert kbps * 1000 <= info.bandwidth <= (kbps + audio) * 1000 * 1.25, (
            f"{master}: the {height}p@{kbps}k variant has BANDWIDTH {info.bandwidth}, expected between"
            f" {kbps * 1000} and {(kbps + audio) * 1000 * 1.25:.0f}"
        )
        expect(by_height[height].uri, f"adaptive-{height}p-{kbps}.m3u8", f"{master}: URI of the {height}p variant")
    for rendition in stream.renditions:
        _check_timing(rendition, item.fact_float("duration"), stream.job)
        height = next(h for h, p in by_height.items() if p.uri == rendition.uri)
        first_uri, first = next(iter(rendition.segments.items()))
        w, h, has_audio = _video_of(first)
        assert h == height and abs(w - height * aspect) <= 2, (
            f"{job_label(stream.job)}: segment {first_uri} of {rendition.uri} decodes at {w}×{h},"
            f" expected {height * aspect:.0f}×{height}"
        )
        expect(
            has_audio,
            item.fact_bool("has_audio"),
            f"{job_label(stream.job)}: segment {first_uri} has an audio stream ({item.name} has_audio)",
        )


# -- the stream --------------------------------------------------------------------------------------------------
def test_requested_variants_through_events_and_polling(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """240p@300k + 144p@200k of a 5 s video (events, polling): both listed with their sizes and bandwidths, every
    playlist and segment downloads, segments ≈ 2 s, total ≈ 5 s, segments carry video of that height + audio."""
    item = cl_media["video_720p_5s_audio"]
    stream = _stream(any_client, item, {"variants": json.dumps(SMALL)})
    _check_variants(stream, item, SMALL)
    where = f"{job_label(stream.job)}: task_output"
    expect_field(stream.job.task_output, "variants_generated", 2, where=where, meaning="two variants were requested")
    assert get_field(stream.job.task_output, "include_original", where=where) is False, (
        f"{where}: expected 'include_original' false, got {stream.job.task_output}"
    )


def test_default_variants_are_720p_and_480p(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """No ``variants``: 720p@3500k and 480p@1500k (the route's default), higher bandwidth for the larger one."""
    item = cl_media["video_720p_5s_audio"]
    stream = _stream(compute_client, item, {})
    default = [{"resolution": 720, "bitrate": 3500}, {"resolution": 480, "bitrate": 1500}]
    _check_variants(stream, item, default)
    bandwidths = {p.stream_info.resolution[1]: p.stream_info.bandwidth for p in stream.master.playlists}
    assert bandwidths[720] > bandwidths[480], (
        f"{job_label(stream.job)}: the 720p variant's BANDWIDTH {bandwidths[720]} is not above the 480p's"
        f" {bandwidths[480]}"
    )


def test_three_variants_in_one_job(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """Three variants (one at an odd height): all three listed, each with its own playlist and segments."""
    item = cl_media["video_720p_5s_audio"]
    requested = [*SMALL, {"resolution": 360, "bitrate": 600}]
    stream = _stream(compute_client, item, {"variants": json.dumps(requested)})
    _check_variants(stream, item, requested)
    uris = sorted({r.uri for r in stream.renditions})
    assert len(uris) == 3, f"{job_label(stream.job)}: expected 3 distinct variant playlists, got {uris}"


# -- include_original ----------------------------------------------------------------------------------------------
def test_include_original_adds_a_stream_copy(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """``include_original=true``: ``adaptive-orig.m3u8`` and its segments at the source's 1280×720, covering the
    whole duration; the master still lists only the requested variants."""
    item = cl_media["video_720p_5s_audio"]
    requested = SMALL[1:]
    stream = _stream(compute_client, item, {"variants": json.dumps(requested), "include_original": True})
    _check_variants(stream, item, requested)
    where = f"{job_label(stream.job)}: task_output"
    assert get_field(stream.job.task_output, "include_original", where=where) is True, (
        f"{where}: expected 'include_original' true, got {stream.job.task_output}"
    )
    try:
        original = _rendition(compute_client, stream.job, stream.base, "adaptive-orig.m3u8")
    except NotFoundError:
        raise AssertionError(
            f"{job_label(stream.job)}: include_original=true, task_output says include_original true, but the"
            f" original stream is missing: {posixpath.join(stream.base, 'adaptive-orig.m3u8')} is not there (404)"
        ) from None
    _check_timing(original, item.fact_float("duration"), stream.job)
    width, height, has_audio = _video_of(next(iter(original.segments.values())))
    expect(
        (width, height, has_audio),
        (1280, 720, True),
        f"{job_label(stream.job)}: adaptive-orig segments (width, height, has audio)",
    )


def test_without_include_original_there_is_no_original(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """``include_original=false``: no ``adaptive-orig.m3u8`` (404)."""
    stream = _stream(compute_client, cl_media["video_720p_5s_audio"], {"variants": json.dumps(SMALL[1:])})
    path = posixpath.join(stream.base, "adaptive-orig.m3u8")
    try:
        read_file(compute_client, stream.job, path)
    except NotFoundError:
        return
    raise AssertionError(f"{job_label(stream.job)}: include_original=false, yet the original stream {path} exists")


# -- inputs ------------------------------------------------------------------------------------------------------------
def test_video_without_audio(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """A silent 3 s video: completes; segments have video and no audio; total ≈ 3 s (upstream too, §8)."""
    item = cl_media["video_720p_3s_silent"]
    stream = _stream(any_client, item, {"variants": json.dumps(SMALL)})
    _check_variants(stream, item, SMALL)


def test_audio_only_file_fails(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """An audio-only file has no video stream: ``error`` with a message (also without MQTT events)."""
    failed(any_client, TASK, cl_media["audio_3s"].path, {"variants": json.dumps(SMALL[1:])})


@pytest.mark.parametrize("name", ["hostile_empty", "hostile_text_as_jpeg"])
def test_non_media_input_fails(compute_client: ComputeClient, cl_media: MediaCatalogue, name: str) -> None:
    """An empty file and text named ``.jpg`` (nothing ffmpeg can read): ``error`` with a message, no hang."""
    failed(compute_client, TASK, cl_media[name].path, {"variants": json.dumps(SMALL[1:])})


@pytest.mark.cl_needs_fix("still images refused (upstream's ffprobe sees a one-frame video stream in them)")
@pytest.mark.parametrize("name", ["png_800x600", "hostile_truncated_jpeg"])
def test_still_image_fails(compute_client: ComputeClient, cl_media: MediaCatalogue, name: str) -> None:
    """A still image (also a broken one) is not a video: ``error`` with a message rather than a 1-frame stream."""
    failed(compute_client, TASK, cl_media[name].path, {"variants": json.dumps(SMALL[1:])})


# -- bad variants ------------------------------------------------------------------------------------------------------
BAD_VARIANTS = {
    "not-json": "not json",
    "empty-list": "[]",
    "object-not-list": '{"resolution": 720, "bitrate": 3500}',
    "missing-bitrate": '[{"resolution": 720}]',
    "text-resolution": '[{"resolution": "high", "bitrate": 300}]',
    "bitrate-too-low": '[{"resolution": 240, "bitrate": 50}]',
}


@pytest.mark.parametrize("variants", list(BAD_VARIANTS.values()), ids=list(BAD_VARIANTS))
def test_bad_variants_never_complete(compute_client: ComputeClient, cl_media: MediaCatalogue, variants: str) -> None:
    """Malformed ``variants`` are refused at submission (an HTTP error) or end the job in ``error``."""
    refused, job = 0, None
    try:
        job = compute_client.submit(TASK, cl_media["video_720p_3s_silent"].path, {"variants": variants})
    except HTTPStatusError as exc:
        refused = exc.status_code
    if job is None:
        assert refused >= 400, f"POST /jobs/{TASK} with variants={variants!r}: refused with HTTP {refused}"
        return
    final = job.wait()
    assert final.is_failed and final.error_message, (
        f"{job_label(final)} with variants={variants!r} ended {final.status!r}"
        f" (error_message {final.error_message!r}); expected 'error' with a message"
    )


@pytest.mark.cl_needs_fix("422 for malformed variants (upstream answers 500)")
@pytest.mark.parametrize("variants", list(BAD_VARIANTS.values()), ids=list(BAD_VARIANTS))
def test_bad_variants_are_a_422(compute_client: ComputeClient, cl_media: MediaCatalogue, variants: str) -> None:
    """Malformed ``variants``: 422 naming the field, no job."""
    with pytest.raises(ValidationError) as info:
        compute_client.submit(TASK, cl_media["video_720p_3s_silent"].path, {"variants": variants})
    expect(info.value.status_code, 422, f"POST /jobs/{TASK} with variants={variants!r}: HTTP status")
    assert "variants" in str(info.value.detail), (
        f"POST /jobs/{TASK} with variants={variants!r}: the 422 does not name 'variants': {info.value.detail}"
    )
