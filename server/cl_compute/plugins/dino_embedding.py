"""dino_embedding backend: 384-d image embedding (stand-in descriptor by default, never DINOv2).

Upstream runs DINOv2 ViT-S/14 (an ONNX file downloaded at run time) and keeps the CLS token. No pretrained
DINOv2 weights can be had for this deployment, so by default the vector is a **deterministic, training-free
image descriptor** (:mod:`cl_compute.plugins._descriptor`), with its own seed and block weights (so it differs
from the clip_embedding stand-in), projected to 384. It keeps near-duplicates close and unrelated images
apart, but it has no semantics: do not compare it with upstream DINOv2 vectors.

Set ``CL_COMPUTE_DINO_ONNX=/path/to/dinov2_vits14.onnx`` to run a real DINOv2 ONNX model instead, with
upstream's preprocessing (RGB, 224x224 bilinear, ImageNet mean/std, NCHW float32; CLS token of a sequence).

Output: ``output/dino_embedding.npy`` (float32 [384], L2-normalised when ``normalize`` is true);
``task_output = {"embedding_dim": 384, "normalized": bool}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from cl_compute.plugins._descriptor import DescriptorSpec
from cl_compute.plugins._embedding import ImageEmbeddingPlugin
from cl_compute.plugins._onnx import DINO_PREPROCESS, OnnxPreprocess

DINO_SPEC = DescriptorSpec(
    name="dino-standin-v1",
    dim=384,
    seed=0xD1A0,
    hist_bins=5,
    w_layout=0.5,
    w_hist=0.3,
    w_hog=0.8,
    w_dct=0.3,
)


class DinoEmbeddingPlugin(ImageEmbeddingPlugin):
    """384-d embedding; the default is a stand-in descriptor, not DINOv2 (see the module docstring)."""

    task_type: ClassVar[str] = "dino_embedding"
    output_path: ClassVar[str] = "output/dino_embedding.npy"
    dim: ClassVar[int] = 384
    spec: ClassVar[DescriptorSpec] = DINO_SPEC
    onnx_env: ClassVar[str] = "CL_COMPUTE_DINO_ONNX"
    onnx_preprocess: ClassVar[OnnxPreprocess] = DINO_PREPROCESS
    details: ClassVar[Mapping[str, str]] = {
        "model": (
            "STAND-IN, NOT DINOv2: deterministic training-free descriptor (colour layout + colour histogram "
            "+ HOG + low-frequency DCT, fixed-seed Gaussian projection to 384-d); no semantics"
        ),
        "descriptor": DINO_SPEC.name,
        "onnx_override": "set CL_COMPUTE_DINO_ONNX to a DINOv2 ONNX file to run it on ONNX Runtime",
    }
