"""``exif``: metadata with ExifTool (as upstream) or a pure-Python reader, typed fields always filled.

Backends, chosen by ``CL_COMPUTE_EXIF_BACKEND`` (``auto`` by default):

* ``exiftool``: ``exiftool -G -n -j <input>`` exactly as upstream's "all tags" call (run in the job directory
  with the relative input path, so ``SourceFile`` is ``input/<name>`` rather than a server path);
* ``python``: Pillow's EXIF / Exif-IFD / GPS-IFD for images and PyAV for audio/video, producing the same
  ``raw_metadata`` key style (``"EXIF:Make"``, ``"File:ImageWidth"``, ``"Composite:GPSLatitude"``,
  ``"QuickTime:Duration"`` …) and the same ``-n`` (numeric) values for the common tags;
* ``auto``: ExifTool when it is on PATH, else ``python``.

Output (``task_output`` and ``output/exif_metadata.json``): the typed fields of PROTOCOL.md §3.1 plus
``raw_metadata``. Fixes over upstream: the typed fields are filled whatever ``tags`` is (upstream reads
unprefixed keys from ``-G`` output and leaves them null); ``exposure_time`` is the usual string (``"1/250"``)
instead of always null; GPS values are signed decimal degrees and the altitude is negative below sea level.
With ``tags`` (comma-separated, e.g. ``Make,Model,GPS*,EXIF:all``) ``raw_metadata`` keeps only the matching
keys (plus ``SourceFile``), still in ``Group:Tag`` form. An empty file, a file type neither backend can read,
a damaged or truncated media file (a structural check of JPEG, PNG, RIFF and MP4/QuickTime files before either
backend runs, no decoding: a JPEG without its end-of-image marker, a PNG without ``IEND``, a box or chunk that
runs past the end of the file) or an ExifTool failure ends the job in error (upstream silently returns nulls or
what the header says). A text file, whatever its name, is read as text (``File:FileType`` ``TXT``), as ExifTool
and upstream do.

Profile ``upstream-2026-01`` (:mod:`cl_compute.profile`): ``exif_typed_null`` reads the typed fields as upstream
does, from unprefixed keys only (:func:`upstream_typed_fields`), so with the default empty ``tags`` (``-G``
output) every one is null; with ``tags`` ``raw_metadata`` has bare keys (upstream's ``exiftool -n -j -Tag…``,
approximated by :func:`ungrouped`) and ``exposure_time`` is null (a number under ``-n``). ``exif_hash_accept_empty``
skips the empty/damaged/mislabelled checks and turns a backend failure into an empty result (every field null,
``raw_metadata`` ``{}``), as upstream completes such jobs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fnmatch
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ClassVar, SupportsFloat, SupportsInt, cast

from cl_compute.plugins import _media
from cl_compute.plugins.base import BackendUnavailable, ParamError, Plugin, PluginError, TaskContext
from cl_compute.profile import quirks

if TYPE_CHECKING:
    from PIL import Image

BACKEND_ENV = "CL_COMPUTE_EXIF_BACKEND"
OUTPUT_PATH = "output/exif_metadata.json"
EXIFTOOL_TIMEOUT = 30.0
_TAG_RE = re.compile(r"^(?:[A-Za-z0-9_*?][A-Za-z0-9_*?-]*:)?[A-Za-z0-9_*?][A-Za-z0-9_*?-]*$")
MAX_TAGS = 200

# --------------------------------------------------------------------------------------------------
# Typed fields (shared by both backends)
# --------------------------------------------------------------------------------------------------

_STR_FIELDS = ("make", "model", "date_time_original", "create_date", "exposure_time", "software")
_INT_FIELDS = ("image_width", "image_height", "orientation", "iso")
_FLOAT_FIELDS = ("f_number", "focal_length", "gps_latitude", "gps_longitude", "gps_altitude")
FIELDS = (
    "make", "model", "date_time_original", "create_date", "image_width", "image_height", "orientation", "iso",
    "f_number", "exposure_time", "focal_length", "gps_latitude", "gps_longitude", "gps_altitude", "software",
)  # fmt: skip

#: field -> (tag name, groups in priority order; "" = unprefixed key, "*" = any other group)
_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "make": ("Make", ("EXIF", "XMP", "QuickTime", "", "*")),
    "model": ("Model", ("EXIF", "XMP", "QuickTime", "", "*")),
    "date_time_original": ("DateTimeOriginal", ("EXIF", "XMP", "QuickTime", "Composite", "", "*")),
    "create_date": ("CreateDate", ("EXIF", "QuickTime", "XMP", "", "*")),
    "image_width": ("ImageWidth", ("File", "EXIF", "PNG", "GIF", "RIFF", "QuickTime", "Matroska", "", "*")),
    "image_height": ("ImageHeight", ("File", "EXIF", "PNG", "GIF", "RIFF", "QuickTime", "Matroska", "", "*")),
    "orientation": ("Orientation", ("EXIF", "XMP", "", "*")),
    "iso": ("ISO", ("EXIF", "XMP", "", "*")),
    "f_number": ("FNumber", ("EXIF", "XMP", "", "*")),
    "exposure_time": ("ExposureTime", ("EXIF", "XMP", "", "*")),
    "focal_length": ("FocalLength", ("EXIF", "XMP", "", "*")),
    "software": ("Software", ("EXIF", "XMP", "QuickTime", "", "*")),
}


def _split_key(key: str) -> tuple[str, str]:
    group, sep, name = key.rpartition(":")
    return (group, name) if sep else ("", key)


def _lookup(raw: Mapping[str, object], name: str, groups: tuple[str, ...]) -> object:
    by_group: dict[str, object] = {}
    for key, value in raw.items():
        group, tag = _split_key(key)
        if tag == name and group not in by_group:
            by_group[group] = value
    for group in groups:
        if group == "*":
            for other, value in by_group.items():
                if other not in groups:
                    return value
        elif group in by_group:
            return by_group[group]
    return None


def _to_float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip().split()
    if not text:
        return None
    try:
        return float(text[0])
    except ValueError:
        if "/" in text[0]:
            num, _, den = text[0].partition("/")
            try:
                return float(num) / float(den)
            except (ValueError, ZeroDivisionError):
                return None
        return None


def _to_int(value: object) -> int | None:
    number = _to_float(value)
    if number is None or number != number or number in (float("inf"), float("-inf")):
        return None
    return int(number)


def format_exposure(value: object) -> str | None:
    """ExifTool's print conversion of ExposureTime: ``1/250`` below 0.25 s, else seconds (``0.5``, ``2``)."""
    if isinstance(value, str) and not re.fullmatch(r"[0-9.eE+-]+", value.strip()):
        return value.strip() or None
    seconds = _to_float(value)
    if seconds is None or seconds <= 0:
        return None
    if seconds < 0.25001:
        return f"1/{int(0.5 + 1 / seconds)}"
    text = f"{seconds:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _signed(raw: Mapping[str, object], name: str, ref_name: str, negative: Callable[[object], bool]) -> float | None:
    composite = _to_float(raw.get(f"Composite:{name}"))
    if composite is not None:
        return composite
    for group in ("EXIF", "XMP", ""):
        key = f"{group}:{name}" if group else name
        value = _to_float(raw.get(key))
        if value is not None:
            ref = raw.get(f"{group}:{ref_name}" if group else ref_name)
            return -abs(value) if ref is not None and negative(ref) else value
    return _to_float(_lookup(raw, name, ("*",)))


def typed_fields(raw: Mapping[str, object]) -> dict[str, object]:
    """The typed fields of PROTOCOL.md §3.1 from ExifTool ``-G -n`` style (or unprefixed) metadata."""
    out: dict[str, object] = {}
    for field, (tag, groups) in _SOURCES.items():
        value = _lookup(raw, tag, groups)
        if field in _INT_FIELDS:
            out[field] = _to_int(value)
        elif field in _FLOAT_FIELDS:
            out[field] = _to_float(value)
        elif field == "exposure_time":
            out[field] = format_exposure(value)
        else:
            text = None if value is None else str(value).strip()
            if field in ("date_time_original", "create_date") and text and text.startswith("0000:00:00"):
                text = None
            out[field] = text or None
    if out["image_width"] is None or out["image_height"] is None:
        size = raw.get("Composite:ImageSize")
        if isinstance(size, str) and len(size.replace("x", " ").split()) == 2:
            w, h = size.replace("x", " ").split()
            out["image_width"], out["image_height"] = _to_int(w), _to_int(h)
    out["gps_latitude"] = _signed(raw, "GPSLatitude", "GPSLatitudeRef", lambda r: str(r).upper().startswith("S"))
    out["gps_longitude"] = _signed(raw, "GPSLongitude", "GPSLongitudeRef", lambda r: str(r).upper().startswith("W"))
    if quirks().fault_exif_gps_sign_lost:  # a planted defect (faults profile family): the Ref tags ignored
        for key in ("gps_latitude", "gps_longitude"):
            value = out[key]
            out[key] = abs(value) if isinstance(value, float) else value
    out["gps_altitude"] = _signed(
        raw, "GPSAltitude", "GPSAltitudeRef", lambda r: str(r).strip() in ("1", "Below Sea Level")
    )
    return {field: out.get(field) for field in FIELDS}


_GPS_TAGS = {"gps_latitude": "GPSLatitude", "gps_longitude": "GPSLongitude", "gps_altitude": "GPSAltitude"}


def _lax_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value.strip())
    return None


def _lax_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value.strip())
    return None


def upstream_typed_fields(raw: Mapping[str, object]) -> dict[str, object]:
    """The typed fields as upstream fills them: the value of the *unprefixed* key, or null.

    ``-G`` output has only ``Group:Tag`` keys, so every field is null; with bare keys a field is the value when
    its type fits (str fields take strings only, so ``-n``'s numeric ``ExposureTime`` gives null), else null.
    """
    out: dict[str, object] = {}
    for field in FIELDS:
        tag = _SOURCES[field][0] if field in _SOURCES else _GPS_TAGS[field]
        value = raw.get(tag)
        if field in _INT_FIELDS:
            out[field] = _lax_int(value)
        elif field in _FLOAT_FIELDS:
            out[field] = _lax_float(value)
        else:
            out[field] = value if isinstance(value, str) else None
    return out


def ungrouped(raw: Mapping[str, object]) -> dict[str, object]:
    """``Group:Tag`` keys made bare as ExifTool prints them without ``-G``: one value per tag name.

    An approximation of ExifTool's tag priority: a ``Composite:`` value wins (so GPS positions are signed, as
    ExifTool shows them), otherwise the first group in the output.
    """
    out: dict[str, object] = {}
    composite: dict[str, object] = {}
    for key, value in raw.items():
        group, name = _split_key(key)
        if group == "Composite":
            composite[name] = value
        elif name not in out:
            out[name] = value
    out.update(composite)
    return out


def filter_raw(raw: Mapping[str, object], tags: list[str]) -> dict[str, object]:
    """Keep the keys matching any requested tag (``Tag``, ``Group:Tag``, ``all``, ``Group:all``, wildcards)."""
    if not tags:
        return dict(raw)
    specs: list[tuple[str, str]] = []
    for spec in tags:
        group, name = _split_key(spec.lower())
        specs.append((group, "*" if name == "all" else name))
    kept: dict[str, object] = {}
    for key, value in raw.items():
        group, name = _split_key(key)
        if key == "SourceFile":
            kept[key] = value
            continue
        for want_group, want_name in specs:
            if want_group and not fnmatch.fnmatchcase(group.lower(), want_group):
                continue
            if fnmatch.fnmatchcase(name.lower(), want_name):
                kept[key] = value
                break
    return kept


# --------------------------------------------------------------------------------------------------
# Damaged files (both backends): a structural walk of the container, never a decode
# --------------------------------------------------------------------------------------------------

_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: markers without a length
_BMFF_FIRST_BOXES = {b"ftyp", b"moov", b"wide", b"free", b"skip", b"mdat", b"pnot"}
_SCAN_CHUNK = 1024 * 1024


def _jpeg_damage(fh: BinaryIO, size: int) -> str | None:
    pos = 2
    while True:
        fh.seek(pos)
        head = fh.read(2)
        if len(head) < 2:
            return "the JPEG data ends before its image data (truncated)"
        if head[0] != 0xFF:
            return f"the JPEG structure is broken (no segment marker at byte {pos})"
        marker = head[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker == 0xD9:
            return "the JPEG file ends before its image data"
        length_bytes = fh.read(2)
        if len(length_bytes) < 2:
            return "the JPEG data ends inside a segment header (truncated)"
        length = int.from_bytes(length_bytes, "big")
        if length < 2 or pos + 2 + length > size:
            return f"a JPEG segment (marker 0xFF{marker:02X}) runs past the end of the file (truncated)"
        pos += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data (0xFF is always stuffed) up to the EOI marker
            fh.seek(pos)
            tail = b""
            while chunk := fh.read(_SCAN_CHUNK):
                if b"\xff\xd9" in tail + chunk:
                    return None
                tail = chunk[-1:]
            return "the JPEG data ends before its end-of-image marker (truncated)"


def _png_damage(fh: BinaryIO, size: int) -> str | None:
    pos = 8
    while pos + 12 <= size:
        fh.seek(pos)
        header = fh.read(8)
        length = int.from_bytes(header[:4], "big")
        kind = header[4:8]
        pos += 12 + length
        if pos > size:
            return f"a PNG chunk ({kind.decode('latin-1')!r}) runs past the end of the file (truncated)"
        if kind == b"IEND":
            return None
    return "the PNG data ends before its IEND chunk (truncated)"


def _bmff_damage(fh: BinaryIO, size: int) -> str | None:
    pos = 0
    while pos < size:
        fh.seek(pos)
        header = fh.read(16)
        if len(header) < 8:
            return "the file ends inside a box header (truncated)"
        box = int.from_bytes(header[:4], "big")
        kind = header[4:8].decode("latin-1")
        if box == 1:
            if len(header) < 16:
                return "the file ends inside a box header (truncated)"
            box = int.from_bytes(header[8:16], "big")
        elif box == 0:  # to the end of the file
            return None
        if box < 8:
            return f"the {kind!r} box has an impossible size ({box} bytes)"
        if pos + box > size:
            return f"the {kind!r} box runs past the end of the file (truncated)"
        pos += box
    return None


#: file name extensions that promise media (the kind is what the content must then be).
_MEDIA_SUFFIXES: dict[str, str] = {
    **dict.fromkeys((".jpg", ".jpeg", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".heif"), "image"),
    **dict.fromkeys((".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm"), "video"),
    **dict.fromkeys((".mp3", ".m4a", ".wav", ".flac", ".ogg", ".aac"), "audio"),
}


def mislabelled(path: Path) -> str | None:
    """Why a file named like media (``photo.jpg``) holds no media at all (text, an unknown blob), or None.

    Only files whose content is text or unrecognised are refused: a PNG named ``.jpg`` is still media, and a
    ``.txt`` or ``.pdf`` is read as what it is.
    """
    promised = _MEDIA_SUFFIXES.get(path.suffix.lower())
    if promised is None:
        return None
    mime = _media.detect_mime(path)
    kind = _media.media_type_of(path, mime)
    if kind in ("image", "video", "audio"):
        return None
    return f"it is named {path.name!r} but holds no {promised}: its content is {mime or 'unknown'}"


def damage(path: Path) -> str | None:
    """Why a JPEG, PNG, RIFF (WebP, AVI, WAV) or MP4/QuickTime file is visibly damaged or truncated, or None.

    Only the container structure is walked (segment, chunk and box lengths, the JPEG end-of-image marker); no
    pixel or sample is decoded, so a decompression bomb costs nothing. Other files (text, TIFF, GIF, …) are None.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(12)
        if head.startswith(b"\xff\xd8"):
            return _jpeg_damage(fh, size)
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png_damage(fh, size)
        if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"AVI ", b"WAVE") and len(head) == 12:
            declared = int.from_bytes(head[4:8], "little")
            if declared not in (0, 0xFFFFFFFF) and 8 + declared > size:  # 0 / -1: written while streaming
                return f"the RIFF {head[8:12].decode('latin-1').strip()} data runs past the end of the file (truncated)"
            return None
        if len(head) >= 8 and head[4:8] in _BMFF_FIRST_BOXES:
            return _bmff_damage(fh, size)
    return None


# --------------------------------------------------------------------------------------------------
# ExifTool backend
# --------------------------------------------------------------------------------------------------


def exiftool_metadata(exe: str, path: Path, cwd: Path, timeout: float) -> dict[str, object]:
    """``exiftool -G -n -j`` of ``path`` (relative to ``cwd`` when possible)."""
    try:
        arg = str(path.relative_to(cwd))
    except ValueError:
        arg = str(path)
    if arg.startswith("-"):
        arg = f"./{arg}"
    try:
        proc = subprocess.run(
            [exe, "-G", "-n", "-j", arg],
            cwd=str(cwd),
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise PluginError(f"ExifTool did not finish within {timeout:.0f} s") from exc
    except OSError as exc:
        raise PluginError(f"Cannot run ExifTool: {exc}") from exc
    try:
        items = cast("object", json.loads(proc.stdout.decode("utf-8", errors="replace") or "[]"))
    except json.JSONDecodeError as exc:
        err = proc.stderr.decode("utf-8", errors="replace").strip()[-500:]
        raise PluginError(f"ExifTool failed (exit code {proc.returncode}): {err or 'no JSON output'}") from exc
    first = cast("list[object]", items)[0] if isinstance(items, list) and items else None
    if not isinstance(first, dict):
        raise PluginError("ExifTool returned no metadata")
    meta = cast("dict[str, object]", first)  # a JSON object: string keys
    error = meta.get("ExifTool:Error")
    if error and not any(_split_key(k)[0] not in ("", "ExifTool", "File") for k in meta):
        raise PluginError(f"ExifTool cannot read this file: {error}")
    return meta


# --------------------------------------------------------------------------------------------------
# Pure-Python backend
# --------------------------------------------------------------------------------------------------

#: Pillow tag name -> ExifTool tag name, where they differ
_RENAME = {
    "DateTime": "ModifyDate",
    "ImageLength": "ImageHeight",
    "DateTimeDigitized": "CreateDate",
    "ISOSpeedRatings": "ISO",
    "PhotographicSensitivity": "ISO",
    "FocalLengthIn35mmFilm": "FocalLengthIn35mmFormat",
    "ExposureBiasValue": "ExposureCompensation",
    "SubsecTime": "SubSecTime",
    "SubsecTimeOriginal": "SubSecTimeOriginal",
    "SubsecTimeDigitized": "SubSecTimeDigitized",
    "BodySerialNumber": "SerialNumber",
    "CameraOwnerName": "OwnerName",
    "LensSpecification": "LensInfo",
    "ExifInteroperabilityOffset": "",
    "ExifOffset": "",
    "GPSInfo": "",
    "MakerNote": "",
    "PrintImageMatching": "",
    "JPEGInterchangeFormat": "ThumbnailOffset",
    "JPEGInterchangeFormatLength": "ThumbnailLength",
    "StripOffsets": "",
    "StripByteCounts": "",
    "XMLPacket": "",
    "InterColorProfile": "",
}
#: Pillow format -> (File:FileType, File:FileTypeExtension, group holding the image size)
_IMAGE_TYPES = {
    "JPEG": ("JPEG", "JPG", "File"),
    "MPO": ("MPO", "MPO", "File"),
    "PNG": ("PNG", "PNG", "PNG"),
    "GIF": ("GIF", "GIF", "GIF"),
    "WEBP": ("WEBP", "WEBP", "RIFF"),
    "BMP": ("BMP", "BMP", "File"),
    "TIFF": ("TIFF", "TIF", "EXIF"),
}
#: libmagic MIME -> the MIME type ExifTool reports, where they differ
_EXIFTOOL_MIME = {"audio/x-m4a": "audio/mp4", "audio/x-wav": "audio/x-wav", "video/MP2T": "video/m2ts"}
_AV_TYPES = {
    "video/mp4": ("MP4", "QuickTime"),
    "video/quicktime": ("MOV", "QuickTime"),
    "audio/x-m4a": ("M4A", "QuickTime"),
    "video/3gpp": ("3GP", "QuickTime"),
    "video/webm": ("WEBM", "Matroska"),
    "video/x-matroska": ("MKV", "Matroska"),
    "video/x-msvideo": ("AVI", "RIFF"),
    "audio/x-wav": ("WAV", "RIFF"),
    "audio/mpeg": ("MP3", "MPEG"),
    "video/MP2T": ("M2TS", "M2TS"),
    "audio/ogg": ("OGG", "Vorbis"),
    "audio/flac": ("FLAC", "FLAC"),
}


def _num(value: float) -> int | float:
    if value != value or value in (float("inf"), float("-inf")):
        return value
    if float(value).is_integer():
        return int(value)
    return float(f"{value:.10g}")


def _convert(name: str, value: object) -> int | float | str | None:
    """A Pillow EXIF value as ExifTool ``-n -j`` prints it; ``None`` to drop it."""
    from PIL.TiffImagePlugin import IFDRational

    if isinstance(value, IFDRational):
        if value.denominator == 0:
            return None
        return _num(float(value))
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, str):
        text = value.replace("\x00", "").strip()
        return text or None
    if isinstance(value, bytes):
        if name == "UserComment":
            value = value[8:] if len(value) >= 8 else value
            text = value.replace(b"\x00", b"").decode("utf-8", errors="replace").strip()
            return text or None
        if name in ("ExifVersion", "FlashpixVersion", "InteropVersion"):
            return value.decode("ascii", errors="replace")
        if name == "ComponentsConfiguration" or (len(value) == 1 and not 32 <= value[0] < 127):
            return " ".join(str(b) for b in value) if len(value) > 1 else value[0]
        if value and all(32 <= b < 127 for b in value.rstrip(b"\x00")):
            return value.rstrip(b"\x00").decode("ascii").strip() or None
        return None
    if isinstance(value, tuple):
        parts = [_convert(name, v) for v in cast("tuple[object, ...]", value)]
        if not parts or any(p is None for p in parts):
            return None
        return " ".join(str(p) for p in parts)
    return None


def _dms(value: object) -> float | None:
    from PIL.TiffImagePlugin import IFDRational

    if not isinstance(value, tuple) or not value:
        return None
    try:
        parts = [
            float(v)
            for v in cast("tuple[SupportsFloat, ...]", value)  # not a number: TypeError / ValueError below
            if not (isinstance(v, IFDRational) and v.denominator == 0)
        ]
    except (TypeError, ValueError):
        return None
    degrees = 0.0
    for part, div in zip(parts, (1, 60, 3600), strict=False):
        degrees += part / div
    return _num(degrees)


def _as_tuple(value: object) -> tuple[object, ...] | None:
    return cast("tuple[object, ...]", value) if isinstance(value, tuple) else None


def _exif_dict(img: Image.Image) -> dict[str, object]:
    from PIL import ExifTags

    out: dict[str, object] = {}
    try:
        exif = img.getexif()
    except Exception:
        return out
    if not exif:
        return out

    def add(tags: Mapping[int, object], names: Mapping[int, str]) -> None:
        for tag_id, value in tags.items():
            name = names.get(tag_id)
            if not name:
                continue
            name = _RENAME.get(name, name)
            if not name:
                continue
            converted = _convert(name, value)
            if converted is not None:
                out[f"EXIF:{name}"] = converted

    add(exif, ExifTags.TAGS)
    with contextlib.suppress(Exception):
        add(exif.get_ifd(ExifTags.IFD.Exif), ExifTags.TAGS)
    gps: Mapping[int, object] = {}
    with contextlib.suppress(Exception):
        gps = cast("Mapping[int, object]", exif.get_ifd(ExifTags.IFD.GPSInfo))  # Pillow: dict[int, Any]
    for tag_id, value in gps.items():
        name = ExifTags.GPSTAGS.get(tag_id)
        if not name:
            continue
        items = _as_tuple(value)
        if name in ("GPSLatitude", "GPSLongitude", "GPSDestLatitude", "GPSDestLongitude"):
            converted = _dms(value)
        elif name == "GPSTimeStamp" and items is not None and len(items) == 3:
            hours, minutes, seconds = (float(cast("SupportsFloat", v)) for v in items)  # rationals
            sec = f"{int(seconds):02d}" if seconds.is_integer() else f"{seconds:06.3f}".rstrip("0")
            converted = f"{int(hours):02d}:{int(minutes):02d}:{sec}"
        elif name == "GPSVersionID" and (isinstance(value, bytes) or items is not None):
            converted = " ".join(str(int(b)) for b in cast("bytes | tuple[SupportsInt, ...]", value))
        else:
            converted = _convert(name, value)
        if converted is not None:
            out[f"EXIF:{name}"] = converted
    return out


def _file_group(path: Path, display: str) -> dict[str, object]:
    st = path.stat()
    modified = _dt.datetime.fromtimestamp(st.st_mtime).astimezone()
    return {
        "SourceFile": display,
        "File:FileName": path.name,
        "File:Directory": os.path.dirname(display) or ".",
        "File:FileSize": st.st_size,
        "File:FileModifyDate": modified.strftime("%Y:%m:%d %H:%M:%S%z")[:-2] + ":" + modified.strftime("%z")[-2:],
        "File:FilePermissions": int(oct(st.st_mode)[2:]),
    }


def _composite(meta: dict[str, object]) -> None:
    width = _lookup(meta, "ImageWidth", ("File", "EXIF", "PNG", "GIF", "RIFF", "QuickTime", "Matroska"))
    height = _lookup(meta, "ImageHeight", ("File", "EXIF", "PNG", "GIF", "RIFF", "QuickTime", "Matroska"))
    if isinstance(width, int) and isinstance(height, int):
        meta["Composite:ImageSize"] = f"{width} {height}"
        meta["Composite:Megapixels"] = _num(width * height / 1e6)
    if "EXIF:FNumber" in meta:
        meta["Composite:Aperture"] = meta["EXIF:FNumber"]
    if "EXIF:ExposureTime" in meta:
        meta["Composite:ShutterSpeed"] = meta["EXIF:ExposureTime"]
    lat = _signed(meta, "GPSLatitude", "GPSLatitudeRef", lambda r: str(r).upper().startswith("S"))
    lon = _signed(meta, "GPSLongitude", "GPSLongitudeRef", lambda r: str(r).upper().startswith("W"))
    alt = _signed(meta, "GPSAltitude", "GPSAltitudeRef", lambda r: str(r).strip() == "1")
    if alt is not None:
        meta["Composite:GPSAltitude"] = _num(alt)
    if lat is not None:
        meta["Composite:GPSLatitude"] = _num(lat)
    if lon is not None:
        meta["Composite:GPSLongitude"] = _num(lon)
    if lat is not None and lon is not None:
        meta["Composite:GPSPosition"] = f"{_num(lat)} {_num(lon)}"


_ISO6709 = re.compile(r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?")


def _av_meta(path: Path, mime: str) -> dict[str, object] | None:
    import av
    from av.error import FFmpegError

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except FFmpegError:
        return None
    with container:
        if not container.streams.video and not container.streams.audio:
            return None
        file_type, group = _AV_TYPES.get(mime, (container.format.name.split(",")[0].upper(), "QuickTime"))
        meta: dict[str, object] = {
            "File:FileType": file_type,
            "File:FileTypeExtension": file_type,
            "File:MIMEType": _EXIFTOOL_MIME.get(mime, mime),
        }
        if container.duration:
            meta[f"{group}:Duration"] = _num(round(container.duration / 1_000_000, 6))
        tags = {k.lower(): v for k, v in (container.metadata or {}).items()}
        created = tags.get("creation_time")
        if created:
            with contextlib.suppress(Exception):
                stamp = _dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
                meta[f"{group}:CreateDate"] = stamp.strftime("%Y:%m:%d %H:%M:%S")
        for key, name in (
            ("make", "Make"),
            ("model", "Model"),
            ("software", "Software"),
            ("encoder", "Encoder"),
        ):
            value = tags.get(key) or tags.get(f"com.apple.quicktime.{key}")
            if value:
                meta[f"{group}:{name}"] = value
        location = tags.get("location") or tags.get("com.apple.quicktime.location.iso6709")
        if location and (match := _ISO6709.match(location)):
            lat, lon, alt = match.groups()
            meta["Composite:GPSLatitude"] = _num(float(lat))
            meta["Composite:GPSLongitude"] = _num(float(lon))
            if alt is not None:
                meta["Composite:GPSAltitude"] = _num(float(alt))
        if container.streams.video:
            video = container.streams.video[0]
            if video.codec_context.width:
                meta[f"{group}:ImageWidth"] = video.codec_context.width
                meta[f"{group}:ImageHeight"] = video.codec_context.height
            rate = video.average_rate or video.guessed_rate
            if rate:
                meta[f"{group}:VideoFrameRate"] = _num(round(float(rate), 3))
        if container.streams.audio:
            audio = container.streams.audio[0]
            meta[f"{group}:AudioChannels"] = audio.codec_context.channels
            meta[f"{group}:AudioSampleRate"] = audio.codec_context.sample_rate
    return meta


_NO_PIXEL_LIMIT = threading.Lock()


def python_metadata(path: Path, display: str) -> dict[str, object]:
    """ExifTool-style ``-G -n`` metadata from Pillow (images) or PyAV (audio/video)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    _media.register_optional_openers()
    meta = _file_group(path, display)
    mime = _media.detect_mime(path)
    try:
        # Only headers are read here, never pixels, so the decompression-bomb limit does not apply.
        with _NO_PIXEL_LIMIT, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                img = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        img = None
    if img is not None:
        with img:
            file_type, ext, size_group = _IMAGE_TYPES.get(
                img.format or "", (img.format or "?", img.format or "?", "File")
            )
            meta["File:FileType"] = file_type
            meta["File:FileTypeExtension"] = ext
            meta["File:MIMEType"] = img.get_format_mimetype() or mime
            meta.update(_exif_dict(img))
            if size_group == "EXIF":  # TIFF: the IFD0 tags are the image size
                meta.setdefault("EXIF:ImageWidth", img.width)
                meta.setdefault("EXIF:ImageHeight", img.height)
            else:
                meta[f"{size_group}:ImageWidth"] = img.width
                meta[f"{size_group}:ImageHeight"] = img.height
    elif mime.startswith("text/"):
        meta.update({"File:FileType": "TXT", "File:FileTypeExtension": "TXT", "File:MIMEType": mime})
    else:
        av_meta = _av_meta(path, mime)
        if av_meta is not None:
            meta.update(av_meta)
        elif mime == "application/pdf":
            meta.update({"File:FileType": "PDF", "File:FileTypeExtension": "PDF", "File:MIMEType": mime})
        else:
            raise PluginError(f"Cannot read metadata: unknown or unsupported file type ({mime})")
    _composite(meta)
    return meta


# --------------------------------------------------------------------------------------------------
# Plugin
# --------------------------------------------------------------------------------------------------


def _backend_choice() -> str:
    choice = (os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    if choice not in ("auto", "exiftool", "python"):
        raise BackendUnavailable(f"{BACKEND_ENV} must be auto, exiftool or python (got {choice!r})")
    if choice == "auto":
        return "exiftool" if shutil.which("exiftool") else "python"
    return choice


class ExifPlugin(Plugin):
    """ExifTool / pure-Python metadata extraction (see the module docstring)."""

    task_type: ClassVar[str] = "exif"
    details: ClassVar[Mapping[str, str]] = {"backend": "exiftool or python (CL_COMPUTE_EXIF_BACKEND)"}
    form_fields: ClassVar[Mapping[str, Mapping[str, object]]] = {
        "tags": {
            "type": "string",
            "default": "",
            "description": (
                f"Comma-separated tag names to keep in `raw_metadata` (`Tag`, `Group:Tag`, wildcards `*` and `?`, "
                f"e.g. `Make,Model,GPS*,EXIF:all`), at most {MAX_TAGS}; empty = all tags. The typed fields are "
                "filled either way."
            ),
            "examples": ["Make,Model,GPS*"],
        }
    }

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        """Validate ``tags``: comma-separated tag names (``Tag``, ``Group:Tag``, wildcards), "" = all."""
        value = _media.form_value(form, "tags") or ""
        tags = [t.strip() for t in value.split(",") if t.strip()]
        if len(tags) > MAX_TAGS:
            raise ParamError("tags", f"At most {MAX_TAGS} tags may be requested")
        for tag in tags:
            if not _TAG_RE.match(tag):
                raise ParamError("tags", f"Invalid tag name {tag!r} (letters, digits, '_', '-', '*', '?', 'Group:')")
        return {"tags": tags, "output_path": OUTPUT_PATH}

    def load(self) -> None:
        """Pick the backend; BackendUnavailable if ``exiftool`` is forced but missing."""
        backend = _backend_choice()
        if backend == "exiftool":
            exe = shutil.which("exiftool")
            if exe is None:
                raise BackendUnavailable(f"{BACKEND_ENV}=exiftool but exiftool is not on PATH")
            type(self).details = {"backend": f"ExifTool {_media.tool_version(exe, '-ver')}"}
        else:
            type(self).details = {
                "backend": "python (Pillow EXIF + PyAV)",
                "pillow": _media.pillow_version(),
                "av": _media.av_version(),
            }

    def run(self, ctx: TaskContext) -> dict[str, object]:
        """Extract metadata and write ``output/exif_metadata.json`` (= ``task_output``)."""
        path = ctx.input_path
        lenient = _media.accepts_broken_input()
        _media.require_input(path, allow_empty=lenient)
        if not lenient:
            problem = damage(path)
            if problem is not None:
                raise PluginError(f"Cannot read metadata: the file is damaged or truncated: {problem}")
            problem = mislabelled(path)
            if problem is not None:
                raise PluginError(f"Cannot read metadata: not a media file: {problem}")
        raw_tags = ctx.params.get("tags")
        tags = (
            [str(t) for t in cast("list[object] | tuple[object, ...]", raw_tags)]
            if isinstance(raw_tags, list | tuple)
            else []
        )
        ctx.report_progress(10)
        backend = _backend_choice()
        exe: str | None = None
        if backend == "exiftool":
            exe = shutil.which("exiftool")
            if exe is None:
                raise PluginError("ExifTool is not installed or not found in PATH")
        try:
            if exe is not None:
                raw = exiftool_metadata(exe, path, ctx.job_dir, min(EXIFTOOL_TIMEOUT, max(1.0, ctx.time_limit)))
            else:
                try:
                    display = str(path.relative_to(ctx.job_dir))
                except ValueError:
                    display = path.name
                raw = python_metadata(path, display)
        except PluginError:
            if not lenient:
                raise
            raw = {}  # upstream: ExifTool errors and timeouts give an empty result, and the job completes
        ctx.report_progress(70)
        result: dict[str, object]
        if quirks().exif_typed_null:
            kept = ungrouped(filter_raw(raw, tags)) if tags else dict(raw)
            result = {**upstream_typed_fields(kept), "raw_metadata": kept}
        else:
            result = {**typed_fields(raw), "raw_metadata": filter_raw(raw, tags)}
        out = ctx.output(str(ctx.params.get("output_path", OUTPUT_PATH)))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        ctx.report_progress(100)
        return result
