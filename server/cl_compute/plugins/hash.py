"""``hash``: MD5 of the bytes, or SHA-512 of image pixels / video key-frame packets / raw bytes.

Upstream behaviour (cl_ml_tools ``hash`` task), kept here:

* ``md5`` → MD5 hex of the uploaded bytes, whatever the media type (``"md5"``).
* ``sha512`` on an image → SHA-512 hex of Pillow's ``tobytes()`` of the first frame in the image's own mode
  (no mode conversion), ``"sha512_image"``.
* ``sha512`` on a video → SHA-512 over the key-frame packet bytes of the first video stream, in file order
  (``"sha512_video"``). Upstream reads them at the offsets ffprobe reports; PyAV's demuxer hands out the same
  bytes, so no ffprobe is needed.
* otherwise → SHA-512 hex of the raw bytes (``"sha512_generic"``).

The media type comes from libmagic (python-magic) with a signature sniffer as fallback. Differences from
upstream (documented fixes): an empty file is an error; a "video" container without a video stream is
reported as ``audio`` (or ``file``) and hashed as raw bytes; an image format Pillow cannot decode (e.g. SVG)
falls back to the raw-byte hash with media type ``image`` instead of failing. Files are streamed in chunks.

Profile ``upstream-2026-01`` (:mod:`cl_compute.profile`): ``exif_hash_accept_empty`` hashes an empty file
(``file``, SHA-512/MD5 of no bytes) and a truncated image as far as Pillow decodes it; ``video_hash_csv_defect``
reads video key frames as upstream does (:func:`upstream_video_hash`), which fails on ffprobe 5.1's output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar, cast

from cl_compute.plugins import _media
from cl_compute.plugins.base import BackendUnavailable, ParamError, Plugin, PluginError, TaskContext
from cl_compute.profile import quirks

ALGORITHMS = ("sha512", "md5")
OUTPUT_PATH = "output/hash.json"
#: upstream's ffprobe time limit for the key-frame listing (seconds)
FFPROBE_TIMEOUT = 30.0
#: upstream's key-frame listing: the video bytes on stdin, one ``pkt_pos,pkt_size,pict_type`` line per frame
UPSTREAM_FFPROBE = (
    "ffprobe", "-v", "error", "-select_streams", "v:0",
    "-show_entries", "frame=pkt_pos,pkt_size,pict_type", "-of", "csv=p=0", "-",
)  # fmt: skip


def _hash_file(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as fh:
        while chunk := fh.read(_media.CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_image(path: Path, allow_truncated: bool) -> str:
    with _media.open_image(path, allow_truncated=allow_truncated) as img:
        return hashlib.sha512(img.tobytes()).hexdigest()


def _upstream_rows_valid(rows: list[list[str]], size: int) -> bool:
    """Upstream's check of the ffprobe CSV: every line exactly ``offset,size,type`` inside the file."""
    for row in rows:
        if len(row) != 3:
            return False
        try:
            offset, length = int(row[0]), int(row[1])
        except ValueError:
            return False
        if len(row[2]) != 1 or offset < 0 or length <= 0 or offset + length > size:
            return False
    return True


def upstream_video_hash(path: Path, timeout: float) -> str:
    """SHA-512 over the I-frame packets as upstream reads them: :data:`UPSTREAM_FFPROBE` on the bytes.

    Only lines of exactly three columns are accepted; ffprobe 5.1 prints a fourth, empty column (and a blank
    line) for frames with side data, such as the first frame of an ordinary x264 video, which ends the job
    "CSV data is invalid." (PROTOCOL.md §8). Needs ``ffprobe`` on PATH, as upstream does.

    Raises:
        PluginError: with upstream's messages (ffprobe missing, failing or silent; the CSV check).
    """
    data = path.read_bytes()
    try:
        proc = subprocess.run(list(UPSTREAM_FFPROBE), input=data, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise PluginError("ffprobe command timed out.") from exc
    except OSError as exc:
        raise PluginError(f"An error occurred while running ffprobe: {exc}") from exc
    if proc.returncode != 0:
        raise PluginError(f"ffprobe error: {proc.stderr.decode(errors='ignore')}")
    text = proc.stdout.decode("utf-8", errors="ignore")
    if not text.strip():
        raise PluginError("No data returned from ffprobe.")
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise PluginError(f"Error parsing CSV data: {exc}") from exc
    if not _upstream_rows_valid(rows, len(data)):
        raise PluginError("CSV data is invalid.")
    digest = hashlib.sha512()
    for offset, length, kind in rows:
        if kind == "I":
            digest.update(data[int(offset) : int(offset) + int(length)])
    return digest.hexdigest()


def _hash_video(path: Path) -> str | None:
    """SHA-512 over the key-frame packets of the first video stream; None if there is no video stream."""
    import av
    from av.error import FFmpegError

    digest = hashlib.sha512()
    found = 0
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            every_packet = quirks().fault_hash_video_all_frames  # a planted defect (faults profile family)
            for packet in container.demux(stream):
                if packet.size and (packet.is_keyframe or every_packet):
                    digest.update(bytes(packet))
                    found += 1
    except FFmpegError as exc:
        raise PluginError(f"Cannot read the video (corrupt or unsupported): {exc}") from exc
    if not found:
        raise PluginError("The video has no key frames to hash (corrupt or empty video stream)")
    return digest.hexdigest()


class HashPlugin(Plugin):
    """MD5 / SHA-512 hashing with libmagic media-type detection (see the module docstring)."""

    task_type: ClassVar[str] = "hash"
    details: ClassVar[Mapping[str, str]] = {"backend": "hashlib + Pillow + PyAV + libmagic"}
    form_fields: ClassVar[Mapping[str, Mapping[str, object]]] = {
        "algorithm": {
            "type": "string",
            "enum": list(ALGORITHMS),
            "default": "sha512",
            "description": (
                "`md5`: MD5 of the uploaded bytes. `sha512`: SHA-512 of an image's decoded pixels, of a video's "
                "key-frame packets, otherwise of the bytes."
            ),
        }
    }

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        """Validate ``algorithm`` (sha512|md5, default sha512)."""
        value = _media.form_value(form, "algorithm")
        algorithm = "sha512" if value is None else value
        if algorithm not in ALGORITHMS:
            raise ParamError("algorithm", "Input should be 'sha512' or 'md5'", "literal_error")
        return {"algorithm": algorithm, "output_path": OUTPUT_PATH}

    def load(self) -> None:
        """Import Pillow and PyAV; record their versions."""
        try:
            import av  # noqa: F401  # pyright: ignore[reportUnusedImport]
            import PIL  # noqa: F401  # pyright: ignore[reportUnusedImport]
        except ImportError as exc:  # pragma: no cover - both are server dependencies
            raise BackendUnavailable(f"hash needs Pillow and PyAV: {exc}") from exc
        magic_version = "unavailable (signature sniffer)"
        try:
            import magic

            if hasattr(magic, "version"):
                version = cast("Callable[[], int]", magic.version)  # the stub leaves it untyped
                magic_version = f"libmagic {version()}"
            else:
                magic_version = "python-magic"
        except Exception:
            pass
        type(self).details = {
            "backend": "hashlib",
            "pillow": _media.pillow_version(),
            "av": _media.av_version(),
            "heif": _media.heif_support(),
            "media_type": magic_version,
        }

    def run(self, ctx: TaskContext) -> dict[str, object]:
        """Hash the input and write ``output/hash.json``."""
        path = ctx.input_path
        lenient = _media.accepts_broken_input()
        _media.require_input(path, allow_empty=lenient)
        algorithm = str(ctx.params.get("algorithm", "sha512"))
        if algorithm not in ALGORITHMS:
            raise PluginError(f"Unknown algorithm {algorithm!r}")
        ctx.report_progress(5)
        mime = _media.detect_mime(path)
        media_type = _media.media_type_of(path, mime)
        ctx.report_progress(15)

        start = time.perf_counter()
        if algorithm == "md5":
            value, used = _hash_file(path, "md5"), "md5"
        elif media_type == "image":
            try:
                if quirks().fault_hash_image_file_bytes:  # a planted defect (faults profile family)
                    value, used = _hash_file(path, "sha512"), "sha512_image"
                else:
                    value, used = _hash_image(path, allow_truncated=lenient), "sha512_image"
            except _media.NotAnImageError:
                value, used = _hash_file(path, "sha512"), "sha512_generic"
        elif media_type == "video" and quirks().video_hash_csv_defect:
            value, used = upstream_video_hash(path, min(FFPROBE_TIMEOUT, max(1.0, ctx.time_limit))), "sha512_video"
        elif media_type == "video":
            video_hash = _hash_video(path)
            if video_hash is None:
                media_type = "audio" if _media.probe_media(path).has_audio else "file"
                value, used = _hash_file(path, "sha512"), "sha512_generic"
            else:
                value, used = video_hash, "sha512_video"
        else:
            value, used = _hash_file(path, "sha512"), "sha512_generic"
        elapsed = time.perf_counter() - start
        ctx.report_progress(90)

        payload = {"hash_value": value, "algorithm": used, "media_type": media_type, "process_time": elapsed}
        out = ctx.output(str(ctx.params.get("output_path", OUTPUT_PATH)))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
        ctx.report_progress(100)
        return {"media_type": media_type}
