"""A deterministic, training-free image descriptor: the stand-in for CLIP / DINOv2 embeddings.

No pretrained CLIP or DINOv2 weights can be had for the reference deployment (backends.md §4), so by
default the embedding plugins compute this descriptor instead. It is **not** a neural embedding and carries
no semantics; it only keeps the geometry the protocol relies on: the same bytes give the same vector,
near-duplicates (re-encoded, resized, PNG vs JPEG, slightly rotated) stay close, unrelated images are far apart.

Pipeline (all fixed, no randomness at run time):

1. the upright RGB image is resized (area filter, aspect ratio ignored like upstream's 224x224 resize);
2. three feature blocks are computed: a joint RGB colour histogram (soft, square-rooted: Hellinger), a HOG
   gradient-orientation descriptor of the grey image, and the low-frequency 2-D DCT of the grey image
   (DC term dropped);
3. each block is centred (its own mean removed) and L2-normalised, weighted, and the blocks concatenated;
4. the result is multiplied by a Gaussian random matrix with a fixed seed (a Johnson-Lindenstrauss
   projection, which approximately preserves cosines) to the target dimension;
5. the caller L2-normalises the vector when ``normalize`` is true. The raw projection's norm is about
   ``sqrt(dim)`` (≈ 22 for 512, ≈ 19.6 for 384), never 1.

The CLIP and DINO stand-ins use different seeds and block weights, so their vectors differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from PIL import Image


class _Hog(Protocol):
    """``skimage.feature.hog`` as called here (its decorator hides the signature from type checkers)."""

    def __call__(
        self,
        image: NDArray[np.float64],
        *,
        orientations: int,
        pixels_per_cell: tuple[int, int],
        cells_per_block: tuple[int, int],
        block_norm: str,
        feature_vector: bool,
    ) -> NDArray[np.float64]: ...


@dataclass(frozen=True)
class DescriptorSpec:
    """Parameters of one stand-in descriptor.

    Attributes:
        name: label used in ``details``.
        dim: output dimension.
        seed: seed of the projection matrix.
        hist_bins: bins per RGB channel of the joint colour histogram.
        hog_size: side of the grey image HOG is computed on.
        hog_cell: HOG cell size in pixels.
        dct_size: side of the grey image the DCT is computed on.
        dct_keep: the top-left ``dct_keep x dct_keep`` DCT coefficients are kept (minus DC).
        w_hist, w_hog, w_dct: block weights.
    """

    name: str
    dim: int
    seed: int
    hist_bins: int = 6
    hog_size: int = 63
    hog_cell: int = 21
    hog_orientations: int = 8
    hog_blur: int = 3
    dct_size: int = 64
    dct_keep: int = 6
    layout_grid: int = 3
    w_layout: float = 0.5
    w_hist: float = 0.5
    w_hog: float = 1.0
    w_dct: float = 0.25


def _centred_unit(block: NDArray[np.float64]) -> NDArray[np.float64]:
    import numpy as np

    block = block - np.mean(block)
    norm = float(np.linalg.norm(block))
    if norm <= 1e-12:
        return np.zeros_like(block)
    return block / norm


def colour_histogram(rgb: NDArray[np.uint8], bins: int) -> NDArray[np.float64]:
    """Soft (trilinear) joint RGB histogram with ``bins`` per channel, Hellinger-mapped (square root)."""
    import numpy as np

    pix = rgb.reshape(-1, 3).astype(np.float64) * ((bins - 1) / 255.0)
    lo = np.floor(pix).astype(np.int64)
    lo = np.clip(lo, 0, bins - 2) if bins > 1 else np.zeros_like(lo)
    frac = pix - lo
    hist = np.zeros(bins**3, dtype=np.float64)
    for dr in (0, 1):
        wr = frac[:, 0] if dr else 1.0 - frac[:, 0]
        for dg in (0, 1):
            wg = frac[:, 1] if dg else 1.0 - frac[:, 1]
            for db in (0, 1):
                wb = frac[:, 2] if db else 1.0 - frac[:, 2]
                idx = ((lo[:, 0] + dr) * bins + (lo[:, 1] + dg)) * bins + (lo[:, 2] + db)
                np.add.at(hist, np.minimum(idx, bins**3 - 1), wr * wg * wb)
    hist /= max(np.sum(hist), 1e-12)
    return np.sqrt(hist)


def hog_block(grey: NDArray[np.float64], cell: int, orientations: int) -> NDArray[np.float64]:
    """HOG (2x2-cell blocks, L2-Hys, square-rooted) of a grey image in [0, 1]."""
    import numpy as np
    from skimage import feature

    hog = cast("_Hog", feature.hog)
    feats = hog(
        grey,
        orientations=orientations,
        pixels_per_cell=(cell, cell),
        cells_per_block=(2, 2),
        block_norm="L2-Hys",
        feature_vector=True,
    )
    return np.sqrt(np.asarray(feats, dtype=np.float64))


def dct_block(grey: NDArray[np.float64], keep: int) -> NDArray[np.float64]:
    """Top-left ``keep x keep`` 2-D DCT coefficients of a grey image, DC removed."""
    import cv2
    import numpy as np

    coeffs = cv2.dct(np.ascontiguousarray(grey, dtype=np.float64))[:keep, :keep].reshape(-1)
    return np.asarray(coeffs[1:], dtype=np.float64)


@lru_cache(maxsize=8)
def projection_matrix(rows: int, dim: int, seed: int) -> NDArray[np.float64]:
    """The fixed Gaussian projection (``rows x dim``, standard normal entries) for a spec."""
    import numpy as np

    return np.random.default_rng(seed).standard_normal((rows, dim))


def features(img: Image.Image, spec: DescriptorSpec) -> NDArray[np.float64]:
    """Concatenated, weighted feature blocks of an RGB Pillow image (before projection)."""
    import cv2
    import numpy as np

    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    # Downscale with an area filter first (anti-aliasing), then work at fixed sizes.
    small = cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA)
    small = cast("NDArray[np.uint8]", cv2.GaussianBlur(small, (3, 3), 0))  # OpenCV keeps the dtype
    hist = colour_histogram(small, spec.hist_bins)

    grey_full = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    grey_hog = cv2.resize(grey_full, (spec.hog_size, spec.hog_size), interpolation=cv2.INTER_AREA)
    if spec.hog_blur > 1:
        grey_hog = cv2.GaussianBlur(grey_hog, (spec.hog_blur, spec.hog_blur), 0)
    hog = hog_block(grey_hog.astype(np.float64) / 255.0, spec.hog_cell, spec.hog_orientations)

    grey_dct = cv2.resize(grey_full, (spec.dct_size, spec.dct_size), interpolation=cv2.INTER_AREA)
    dct = dct_block(grey_dct.astype(np.float64) / 255.0, spec.dct_keep)

    grid = spec.layout_grid
    layout = cv2.resize(small, (grid, grid), interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0

    return np.concatenate(
        [
            spec.w_layout * _centred_unit(layout.reshape(-1)),
            spec.w_hist * _centred_unit(hist),
            spec.w_hog * _centred_unit(hog),
            spec.w_dct * _centred_unit(dct),
        ]
    )


def describe(img: Image.Image, spec: DescriptorSpec) -> NDArray[np.float64]:
    """The raw (unnormalised) ``spec.dim``-d descriptor of an RGB Pillow image."""
    feats = features(img, spec)
    matrix = projection_matrix(len(feats), spec.dim, spec.seed)
    return feats @ matrix
