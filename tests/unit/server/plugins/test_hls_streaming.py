"""hls_streaming plugin: playlists parse with m3u8, list exactly the variants, files exist, durations add up."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import av
import m3u8
import pytest

from cl_compute.plugins import _media, get_plugin
from cl_compute.plugins.base import JobCancelled, ParamError, PluginError
from cl_compute.plugins.hls_streaming import DEFAULT_VARIANTS, HlsStreamingPlugin, complete_master

MEDIA = Path(__file__).resolve().parents[4] / "pytest_cl" / "media"
ONE_VARIANT = json.dumps([{"resolution": 72, "bitrate": 100}])
SMALL = json.dumps([{"resolution": 96, "bitrate": 300}, {"resolution": 64, "bitrate": 150}])


@pytest.fixture(scope="module")
def mp_video_5s(mp_media_dir: Path) -> Path:
    """5 s 128x96 25 fps H.264 + AAC: three segments of ~2 s, 2 s and 1 s."""
    out = mp_media_dir / "five.mp4"
    if not out.exists():
        exe = _media.find_ffmpeg()
        if exe is None:
            pytest.skip("no ffmpeg")
        subprocess.run(
            [exe, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=5",
             "-f", "lavfi", "-i", "sine=frequency=500:duration=5", "-c:v", "libx264", "-preset", "ultrafast",
             "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "48k", "-shortest", str(out)],
            check=True, timeout=60,
        )  # fmt: skip
    return out


def _duration(path: Path) -> float:
    with av.open(str(path)) as c:
        return c.duration / 1_000_000


def _check_output(job, variants: list[dict[str, int]], source: Path, audio: bool) -> m3u8.M3U8:
    out = job.task_output
    assert job.params["output_path"] == "output"
    assert out["master_playlist"] == "output/adaptive.m3u8"
    assert out["variants_generated"] == len(variants)
    master_path = job.job_dir / out["master_playlist"]
    master = m3u8.load(str(master_path))
    assert master.is_variant
    uris = [p.uri for p in master.playlists]
    assert sorted(uris) == sorted(f"adaptive-{v['resolution']}p-{v['bitrate']}.m3u8" for v in variants)
    source_duration = _duration(source)
    total_segments = 0
    for playlist in master.playlists:
        stream = playlist.stream_info
        assert stream.bandwidth > 0
        height = int(playlist.uri.split("-")[1].rstrip("p"))
        assert stream.resolution[1] == height - height % 2
        variant = m3u8.load(str(master_path.parent / playlist.uri))
        assert variant.playlist_type == "vod"
        assert variant.is_endlist
        assert variant.segments
        total = 0.0
        for seg in variant.segments:
            assert (master_path.parent / seg.uri).is_file(), seg.uri
            assert seg.uri.startswith(playlist.uri[: -len(".m3u8")] + "-")
            assert seg.duration <= 2.0 + 0.15
            total += seg.duration
        assert all(seg.duration == pytest.approx(2.0, abs=0.15) for seg in variant.segments[:-1])
        assert total == pytest.approx(source_duration, abs=0.3)
        total_segments += len(variant.segments)
        with av.open(str(master_path.parent / variant.segments[0].uri)) as ts:
            assert len(ts.streams.video) == 1
            assert ts.streams.video[0].codec_context.height == height - height % 2
            assert bool(ts.streams.audio) is audio
    assert out["total_segments"] == total_segments
    return master


def test_params() -> None:
    plugin = get_plugin("hls_streaming")
    assert isinstance(plugin, HlsStreamingPlugin)
    params = plugin.parse_params({}, "v.mp4")
    assert params == {
        "variants": [{"resolution": 720, "bitrate": 3500}, {"resolution": 480, "bitrate": 1500}],
        "include_original": False,
        "output_path": "output",
    }
    assert plugin.parse_params({"variants": DEFAULT_VARIANTS}, "v.mp4") == params
    p = plugin.parse_params(
        {"variants": '[{"resolution": "360", "bitrate": 800.0, "extra": 1}]', "include_original": "YES"}, "v"
    )
    assert p["variants"] == [{"resolution": 360, "bitrate": 800}]
    assert p["include_original"] is True


@pytest.mark.parametrize(
    "variants",
    [
        "not json",
        "{",
        '{"resolution": 720, "bitrate": 3500}',
        "[]",
        "[1, 2]",
        '["720p"]',
        '[{"resolution": 720}]',
        '[{"bitrate": 3500}]',
        '[{"resolution": null, "bitrate": 3500}]',
        '[{"resolution": 720, "bitrate": null}]',
        '[{"resolution": true, "bitrate": 3500}]',
        '[{"resolution": 0, "bitrate": 3500}]',
        '[{"resolution": -480, "bitrate": 1500}]',
        '[{"resolution": 480, "bitrate": -1}]',
        '[{"resolution": 480, "bitrate": 0}]',
        '[{"resolution": 480, "bitrate": 50}]',
        '[{"resolution": 480.5, "bitrate": 1500}]',
        '[{"resolution": "big", "bitrate": 1500}]',
        '[{"resolution": [480], "bitrate": 1500}]',
        '[{"resolution": 100000, "bitrate": 1500}]',
        '[{"resolution": 480, "bitrate": 1500}, {"resolution": 480, "bitrate": 1500}]',
        json.dumps([{"resolution": 100 + i, "bitrate": 500} for i in range(9)]),
        "[" * 5000 + "]" * 5000,
    ],
)
def test_bad_variants_are_param_errors(variants: str) -> None:
    with pytest.raises(ParamError) as err:
        HlsStreamingPlugin().parse_params({"variants": variants}, "v.mp4")
    assert err.value.field == "variants"


def test_bad_include_original() -> None:
    with pytest.raises(ParamError) as err:
        HlsStreamingPlugin().parse_params({"include_original": "sometimes"}, "v.mp4")
    assert err.value.field == "include_original"


def test_default_variants_with_audio(mp_job, mp_video_av: Path) -> None:
    job = mp_job(HlsStreamingPlugin(), mp_video_av)
    _check_output(job, json.loads(DEFAULT_VARIANTS), mp_video_av, audio=True)
    assert job.task_output["include_original"] is False
    assert not list((job.job_dir / "output").glob("adaptive-orig*"))


def test_segments_two_seconds(mp_job, mp_video_5s: Path) -> None:
    job = mp_job(HlsStreamingPlugin(), mp_video_5s, {"variants": SMALL})
    master = _check_output(job, json.loads(SMALL), mp_video_5s, audio=True)
    first = m3u8.load(str(job.job_dir / "output" / master.playlists[0].uri))
    assert len(first.segments) == 3
    assert job.progress == sorted(job.progress)
    assert job.progress[-1] == 100


def test_progress_parsed_from_ffmpeg(mp_job, mp_video_5s: Path) -> None:
    job = mp_job(HlsStreamingPlugin(), mp_video_5s, {"variants": DEFAULT_VARIANTS})
    assert job.progress == sorted(job.progress)
    assert job.progress[-1] == 100
    assert any(5 < p < 90 for p in job.progress), job.progress


def test_silent_video(mp_job, mp_video_silent: Path) -> None:
    variants = [{"resolution": 108, "bitrate": 200}]
    job = mp_job(HlsStreamingPlugin(), mp_video_silent, {"variants": json.dumps(variants)})
    _check_output(job, variants, mp_video_silent, audio=False)


def test_include_original(mp_job, mp_video_av: Path) -> None:
    variants = [{"resolution": 72, "bitrate": 150}]
    job = mp_job(HlsStreamingPlugin(), mp_video_av, {"variants": json.dumps(variants), "include_original": "true"})
    master = _check_output(job, variants, mp_video_av, audio=True)
    assert job.task_output["include_original"] is True
    assert "adaptive-orig.m3u8" not in [p.uri for p in master.playlists]
    orig = m3u8.load(str(job.job_dir / "output" / "adaptive-orig.m3u8"))
    assert orig.segments
    for seg in orig.segments:
        assert seg.uri.startswith("adaptive-orig-")
        assert (job.job_dir / "output" / seg.uri).is_file()
    assert sum(s.duration for s in orig.segments) == pytest.approx(_duration(mp_video_av), abs=0.3)
    with av.open(str(job.job_dir / "output" / orig.segments[0].uri)) as ts:
        assert ts.streams.video[0].codec_context.width == 160  # stream copy keeps the source size


def test_include_original_reencodes_when_copy_impossible(mp_job, mp_video_webm: Path) -> None:
    variants = [{"resolution": 64, "bitrate": 150}]
    job = mp_job(HlsStreamingPlugin(), mp_video_webm, {"variants": json.dumps(variants), "include_original": "1"})
    _check_output(job, variants, mp_video_webm, audio=False)
    orig = m3u8.load(str(job.job_dir / "output" / "adaptive-orig.m3u8"))
    assert orig.segments
    assert all((job.job_dir / "output" / s.uri).is_file() for s in orig.segments)


def test_audio_only_fails(mp_job, mp_audio_only: Path) -> None:
    with pytest.raises(PluginError, match="does not contain a video stream"):
        mp_job(HlsStreamingPlugin(), mp_audio_only, {"variants": SMALL})


def test_image_fails(mp_job) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="PNG")
    with pytest.raises(PluginError, match="still image"):
        mp_job(HlsStreamingPlugin(), buf.getvalue(), {"variants": SMALL}, upload_name="x.png")


@pytest.mark.parametrize(
    "data", [b"", b"not a video at all\n", b"https://example.com/v.mp4", bytes(range(7, 256)) * 40]
)
def test_bad_inputs(mp_job, data: bytes) -> None:
    with pytest.raises(PluginError) as err:
        mp_job(HlsStreamingPlugin(), data, {"variants": SMALL}, upload_name="x.mp4")
    assert "Traceback" not in str(err.value)


def test_truncated_video(mp_job, mp_video_5s: Path) -> None:
    data = mp_video_5s.read_bytes()  # moov atom at the end: a cut file cannot be opened
    with pytest.raises(PluginError):
        mp_job(HlsStreamingPlugin(), data[: len(data) // 3], {"variants": SMALL}, upload_name="cut.mp4")


def test_cancellation_kills_ffmpeg(mp_job, mp_video_5s: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def spy(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = real_popen(*args, **kwargs)  # type: ignore[call-overload]
        started.append(proc)
        return proc

    monkeypatch.setattr(subprocess, "Popen", spy)
    job = mp_job(HlsStreamingPlugin(), mp_video_5s, {"variants": DEFAULT_VARIANTS}, run=False)

    def progress(p: int) -> None:
        if p > 3:
            raise JobCancelled()

    job.ctx.progress = progress
    plugin = HlsStreamingPlugin()
    plugin.load()
    with pytest.raises(JobCancelled):
        plugin.run(job.ctx)
    assert started
    assert all(p.poll() is not None for p in started)


def test_run_ffmpeg_time_limit_and_cancel(tmp_path: Path) -> None:
    exe = _media.find_ffmpeg()
    assert exe
    endless = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-f", "null", "-"]
    t0 = time.monotonic()
    with pytest.raises(PluginError, match="time limit"):
        _media.run_ffmpeg(exe, endless, timeout=1.0)
    with pytest.raises(PluginError, match="time limit"):
        _media.run_ffmpeg(exe, endless, timeout=1.0, duration=1000.0, on_progress=lambda _f: None)
    assert time.monotonic() - t0 < 10

    def cancel(_f: float) -> None:
        raise JobCancelled()

    with pytest.raises(JobCancelled):
        _media.run_ffmpeg(exe, endless, timeout=30, duration=1000.0, on_progress=cancel)
    assert time.monotonic() - t0 < 20
    with pytest.raises(PluginError, match="exit code"):
        _media.run_ffmpeg(exe, ["-i", str(tmp_path / "missing.mp4"), "-f", "null", "-"], timeout=10)


def test_job_time_limit(mp_job, mp_video_5s: Path) -> None:
    with pytest.raises(PluginError, match="time limit"):
        mp_job(HlsStreamingPlugin(), mp_video_5s, {"variants": DEFAULT_VARIANTS}, time_limit=1.2)


# -- ffmpeg 7+ (imageio-ffmpeg's bundled binary) leaves an unmeasured variant out of the master playlist -------------
#: the master playlist imageio-ffmpeg's bundled ffmpeg writes for a one-frame stream (no variant in it)
MASTER_WITHOUT_VARIANT = "#EXTM3U\n#EXT-X-VERSION:3\n"
VARIANT_PLAYLIST = (
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    "#EXTINF:0.040000,\nadaptive-72p-100-000.ts\n#EXT-X-ENDLIST\n"
)


def _probe(width: int, height: int, audio: bool) -> _media.MediaInfo:
    return _media.MediaInfo("png_pipe", 0.04, True, audio, width, height, 25.0)


def test_a_master_playlist_without_its_variant_is_completed(tmp_path: Path) -> None:
    """The master lists the variant whose playlist exists, with the nominal bandwidth and the scaled size."""
    master = tmp_path / "adaptive.m3u8"
    master.write_text(MASTER_WITHOUT_VARIANT)
    (tmp_path / "adaptive-72p-100.m3u8").write_text(VARIANT_PLAYLIST)
    assert complete_master(master, [{"resolution": 72, "bitrate": 100}], _probe(800, 600, audio=False))
    playlist = m3u8.load(str(master))
    assert playlist.is_variant
    assert [p.uri for p in playlist.playlists] == ["adaptive-72p-100.m3u8"]
    info = playlist.playlists[0].stream_info
    assert (info.bandwidth, info.resolution) == (110_000, (96, 72))


def test_a_complete_master_playlist_is_left_as_ffmpeg_wrote_it(tmp_path: Path) -> None:
    """ffmpeg's own lines are kept; a missing one is added in the requested order; an unwritten one is not."""
    master = tmp_path / "adaptive.m3u8"
    ffmpeg_line = '#EXT-X-STREAM-INF:BANDWIDTH=3850000,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2"'
    text = f"#EXTM3U\n#EXT-X-VERSION:3\n{ffmpeg_line}\nadaptive-720p-3500.m3u8\n\n"
    master.write_text(text)
    for name in ("adaptive-720p-3500.m3u8", "adaptive-480p-1500.m3u8"):
        (tmp_path / name).write_text(VARIANT_PLAYLIST)
    one = [{"resolution": 720, "bitrate": 3500}]
    assert not complete_master(master, one, _probe(1280, 720, audio=True))
    assert master.read_text() == text
    two = [{"resolution": 480, "bitrate": 1500}, *one, {"resolution": 360, "bitrate": 800}]
    assert complete_master(master, two, _probe(1280, 720, audio=True))
    lines = master.read_text().splitlines()
    assert lines[2:] == [
        "#EXT-X-STREAM-INF:BANDWIDTH=1790800,RESOLUTION=854x480",  # (1500 + 128 audio) kbit/s x 1.1
        "adaptive-480p-1500.m3u8",
        ffmpeg_line,
        "adaptive-720p-3500.m3u8",
    ]  # 360p: ffmpeg wrote no playlist for it, so the run fails on it as before


def test_hls_works_with_imageio_ffmpegs_bundled_binary(
    mp_job, mp_video_5s: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pip-only path: the bundled ffmpeg encodes a video, and a still image in the upstream profile."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    monkeypatch.setenv(_media.FFMPEG_ENV, str(imageio_ffmpeg.get_ffmpeg_exe()))
    job = mp_job(HlsStreamingPlugin(), mp_video_5s, {"variants": SMALL})
    _check_output(job, json.loads(SMALL), mp_video_5s, audio=True)
    monkeypatch.setenv("CL_COMPUTE_PROFILE", "upstream-2026-01")
    still = mp_job(HlsStreamingPlugin(), MEDIA / "images" / "synthetic_800x600.png", {"variants": ONE_VARIANT})
    master = m3u8.load(str(still.job_dir / "output" / "adaptive.m3u8"))
    assert [p.uri for p in master.playlists] == ["adaptive-72p-100.m3u8"]
    assert still.task_output["total_segments"] == 1
