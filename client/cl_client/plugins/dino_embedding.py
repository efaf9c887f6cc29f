"""dino_embedding: a 384-d image embedding (``output/dino_embedding.npy``)."""

from __future__ import annotations

from cl_client._tracker import JobCallback
from cl_client.plugins._base import OutT_co, PathLike, PluginClient, PluginSpec
from cl_client.plugins._embedding import NORMALIZE, EmbeddingResult, embedding_builder

SPEC: PluginSpec[EmbeddingResult] = PluginSpec(
    task_type="dino_embedding",
    fields=(NORMALIZE,),
    build=embedding_builder("dino_embedding"),
    method="embed_image",
    command="embed",
    metavar="IMAGE",
    summary="DINOv2 image embedding (384 floats)",
)


class DinoEmbeddingClient(PluginClient[OutT_co]):
    """``client.dino_embedding``: DINOv2 image embeddings; ``result()`` gives an ``EmbeddingResult``."""

    def embed_image(
        self,
        image: PathLike,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        *,
        normalize: bool = True,
        priority: int | None = None,
        filename: str | None = None,
    ) -> OutT_co:
        """Embed an image.

        Args:
            image: the image file.
            wait: wait for the job to end before returning (a failed job is returned, not raised).
            timeout: seconds ``wait`` may take.
            on_progress: called with a JobResponse on every update.
            on_complete: called once with the final JobResponse.
            normalize: L2-normalise the vector (default true).
            priority: 0-10.
            filename: upload name (default: the file's name).

        Returns:
            ``PluginJob[EmbeddingResult]`` (awaitable ``AsyncPluginJob`` on the async client).

        Raises:
            ConfigurationError: a bad argument (nothing sent). FileNotFoundError: no such image.
        """
        return self.submit(
            image, {"normalize": normalize}, priority=priority, wait=wait, timeout=timeout,
            on_progress=on_progress, on_complete=on_complete, filename=filename,
        )  # fmt: skip
