"""The check that a test session leaves nothing in the system temporary folder.

The root ``conftest.py`` takes a :func:`snapshot` of the ``cl-*`` entries of the temporary folder when the session
starts and calls :func:`leftovers` when it ends: an entry that is new and still there (after a short wait for
processes that are stopping) fails the session. On a shared machine other sessions may be running, so an entry
that a live process still holds (open, in its command line or working folder, or a ``cl_compute.owned_tmp``
folder whose owner is alive) is theirs and not counted; ours are all stopped by the end of the session.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

#: the names the project's code gives its temporary files and folders
PREFIX = "cl-"
_OWNER = re.compile(r"-(?P<pid>\d+)\.(?P<start>\d+)-")


def snapshot(root: Path | None = None) -> set[str]:
    """The names of the ``cl-*`` entries of ``root`` (default: the system temporary folder).

    Args:
        root: the folder to look in.
    """
    base = root if root is not None else Path(tempfile.gettempdir())
    try:
        return {p.name for p in base.iterdir() if p.name.startswith(PREFIX)}
    except OSError:
        return set()


def _live_references() -> tuple[set[str], list[str]]:
    """Paths open in a live process of this user, and the command lines and working folders of those processes."""
    opened: set[str] = set()
    texts: list[str] = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            texts.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            texts.append(os.readlink(entry / "cwd"))
            for fd in (entry / "fd").iterdir():
                opened.add(os.readlink(fd))
        except OSError:
            continue
    return opened, texts


def _owner_alive(name: str) -> bool:
    from cl_compute.owned_tmp import process_start

    owner = _OWNER.search(name)
    return owner is not None and process_start(int(owner["pid"])) == owner["start"]


def in_use(path: Path, opened: Iterable[str], texts: Iterable[str]) -> bool:
    """Whether a live process still holds ``path`` (see the module docstring).

    Args:
        path: the entry.
        opened: the paths open in live processes.
        texts: their command lines and working folders.
    """
    text = str(path)
    if _owner_alive(path.name):
        return True
    if any(o == text or o.startswith(text + "/") for o in opened):
        return True
    return any(text in t for t in texts)


def leftovers(before: set[str], root: Path | None = None, wait: float = 10.0) -> list[str]:
    """The ``cl-*`` entries new since ``before`` that no live process holds, after waiting up to ``wait`` s.

    Args:
        before: the :func:`snapshot` taken at the start.
        root: the folder (default: the system temporary folder).
        wait: how long entries may take to go away (processes that are still stopping).
    """
    base = root if root is not None else Path(tempfile.gettempdir())
    deadline = time.monotonic() + wait
    while True:
        new = sorted(snapshot(base) - before)
        if new:
            opened, texts = _live_references()
            new = [name for name in new if not in_use(base / name, opened, texts)]
        if not new or time.monotonic() >= deadline:
            return new
        time.sleep(0.5)
