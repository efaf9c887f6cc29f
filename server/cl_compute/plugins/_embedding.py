"""The shared body of the clip_embedding and dino_embedding backends.

Default: the deterministic stand-in descriptor of :mod:`cl_compute.plugins._descriptor` (never CLIP or
DINOv2: no such weights can be had here). When the environment variable named by ``onnx_env`` points at an
ONNX model file, that model runs instead on ONNX Runtime, as upstream does (:mod:`cl_compute.plugins._onnx`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from cl_compute.plugins._descriptor import DescriptorSpec
from cl_compute.plugins._imageio import load_rgb_image, parse_bool, save_vector
from cl_compute.plugins._onnx import OnnxPreprocess
from cl_compute.plugins.base import BOOL_SPELLINGS, BackendUnavailable, Plugin, PluginError, TaskContext
from cl_compute.profile import quirks

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


class ImageEmbeddingPlugin(Plugin):
    """Image embedding backend parametrised by subclasses (dimension, descriptor spec, ONNX settings)."""

    output_path: ClassVar[str]
    dim: ClassVar[int]
    spec: ClassVar[DescriptorSpec]
    onnx_env: ClassVar[str]
    onnx_preprocess: ClassVar[OnnxPreprocess]
    real_model: ClassVar[str]
    form_fields: ClassVar[Mapping[str, Mapping[str, object]]] = {
        "normalize": {
            "type": "boolean",
            "default": True,
            "description": f"L2-normalise the stored vector (norm 1). {BOOL_SPELLINGS}.",
        }
    }

    def __init__(self) -> None:
        self._loaded = False
        self._onnx: object | None = None

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        """Validate ``normalize`` (bool, default true)."""
        return {"normalize": parse_bool(form, "normalize", True), "output_path": self.output_path}

    def load(self) -> None:
        """Load the ONNX model named by the environment, or check the descriptor's libraries."""
        if self._loaded:
            return
        model = os.environ.get(self.onnx_env, "").strip()
        if model:
            path = Path(model).expanduser()
            if not path.is_file():
                raise BackendUnavailable(f"{self.onnx_env}={model!r} is not a file; unset it to use the stand-in")
            try:
                from cl_compute.plugins._onnx import OnnxImageEmbedder

                self._onnx = OnnxImageEmbedder(path, self.onnx_preprocess, self.dim, self.spec.seed)
            except ImportError as exc:
                raise BackendUnavailable(f"onnxruntime is needed for {self.onnx_env} ({exc})") from exc
            except Exception as exc:  # onnxruntime raises its own exception types on bad files
                raise BackendUnavailable(f"cannot load ONNX model {path} ({self.onnx_env}): {exc}") from exc
            pre = self.onnx_preprocess
            # Per-instance details (the model file comes from the environment), overriding the ClassVar.
            self.details = {  # pyright: ignore[reportAttributeAccessIssue]
                "model": f"ONNX model file {path} (from {self.onnx_env}) on ONNX Runtime CPU",
                "preprocessing": f"RGB, {pre.size}x{pre.size} {pre.resample}, mean {pre.mean}, std {pre.std}",
                "output": f"first output pooled (CLS token / global average); {self.dim}-d",
            }
        else:
            try:
                import cv2  # noqa: F401  # pyright: ignore[reportUnusedImport]
                import skimage.feature  # noqa: F401  # pyright: ignore[reportUnusedImport]
            except ImportError as exc:
                raise BackendUnavailable(
                    f"the stand-in descriptor needs opencv-python-headless<5 and scikit-image ({exc})"
                ) from exc
            self.details = dict(type(self).details)  # pyright: ignore[reportAttributeAccessIssue]
        self._loaded = True

    def embed(self, path: Path) -> NDArray[np.float64]:
        """The raw (unnormalised) vector of an image file."""
        from cl_compute.plugins._descriptor import describe
        from cl_compute.plugins._onnx import OnnxImageEmbedder

        img = load_rgb_image(path)
        if isinstance(self._onnx, OnnxImageEmbedder):
            try:
                return self._onnx.embed(img)
            except Exception as exc:
                raise PluginError(f"ONNX model {self._onnx.path} failed on this image: {exc}") from exc
        return describe(img, self.spec)

    def run(self, ctx: TaskContext) -> dict[str, object]:
        """Write the ``.npy`` vector and return ``{"embedding_dim", "normalized"}``."""
        import numpy as np

        self.load()
        normalize = bool(ctx.params.get("normalize", True))
        output_rel = str(ctx.params.get("output_path") or self.output_path)
        ctx.report_progress(10)
        vector = np.asarray(self.embed(ctx.input_path), dtype=np.float64).reshape(-1)
        ctx.report_progress(80)
        if vector.size != self.dim:
            raise PluginError(f"embedding has {vector.size} values, expected {self.dim}")
        if normalize:
            norm = float(np.linalg.norm(vector))
            if not np.isfinite(norm) or norm <= 1e-12:
                raise PluginError("embedding has zero norm; cannot normalise")
            vector = vector / norm
        # planted defects (faults profile family): clip stores float64, dino stores CLIP's length (zero-padded)
        if self.task_type == "dino_embedding" and quirks().fault_dino_clip_length:
            vector = np.concatenate([vector, np.zeros(512 - vector.size)])
        if self.task_type == "clip_embedding" and quirks().fault_clip_float64:
            out = ctx.output(output_rel)
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("wb") as fh:
                np.save(fh, vector.astype(np.float64))
        else:
            save_vector(ctx.output(output_rel), vector)
        ctx.report_progress(100)
        return {"embedding_dim": self.dim, "normalized": normalize}
