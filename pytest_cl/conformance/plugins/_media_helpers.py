"""Helpers of the media plugin suites (hash, exif, image_conversion, media_thumbnail, hls_streaming).

Everything here is computed independently of the code under test: hashes with hashlib, pixels with Pillow,
HLS with the ``m3u8`` parser. Submissions go through ``ComputeClient.submit`` (the generic path: fields are
sent as given) so that the suites see what the *server* does with them.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from cl_client import ComputeClient, JobResponse
from pytest_cl.conformance._checks import expect_one_completion


@dataclass
class Callbacks:
    """``on_progress`` / ``on_complete`` recorders (the "MQTT callback" half of each suite)."""

    progress: list[JobResponse] = field(default_factory=list[JobResponse])
    complete: list[JobResponse] = field(default_factory=list[JobResponse])
    done: threading.Event = field(default_factory=threading.Event)

    def on_progress(self, job: JobResponse) -> None:
        self.progress.append(job)

    def on_complete(self, job: JobResponse) -> None:
        self.complete.append(job)
        self.done.set()


def run_job(
    client: ComputeClient,
    task_type: str,
    path: Path,
    params: Mapping[str, object] | None = None,
    *,
    timeout: float | None = None,
) -> JobResponse:
    """Submit with callbacks, wait for the end, and check that ``on_complete`` fired once with that end.

    The wait is bounded by ``timeout`` or else the client's job timeout (``--cl-job-timeout``, which ends before
    the test's own timeout): a job that never ends fails the test instead of hanging the run. Returns the final
    record (completed or error: the caller decides which it expects).
    """
    calls = Callbacks()
    job = client.submit(
        task_type, path, dict(params or {}), on_progress=calls.on_progress, on_complete=calls.on_complete
    )
    final = job.wait(timeout)
    assert calls.done.wait(10), f"{task_type} job {final.job_id}: on_complete never fired (status {final.status})"
    expect_one_completion(task_type, job.job_id, final, calls.complete)
    progress = [p.progress for p in calls.progress]
    assert progress == sorted(progress), f"{task_type} job {final.job_id}: progress went backwards: {progress}"
    return final


def completed(
    client: ComputeClient,
    task_type: str,
    path: Path,
    params: Mapping[str, object] | None = None,
    *,
    timeout: float | None = None,
) -> JobResponse:
    """``run_job`` that must end ``completed`` (the server's error message is shown otherwise)."""
    final = run_job(client, task_type, path, params, timeout=timeout)
    assert final.status == "completed", (
        f"{task_type} job {final.job_id} on {path.name} ended {final.status!r} ({final.error_message}),"
        " expected 'completed'"
    )
    assert final.progress == 100, (
        f"{task_type} job {final.job_id} completed with progress {final.progress}, expected 100"
    )
    return final


def failed(
    client: ComputeClient,
    task_type: str,
    path: Path,
    params: Mapping[str, object] | None = None,
    *,
    timeout: float | None = None,
) -> JobResponse:
    """``run_job`` that must end ``error`` with a non-empty message (no hang: the wait is bounded)."""
    final = run_job(client, task_type, path, params, timeout=timeout)
    assert final.is_failed, (
        f"{task_type} job {final.job_id} on {path.name} should end 'error', ended {final.status!r}"
        f" (task_output {final.task_output})"
    )
    assert isinstance(final.error_message, str) and final.error_message.strip(), (
        f"{task_type} job {final.job_id} on {path.name} ended {final.status!r} without an error_message"
        f" (got {final.error_message!r})"
    )
    return final


def read_file(client: ComputeClient, job: JobResponse, file_path: str) -> bytes:
    """Download one job file (relative to the job directory) and return its bytes."""
    return client.read_job_file(job.job_id, file_path)


def read_json(client: ComputeClient, job: JobResponse, file_path: str) -> dict[str, object]:
    """Download a JSON job file; it must hold an object."""
    raw = read_file(client, job, file_path)
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise AssertionError(
            f"{job.task_type} job {job.job_id}: {file_path} is not JSON ({exc}): {raw[:200]!r}"
        ) from None
    assert isinstance(data, dict), f"{job.task_type} job {job.job_id}: {file_path} is not a JSON object: {data!r:.200}"
    return data


def output_path(job: JobResponse) -> str:
    """``params.output_path`` (the protocol's only way to find the output file)."""
    value = job.params.get("output_path")
    assert isinstance(value, str) and value, f"job {job.job_id} has no params.output_path: {job.params}"
    return value


def decode(data: bytes) -> Image.Image:
    """Open image bytes with Pillow and decode them fully (a broken file fails here)."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def pixel_bytes(path: Path) -> bytes:
    """The decoded pixel buffer of the first frame in the file's own mode (upstream's image hash input)."""
    with Image.open(path) as img:
        img.seek(0)
        return img.tobytes()
