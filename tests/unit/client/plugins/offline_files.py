"""An in-memory job directory for result parsing without a server (a fake file store: a real server will not
serve upstream's quirks or hostile playlists on demand)."""

from __future__ import annotations

from pathlib import Path

from cl_client import JobResponse, NotFoundError
from cl_client.plugins import JobFiles

JOB = "11111111-2222-3333-4444-555555555555"


def fake_files(store: dict[str, bytes]) -> JobFiles:
    """``JobFiles`` of job ``JOB`` reading from ``store`` (path -> bytes); a missing path is a 404."""

    def read(path: str) -> bytes:
        if path not in store:
            raise NotFoundError(f"404 {path}", method="GET", url=path, status_code=404, detail="File not found")
        return store[path]

    def save(path: str, dest: Path) -> Path:
        dest.write_bytes(read(path))
        return dest

    async def aread(path: str) -> bytes:
        return read(path)

    async def asave(path: str, dest: Path) -> Path:
        return save(path, dest)

    return JobFiles(JOB, read, save, aread, asave)


def record(task_type: str, params: dict[str, object], task_output: dict[str, object]) -> JobResponse:
    """A completed ``JobResponse`` of job ``JOB``."""
    return JobResponse.model_validate(
        {"job_id": JOB, "task_type": task_type, "status": "completed", "params": params, "task_output": task_output}
    )
