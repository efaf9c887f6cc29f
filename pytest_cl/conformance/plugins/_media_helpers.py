"""Helpers of the media plugin suites (hash, exif, image_conversion, media_thumbnail, hls_streaming).

Everything here is computed independently of the code under test: hashes with hashlib, pixels with Pillow,
HLS with the ``m3u8`` parser. Submissions go through ``ComputeClient.submit`` (the generic path: fields are
sent as given) so that the suites see what the *server* does with them.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from cl_client import ComputeClient, JobResponse
from pytest_cl.conformance._checks import expect_one_completion


@dataclass
class Callbacks:
    """``on_progress`` / ``on_complete`` recorders (the "MQTT callback" half of each suite)."""

    progress: list[JobResponse] = field(default_factory=list[JobResponse])
    complete: list[JobResponse] = field(default_factory=list[JobResponse])
    done: threading.Event = field(default_factory=threading.Event)

    def on_progress(self, job: JobResponse) -> None:
        self.progress.append(job)

    def on_complete(self, job: JobResponse) -> None:
        self.complete.append(job)
        self.done.set()


def run_job(
    client: ComputeClient,
    task_type: str,
    path: Path,
    params: Mapping[str, object] | None = None,
    *,
    timeout: float | None = None,
) -> JobResponse:
    """Submit with callbacks, wait for the end, and check that ``on_complete`` fired once with that end.

    The wait is bounded by ``timeout`` or else the client's job timeout (``--cl-job-timeout``, which ends before
    the test's own timeout): a job that never ends fails the test instead of hanging the run. Returns the final
    record (completed or error: the caller decides which it expects).
    """
    calls = Callbacks()
    job = client.submit(
        task_type, path, dict(params or {}), on_progress=calls.on_progress, on_complete=calls.on_complete
    )
    final = job.wait(timeout)
    assert calls.done.wait(10), f"{task_type} job {final.job_id}: on_complete never fired (status {final.status})"
    expect_one_completion(task_type, job.job_id, final, calls.complete)
    progress = [p.progress for p in calls.progress]
    assert progress == sorted(progress), f"{task_type} job {final.job_id}: progress went backwards: {progress}"
    return final


def completed(
    client: ComputeClient,
    task_type: str,
    path: Path,
    params: Mapping[str, object] | None = None,
    *,
    timeout: float | None = None,
) -> JobResponse:
    """``run_job`` that must end ``completed`` (the server's error message is shown otherwise)."""
    final = run_job(client, task_type, path, params, timeout=timeout)
    assert final.status == "completed", (
        f"{task_type} job {final.job_id} on {path.name} ended {final.status!r} ({final.error_message}),"
        " expected 'completed'"
    )
    assert final.progress == 100, (
        f"{task_type} job {final.job_id} completed with progress {final.progress}, expected 100"
    )
    return final


def failed(
    client: ComputeClient,
    task_type: str,
    path: Path,
    params: Mapping[str, object] | None = None,
    *,
    timeout: float | None = None,
) -> JobResponse:
    """``run_job`` that must end ``error`` with a non-empty message (no hang: the wait is bounded)."""
    final = run_job(client, task_type, path, params, timeout=timeout)
    assert final.is_failed, (
        f"{task_type} job {final.job_id} on {path.name} should end 'error', ended {final.status!r}"
        f" (task_output {final.task_output})"
    )
    assert isinstance(final.error_message, str) and final.error_message.strip(), (
        f"{task_type} job {final.job_id} on {path.name} ended {final.status!r} without an error_message"
        f" (got {final.error_message!r})"
    )
    return final


def read_file(client: ComputeClient, job: JobResponse, file_path: str) -> bytes:
    """Download one job file (relative to the job directory) and return its bytes."""
    return client.read_job_file(job.job_id, file_path)


def read_json(client: ComputeClient, job: JobResponse, file_path: str) -> dict[str, object]:
    """Download a JSON job file; it must hold an object."""
    raw = read_file(client, job, file_path)
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise AssertionError(
            f"{job.task_type} job {job.job_id}: {file_path} is not JSON ({exc}): {raw[:200]!r}"
        ) from None
    assert isinstance(data, dict), f"{job.task_type} job {job.job_id}: {file_path} is not a JSON object: {data!r:.200}"
    return data


def output_path(job: JobResponse) -> str:
    """``params.output_path`` (the protocol's only way to find the output file)."""
    value = job.params.get("output_path")
    assert isinstance(value, str) and value, f"job {job.job_id} has no params.output_path: {job.params}"
    return value


def decode(data: bytes) -> Image.Image:
    """Open image bytes with Pillow and decode them fully (a broken file fails here)."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def pixel_bytes(path: Path) -> bytes:
    """The decoded pixel buffer of the first frame in the file's own mode (upstream's image hash input)."""
    with Image.open(path) as img:
        img.seek(0)
        return img.tobytes()


# -- the common wrong answers of the media plugins (named in failure lines; see _checks.expect_value) --------------
def _digest(name: str, *chunks: bytes) -> str:
    digest = hashlib.new(name)
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _packets(path: Path, *, video_only: bool, keyframes_only: bool, first_only: bool = False) -> list[bytes]:
    """The packet bytes of a media file in file order (of the first video stream, or of every stream)."""
    import av

    out: list[bytes] = []
    with av.open(str(path)) as container:
        streams = [container.streams.video[0]] if video_only else list(container.streams)
        for packet in container.demux(*streams):
            if packet.size and (packet.is_keyframe or not keyframes_only):
                out.append(bytes(packet))
                if first_only:
                    break
    return out


def _decoded_frames(path: Path, *, keyframes_only: bool, first_only: bool) -> list[bytes]:
    """RGB pixel buffers of the decoded video frames."""
    import av

    out: list[bytes] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        for frame in container.decode(stream):
            out.append(frame.to_ndarray(format="rgb24").tobytes())
            if first_only:
                break
    return out


def byte_digest_answers(path: Path, expected: str) -> dict[str, object]:
    """Wrong answers of a digest of a file's bytes (``expected`` is the right hex digest): other algorithms, the
    decoded pixels, upper-case hex."""
    answers: dict[str, object] = {
        "the right digest in upper-case hex": expected.upper(),
        "the MD5 of the file's bytes": lambda: _digest("md5", path.read_bytes()),
        "the SHA-512 of the file's bytes": lambda: _digest("sha512", path.read_bytes()),
        "the SHA-256 of the file's bytes": lambda: _digest("sha256", path.read_bytes()),
        "the SHA-1 of the file's bytes": lambda: _digest("sha1", path.read_bytes()),
        "the MD5 of the decoded pixels": lambda: _digest("md5", pixel_bytes(path)),
        "the SHA-512 of the decoded pixels": lambda: _digest("sha512", pixel_bytes(path)),
        "the digest of the file's name, not its bytes": lambda: _digest("md5", path.name.encode()),
    }
    return {name: value for name, value in answers.items() if value != expected}


def image_hash_answers(path: Path, expected: str) -> dict[str, object]:
    """Wrong answers of ``sha512_image`` (the SHA-512 of the first frame's pixels in the file's own mode)."""

    def converted(mode: str) -> str:
        with Image.open(path) as img:
            img.seek(0)
            if img.mode == mode:
                raise ValueError("same mode")  # not a different answer
            return _digest("sha512", img.convert(mode).tobytes())

    def every_frame() -> str:
        with Image.open(path) as img:
            frames = getattr(img, "n_frames", 1)
            if frames < 2:
                raise ValueError("one frame")  # the same as the right answer
            chunks = []
            for index in range(frames):
                img.seek(index)
                chunks.append(img.tobytes())
            return _digest("sha512", *chunks)

    answers: dict[str, object] = {
        "the right digest in upper-case hex": expected.upper(),
        "the SHA-512 of the file's bytes, not of its decoded pixels": lambda: _digest("sha512", path.read_bytes()),
        "the MD5 of the file's bytes": lambda: _digest("md5", path.read_bytes()),
        "the MD5 of the decoded pixels": lambda: _digest("md5", pixel_bytes(path)),
        "the SHA-256 of the decoded pixels": lambda: _digest("sha256", pixel_bytes(path)),
        "the SHA-512 of the pixels converted to RGB (not in the file's own mode)": lambda: converted("RGB"),
        "the SHA-512 of the pixels converted to RGBA (not in the file's own mode)": lambda: converted("RGBA"),
        "the SHA-512 of every frame's pixels (not only the first frame)": every_frame,
    }
    return {name: value for name, value in answers.items() if value != expected}


def video_hash_answers(path: Path, expected: str) -> dict[str, object]:
    """Wrong answers of ``sha512_video`` (the SHA-512 over the key-frame packets of the first video stream, in
    file order): other frames, other streams, the file's bytes, decoded pixels, other algorithms."""

    def keyframes() -> list[bytes]:
        return _packets(path, video_only=True, keyframes_only=True)

    answers: dict[str, object] = {
        "the right digest in upper-case hex": expected.upper(),
        "the SHA-512 of every video packet (all frames, not only the key frames)": lambda: _digest(
            "sha512", *_packets(path, video_only=True, keyframes_only=False)
        ),
        "the SHA-512 of every packet of every stream (audio too)": lambda: _digest(
            "sha512", *_packets(path, video_only=False, keyframes_only=False)
        ),
        "the SHA-512 of the key-frame packets of every stream (audio packets too)": lambda: _digest(
            "sha512", *_packets(path, video_only=False, keyframes_only=True)
        ),
        "the SHA-512 of the first key frame's packet only": lambda: _digest(
            "sha512", *_packets(path, video_only=True, keyframes_only=True, first_only=True)
        ),
        "the SHA-512 of the file's bytes": lambda: _digest("sha512", path.read_bytes()),
        "the MD5 of the file's bytes": lambda: _digest("md5", path.read_bytes()),
        "the MD5 of the key-frame packets": lambda: _digest("md5", *keyframes()),
        "the SHA-256 of the key-frame packets": lambda: _digest("sha256", *keyframes()),
        "the SHA-512 of the decoded first frame's pixels (RGB)": lambda: _digest(
            "sha512", *_decoded_frames(path, keyframes_only=False, first_only=True)
        ),
        "the SHA-512 of the decoded key frames' pixels (RGB)": lambda: _digest(
            "sha512", *_decoded_frames(path, keyframes_only=True, first_only=False)
        ),
        "the SHA-512 of the key-frame packets in reverse order": lambda: _digest("sha512", *reversed(keyframes())),
    }
    return {name: value for name, value in answers.items() if value != expected}


#: Leading bytes -> the format a file is, for "format=webp but the bytes are a PNG" (longest signatures first).
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"BM", "BMP"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"%PDF", "PDF"),
)


def sniff_format(data: bytes) -> str:
    """The image format ``data`` really is, by its leading bytes: ``"PNG"``, ``"JPEG"``, ``"WebP"``, ``"GIF"``,
    ``"TIFF"``, ``"BMP"``, ``"HEIF/AVIF"``, …, or ``"unknown (starts with b'…')"``."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:8] == b"ftyp":
        return "HEIF/AVIF" if data[8:12] in (b"heic", b"heix", b"mif1", b"avif", b"msf1") else "MP4/QuickTime"
    for offset, magic, name in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    if not data:
        return "empty (0 bytes)"
    return f"unknown (starts with {data[:12]!r})"


def format_defect(data: bytes, fmt: str) -> str | None:
    """None when ``data`` starts like a ``fmt`` file, else ``"format=<fmt> but the bytes are a <real> file"``."""
    from pytest_cl.conformance._checks import has_magic

    ext = {"jpeg": "jpg"}.get(fmt, fmt)
    if has_magic(data, ext):
        return None
    return f"format={fmt} but the bytes are a {sniff_format(data)} file (they start with {data[:12]!r})"


def quality_defect(sizes: Mapping[int, int]) -> str | None:
    """``quality`` -> output size in bytes: None when the size grows with quality, else what the sizes show."""
    ordered = [sizes[q] for q in sorted(sizes)]
    table = ", ".join(f"quality {q} → {sizes[q]} bytes" for q in sorted(sizes))
    if all(a < b for a, b in itertools.pairwise(ordered)):
        return None
    if max(ordered) - min(ordered) <= 0.01 * max(ordered):
        return f"quality is ignored: every quality gives the same file size ({table})"
    if all(a > b for a, b in itertools.pairwise(ordered)):
        return f"quality is inverted: a higher quality gives a smaller file ({table})"
    return f"file sizes do not grow with quality ({table})"


def fit_size(source: tuple[int, int], width: int | None, height: int | None, *, cap: bool = True) -> tuple[int, int]:
    """The thumbnail size the protocol asks for with the aspect ratio kept (``cap``: never larger than the source)."""
    w0, h0 = source
    scales = [s for s in (None if width is None else width / w0, None if height is None else height / h0) if s]
    scale = min(scales) if scales else 1.0
    if cap:
        scale = min(scale, 1.0)
    return max(1, round(w0 * scale)), max(1, round(h0 * scale))


def thumbnail_size_answers(
    source: tuple[int, int], width: int | None, height: int | None, keep: bool, expected: tuple[int, int]
) -> dict[str, object]:
    """Wrong thumbnail sizes by name: upscaled, the box exactly (aspect ratio ignored), width and height swapped, the
    source's size, the one given side used for both."""
    w0, h0 = source
    uncapped = fit_size(source, width, height, cap=False)
    answers: dict[str, object] = {
        f"upscaled beyond the {w0}×{h0} source": uncapped
        if keep and uncapped != fit_size(source, width, height)
        else None,
        "width and height swapped": (expected[1], expected[0]),
        f"the aspect ratio ignored (the {width}×{height} box exactly)": (width, height),
        f"not resized (the {w0}×{h0} source's own size)": source,
        "the aspect ratio of the source ignored (the one given side used for both)": (width or height, width or height),
    }
    if not keep:
        answers[f"the aspect ratio kept although maintain_aspect_ratio=false ({width}×{height} box)"] = fit_size(
            source, width, height
        )
    return {name: value for name, value in answers.items() if value is not None and value != expected}


def grid_defect(cells: Sequence[NDArray[np.float64]], frames: Sequence[NDArray[np.float64]]) -> str | None:
    """A video thumbnail's 16 grid cells (reading order) against the video's key frames (each resized to a cell):
    None when cell i shows key frame i and the rest are black, else what the grid shows instead — one frame repeated,
    the key frames out of order, a cell of the wrong frame, a non-black empty cell."""

    def diff(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
        return float(np.abs(a - b).mean())

    count = len(frames)
    repeated = [i for i in range(1, len(cells)) if diff(cells[i], cells[0]) < 8]
    if len(repeated) == len(cells) - 1 and cells[0].mean() >= 10:
        what = "its first key frame" if count and diff(cells[0], frames[0]) < 25 else "the same picture"
        return (
            f"one frame repeated: all {len(cells)} cells show {what}, not a grid of the video's {count} key frames"
            " (then black cells)"
        )
    for index, cell in enumerate(cells[:count]):
        own = diff(cell, frames[index])
        if own < 25:
            continue
        best = min(range(count), key=lambda j: diff(cell, frames[j]))
        if diff(cell, frames[best]) < 25:
            if best == 0 and index > 0:
                return f"one frame repeated: cell {index} shows key frame 0 again, not key frame {index}"
            return f"the key frames out of order: cell {index} shows key frame {best}, not key frame {index}"
        return f"grid cell {index} is not key frame {index} (mean difference {own:.1f}, allowed < 25)"
    for index, cell in enumerate(cells[count:], start=count):
        if cell.mean() >= 10:
            if count and diff(cell, frames[0]) < 25:
                return (
                    f"one frame repeated: the empty cell {index} shows key frame 0 (the video has {count} key frames)"
                )
            return (
                f"grid cell {index} should be empty (black), the video has only {count} key frames"
                f" (mean brightness {cell.mean():.1f})"
            )
    return None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b))


#: typed GPS field -> the ExifTool Ref tag that gives its sign
GPS_REFS = {"gps_latitude": "GPSLatitudeRef", "gps_longitude": "GPSLongitudeRef", "gps_altitude": "GPSAltitudeRef"}


def exif_typed_defect(
    expected: Mapping[str, object], got: Mapping[str, object], same: Callable[[object, object], bool]
) -> str | None:
    """None when every typed exif field of ``expected`` is ``same`` in ``got``; else the differences, led by the
    defects they show: a GPS sign lost (its Ref tag ignored), latitude and longitude swapped, a number sent as a
    string, a string (the exposure ``"1/250"``) sent as a number, degrees-minutes-seconds text, a missing value."""
    wrong = {k: (v, got.get(k)) for k, v in expected.items() if not same(got.get(k), v)}
    if not wrong:
        return None
    notes: list[str] = []
    lat, lon = _number(expected.get("gps_latitude")), _number(expected.get("gps_longitude"))
    got_lat, got_lon = _number(got.get("gps_latitude")), _number(got.get("gps_longitude"))
    if _close(got_lat, lon) and _close(got_lon, lat) and not _close(lat, lon):
        notes.append("gps_latitude and gps_longitude swapped")
    for key, (want, seen) in wrong.items():
        want_n, seen_n = _number(want), _number(seen)
        if key in GPS_REFS and want_n is not None and want_n != 0 and _close(seen_n, -want_n):
            notes.append(f"{key}: the sign lost ({GPS_REFS[key]} ignored), {seen!r} instead of {want!r}")
        elif seen is None:
            notes.append(f"{key}: missing (null)")
        elif want_n is not None and isinstance(seen, str):
            notes.append(
                f"{key}: a string {seen!r}, not a number" + (" (degrees, minutes, seconds)" if "deg" in seen else "")
            )
        elif isinstance(want, str) and seen_n is not None:
            notes.append(f"{key}: the number {seen!r}, not the string {want!r}")
    said = "; ".join(notes)
    return (f"{said}; " if said else "") + f"typed fields differ (expected, got): {wrong}"


# -- hls_streaming ----------------------------------------------------------------------------------------------
def duration_defect(durations: Sequence[float], duration: float, segment_seconds: float) -> str | None:
    """None when the segments' durations add up to the source's ``duration`` (± 0.25 s); else by how much they are
    off, named when it is a common wrong answer: half or twice the source, one segment only, a segment lost."""
    total = sum(durations)
    if abs(total - duration) <= 0.25:
        return None
    said = f"the segments last {total:.2f} s in all, the source {duration} s (allowed ± 0.25)"
    if len(durations) == 1 and duration > segment_seconds + 0.25:
        return f"{said}: only one segment is listed"
    if abs(total - duration / 2) <= 0.25:
        return f"{said}: half the source's duration"
    if abs(total - 2 * duration) <= 0.5:
        return f"{said}: twice the source's duration (segments listed twice?)"
    if total < duration and abs(total + segment_seconds - duration) <= segment_seconds:
        return f"{said}: a segment is missing (the stream ends {duration - total:.2f} s early)"
    return f"{said}: {'shorter' if total < duration else 'longer'} than the source"


def variants_defect(listed: Sequence[tuple[int, str]], requested: Sequence[Mapping[str, int]]) -> str | None:
    """``listed``: (height, uri) of each variant of the master playlist. None when the requested heights are listed
    exactly once each; else which requested variants are missing and which listed ones nobody asked for."""
    heights = [h for h, _ in listed]
    wanted = [v["resolution"] for v in requested]
    if sorted(heights) == sorted(wanted):
        return None
    missing = [f"{v['resolution']}p@{v['bitrate']}k" for v in requested if v["resolution"] not in heights]
    extra = [f"{h}p ({uri})" for h, uri in listed if h not in wanted]
    parts = [f"lists {len(listed)} variants {[u for _, u in listed]}, {len(requested)} were requested"]
    if missing:
        parts.append(f"requested variant(s) missing: {', '.join(missing)}")
    if extra:
        parts.append(f"variant(s) nobody requested: {', '.join(extra)}")
    if not missing and not extra:
        parts.append(f"a height is listed twice: {sorted(heights)}")
    return "; ".join(parts)
