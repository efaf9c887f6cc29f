"""``image_conversion``: re-encode an image with Pillow into png|jpg|jpeg|webp|gif|bmp|tiff.

Upstream behaviour kept: the first frame is converted; ``quality`` (1-100, default 85) applies to jpg/jpeg and
webp; PNG is saved with ``optimize=True``; the file is ``output/converted_<stem>.<ext>`` with ext ``jpg`` for
``jpeg``; ``task_output`` is ``{}``. Fixes: the upload's stem is sanitised (no directories or odd
characters); every source mode is written (RGBA/LA/P-with-transparency are composited on white for JPEG,
CMYK/16-bit/float are converted as the target format needs) instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from cl_compute.plugins import _media
from cl_compute.plugins.base import ParamError, Plugin, PluginError, TaskContext
from cl_compute.profile import quirks

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: form value -> (Pillow format, file extension)
FORMATS: dict[str, tuple[str, str]] = {
    "png": ("PNG", "png"),
    "jpg": ("JPEG", "jpg"),
    "jpeg": ("JPEG", "jpg"),
    "webp": ("WEBP", "webp"),
    "gif": ("GIF", "gif"),
    "bmp": ("BMP", "bmp"),
    "tiff": ("TIFF", "tiff"),
}
#: modes each target writes natively; anything else is converted first
_NATIVE_MODES: dict[str, tuple[str, ...]] = {
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"),
    "JPEG": ("L", "RGB"),
    "WEBP": ("RGB", "RGBA"),
    "GIF": ("1", "L", "P", "RGB", "RGBA"),
    "BMP": ("1", "L", "P", "RGB", "RGBA"),
    "TIFF": ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"),
}


def _int_param(value: object, name: str) -> int:
    """A stored job param as an int (``parse_params`` stored an int; ``int()`` also takes str/float)."""
    if isinstance(value, int | float | str):
        return int(value)
    raise TypeError(f"job param {name!r} is not a number: {value!r}")


def _has_alpha(mode: str, info: Mapping[str | tuple[int, int], object]) -> bool:
    return mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in info)


class ImageConversionPlugin(Plugin):
    """Pillow image format conversion (see the module docstring)."""

    task_type: ClassVar[str] = "image_conversion"
    details: ClassVar[Mapping[str, str]] = {"backend": "Pillow"}
    form_fields: ClassVar[Mapping[str, Mapping[str, object]]] = {
        "format": {
            "type": "string",
            "enum": list(FORMATS),
            "description": "Target format (case-insensitive; `jpeg` is written as `.jpg`). Required.",
        },
        "quality": {
            "type": "integer",
            "default": 85,
            "minimum": 1,
            "maximum": 100,
            "description": "Encoder quality for jpg/jpeg and webp (other formats ignore it).",
        },
    }
    required_form_fields: ClassVar[tuple[str, ...]] = ("format",)

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        """Validate ``format`` (required) and ``quality`` (1-100, default 85)."""
        value = _media.form_value(form, "format")
        if value is None:
            raise ParamError("format", "Field required", "missing")
        fmt = value.lower()
        if fmt not in FORMATS:
            raise ParamError(
                "format",
                "Input should be 'png', 'jpg', 'jpeg', 'webp', 'gif', 'bmp' or 'tiff'",
                "literal_error",
            )
        quality = _media.form_int(form, "quality", 85, minimum=1, maximum=100)
        ext = FORMATS[fmt][1]
        stem = _media.safe_stem(upload_name)
        return {"format": fmt, "quality": quality, "output_path": f"output/converted_{stem}.{ext}"}

    def load(self) -> None:
        """Record the Pillow version and which target formats this Pillow can write."""
        from PIL import features

        type(self).details = {
            "backend": f"Pillow {_media.pillow_version()}",
            "webp": str(bool(features.check("webp"))),
            "heif": _media.heif_support(),
        }

    def run(self, ctx: TaskContext) -> dict[str, object]:
        """Convert the image and write it to ``params['output_path']``."""
        _media.require_input(ctx.input_path)
        fmt = str(ctx.params.get("format", "")).lower()
        if fmt not in FORMATS:
            raise PluginError(f"Unsupported target format {fmt!r}")
        pil_format = FORMATS[fmt][0]
        quality = _int_param(ctx.params.get("quality", 85) or 85, "quality")
        if quirks().fault_image_conversion_quality_ignored:  # a planted defect (faults profile family)
            quality = 85
        if quirks().fault_image_conversion_png_always:  # a planted defect: PNG bytes under the requested name
            pil_format = "PNG"
        out = ctx.output(str(ctx.params["output_path"]))
        out.parent.mkdir(parents=True, exist_ok=True)
        ctx.report_progress(10)

        try:
            with _media.open_image(ctx.input_path) as src:
                ctx.report_progress(40)
                img = self._prepare(src, pil_format)
                kwargs: dict[str, object] = {}
                if pil_format in ("JPEG", "WEBP"):
                    kwargs["quality"] = quality
                if pil_format == "PNG":
                    kwargs["optimize"] = True
                if pil_format == "TIFF":
                    kwargs["compression"] = "tiff_deflate"
                try:
                    img.save(out, format=pil_format, **kwargs)
                except (OSError, ValueError, KeyError) as exc:
                    out.unlink(missing_ok=True)
                    raise PluginError(f"Cannot write the image as {pil_format}: {exc}") from exc
        except _media.NotAnImageError as exc:
            raise PluginError(f"The input is not an image Pillow can decode: {exc}") from exc
        ctx.report_progress(100)
        return {}

    @staticmethod
    def _prepare(img: PILImage.Image, pil_format: str) -> PILImage.Image:
        if img.mode in _NATIVE_MODES[pil_format]:
            return img
        if pil_format == "JPEG":
            return _media.flatten_to_rgb(img)
        if img.mode in ("I;16B", "I;16L", "I;16N", "F") and pil_format != "TIFF":
            return _media.flatten_to_rgb(img).convert("L") if img.mode != "F" else img.convert("L")
        return img.convert("RGBA" if _has_alpha(img.mode, img.info) else "RGB")
