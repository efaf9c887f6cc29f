"""Helpers plugin modules use to read their outputs: paths, JSON files, ``.npy`` vectors."""

from __future__ import annotations

import io
import json
import re
from typing import TYPE_CHECKING, cast

from pydantic import JsonValue

from cl_client._exceptions import ComputeClientError
from cl_client._models import JobResponse
from cl_client.plugins._files import Plan, read, safe_relative

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


def output_file(record: JobResponse, default: str) -> str:
    """The job-relative output file: ``params.output_path`` (checked), else ``default``."""
    path = record.output_path or default
    return safe_relative(path, where=f"job {record.job_id} params.output_path")


def job_relative(path: str, job_id: str) -> str:
    """Normalise a server path to one relative to the job directory.

    Upstream returns absolute server paths (``/data/compute/jobs/<id>/output/adaptive.m3u8``): everything up to
    and including ``jobs/<job_id>/`` is stripped. A relative path is only checked.

    Raises:
        ComputeClientError: an absolute path without ``jobs/<job_id>/`` in it, or a ``..`` path.
    """
    text = path.strip().replace("\\", "/")
    marker = f"jobs/{job_id}/"
    if marker in text:
        text = text.split(marker, 1)[1]
    elif text.startswith("/") or re.match(r"^[A-Za-z]:/", text):
        raise ComputeClientError(f"cannot map server path {path!r} into job {job_id}: it lacks {marker!r}")
    return safe_relative(text, where=f"job {job_id}")


def task_output_value(record: JobResponse, key: str) -> JsonValue:
    """``task_output[key]`` or None."""
    return (record.task_output or {}).get(key)


def as_int(value: JsonValue) -> int | None:
    """An int from JSON (bools and non-integers give None)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def as_float(value: JsonValue) -> float | None:
    """A float from JSON (bools and non-numbers give None)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def as_str(value: JsonValue) -> str | None:
    """A string from JSON (numbers are formatted, other types give None)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return None


def as_bool(value: JsonValue) -> bool | None:
    """A bool from JSON (``"true"``/``"false"`` strings too)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def read_json_object(record: JobResponse, path: str) -> Plan[dict[str, JsonValue]]:
    """Plan: read a job file and parse it as a JSON object.

    Raises:
        ComputeClientError: not JSON or not an object (names the job and the file).
    """
    data = yield from read(path)
    try:
        value = cast(object, json.loads(data))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ComputeClientError(f"job {record.job_id}: {path} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ComputeClientError(f"job {record.job_id}: {path} is not a JSON object")
    return cast(dict[str, JsonValue], value)


def parse_npy(data: bytes, *, where: str) -> NDArray[np.float32]:
    """Parse ``.npy`` bytes (never pickles) into a 1-D float32 vector.

    Raises:
        ComputeClientError: not a ``.npy`` file, not numeric, not a vector, or not finite.
    """
    import numpy as np

    try:
        loaded = cast(object, np.load(io.BytesIO(data), allow_pickle=False))
    except (ValueError, OSError, EOFError) as exc:
        raise ComputeClientError(f"{where} is not a valid .npy file ({exc})") from None
    if not isinstance(loaded, np.ndarray):
        raise ComputeClientError(f"{where} does not hold a single array")
    array = cast("NDArray[np.generic]", loaded)
    if array.dtype.kind not in "fiu":
        raise ComputeClientError(f"{where} holds {array.dtype} values, not numbers")
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1 or array.size == 0:
        raise ComputeClientError(f"{where} holds an array of shape {array.shape}, not a vector")
    vector = array.astype(np.float32)
    if not bool(np.isfinite(vector).all()):
        raise ComputeClientError(f"{where} holds non-finite values")
    vector.setflags(write=False)
    return vector
