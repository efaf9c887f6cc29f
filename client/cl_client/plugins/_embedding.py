"""The embedding result shared by clip_embedding, dino_embedding and face_embedding."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from pydantic import JsonValue

from cl_client._models import JobResponse
from cl_client._tracker import JobCallback
from cl_client.plugins._base import OutT_co, PathLike, PluginClient, PluginResult
from cl_client.plugins._fields import BoolField
from cl_client.plugins._files import JobFiles, Plan, read
from cl_client.plugins._parse import as_bool, as_float, output_file, parse_npy, task_output_value

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

NORMALIZE = BoolField("normalize", "L2-normalise the vector", value_default=True)


@dataclass(frozen=True, kw_only=True)
class EmbeddingResult(PluginResult):
    """An embedding vector, read once from the job's ``.npy`` file.

    Attributes:
        embedding: the float32 vector (read-only numpy array).
        dim: its length.
        normalized: whether the server L2-normalised it.
        output_path: the ``.npy`` file in the job directory.
    """

    embedding: NDArray[np.float32] = field(repr=False, compare=False)
    dim: int
    normalized: bool
    output_path: str
    raw: bytes = field(repr=False, compare=False, default=b"")

    def _outputs_plan(self, dest: Path) -> Plan[list[Path]]:
        target = dest / self.output_path.rsplit("/", 1)[-1]
        target.write_bytes(self.raw)  # the bytes read once; no second download
        return [target]
        yield  # pragma: no cover - makes this a generator

    def summary(self) -> str:
        """Return e.g. ``512-d normalized [0.0780, 0.0128, -0.0259, ...]``."""
        head = ", ".join(f"{float(x):.4f}" for x in cast(list[float], self.embedding[:3].tolist()))
        return f"{self.dim}-d {'normalized' if self.normalized else 'raw'} [{head}, ...]"

    def as_dict(self) -> dict[str, JsonValue]:
        """Return ``dim``, ``normalized``, ``output_path`` and the vector as a list."""
        return {
            "dim": self.dim,
            "normalized": self.normalized,
            "output_path": self.output_path,
            "embedding": [float(x) for x in cast(list[float], self.embedding.tolist())],
        }


@dataclass(frozen=True, kw_only=True)
class FaceEmbeddingResult(EmbeddingResult):
    """A face embedding: the vector plus the server's sharpness score.

    Attributes:
        quality_score: 0..1 sharpness of the input (None when the server gives none).
    """

    quality_score: float | None = None

    def summary(self) -> str:
        """Return the embedding summary plus the quality score."""
        score = "n/a" if self.quality_score is None else f"{self.quality_score:.3f}"
        return f"{super().summary()} quality {score}"

    def as_dict(self) -> dict[str, JsonValue]:
        """Return ``EmbeddingResult.as_dict`` plus ``quality_score``."""
        out = super().as_dict()
        out["quality_score"] = self.quality_score
        return out


def _vector_plan(record: JobResponse, task_type: str) -> Plan[tuple[str, bytes, NDArray[np.float32], bool]]:
    path = output_file(record, f"output/{task_type}.npy")
    data = yield from read(path)
    vector = parse_npy(data, where=f"job {record.job_id} {path}")
    normalized = as_bool(task_output_value(record, "normalized"))
    if normalized is None:
        normalized = as_bool(record.params.get("normalize")) is not False
    return path, data, vector, normalized


def embedding_builder(task_type: str) -> Callable[[JobResponse, JobFiles], Plan[EmbeddingResult]]:
    """The result builder of an embedding plugin whose vector is ``output/<task_type>.npy``."""

    def build(record: JobResponse, files: JobFiles) -> Plan[EmbeddingResult]:
        path, data, vector, normalized = yield from _vector_plan(record, task_type)
        return EmbeddingResult(
            job=record, files=files, embedding=vector, dim=vector.size, normalized=normalized,
            output_path=path, raw=data,
        )  # fmt: skip

    return build


def build_face_embedding(record: JobResponse, files: JobFiles) -> Plan[FaceEmbeddingResult]:
    """Builder of face_embedding results."""
    path, data, vector, normalized = yield from _vector_plan(record, "face_embedding")
    return FaceEmbeddingResult(
        job=record,
        files=files,
        embedding=vector,
        dim=vector.size,
        normalized=normalized,
        output_path=path,
        raw=data,
        quality_score=as_float(task_output_value(record, "quality_score")),
    )


class ImageEmbeddingClient(PluginClient[OutT_co]):
    """The body shared by ``client.clip_embedding`` and ``client.dino_embedding`` (same form, same result)."""

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
