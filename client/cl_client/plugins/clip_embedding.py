"""clip_embedding: a 512-d image embedding (``output/clip_embedding.npy``)."""

from __future__ import annotations

from typing import ClassVar

from cl_client.plugins._base import OutT_co, PluginSpec
from cl_client.plugins._embedding import NORMALIZE, EmbeddingResult, ImageEmbeddingClient, embedding_builder

SPEC: PluginSpec[EmbeddingResult] = PluginSpec(
    task_type="clip_embedding",
    fields=(NORMALIZE,),
    build=embedding_builder("clip_embedding"),
    method="embed_image",
    command="embed",
    metavar="IMAGE",
    summary="CLIP image embedding (512 floats)",
)


class ClipEmbeddingClient(ImageEmbeddingClient[OutT_co]):
    """``client.clip_embedding``: CLIP image embeddings; ``result()`` gives an ``EmbeddingResult``."""

    TASK_TYPE: ClassVar[str] = "clip_embedding"
