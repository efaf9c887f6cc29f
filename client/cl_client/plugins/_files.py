"""File access for typed results, written once for both clients (sans-I/O "plans").

A plan is a generator that yields ``Read(path)`` (give me the bytes of this job file) or ``Save(path, dest)``
(download this job file to ``dest``) and receives the answer; its return value is the result. ``JobFiles.run``
drives a plan with sync I/O and ``JobFiles.arun`` with async I/O, so the logic of "download the whole HLS
tree" or "read ``hash.json``" exists once for ``ComputeClient`` and ``AsyncComputeClient``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from cl_client._exceptions import ComputeClientError
from cl_client._partials import owner_tag, sweep_partials

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


class StagedFolder:
    """All-or-nothing download of several files into the folder ``dest``.

    Files are written into a temporary folder beside ``dest`` (inside it only when its parent is not
    writable), every one of them checked by the plan that fetches them; ``commit`` then moves them into
    ``dest`` (created only then), and ``discard`` removes whatever is left. A download that fails leaves
    nothing in ``dest``, and files already in ``dest`` that the download does not replace are never touched.

    Args:
        dest: the target folder (it may exist already, or not).
    """

    def __init__(self, dest: Path) -> None:
        self.dest = Path(os.path.abspath(dest))
        self._created_dest = False  # dest made only to hold the staging folder: removed again on failure
        self._committed = False
        # the name names this process (``cl_client._partials``): the next download into the same folder
        # removes it when this process was killed before it could
        owner = owner_tag()
        prefix = f".{self.dest.name or 'download'}.{owner}"
        self._created_parents = [p for p in self.dest.parents if not p.exists()]
        try:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            sweep_partials(self.dest.parent)
            self.path = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=self.dest.parent))
        except OSError:  # e.g. the parent is not writable (a download into a home folder): stage inside
            self._created_dest = not self.dest.exists()
            self.dest.mkdir(parents=True, exist_ok=True)
            sweep_partials(self.dest)
            self.path = Path(tempfile.mkdtemp(prefix=f".cl-download.{owner}", suffix=".partial", dir=self.dest))

    def commit(self, written: list[Path]) -> list[Path]:
        """Move every staged file into ``dest`` (same relative path) and return ``written`` mapped there.

        Raises:
            ComputeClientError: a staged file would replace a folder in ``dest`` (checked before any move).
        """
        staged = sorted(p for p in self.path.rglob("*") if p.is_file())
        moves = [(src, self.dest / src.relative_to(self.path)) for src in staged]
        for _, target in moves:
            if target.is_dir():
                raise ComputeClientError(f"cannot download into {self.dest}: {target} is a folder")
        for src, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(src, target)
            except OSError as exc:  # pragma: no cover - the staging folder is on another file system
                if exc.errno != errno.EXDEV:
                    raise
                shutil.move(src, target)
        self._committed = True
        return [self.dest / p.relative_to(self.path) for p in written]

    def discard(self) -> None:
        """Remove the staging folder and anything still in it (idempotent)."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.path)
        if not self._committed:
            for folder in [self.dest] if self._created_dest else []:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            for folder in self._created_parents:  # made for this download only (deepest first; if empty)
                with contextlib.suppress(OSError):
                    folder.rmdir()


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

    def run_into(self, dest: Path | str, make_plan: Callable[[Path], Plan[list[Path]]]) -> list[Path]:
        """Drive a plan that writes several files into a folder, all or nothing (see ``StagedFolder``).

        Args:
            dest: the target folder.
            make_plan: builds the plan for a given folder (it is handed the staging folder).

        Returns:
            The files written, as paths inside ``dest``.

        Raises:
            Whatever the plan raises; then nothing of this download is in ``dest``.
        """
        staging = StagedFolder(Path(dest))
        try:
            return staging.commit(self.run(make_plan(staging.path)))
        finally:
            staging.discard()

    async def arun_into(self, dest: Path | str, make_plan: Callable[[Path], Plan[list[Path]]]) -> list[Path]:
        """Async ``run_into``."""
        staging = StagedFolder(Path(dest))
        try:
            return staging.commit(await self.arun(make_plan(staging.path)))
        finally:
            staging.discard()

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
