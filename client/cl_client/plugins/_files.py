"""File access for typed results, written once for both clients (sans-I/O "plans").

A plan is a generator that yields ``Read(path)`` (give me the bytes of this job file) or ``Save(path, dest)``
(download this job file to ``dest``) and receives the answer; its return value is the result. ``JobFiles.run``
drives a plan with sync I/O and ``JobFiles.arun`` with async I/O, so the logic of "download the whole HLS
tree" or "read ``hash.json``" exists once for ``ComputeClient`` and ``AsyncComputeClient``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from cl_client._exceptions import ComputeClientError

T = TypeVar("T")


@dataclass(frozen=True)
class Read:
    """Ask for the bytes of ``path`` (relative to the job directory)."""

    path: str


@dataclass(frozen=True)
class Save:
    """Ask to download ``path`` (relative to the job directory) to the local file ``dest``."""

    path: str
    dest: Path


Step = Read | Save
Plan = Generator[Step, bytes | Path, T]


def read(path: str) -> Generator[Step, bytes | Path, bytes]:
    """Plan step: the bytes of a job file (use with ``yield from``)."""
    value = yield Read(path)
    if not isinstance(value, bytes):  # pragma: no cover - the drivers always answer a Read with bytes
        raise TypeError("a Read step must be answered with bytes")
    return value


def save(path: str, dest: Path) -> Generator[Step, bytes | Path, Path]:
    """Plan step: download a job file to ``dest`` and get the written path (use with ``yield from``)."""
    value = yield Save(path, dest)
    if not isinstance(value, Path):  # pragma: no cover - the drivers always answer a Save with a Path
        raise TypeError("a Save step must be answered with a Path")
    return value


def safe_relative(path: str, *, where: str) -> str:
    """Check a server-given relative path: no absolute path, no URL, no ``..``, no empty segment.

    Returns:
        The normalised path (``a/./b`` -> ``a/b``).

    Raises:
        ComputeClientError: the path would leave the job directory (names ``where`` it came from).
    """
    text = path.strip()
    if not text or text.startswith(("/", "\\")) or "://" in text or ":" in text.split("/", 1)[0]:
        raise ComputeClientError(f"refusing unsafe path {path!r} from {where}: must be relative")
    parts = text.replace("\\", "/").split("/")
    if ".." in parts:
        raise ComputeClientError(f"refusing unsafe path {path!r} from {where}: contains '..'")
    return posixpath.normpath("/".join(parts))


class JobFiles:
    """Runs plans against one job's files with sync or async I/O.

    Args:
        job_id: the job.
        read_sync: ``file_path -> bytes``.
        save_sync: ``(file_path, dest) -> written path``.
        read_async: async ``file_path -> bytes``.
        save_async: async ``(file_path, dest) -> written path``.
    """

    def __init__(
        self,
        job_id: str,
        read_sync: Callable[[str], bytes],
        save_sync: Callable[[str, Path], Path],
        read_async: Callable[[str], Awaitable[bytes]],
        save_async: Callable[[str, Path], Awaitable[Path]],
    ) -> None:
        self.job_id = job_id
        self._read = read_sync
        self._save = save_sync
        self._aread = read_async
        self._asave = save_async

    def __repr__(self) -> str:
        return f"JobFiles(job_id={self.job_id!r})"

    def run(self, plan: Plan[T]) -> T:
        """Drive a plan with blocking I/O and return its result."""
        try:
            step = next(plan)
            while True:
                try:
                    answer = self._read(step.path) if isinstance(step, Read) else self._save(step.path, step.dest)
                except Exception as exc:  # the plan may handle it (e.g. an optional file that is missing)
                    step = plan.throw(exc)
                    continue
                step = plan.send(answer)
        except StopIteration as stop:
            return cast(T, stop.value)

    async def arun(self, plan: Plan[T]) -> T:
        """Drive a plan with async I/O and return its result."""
        try:
            step = next(plan)
            while True:
                try:
                    if isinstance(step, Read):
                        answer: bytes | Path = await self._aread(step.path)
                    else:
                        answer = await self._asave(step.path, step.dest)
                except Exception as exc:  # the plan may handle it
                    step = plan.throw(exc)
                    continue
                step = plan.send(answer)
        except StopIteration as stop:
            return cast(T, stop.value)
