"""ONNX Runtime helpers: sessions and upstream's image-embedding code path.

Upstream's clip_embedding and dino_embedding run an ONNX vision model on ONNX Runtime (CPU). This module
keeps that path: when an operator points ``CL_COMPUTE_CLIP_ONNX`` / ``CL_COMPUTE_DINO_ONNX`` at a model file,
:class:`OnnxImageEmbedder` preprocesses like upstream (RGB, 224x224, mean/std, NCHW float32), runs the model,
and pools its first output to one vector:

* ``(N, D)`` → row 0; ``(N, T, D)`` (a token sequence, e.g. DINOv2's ``last_hidden_state``) → the CLS
  token ``[0, 0]``; ``(N, C, H, W)`` (a feature map) → global average pooling over H, W;
* a vector whose length differs from the protocol dimension is mapped to it with a fixed seeded Gaussian
  projection (the plugin's ``details`` say so). A real MobileCLIP (512) or DINOv2-S/14 (384) model needs none.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from PIL import Image


class OrtNodeArg(Protocol):
    """The part of ``onnxruntime.NodeArg`` (a model input or output) used here."""

    @property
    def name(self) -> str: ...

    @property
    def shape(self) -> Sequence[int | str | None]:
        """Dimensions: an int when fixed, a symbolic name (str) or None when not."""
        ...

    @property
    def type(self) -> str:
        """The element type, e.g. ``"tensor(float)"``."""
        ...


class OrtSession(Protocol):
    """The part of ``onnxruntime.InferenceSession`` used here (onnxruntime ships no type information)."""

    def get_inputs(self) -> Sequence[OrtNodeArg]: ...

    def get_outputs(self) -> Sequence[OrtNodeArg]: ...

    def run(
        self, output_names: Sequence[str] | None, input_feed: Mapping[str, NDArray[np.float32 | np.float16]]
    ) -> list[object]:
        """The requested outputs (numpy arrays for tensor outputs), in ``output_names`` order."""
        ...


class _OrtSessionOptions(Protocol):
    intra_op_num_threads: int
    inter_op_num_threads: int
    log_severity_level: int


class _OrtModule(Protocol):
    """The part of the ``onnxruntime`` module used by :func:`make_session`."""

    def SessionOptions(self) -> _OrtSessionOptions: ...

    def InferenceSession(
        self, path: str, *, sess_options: _OrtSessionOptions, providers: Sequence[str]
    ) -> OrtSession: ...


def ort_threads() -> int:
    """Intra-op threads for ONNX Runtime sessions (``CL_COMPUTE_ORT_THREADS``, default min(2, cpus))."""
    raw = os.environ.get("CL_COMPUTE_ORT_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, min(2, os.cpu_count() or 1))


def make_session(path: Path) -> OrtSession:
    """Create a CPU ONNX Runtime session for ``path`` with quiet logging and bounded threads."""
    import onnxruntime  # pyright: ignore[reportMissingTypeStubs]  # untyped; typed through _OrtModule

    ort = cast("_OrtModule", onnxruntime)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = ort_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class OnnxPreprocess:
    """Upstream's preprocessing for a vision model.

    Attributes:
        size: square input side when the model's input shape does not fix it.
        resample: ``"bicubic"`` (CLIP) or ``"bilinear"`` (DINOv2).
        mean, std: per-channel normalisation of RGB values scaled to [0, 1].
    """

    size: int
    resample: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CLIP_PREPROCESS = OnnxPreprocess(
    size=224,
    resample="bicubic",
    mean=(0.48145466, 0.4578275, 0.40821073),
    std=(0.26862954, 0.26130258, 0.27577711),
)
DINO_PREPROCESS = OnnxPreprocess(size=224, resample="bilinear", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


class OnnxImageEmbedder:
    """Run an ONNX vision model on one image and return a ``dim``-long float64 vector.

    Raises:
        RuntimeError / OSError: the model cannot be loaded (the caller turns it into BackendUnavailable).
        ValueError: the model's input is not an image tensor with 3 channels.
    """

    def __init__(self, path: Path, preprocess: OnnxPreprocess, dim: int, seed: int) -> None:
        self.path = path
        self.preprocess = preprocess
        self.dim = dim
        self.seed = seed
        self._session = make_session(path)
        first = self._session.get_inputs()[0]
        self._input_name: str = first.name
        shape = list(first.shape)
        if len(shape) != 4:
            raise ValueError(f"model input {first.name!r} has shape {shape}; expected a 4-D image tensor")
        if shape[1] == 3:
            self.layout = "NCHW"
            spatial = shape[2:4]
        elif shape[3] == 3:
            self.layout = "NHWC"
            spatial = shape[1:3]
        else:
            raise ValueError(f"model input {first.name!r} has shape {shape}; expected 3 colour channels")
        h, w = (s if isinstance(s, int) and s > 0 else preprocess.size for s in spatial)
        self.input_size = (int(w), int(h))
        self.input_dtype = "float16" if "float16" in str(first.type) else "float32"
        self.output_name: str = self._session.get_outputs()[0].name
        self.native_dim: int | None = None

    def _tensor(self, img: Image.Image) -> NDArray[np.float32 | np.float16]:
        import numpy as np
        from PIL import Image as PILImage

        resample = (
            PILImage.Resampling.BICUBIC if self.preprocess.resample == "bicubic" else PILImage.Resampling.BILINEAR
        )
        resized = img.convert("RGB").resize(self.input_size, resample=resample)
        arr = np.asarray(resized, dtype=np.float32) / 255.0
        arr = (arr - np.asarray(self.preprocess.mean, dtype=np.float32)) / np.asarray(
            self.preprocess.std, dtype=np.float32
        )
        if self.layout == "NCHW":
            arr = arr.transpose(2, 0, 1)
        return np.ascontiguousarray(arr[None], dtype=self.input_dtype)

    def embed(self, img: Image.Image) -> NDArray[np.float64]:
        """Preprocess, run, pool and (only if needed) project to ``dim``."""
        import numpy as np

        outputs = self._session.run([self.output_name], {self._input_name: self._tensor(img)})
        out = np.asarray(outputs[0], dtype=np.float64)
        if out.ndim == 4:
            vec = np.asarray(np.mean(out[0, ...], axis=(1, 2), dtype=np.float64))
        elif out.ndim == 3:
            vec = out[0, 0, :]
        elif out.ndim == 2:
            vec = out[0, :]
        else:
            vec = out.reshape(-1)
        vec = vec.reshape(-1)
        self.native_dim = int(vec.size)
        if vec.size != self.dim:
            from cl_compute.plugins._descriptor import projection_matrix

            vec = vec @ projection_matrix(int(vec.size), self.dim, self.seed) / math.sqrt(self.dim)
        return vec
