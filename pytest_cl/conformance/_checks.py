"""Small, independent helpers for the conformance checks (computed by the tests, never by the code under test)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

#: Leading bytes of each image format the deployments produce.
MAGIC: dict[str, tuple[bytes, ...]] = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
    "bmp": (b"BM",),
    "tiff": (b"II*\x00", b"MM\x00*"),
}


def has_magic(data: bytes, fmt: str) -> bool:
    """True when ``data`` starts like a ``fmt`` file (WebP: RIFF....WEBP)."""
    if fmt == "webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return data.startswith(MAGIC[fmt])


def cosine(a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
    """Cosine similarity of two vectors."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
