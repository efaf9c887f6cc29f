"""The plugin switches of the ``upstream-2026-01`` profile, each on real media (pytest_cl/media), in process.

Every test runs the plugin twice: in the upstream profile, where the quirk of PROTOCOL.md §3/§8 must show, and in
the default (fixed) profile, where it must not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageFile
from plugin_test_exif import BACKENDS

from cl_compute.plugins.base import NoInputError, ParamError, Plugin, PluginError, TaskContext
from cl_compute.plugins.exif import FIELDS, ExifPlugin
from cl_compute.plugins.hash import HashPlugin, upstream_video_hash
from cl_compute.plugins.hls_streaming import HlsStreamingPlugin
from cl_compute.plugins.media_thumbnail import MediaThumbnailPlugin
from cl_compute.profile import PROFILE_ENV, UPSTREAM_2026_01, UPSTREAM_2026_02

MEDIA = Path(__file__).resolve().parents[4] / "pytest_cl" / "media"
EXIF_JPEG = MEDIA / "images" / "exif_rich.jpg"
EMPTY = MEDIA / "hostile" / "empty.jpg"
TRUNCATED_JPEG = MEDIA / "hostile" / "truncated.jpg"
TEXT_AS_JPEG = MEDIA / "hostile" / "not_an_image.jpg"
BOMB = MEDIA / "hostile" / "bomb_30000x30000.png"
VIDEO_AUDIO = MEDIA / "video" / "testsrc_720p_5s_audio.mp4"
VIDEO_SILENT = MEDIA / "video" / "testsrc_720p_3s_silent.mp4"
STILL = MEDIA / "images" / "synthetic_800x600.png"
ONE_VARIANT = json.dumps([{"resolution": 72, "bitrate": 100}])

needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not on PATH")


@pytest.fixture(params=BACKENDS)
def exif_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each exif test runs with each backend (``CL_COMPUTE_EXIF_BACKEND``)."""
    backend = str(request.param)
    monkeypatch.setenv("CL_COMPUTE_EXIF_BACKEND", backend)
    return backend


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """``upstream(True)`` switches this process to the upstream profile, ``upstream(False)`` back to the default."""

    def _use(on: bool) -> None:
        if on:
            monkeypatch.setenv(PROFILE_ENV, UPSTREAM_2026_01)
        else:
            monkeypatch.delenv(PROFILE_ENV, raising=False)

    return _use


def _json(job) -> dict[str, object]:
    return json.loads(job.out().read_text(encoding="utf-8"))


def _fails(mp_job, plugin: Plugin, source: Path, form: dict[str, str] | None = None) -> str:
    with pytest.raises(PluginError) as info:
        mp_job(plugin, source, form)
    return str(info.value)


# -- exif_typed_null ---------------------------------------------------------------------------------------------
def test_exif_default_tags_leave_typed_fields_null_upstream(mp_job, upstream, exif_backend: str) -> None:
    """Default tags: upstream's typed fields are all null, raw_metadata keeps ``-G -n`` keys; fixed fills them."""
    upstream(True)
    out = mp_job(ExifPlugin(), EXIF_JPEG).task_output
    assert {f: out[f] for f in FIELDS} == dict.fromkeys(FIELDS)
    raw = out["raw_metadata"]
    assert raw["EXIF:Make"] == "Canon"
    assert raw["Composite:GPSLongitude"] == pytest.approx(-122.4194)
    assert "Make" not in raw

    upstream(False)
    fixed = mp_job(ExifPlugin(), EXIF_JPEG).task_output
    assert (fixed["make"], fixed["iso"], fixed["exposure_time"]) == ("Canon", 400, "1/250")
    assert fixed["gps_longitude"] == pytest.approx(-122.4194)
    assert fixed["raw_metadata"]["EXIF:Make"] == "Canon"


def test_exif_requested_tags_give_bare_keys_upstream(mp_job, upstream, exif_backend: str) -> None:
    """With tags upstream runs ``exiftool -n -j -Tag…``: bare keys, typed fields from them, exposure_time null."""
    form = {"tags": "Make,ISO,ExposureTime,GPSLongitude,ImageWidth"}
    upstream(True)
    out = mp_job(ExifPlugin(), EXIF_JPEG, form).task_output
    raw = out["raw_metadata"]
    assert set(raw) == {"SourceFile", "Make", "ISO", "ExposureTime", "GPSLongitude", "ImageWidth"}
    assert raw["GPSLongitude"] == pytest.approx(-122.4194)  # ExifTool shows the signed Composite value
    assert (out["make"], out["iso"], out["image_width"]) == ("Canon", 400, 640)
    assert out["exposure_time"] is None  # a number under -n; upstream's field takes strings only
    assert out["gps_longitude"] == pytest.approx(-122.4194)
    assert out["model"] is None  # not requested

    upstream(False)
    fixed = mp_job(ExifPlugin(), EXIF_JPEG, form).task_output
    assert "EXIF:Make" in fixed["raw_metadata"]
    assert "Make" not in fixed["raw_metadata"]
    assert fixed["exposure_time"] == "1/250"
    assert fixed["model"] == "Canon EOS R5"


# -- exif_hash_accept_empty ----------------------------------------------------------------------------------------
def test_exif_of_an_empty_file_completes_with_nulls_upstream(mp_job, upstream, exif_backend: str) -> None:
    """Zero bytes: upstream completes, every field null and raw_metadata empty; fixed ends error."""
    upstream(True)
    job = mp_job(ExifPlugin(), EMPTY)
    assert job.task_output == {**dict.fromkeys(FIELDS), "raw_metadata": {}}
    assert _json(job) == job.task_output
    upstream(False)
    assert "empty" in _fails(mp_job, ExifPlugin(), EMPTY)


@pytest.mark.parametrize("source", [TRUNCATED_JPEG, TEXT_AS_JPEG], ids=["truncated", "text-named-jpg"])
def test_exif_of_broken_and_mislabelled_files_completes_upstream(
    mp_job, upstream, exif_backend: str, source: Path
) -> None:
    """A truncated JPEG and text named ``.jpg``: upstream reads what it can and completes; fixed ends error."""
    upstream(True)
    out = mp_job(ExifPlugin(), source).task_output
    assert out["make"] is None
    assert isinstance(out["raw_metadata"], dict)
    if source == TEXT_AS_JPEG:
        assert out["raw_metadata"]["File:FileType"] == "TXT"
    upstream(False)
    assert _fails(mp_job, ExifPlugin(), source).startswith("Cannot read metadata")


@pytest.mark.parametrize("algorithm", ["sha512", "md5"])
def test_hash_of_an_empty_file_completes_upstream(mp_job, upstream, algorithm: str) -> None:
    """Zero bytes: upstream gives media_type ``file`` and the hash of no bytes; fixed ends error."""
    upstream(True)
    job = mp_job(HashPlugin(), EMPTY, {"algorithm": algorithm})
    out = _json(job)
    assert job.task_output == {"media_type": "file"}
    assert out["media_type"] == "file"
    assert out["hash_value"] == hashlib.new(algorithm, b"").hexdigest()
    assert out["algorithm"] == ("md5" if algorithm == "md5" else "sha512_generic")
    upstream(False)
    assert "empty" in _fails(mp_job, HashPlugin(), EMPTY, {"algorithm": algorithm})


def test_hash_of_a_truncated_jpeg_is_its_partial_decode_upstream(mp_job, upstream) -> None:
    """A truncated JPEG: upstream hashes what Pillow decodes with LOAD_TRUNCATED_IMAGES; fixed ends error."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(TRUNCATED_JPEG) as img:
            img.seek(0)
            expected = hashlib.sha512(img.tobytes()).hexdigest()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    upstream(True)
    out = _json(mp_job(HashPlugin(), TRUNCATED_JPEG))
    assert (out["algorithm"], out["media_type"], out["hash_value"]) == ("sha512_image", "image", expected)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is previous  # the global is restored
    upstream(False)
    assert "truncated" in _fails(mp_job, HashPlugin(), TRUNCATED_JPEG)


def test_hash_still_refuses_a_decompression_bomb_upstream(mp_job, upstream) -> None:
    """Upstream's Pillow refuses the 30000×30000 PNG too: the bomb ends error in both profiles."""
    upstream(True)
    assert "decompression bomb" in _fails(mp_job, HashPlugin(), BOMB)


# -- thumbnail_mode_fails ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "mode"), [("rgba_transparent.png", "RGBA"), ("palette.gif", "P")], ids=["rgba", "paletted"]
)
def test_thumbnail_of_rgba_and_paletted_images_fails_upstream(mp_job, upstream, name: str, mode: str) -> None:
    """RGBA and P sources: upstream's JPEG save fails "cannot write mode … as JPEG"; fixed flattens them."""
    source = MEDIA / "images" / name
    with Image.open(source) as img:
        assert img.mode == mode
    form = {"width": "200", "height": "200"}
    upstream(True)
    assert _fails(mp_job, MediaThumbnailPlugin(), source, form) == f"cannot write mode {mode} as JPEG"
    upstream(False)
    job = mp_job(MediaThumbnailPlugin(), source, form)
    with Image.open(job.out()) as thumb:
        assert thumb.format == "JPEG"
        assert max(thumb.size) == 200


def test_thumbnail_of_an_rgb_image_still_works_upstream(mp_job, upstream) -> None:
    """The quirk is about modes JPEG cannot store: an RGB source still gives its thumbnail."""
    upstream(True)
    job = mp_job(MediaThumbnailPlugin(), STILL, {"width": "200"})
    with Image.open(job.out()) as thumb:
        assert (thumb.format, thumb.size) == ("JPEG", (200, 150))


# -- thumbnail_video_fails -----------------------------------------------------------------------------------------
def test_thumbnail_of_a_video_fails_on_the_relative_path_upstream(mp_job, upstream) -> None:
    """Videos: upstream looks for ``input/<name>`` from the worker's cwd and fails; fixed makes the grid."""
    upstream(True)
    message = _fails(mp_job, MediaThumbnailPlugin(), VIDEO_SILENT, {"width": "256"})
    assert message == f"Input file not found: input/{VIDEO_SILENT.name}"
    upstream(False)
    job = mp_job(MediaThumbnailPlugin(), VIDEO_SILENT, {"width": "256"})
    assert job.task_output == {"media_type": "video"}
    with Image.open(job.out()) as grid:
        assert grid.width == 256


def test_thumbnail_of_a_video_works_from_the_job_directory_upstream(
    mp_job, upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faithful, not faked: with the job directory as cwd the relative path exists and upstream's call works."""
    upstream(True)
    job = mp_job(MediaThumbnailPlugin(), VIDEO_SILENT, {"width": "256"}, run=False)
    monkeypatch.chdir(job.job_dir)
    plugin = MediaThumbnailPlugin()
    plugin.load()
    assert plugin.run(job.ctx) == {"media_type": "video"}
    assert job.out().stat().st_size > 0


# -- video_hash_csv_defect -----------------------------------------------------------------------------------------
@needs_ffprobe
def test_video_sha512_fails_on_this_ffprobes_csv_upstream(mp_job, upstream) -> None:
    """This machine's ffprobe prints a 4-column first line: upstream's reader ends "CSV data is invalid."."""
    upstream(True)
    assert _fails(mp_job, HashPlugin(), VIDEO_AUDIO) == "CSV data is invalid."
    md5 = _json(mp_job(HashPlugin(), VIDEO_AUDIO, {"algorithm": "md5"}))  # md5 never reads key frames
    assert md5["hash_value"] == hashlib.md5(VIDEO_AUDIO.read_bytes()).hexdigest()
    upstream(False)
    out = _json(mp_job(HashPlugin(), VIDEO_AUDIO))
    assert (out["algorithm"], out["media_type"]) == ("sha512_video", "video")


def _fake_ffprobe(directory: Path, output: str) -> None:
    """An ``ffprobe`` on PATH that drains stdin and prints ``output``."""
    script = directory / "ffprobe"
    script.write_text(f"#!/bin/sh\ncat >/dev/null\nprintf '{output}'\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_upstream_key_frame_reader_hashes_clean_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given three clean columns the reader hashes the I-frame byte ranges; a fourth column or a blank line is
    invalid, exactly as upstream's check."""
    video = tmp_path / "v.mp4"
    video.write_bytes(b"0123456789abcdef")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    _fake_ffprobe(tmp_path, "0,4,I\\n4,4,P\\n8,4,I\\n")
    assert upstream_video_hash(video, 10) == hashlib.sha512(b"0123" + b"89ab").hexdigest()
    for bad in ("0,4,I,\\n4,4,P\\n", "0,4,I\\n\\n4,4,P\\n", "0,40,I\\n"):
        _fake_ffprobe(tmp_path, bad)
        with pytest.raises(PluginError, match=r"^CSV data is invalid\.$"):
            upstream_video_hash(video, 10)
    _fake_ffprobe(tmp_path, "")
    with pytest.raises(PluginError, match="No data returned from ffprobe"):
        upstream_video_hash(video, 10)


# -- hls_master_absolute, hls_accepts_stills -------------------------------------------------------------------------
def test_hls_master_playlist_is_an_absolute_path_upstream(mp_job, upstream) -> None:
    """Upstream reports the master playlist's absolute server path; the files stay under ``output/``."""
    upstream(True)
    job = mp_job(HlsStreamingPlugin(), VIDEO_SILENT, {"variants": ONE_VARIANT})
    master = job.task_output["master_playlist"]
    assert master == str(job.job_dir / "output" / "adaptive.m3u8")
    assert Path(master).is_absolute()
    assert Path(master).is_file()
    upstream(False)
    fixed = mp_job(HlsStreamingPlugin(), VIDEO_SILENT, {"variants": ONE_VARIANT})
    assert fixed.task_output["master_playlist"] == "output/adaptive.m3u8"


def test_hls_takes_a_still_image_as_a_one_frame_video_upstream(mp_job, upstream) -> None:
    """A PNG: upstream encodes it as a one-frame stream with playlists; fixed refuses it as a still image."""
    upstream(True)
    job = mp_job(HlsStreamingPlugin(), STILL, {"variants": ONE_VARIANT})
    out = job.task_output
    assert (out["variants_generated"], out["total_segments"]) == (1, 1)
    assert (job.job_dir / "output" / "adaptive-72p-100.m3u8").is_file()
    assert (job.job_dir / "output" / "adaptive-72p-100-000.ts").stat().st_size > 0
    upstream(False)
    assert "still image" in _fails(mp_job, HlsStreamingPlugin(), STILL, {"variants": ONE_VARIANT})


# -- hls_manifest_progress, hls_server_paths (upstream-2026-02) ------------------------------------------------------
def test_hls_reports_only_the_manifest_progress_february(mp_job, monkeypatch: pytest.MonkeyPatch) -> None:
    """February reports 1 once the master playlist exists and nothing from ffmpeg; fixed reports ffmpeg's progress."""
    monkeypatch.setenv(PROFILE_ENV, UPSTREAM_2026_02)
    job = mp_job(HlsStreamingPlugin(), VIDEO_SILENT, {"variants": ONE_VARIANT})
    assert job.progress == [1, 100]
    monkeypatch.delenv(PROFILE_ENV)
    fixed = mp_job(HlsStreamingPlugin(), VIDEO_SILENT, {"variants": ONE_VARIANT})
    assert 1 not in fixed.progress
    assert fixed.progress[0] == 2 and fixed.progress[-1] == 100, fixed.progress


def _server_path_job(tmp_path: Path, form: dict[str, str]) -> TaskContext:
    """A job created without a file, as the API stores it (input_path "")."""
    params = {**HlsStreamingPlugin().parse_params(form, ""), "input_path": ""}
    job_dir = tmp_path / "data" / "jobs" / "j1"
    for sub in ("input", "output", "faces"):
        (job_dir / sub).mkdir(parents=True, exist_ok=True)
    return TaskContext(job_id="j1", job_dir=job_dir, input_path=job_dir, params=params)


def test_hls_server_paths_february(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """February reads and writes the named server paths; the output folder is made even when the job fails."""
    monkeypatch.setenv(PROFILE_ENV, UPSTREAM_2026_02)
    plugin = HlsStreamingPlugin()
    plugin.load()
    out = tmp_path / "srv" / "fresh"
    ctx = _server_path_job(tmp_path, {"input_absolute_path": "/etc/hostname", "output_absolute_path": str(out)})
    with pytest.raises(PluginError, match="does not contain a video stream"):
        plugin.run(ctx)
    assert out.is_dir()
    missing = tmp_path / "missing.mp4"
    with pytest.raises(PluginError) as info:
        plugin.run(_server_path_job(tmp_path, {"input_absolute_path": str(missing)}))
    assert str(info.value) == f"Input file not found: {missing}"
    served = tmp_path / "served"
    ctx = _server_path_job(
        tmp_path,
        {"input_absolute_path": str(VIDEO_SILENT), "output_absolute_path": str(served), "variants": ONE_VARIANT},
    )
    out_put = plugin.run(ctx)
    assert out_put["master_playlist"] == str(served / "adaptive.m3u8")
    assert sorted(p.name for p in served.glob("*.m3u8")) == ["adaptive-72p-100.m3u8", "adaptive.m3u8"]
    assert list((ctx.job_dir / "output").iterdir()) == []
    # without an output path: upstream's relative "output", under the data directory's worker folder
    ctx = _server_path_job(tmp_path, {"input_absolute_path": str(VIDEO_SILENT), "variants": ONE_VARIANT})
    assert ctx.params["output_absolute_path"] == "output"
    plugin.run(ctx)
    assert (tmp_path / "data" / "worker_cwd" / "output" / "adaptive.m3u8").is_file()


@pytest.mark.parametrize("field", ["input_absolute_path", "output_absolute_path"])
def test_hls_server_path_fields_refused_fixed(field: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the switch either field is a ParamError naming it, with or without a file."""
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    for upload in ("v.mp4", ""):
        with pytest.raises(ParamError) as info:
            HlsStreamingPlugin().parse_params({field: str(tmp_path / "x")}, upload)
        assert info.value.field == field
        assert "not accepted" in info.value.message
    assert not HlsStreamingPlugin().file_optional()
    monkeypatch.setenv(PROFILE_ENV, UPSTREAM_2026_02)
    assert HlsStreamingPlugin().file_optional()
    with pytest.raises(NoInputError, match="Either file or input_absolute_path must be provided"):
        HlsStreamingPlugin().parse_params({}, "")
