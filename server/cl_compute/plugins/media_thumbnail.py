"""``media_thumbnail``: a JPEG thumbnail of an image, or a 4×4 grid of a video's key frames.

Sizing (images, and the whole grid for videos), with ``W``/``H`` the requested width/height and ``w0×h0`` the
source size. Nothing is ever upscaled:

* ``W`` and ``H``, ``maintain_aspect_ratio`` true → the largest size that fits inside ``W×H`` keeping the
  aspect ratio; false → exactly ``min(W, w0) × min(H, h0)``.
* only ``W`` → width ``min(W, w0)``, height derived from the aspect ratio (false: a ``W×W`` square, each side
  capped at the source); only ``H`` likewise.
* neither → the 256×256 box of upstream: with ``maintain_aspect_ratio`` true the thumbnail fits inside 256×256
  (so a square source gives 256×256 exactly, as upstream); false → exactly 256×256 (capped at the source).

Upstream resizes to the exact 256×256 regardless of aspect when no size is given; this deployment keeps the
aspect ratio when ``maintain_aspect_ratio`` is true (the default), which is what that flag promises.

Video: ffmpeg decodes only key frames (``-skip_frame nokey``), scales each to at most 640 px wide, tiles the
first 16 into a 4×4 grid (a partial grid is padded black), then the grid is sized as above. Fixes over
upstream: RGBA/LA/paletted/CMYK/16-bit sources are flattened (alpha on white) instead of failing, and videos
work (upstream passes a relative path to ffmpeg).

Profile ``upstream-2026-01`` (:mod:`cl_compute.profile`): ``thumbnail_mode_fails`` saves the resized image as
JPEG in its own mode, as upstream does, so paletted and RGBA (and other non-JPEG modes) end ``error``
"cannot write mode P as JPEG"; ``thumbnail_video_fails`` looks for a video at the job-relative
``params.input_path`` from the worker's working directory, as upstream does, and so ends ``error``
"Input file not found: input/<name>".
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from cl_compute.plugins import _media
from cl_compute.plugins.base import BOOL_SPELLINGS, Plugin, PluginError, TaskContext
from cl_compute.profile import quirks

if TYPE_CHECKING:
    from PIL import Image as PILImage

OUTPUT_PATH = "output/thumbnail.jpg"
DEFAULT_SIZE = 256
MAX_SIDE = 16384
CELL_MAX_WIDTH = 640
JPEG_QUALITY = 90


def thumbnail_size(
    source: tuple[int, int], width: int | None, height: int | None, keep_aspect: bool
) -> tuple[int, int]:
    """The thumbnail size for a ``source`` (w, h) under the rules of the module docstring."""
    w0, h0 = source
    if width is None and height is None:
        width = height = DEFAULT_SIZE
    if width is not None and height is not None:
        if not keep_aspect:
            return max(1, min(width, w0)), max(1, min(height, h0))
        if quirks().fault_thumbnail_upscales:  # a planted defect (faults profile family): fills the box, even up
            fill = min(width / w0, height / h0)
            return max(1, round(w0 * fill)), max(1, round(h0 * fill))
        scale = min(width / w0, height / h0, 1.0)
    elif width is not None:
        if not keep_aspect:
            return max(1, min(width, w0)), max(1, min(width, h0))
        scale = min(width / w0, 1.0)
    else:
        assert height is not None
        if not keep_aspect:
            return max(1, min(height, w0)), max(1, min(height, h0))
        scale = min(height / h0, 1.0)
    return max(1, min(w0, round(w0 * scale))), max(1, min(h0, round(h0 * scale)))


class MediaThumbnailPlugin(Plugin):
    """Pillow (images) and ffmpeg key-frame grids (videos) thumbnails (see the module docstring)."""

    task_type: ClassVar[str] = "media_thumbnail"
    details: ClassVar[Mapping[str, str]] = {"backend": "Pillow LANCZOS + ffmpeg key-frame tile"}
    form_fields: ClassVar[Mapping[str, Mapping[str, object]]] = {
        "width": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_SIDE,
            "description": (
                "Thumbnail width in pixels (never upscaled). Absent: derived from `height`, or the 256x256 box "
                "when both are absent."
            ),
        },
        "height": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_SIDE,
            "description": (
                "Thumbnail height in pixels (never upscaled). Absent: derived from `width`, or the 256x256 box "
                "when both are absent."
            ),
        },
        "maintain_aspect_ratio": {
            "type": "boolean",
            "default": True,
            "description": f"Keep the source's aspect ratio (fit inside the box). {BOOL_SPELLINGS}.",
        },
    }

    def __init__(self) -> None:
        self._ffmpeg: str | None = None

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        """Validate ``width``/``height`` (optional ints > 0) and ``maintain_aspect_ratio`` (default true)."""
        width = _media.form_int(form, "width", None, minimum=1, maximum=MAX_SIDE)
        height = _media.form_int(form, "height", None, minimum=1, maximum=MAX_SIDE)
        keep = _media.form_bool(form, "maintain_aspect_ratio", True)
        return {"width": width, "height": height, "maintain_aspect_ratio": keep, "output_path": OUTPUT_PATH}

    def load(self) -> None:
        """Locate ffmpeg (videos only need it; images work without) and record versions."""
        self._ffmpeg = _media.find_ffmpeg()
        ffmpeg = _media.ffmpeg_label(self._ffmpeg) if self._ffmpeg else "not found (videos unsupported)"
        type(self).details = {"pillow": _media.pillow_version(), "heif": _media.heif_support(), "ffmpeg": ffmpeg}

    def run(self, ctx: TaskContext) -> dict[str, object]:
        """Write ``output/thumbnail.jpg``; ``task_output`` is ``{"media_type": "image"|"video"}``."""
        path = ctx.input_path
        _media.require_input(path)
        ctx.report_progress(5)
        mime = _media.detect_mime(path)
        media_type = _media.media_type_of(path, mime)
        if media_type not in ("image", "video"):
            raise PluginError(f"Unsupported media type: {media_type} ({mime}); expected an image or a video")
        width = _opt_int(ctx.params.get("width"))
        height = _opt_int(ctx.params.get("height"))
        keep = bool(ctx.params.get("maintain_aspect_ratio", True))
        out = ctx.output(str(ctx.params.get("output_path", OUTPUT_PATH)))
        out.parent.mkdir(parents=True, exist_ok=True)
        ctx.report_progress(15)
        if media_type == "image":
            with _media.open_image(path) as img:
                ctx.report_progress(50)
                self._save(img, out, width, height, keep)
        else:
            if quirks().thumbnail_video_fails:
                # Upstream hands its video routine the job-relative input path, resolved from the worker's cwd.
                relative = Path(str(ctx.params.get("input_path", f"input/{path.name}")))
                if not relative.is_file():
                    raise PluginError(f"Input file not found: {relative.as_posix()}")
                path = relative
            self._video(ctx, path, out, width, height, keep)
        ctx.report_progress(100)
        return {"media_type": media_type}

    @staticmethod
    def _save(img: PILImage.Image, out: Path, width: int | None, height: int | None, keep: bool) -> None:
        from PIL import Image

        size = thumbnail_size(img.size, width, height, keep)
        as_upstream = quirks().thumbnail_mode_fails  # no conversion: JPEG refuses P, RGBA, LA, I;16 …
        rgb = img if as_upstream else _media.flatten_to_rgb(img)
        try:
            thumb = rgb if size == rgb.size else rgb.resize(size, Image.Resampling.LANCZOS)
            thumb.save(out, format="JPEG", quality=JPEG_QUALITY)
        except (OSError, ValueError) as exc:
            out.unlink(missing_ok=True)
            raise PluginError(str(exc) if as_upstream else f"Cannot write the thumbnail: {exc}") from exc

    def _video(
        self, ctx: TaskContext, path: Path, out: Path, width: int | None, height: int | None, keep: bool
    ) -> None:
        info = _media.probe_media(path)
        if not info.has_video:
            raise PluginError("The file has no video stream to make a thumbnail from")
        exe = self._ffmpeg or _media.find_ffmpeg()
        if exe is None:
            raise PluginError("No ffmpeg available on this worker for video thumbnails")
        ctx.report_progress(30)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            grid_path = Path(tmp) / "grid.png"
            vf = f"scale='min(iw,{CELL_MAX_WIDTH})':-2,tile=4x4"
            args = ["-skip_frame", "nokey", "-i", str(path), "-an", "-sn", "-dn", "-map", "0:v:0"]
            args += ["-vf", vf, "-frames:v", "1", "-update", "1", str(grid_path)]
            _media.run_ffmpeg(exe, args, timeout=ctx.time_limit, what="ffmpeg (key-frame grid)")
            if not grid_path.exists():
                raise PluginError("ffmpeg produced no key-frame grid (no decodable key frames)")
            ctx.report_progress(75)
            with _media.open_image(grid_path) as grid:
                if quirks().fault_thumbnail_one_frame:  # a planted defect: the first key frame in every cell
                    cell = grid.crop((0, 0, grid.width // 4, grid.height // 4))
                    for index in range(16):
                        grid.paste(cell, ((index % 4) * cell.width, (index // 4) * cell.height))
                self._save(grid, out, width, height, keep)


def _opt_int(value: object) -> int | None:
    if value is None or value == "":
        return None
    return int(str(value))
