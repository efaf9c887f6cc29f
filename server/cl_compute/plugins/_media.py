"""Shared helpers of the media plugins (hash, exif, image_conversion, media_thumbnail, hls_streaming).

Light at import time: Pillow, PyAV, python-magic and imageio-ffmpeg are imported inside the functions.

* form parsing: :func:`form_bool`, :func:`form_int` (strings as received from a multipart form; ``""`` or a
  missing field means "use the default", as FastAPI does for optional form fields);
* media detection: :func:`detect_mime` (libmagic through python-magic, with a signature sniffer as fallback)
  and :func:`media_type_of` (``image|video|audio|text|url|file`` as upstream maps MIME types);
* probing with PyAV (never ffprobe, which a pip-only machine lacks): :func:`probe_media`;
* images with Pillow, decompression bombs refused: :func:`open_image`;
* ffmpeg: :func:`find_ffmpeg` (env ``CL_COMPUTE_FFMPEG``, then ``ffmpeg`` on PATH, then imageio-ffmpeg's
  binary) and :func:`run_ffmpeg` (time limit, ``-progress`` parsing, killed on any exception).
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Protocol, cast

from cl_compute.plugins.base import BackendUnavailable, ParamError, PluginError
from cl_compute.profile import quirks

if TYPE_CHECKING:
    from PIL import Image as PILImage

FFMPEG_ENV = "CL_COMPUTE_FFMPEG"
CHUNK_SIZE = 1 << 20

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_INT_RE = re.compile(r"^[+-]?\d+$")


# --------------------------------------------------------------------------------------------------
# Form parsing
# --------------------------------------------------------------------------------------------------


def form_value(form: Mapping[str, str], name: str) -> str | None:
    """The stripped form value, or None when the field is missing or empty (FastAPI's rule)."""
    value = form.get(name)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def form_bool(form: Mapping[str, str], name: str, default: bool) -> bool:
    """Parse a boolean form field: true/false/1/0/yes/no/on/off, case-insensitive."""
    value = form_value(form, name)
    if value is None:
        return default
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ParamError(name, f"Input should be a valid boolean, unable to interpret {value!r}", "bool_parsing")


def form_int(
    form: Mapping[str, str],
    name: str,
    default: int | None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    """Parse an integer form field with an inclusive range."""
    value = form_value(form, name)
    if value is None:
        return default
    if not _INT_RE.match(value):
        raise ParamError(
            name, f"Input should be a valid integer, unable to parse {value!r} as an integer", "int_parsing"
        )
    number = int(value)
    if minimum is not None and number < minimum:
        raise ParamError(name, f"Input should be greater than or equal to {minimum}", "greater_than_equal")
    if maximum is not None and number > maximum:
        raise ParamError(name, f"Input should be less than or equal to {maximum}", "less_than_equal")
    return number


def safe_stem(upload_name: str, fallback: str = "image") -> str:
    """A file-name stem safe to put in ``output/``: no directories, no control or shell characters."""
    name = upload_name.replace("\\", "/").rsplit("/", 1)[-1]
    stem = PurePosixPath(name).stem if name not in ("", ".", "..") else ""
    stem = unicodedata.normalize("NFKC", stem)
    stem = re.sub(r"[^\w.-]+", "_", stem, flags=re.UNICODE).strip("._-")
    return stem[:100] or fallback


# --------------------------------------------------------------------------------------------------
# Input checks and media type detection
# --------------------------------------------------------------------------------------------------


def require_input(path: Path, *, allow_empty: bool = False) -> int:
    """Return the input's size; PluginError if it is missing or (unless ``allow_empty``) empty."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PluginError(f"Input file not found: {path.name}") from exc
    if size == 0 and not allow_empty:
        raise PluginError("The uploaded file is empty (0 bytes)")
    return size


def accepts_broken_input() -> bool:
    """Whether exif and hash take zero-byte, damaged and mislabelled files as upstream does.

    The profile switch ``exif_hash_accept_empty`` (upstream-2026-01): upstream completes with empty or generic
    results where the fixed deployment ends ``error`` (PROTOCOL.md §8). Both plugins ask here.
    """
    return quirks().exif_hash_accept_empty


def _read_head(path: Path, size: int = 65536) -> bytes:
    with path.open("rb") as fh:
        return fh.read(size)


def sniff_mime(path: Path) -> str:
    """Fallback MIME detection from magic numbers, used when libmagic is unavailable or fails."""
    head = _read_head(path)
    if not head:
        return "application/x-empty"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head.startswith(b"BM") and len(head) > 14:
        return "image/bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head.startswith(b"RIFF") and len(head) >= 12:
        kind = head[8:12]
        return {b"WEBP": "image/webp", b"AVI ": "video/x-msvideo", b"WAVE": "audio/x-wav"}.get(
            kind, "application/octet-stream"
        )
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis"):
            return "image/heic"
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"M4A ", b"M4B "):
            return "audio/x-m4a"
        if brand.startswith(b"qt"):
            return "video/quicktime"
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head.startswith(b"OggS"):
        return "video/ogg" if b"theora" in head[:256] else "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return "audio/mpeg"
    if len(head) >= 377 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "video/MP2T"
    if head.startswith(b"%PDF"):
        return "application/pdf"
    if head.lstrip().startswith(b"<svg") or (head.lstrip().startswith(b"<?xml") and b"<svg" in head):
        return "image/svg+xml"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A multi-byte character cut at the end of the sample is still text.
            if exc.start < len(head) - 4:
                return "application/octet-stream"
        return "text/plain"
    return "application/octet-stream"


class _MagicFromFile(Protocol):
    """``magic.from_file`` (python-magic's stub leaves ``PathLike`` unparametrised)."""

    def __call__(self, filename: str, mime: bool = ...) -> str: ...


def detect_mime(path: Path) -> str:
    """MIME type from libmagic (python-magic), falling back to :func:`sniff_mime`."""
    try:
        import magic

        from_file = cast("_MagicFromFile", magic.from_file)
        mime = from_file(str(path), mime=True)
    except Exception:  # libmagic missing or failing: the sniffer decides
        mime = ""
    if not mime or mime == "application/octet-stream":
        sniffed = sniff_mime(path)
        if sniffed != "application/octet-stream" or not mime:
            return sniffed
    return mime


_URL_RE = re.compile(r"^http[s]?://(?:[a-zA-Z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9a-fA-F][0-9a-fA-F])+$")


def _is_single_url(path: Path) -> bool:
    """Upstream's rule: the whole text, without any line break, is one http(s) URL (spaces trimmed)."""
    data = _read_head(path, 16384)
    if len(data) >= 16384:
        return False
    text = data.decode("utf-8", errors="replace")
    if "\n" in text or "\r" in text:
        return False
    return bool(_URL_RE.match(text.strip()))


def media_type_of(path: Path, mime: str) -> str:
    """Map a MIME type to upstream's ``image|video|audio|text|url|file`` (a text holding one URL is url)."""
    if mime.startswith("image"):
        return "image"
    if mime.startswith("video"):
        return "video"
    if mime.startswith("audio"):
        return "audio"
    if mime.startswith("text"):
        return "url" if _is_single_url(path) else "text"
    return "file"


# --------------------------------------------------------------------------------------------------
# Images (Pillow)
# --------------------------------------------------------------------------------------------------


class NotAnImageError(PluginError):
    """Pillow does not recognise the file as an image it can decode."""


_heif_registered = False


def register_optional_openers() -> None:
    """Register pillow-heif's HEIC/HEIF opener when that package is installed (as upstream does)."""
    global _heif_registered
    if _heif_registered:
        return
    _heif_registered = True
    with contextlib.suppress(Exception):
        # Optional and untyped: the name is missing or of unknown type.
        from pillow_heif import register_heif_opener  # pyright: ignore[reportMissingImports, reportUnknownVariableType]

        register_heif_opener()


_TRUNCATED_LOAD = threading.Lock()


@contextlib.contextmanager
def _truncated_images_allowed(allow: bool) -> Generator[None, None, None]:
    """Let Pillow decode truncated images (``ImageFile.LOAD_TRUNCATED_IMAGES``, a global) while inside."""
    if not allow:
        yield
        return
    from PIL import ImageFile

    with _TRUNCATED_LOAD:
        saved, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, True
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


@contextlib.contextmanager
def open_image(path: Path, *, allow_truncated: bool = False) -> Generator[PILImage.Image, None, None]:
    """Open an image with Pillow, first frame selected and fully decoded; errors become PluginError.

    Decompression bombs (more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``) are refused. With
    ``allow_truncated`` a truncated file decodes as far as its data goes (upstream's
    ``LOAD_TRUNCATED_IMAGES = True``) instead of failing.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    register_optional_openers()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise PluginError(f"Image refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise NotAnImageError("The file is not an image format this server can decode") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise PluginError(f"Cannot read the image: {exc}") from exc
    try:
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and img.width * img.height > limit:
            raise PluginError(
                f"Image refused as a decompression bomb: {img.width}x{img.height} pixels "
                f"exceeds the limit of {limit} pixels"
            )
        try:
            img.seek(0)
            with _truncated_images_allowed(allow_truncated):
                img.load()
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
            raise PluginError(f"The image is corrupt or truncated: {exc}") from exc
        yield img
    finally:
        img.close()


def flatten_to_rgb(img: PILImage.Image, background: tuple[int, int, int] = (255, 255, 255)) -> PILImage.Image:
    """An RGB copy of ``img``; transparency is composited on ``background``, CMYK/grey/16-bit converted."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    elif img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        img = img.point(lambda v: v / 256).convert("L") if img.mode != "I" else img.convert("L")
    elif img.mode == "F":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def pillow_version() -> str:
    """Pillow's version string."""
    import PIL

    return str(PIL.__version__)


# --------------------------------------------------------------------------------------------------
# PyAV probing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe_media` learns about a container."""

    format_name: str
    duration: float | None
    has_video: bool
    has_audio: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None


def av_version() -> str:
    """PyAV's version plus the libavformat it wraps."""
    import av

    fmt = av.library_versions.get("libavformat", ())
    return f"PyAV {av.__version__} (libavformat {'.'.join(str(v) for v in fmt)})"


def probe_media(path: Path) -> MediaInfo:
    """Probe a media file with PyAV; PluginError when it is not a readable container."""
    import av
    from av.error import FFmpegError

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            video = next((s for s in container.streams.video), None)
            audio = next((s for s in container.streams.audio), None)
            duration: float | None = None
            if container.duration is not None and container.duration > 0:
                duration = container.duration / 1_000_000
            elif video is not None and video.duration is not None and video.time_base is not None:
                duration = float(video.duration * video.time_base)
            fps: float | None = None
            width = height = None
            vcodec = None
            if video is not None:
                rate = video.average_rate or video.guessed_rate
                fps = float(rate) if rate else None
                width = video.codec_context.width or None
                height = video.codec_context.height or None
                vcodec = video.codec_context.name
            return MediaInfo(
                format_name=str(container.format.name),
                duration=duration,
                has_video=video is not None,
                has_audio=audio is not None,
                width=width,
                height=height,
                fps=fps,
                video_codec=vcodec,
                audio_codec=audio.codec_context.name if audio is not None else None,
            )
    except FFmpegError as exc:
        raise PluginError(f"Cannot read the media file (not a supported audio/video container): {exc}") from exc


# --------------------------------------------------------------------------------------------------
# ffmpeg
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _find_ffmpeg_cached(env_value: str | None, path_env: str | None) -> str | None:
    if env_value:
        found = shutil.which(env_value) or (env_value if os.access(env_value, os.X_OK) else None)
        return found
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg  # pyright: ignore[reportMissingTypeStubs]  # get_ffmpeg_exe() -> str is inferred

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return None
    return exe if exe and os.access(exe, os.X_OK) else None


def find_ffmpeg() -> str | None:
    """``$CL_COMPUTE_FFMPEG``, else ``ffmpeg`` on PATH, else imageio-ffmpeg's bundled binary (or None)."""
    return _find_ffmpeg_cached(os.environ.get(FFMPEG_ENV) or None, os.environ.get("PATH"))


def require_ffmpeg() -> str:
    """Like :func:`find_ffmpeg` but raises when there is none.

    Raises:
        BackendUnavailable: no ffmpeg; raised from the ``ModuleNotFoundError`` of imageio-ffmpeg when that is
            not installed either, so that the worker reports it as the missing ``server`` extra (one line for
            every plugin that lacks it) rather than as a plugin of its own without ffmpeg.
    """
    exe = find_ffmpeg()
    if exe is None:
        message = f"No ffmpeg found: set {FFMPEG_ENV}, put ffmpeg on PATH or install imageio-ffmpeg"
        try:
            import imageio_ffmpeg  # pyright: ignore[reportMissingTypeStubs, reportUnusedImport]  # noqa: F401
        except ModuleNotFoundError as exc:
            raise BackendUnavailable(message) from exc
        raise BackendUnavailable(message)
    return exe


@functools.lru_cache(maxsize=8)
def tool_version(exe: str, flag: str = "-version") -> str:
    """First line of ``<exe> -version`` (or the given flag), '' when it cannot be run."""
    try:
        out = subprocess.run(
            [exe, flag], capture_output=True, text=True, timeout=10, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


def ffmpeg_label(exe: str) -> str:
    """``ffmpeg <version> (<path>)`` for capability details."""
    first = tool_version(exe)
    match = re.match(r"ffmpeg version (\S+)", first)
    return f"ffmpeg {match.group(1) if match else first or '?'} ({exe})"


def heif_support() -> str:
    """pillow-heif's version when installed (HEIC/HEIF input), else 'no'."""
    try:
        import pillow_heif  # pyright: ignore[reportMissingImports]
    except Exception:
        return "no"
    return f"pillow-heif {pillow_heif.__version__}"


def _tail(fh: IO[bytes], limit: int = 1500) -> str:
    fh.seek(0)
    data = fh.read().decode("utf-8", errors="replace").strip()
    lines = [ln for ln in data.splitlines() if ln.strip()]
    text = "\n".join(lines[-8:])
    return text[-limit:]


def _parse_out_time(line: str) -> float | None:
    key, _, value = line.partition("=")
    if key in ("out_time_us", "out_time_ms"):
        with contextlib.suppress(ValueError):
            return int(value) / 1_000_000
    return None


def run_ffmpeg(
    exe: str,
    args: list[str],
    *,
    timeout: float,
    duration: float | None = None,
    on_progress: Callable[[float], None] | None = None,
    what: str = "ffmpeg",
    cwd: Path | None = None,
) -> None:
    """Run ``ffmpeg <args>`` with a time limit; PluginError on failure or timeout.

    With ``on_progress`` and a known ``duration``, ffmpeg's ``-progress pipe:1`` output is parsed and the
    callback gets the fraction done (0-1). Whatever the callback raises (e.g. ``JobCancelled``) kills
    ffmpeg and propagates.
    """
    track = on_progress is not None and duration is not None and duration > 0
    cmd = [exe, "-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
    if track:
        cmd += ["-progress", "pipe:1", "-nostats", "-stats_period", "0.25"]
    cmd += args
    deadline = time.monotonic() + max(1.0, timeout)
    with tempfile.TemporaryFile() as errf:
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if track else subprocess.DEVNULL,
                stderr=errf,
                cwd=str(cwd) if cwd else None,
            )
        except OSError as exc:
            raise PluginError(f"Cannot start {what}: {exc}") from exc
        try:
            if track:
                assert proc.stdout is not None
                lines: queue.Queue[bytes | None] = queue.Queue()

                def _reader(stream: IO[bytes]) -> None:
                    for raw in iter(stream.readline, b""):
                        lines.put(raw)
                    lines.put(None)

                threading.Thread(target=_reader, args=(proc.stdout,), daemon=True).start()
                last = -1.0
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise subprocess.TimeoutExpired(cmd, timeout)
                    try:
                        raw = lines.get(timeout=min(remaining, 0.5))
                    except queue.Empty:
                        continue
                    if raw is None:
                        break
                    seconds = _parse_out_time(raw.decode("ascii", errors="replace").strip())
                    if seconds is not None and duration:
                        fraction = max(0.0, min(1.0, seconds / duration))
                        if fraction - last >= 0.02:
                            last = fraction
                            assert on_progress is not None
                            on_progress(fraction)
            rc = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as exc:
            _kill(proc)
            raise PluginError(f"{what} did not finish within the time limit ({timeout:.0f} s)") from exc
        except BaseException:
            _kill(proc)
            raise
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
        if rc != 0:
            detail = _tail(errf)
            raise PluginError(f"{what} failed (exit code {rc}): {detail or 'no error output'}")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=5)
