"""Shared helpers of the ML backends: form-field parsing and safe image loading.

Module level imports stay light (the API server imports the plugin modules to validate forms); Pillow and
numpy are imported inside the functions that need them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cl_compute.plugins.base import ParamError, PluginError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from PIL import Image

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})

#: Refuse images with more pixels than this (a decompression-bomb guard). ``CL_COMPUTE_MAX_IMAGE_PIXELS``
#: overrides it; the default is Pillow's own warning limit (about 89.5 megapixels, e.g. 11000x8000).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


def parse_bool(form: Mapping[str, str], name: str, default: bool) -> bool:
    """Parse a boolean form field: true/false/1/0/yes/no/on/off, case-insensitive; absent or "" = default."""
    raw = form.get(name)
    if raw is None:
        return default
    value = str(raw).strip().lower()
    if value == "":
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ParamError(name, f"Input should be a valid boolean, got {raw!r}", "bool_parsing")


def parse_unit_float(form: Mapping[str, str], name: str, default: float) -> float:
    """Parse a float form field that must lie in [0, 1]; absent or "" = default."""
    raw = form.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise ParamError(name, f"Input should be a valid number, got {raw!r}", "float_parsing") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ParamError(name, f"Input should be a finite number, got {raw!r}", "finite_number")
    if value < 0.0:
        raise ParamError(name, "Input should be greater than or equal to 0", "greater_than_equal")
    if value > 1.0:
        raise ParamError(name, "Input should be less than or equal to 1", "less_than_equal")
    return value


def float_param(params: Mapping[str, object], name: str, default: float) -> float:
    """A numeric job param (as ``parse_params`` stored it) as a float; ``default`` when absent.

    Raises:
        TypeError: the stored value is not something ``float()`` takes.
    """
    value = params.get(name, default)
    if isinstance(value, int | float | str):
        return float(value)
    raise TypeError(f"job param {name!r} is not a number: {value!r}")


def max_image_pixels() -> int:
    """The decompression-bomb limit in pixels (env ``CL_COMPUTE_MAX_IMAGE_PIXELS`` or the default)."""
    raw = os.environ.get("CL_COMPUTE_MAX_IMAGE_PIXELS", "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            return DEFAULT_MAX_IMAGE_PIXELS
        if value > 0:
            return value
    return DEFAULT_MAX_IMAGE_PIXELS


def load_rgb_image(path: Path) -> Image.Image:
    """Open an image file safely and return it upright (EXIF orientation applied) in RGB mode.

    The first frame is used for animated/multi-page files. Transparent areas are composited on white.

    Raises:
        PluginError: empty, unreadable, truncated or non-image file, or more pixels than
            :func:`max_image_pixels` (decompression bomb).
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PluginError(f"Input file cannot be read: {exc}") from exc
    if size == 0:
        raise PluginError("Input file is empty (0 bytes); expected an image")
    limit = max_image_pixels()
    try:
        with warnings.catch_warnings():
            # Pillow only *warns* between its limit and twice that; make every bomb an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PluginError(f"Image refused as a possible decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise PluginError("Input is not an image format this backend can read (Pillow cannot identify it)") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise PluginError(f"Image file is corrupt or truncated: {exc}") from exc
    with img:
        width, height = img.size
        if width <= 0 or height <= 0:
            raise PluginError(f"Image has no pixels ({width}x{height})")
        if width * height > limit:
            raise PluginError(
                f"Image is too large: {width}x{height} = {width * height} pixels exceeds the limit of "
                f"{limit} pixels (decompression-bomb guard; CL_COMPUTE_MAX_IMAGE_PIXELS raises it)"
            )
        try:
            img.load()
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise PluginError(f"Image file is corrupt or truncated: {exc}") from exc
        try:
            upright = ImageOps.exif_transpose(img)  # a new image (None only with in_place=True)
        except Exception:  # a broken EXIF block must not sink an otherwise readable image
            upright = img
        rgb = to_rgb(upright)
        # Closing ``img`` invalidates its pixels: hand back an independent image.
        return rgb.copy() if rgb is img else rgb


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (16-bit/float greys rescaled, alpha composited on white)."""
    import numpy as np
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if img.mode != "F" and hi <= 255 and lo >= 0:
            scaled = arr
        else:
            scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def image_hw(arr: NDArray[np.generic]) -> tuple[int, int]:
    """``(height, width)`` of an image array shaped (H, W) or (H, W, C), as Python ints."""
    shape: tuple[int, ...] = arr.shape
    return shape[0], shape[1]


def save_vector(path: Path, vector: object) -> None:
    """Write a 1-D float32 vector with ``np.save`` (the exact file name, no extra ``.npy`` appended)."""
    import numpy as np

    arr = np.asarray(vector, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise PluginError("Embedding contains non-finite values")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.save(fh, arr)
