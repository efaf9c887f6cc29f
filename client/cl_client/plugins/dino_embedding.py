"""dino_embedding: a 384-d image embedding (``output/dino_embedding.npy``)."""

from __future__ import annotations

from typing import ClassVar

from cl_client.plugins._base import OutT_co, PluginSpec
from cl_client.plugins._embedding import NORMALIZE, EmbeddingResult, ImageEmbeddingClient, embedding_builder

SPEC: PluginSpec[EmbeddingResult] = PluginSpec(
    task_type="dino_embedding",
    fields=(NORMALIZE,),
    build=embedding_builder("dino_embedding"),
    method="embed_image",
    command="embed",
    metavar="IMAGE",
    summary="DINOv2 image embedding (384 floats)",
)


class DinoEmbeddingClient(ImageEmbeddingClient[OutT_co]):
    """``client.dino_embedding``: DINOv2 image embeddings; ``result()`` gives an ``EmbeddingResult``."""

    TASK_TYPE: ClassVar[str] = "dino_embedding"
