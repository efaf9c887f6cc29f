"""face_embedding: a 512-d embedding of a (cropped) face image (``output/face_embedding.npy``)."""

from __future__ import annotations

from typing import ClassVar

from cl_client._tracker import JobCallback
from cl_client.plugins._base import OutT_co, PathLike, PluginClient, PluginSpec
from cl_client.plugins._embedding import NORMALIZE, FaceEmbeddingResult, build_face_embedding

SPEC: PluginSpec[FaceEmbeddingResult] = PluginSpec(
    task_type="face_embedding",
    fields=(NORMALIZE,),
    build=build_face_embedding,
    method="embed_faces",
    command="embed",
    metavar="IMAGE",
    summary="face embedding (512 floats) with a quality score",
)


class FaceEmbeddingClient(PluginClient[OutT_co]):
    """``client.face_embedding``: face embeddings; ``result()`` gives a ``FaceEmbeddingResult``."""

    TASK_TYPE: ClassVar[str] = "face_embedding"

    def embed_faces(
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
        """Embed a face image (best with a 112x112 aligned crop from face_detection).

        Args:
            image: the face image.
            wait: wait for the job to end before returning (a failed job is returned, not raised).
            timeout: seconds ``wait`` may take.
            on_progress: called with a JobResponse on every update.
            on_complete: called once with the final JobResponse.
            normalize: L2-normalise the vector (default true).
            priority: 0-10.
            filename: upload name.

        Returns:
            ``PluginJob[FaceEmbeddingResult]`` (awaitable ``AsyncPluginJob`` on the async client).

        Raises:
            ConfigurationError: a bad argument (nothing sent). FileNotFoundError: no such image.
        """
        return self.submit(
            image, {"normalize": normalize}, priority=priority, wait=wait, timeout=timeout,
            on_progress=on_progress, on_complete=on_complete, filename=filename,
        )  # fmt: skip
