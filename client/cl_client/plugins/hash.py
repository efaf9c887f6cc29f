"""hash: MD5 or SHA-512 of a file (``output/hash.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import JsonValue

from cl_client._exceptions import ComputeClientError
from cl_client._models import JobResponse
from cl_client._tracker import JobCallback
from cl_client.plugins._base import OutT_co, PathLike, PluginClient, PluginResult, PluginSpec
from cl_client.plugins._fields import ChoiceField
from cl_client.plugins._files import JobFiles, Plan
from cl_client.plugins._parse import as_float, as_str, output_file, read_json_object, task_output_value


@dataclass(frozen=True, kw_only=True)
class HashResult(PluginResult):
    """A hash read from ``hash.json``.

    Attributes:
        hash_value: lower-case hex digest.
        algorithm: ``md5``, ``sha512_image`` (decoded pixels), ``sha512_video`` (key frames) or
            ``sha512_generic`` (file bytes).
        media_type: ``image``, ``video``, ``audio``, ``text``, ``url`` or ``file``.
        process_time: seconds the server spent (None if not reported).
    """

    hash_value: str
    algorithm: str
    media_type: str | None = None
    process_time: float | None = None

    def summary(self) -> str:
        """Return ``<algorithm> <hex>``."""
        return f"{self.algorithm} {self.hash_value}"

    def as_dict(self) -> dict[str, JsonValue]:
        """hash_value, algorithm, media_type, process_time."""
        return {
            "hash_value": self.hash_value,
            "algorithm": self.algorithm,
            "media_type": self.media_type,
            "process_time": self.process_time,
        }


def build(record: JobResponse, files: JobFiles) -> Plan[HashResult]:
    """Read ``hash.json`` into a ``HashResult``."""
    path = output_file(record, "output/hash.json")
    data = yield from read_json_object(record, path)
    value = as_str(data.get("hash_value"))
    algorithm = as_str(data.get("algorithm"))
    if not value or not algorithm:
        raise ComputeClientError(f"job {record.job_id}: {path} lacks hash_value or algorithm")
    media = as_str(data.get("media_type")) or as_str(task_output_value(record, "media_type"))
    return HashResult(
        job=record,
        files=files,
        hash_value=value.lower(),
        algorithm=algorithm,
        media_type=media,
        process_time=as_float(data.get("process_time")),
    )


SPEC: PluginSpec[HashResult] = PluginSpec(
    task_type="hash",
    fields=(ChoiceField("algorithm", "hash algorithm", choices=("sha512", "md5"), value_default="sha512"),),
    build=build,
    method="compute",
    command="compute",
    metavar="FILE",
    summary="MD5, or SHA-512 of the pixels/key frames/bytes",
)


class HashClient(PluginClient[OutT_co]):
    """``client.hash``: file hashes; ``result()`` gives a ``HashResult``."""

    TASK_TYPE: ClassVar[str] = "hash"

    def compute(
        self,
        image: PathLike,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        *,
        algorithm: Literal["sha512", "md5"] = "sha512",
        priority: int | None = None,
        filename: str | None = None,
    ) -> OutT_co:
        """Hash a file.

        Args:
            image: the file (any type).
            wait: wait for the job to end before returning (a failed job is returned, not raised).
            timeout: seconds ``wait`` may take.
            on_progress: called with a JobResponse on every update.
            on_complete: called once with the final JobResponse.
            algorithm: ``sha512`` (default; of decoded pixels for images) or ``md5`` (of the bytes).
            priority: 0-10.
            filename: upload name.

        Returns:
            ``PluginJob[HashResult]`` (awaitable ``AsyncPluginJob`` on the async client).

        Raises:
            ConfigurationError: a bad argument (nothing sent). FileNotFoundError: no such file.
        """
        return self.submit(
            image, {"algorithm": algorithm}, priority=priority, wait=wait, timeout=timeout,
            on_progress=on_progress, on_complete=on_complete, filename=filename,
        )  # fmt: skip
