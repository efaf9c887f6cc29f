"""The folder an xdist run shares between its controller and workers, named after its owner.

The controller makes ``pytest-cl-<pid>.<start>-<random>`` (``<start>``: the process start time in clock ticks,
which tells a reused pid apart) and removes it at the end. A controller killed with SIGKILL never gets there;
the next run's controller removes the folders whose owner is gone (:func:`sweep_stale_shared_dirs`). This needs
``/proc``: where there is none, nothing is swept and no live run's folder is ever touched.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

#: the prefix of the shared folders.
PREFIX = "pytest-cl-"
_OWNER = re.compile(r"^pytest-cl-(?P<pid>\d+)\.(?P<start>\d+)-")


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of ``/proc/<pid>/stat``), or None when it is gone or unknown.

    Args:
        pid: the process.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes().decode(errors="replace")
        fields = stat[stat.rindex(")") + 2 :].split()
    except (OSError, ValueError):
        return None
    return fields[19] if len(fields) > 19 else None


def make_shared_dir() -> Path:
    """Make this process's shared folder in the system temporary folder; its name names this process."""
    pid = os.getpid()
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{pid}.{process_start(pid) or 0}-"))


def sweep_stale_shared_dirs(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the shared folders whose owning process is gone; return them.

    Folders of live processes, folders whose name names no owner (other ``pytest-cl-`` folders, or made by an
    older version) and everything else are left alone, and so is everything when ``/proc`` cannot tell.

    Args:
        root: the folder to look in (default: the system temporary folder).
    """
    if process_start(os.getpid()) is None:  # no /proc: every owner would look gone
        return []
    base = Path(root) if root is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(PREFIX) and p.is_dir()]
    except OSError:
        return removed
    for folder in candidates:
        owner = _OWNER.match(folder.name)
        if owner is None or process_start(int(owner["pid"])) == owner["start"]:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed
