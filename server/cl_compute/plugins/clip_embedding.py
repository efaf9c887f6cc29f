"""clip_embedding backend: 512-d image embedding (stand-in descriptor by default, never CLIP).

Upstream runs MobileCLIP's vision tower (an ONNX file downloaded at run time). No pretrained CLIP weights
can be had for this deployment, so by default the vector is a **deterministic, training-free image
descriptor** (colour layout, colour histogram, HOG, low-frequency DCT; fixed-seed Gaussian projection to 512;
see :mod:`cl_compute.plugins._descriptor`). It keeps near-duplicates close and unrelated images apart, but it
has no semantics: do not compare it with upstream CLIP vectors or with text embeddings.

Set ``CL_COMPUTE_CLIP_ONNX=/path/to/vision_model.onnx`` to run a real CLIP vision ONNX model instead, with
upstream's preprocessing (RGB, 224x224 bicubic, CLIP mean/std, NCHW float32) on ONNX Runtime.

Output: ``output/clip_embedding.npy`` (float32 [512], L2-normalised when ``normalize`` is true);
``task_output = {"embedding_dim": 512, "normalized": bool}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from cl_compute.plugins._descriptor import DescriptorSpec
from cl_compute.plugins._embedding import ImageEmbeddingPlugin
from cl_compute.plugins._onnx import CLIP_PREPROCESS, OnnxPreprocess

CLIP_SPEC = DescriptorSpec(
    name="clip-standin-v1",
    dim=512,
    seed=0xC11B,
    hist_bins=6,
    w_layout=0.5,
    w_hist=0.5,
    w_hog=1.0,
    w_dct=0.25,
)


class ClipEmbeddingPlugin(ImageEmbeddingPlugin):
    """512-d embedding; the default is a stand-in descriptor, not CLIP (see the module docstring)."""

    task_type: ClassVar[str] = "clip_embedding"
    output_path: ClassVar[str] = "output/clip_embedding.npy"
    dim: ClassVar[int] = 512
    spec: ClassVar[DescriptorSpec] = CLIP_SPEC
    onnx_env: ClassVar[str] = "CL_COMPUTE_CLIP_ONNX"
    onnx_preprocess: ClassVar[OnnxPreprocess] = CLIP_PREPROCESS
    details: ClassVar[Mapping[str, str]] = {
        "model": (
            "STAND-IN, NOT CLIP: deterministic training-free descriptor (colour layout + colour histogram "
            "+ HOG + low-frequency DCT, fixed-seed Gaussian projection to 512-d); no semantics"
        ),
        "descriptor": CLIP_SPEC.name,
        "onnx_override": "set CL_COMPUTE_CLIP_ONNX to a CLIP vision ONNX file to run it on ONNX Runtime",
    }
