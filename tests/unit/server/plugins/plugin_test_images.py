"""Image helpers shared by the plugin backend tests (encoding test inputs in memory)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def rgb(arr: np.ndarray) -> np.ndarray:
    """An RGB copy of a grey, RGB or RGBA array (alpha dropped)."""
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


def encode(img: Image.Image | np.ndarray, fmt: str = "PNG", **kw: object) -> bytes:
    """The bytes of ``img`` saved as ``fmt`` (arrays are converted to RGB first)."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(rgb(img))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()
