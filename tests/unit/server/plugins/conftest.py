"""Shared fixtures of the plugin unit tests.

Fixtures of the media plugins (hash, exif, image_conversion, media_thumbnail, hls_streaming) are prefixed
``mp_``; other plugin tests add their own fixtures with distinct names.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cl_compute.plugins._media import find_ffmpeg
from cl_compute.plugins.base import Plugin, TaskContext


@dataclass
class MpJob:
    """One job run directly through a plugin (no server)."""

    job_dir: Path
    params: dict[str, object]
    ctx: TaskContext
    progress: list[int] = field(default_factory=list)
    task_output: dict[str, object] | None = None

    def out(self) -> Path:
        """Absolute path of ``params['output_path']``."""
        return self.job_dir / str(self.params["output_path"])


MpRunner = Callable[..., MpJob]


@pytest.fixture
def mp_job(tmp_path: Path) -> MpRunner:
    """Factory: ``mp_job(plugin, source, form=None, upload_name=None, run=True)`` → :class:`MpJob`.

    ``source`` is a file path or raw bytes. parse_params runs first (its ParamError propagates), then
    load() and run() on a fresh job directory when ``run`` is true.
    """
    counter = iter(range(1_000_000))

    def _make(
        plugin: Plugin,
        source: Path | bytes,
        form: Mapping[str, str] | None = None,
        upload_name: str | None = None,
        run: bool = True,
        time_limit: float = 120.0,
    ) -> MpJob:
        name = upload_name or (source.name if isinstance(source, Path) else "upload.bin")
        params = plugin.parse_params(dict(form or {}), name)
        job_dir = tmp_path / f"job{next(counter)}"
        for sub in ("input", "output", "faces"):
            (job_dir / sub).mkdir(parents=True)
        input_path = job_dir / "input" / name
        input_path.write_bytes(source.read_bytes() if isinstance(source, Path) else source)
        params = {**params, "input_path": f"input/{name}"}
        progress: list[int] = []
        ctx = TaskContext(
            job_id="00000000-0000-4000-8000-000000000000",
            job_dir=job_dir,
            input_path=input_path,
            params=params,
            progress=progress.append,
            time_limit=time_limit,
        )
        job = MpJob(job_dir=job_dir, params=params, ctx=ctx, progress=progress)
        if run:
            plugin.load()
            job.task_output = plugin.run(ctx)
        return job

    return _make


def _ffmpeg() -> str:
    exe = find_ffmpeg()
    if exe is None:
        pytest.skip("no ffmpeg available to generate test videos")
    return exe


def _lavfi(out: Path, args: list[str]) -> Path:
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args, str(out)]
    subprocess.run(cmd, check=True, timeout=60)
    return out


@pytest.fixture(scope="session")
def mp_media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session directory for generated media."""
    return tmp_path_factory.mktemp("mp_media")


@pytest.fixture(scope="session")
def mp_video_av(mp_media_dir: Path) -> Path:
    """2 s 160x120 25 fps H.264 + AAC MP4, a key frame every 0.4 s (5 key frames)."""
    return _lavfi(
        mp_media_dir / "av.mp4",
        [
            "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=2",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "64k", "-shortest", "-movflags", "+faststart",
        ],
    )  # fmt: skip


@pytest.fixture(scope="session")
def mp_video_silent(mp_media_dir: Path) -> Path:
    """2 s 192x108 30 fps H.264 MP4 without an audio stream (odd aspect, many key frames)."""
    return _lavfi(
        mp_media_dir / "silent.mp4",
        [
            "-f", "lavfi", "-i", "testsrc=size=192x108:rate=30:duration=2",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "6", "-pix_fmt", "yuv420p",
        ],
    )  # fmt: skip


@pytest.fixture(scope="session")
def mp_audio_only(mp_media_dir: Path) -> Path:
    """1 s AAC audio in an MP4 container (no video stream)."""
    return _lavfi(
        mp_media_dir / "audio.mp4",
        ["-f", "lavfi", "-i", "sine=frequency=330:duration=1", "-c:a", "aac", "-b:a", "64k"],
    )


@pytest.fixture(scope="session")
def mp_video_webm(mp_media_dir: Path) -> Path:
    """1 s 128x96 VP8 WebM (a second codec/container)."""
    return _lavfi(
        mp_media_dir / "clip.webm",
        [
            "-f", "lavfi", "-i", "testsrc=size=128x96:rate=10:duration=1",
            "-c:v", "libvpx", "-b:v", "200k", "-g", "5",
        ],
    )  # fmt: skip
