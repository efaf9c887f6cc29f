"""Partial downloads that name their owner process, and the sweep of those whose owner is gone.

A download is written to ``.<name>.<pid>.<start>-<random>.part`` (one file) or into the staging folder
``.<name>.<pid>.<start>-<random>.partial`` (several files) beside its destination, and renamed into place when
complete. ``<start>`` is the owner's start time (field 22 of ``/proc/<pid>/stat``), which tells a reused pid
apart. An owner killed by SIGKILL (or SIGTERM without a handler) leaves its partial behind; the next download into
the same folder removes the partials whose owner is gone (:func:`sweep_partials`).

This is a small client-side copy of the owner logic of ``cl_compute.owned_tmp`` (which sweeps the server's and
pytest_cl's temporary folders): cl_client does not import cl_compute, and cl_compute does not import cl_client's
internals, so each package keeps its own few lines. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

#: ``.<name>.<pid>.<start>-<random>.part`` / ``.partial``
_PARTIAL = re.compile(r"^\..+\.(?P<pid>\d+)\.(?P<start>\d+)-[A-Za-z0-9_]+\.(?:part|partial)$")


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of /proc/<pid>/stat), or None when it is gone or unknown.

    Args:
        pid: the process.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        fields = stat[stat.rindex(")") + 2 :].split()
    except (OSError, ValueError):
        return None
    return fields[19] if len(fields) > 19 else None


def owner_tag() -> str:
    """``<pid>.<start>-``: what a partial's name carries after ``.<name>.`` to name this process as its owner."""
    pid = os.getpid()
    return f"{pid}.{process_start(pid) or 0}-"


def sweep_partials(folder: Path) -> list[Path]:
    """Remove the partial downloads in ``folder`` whose owner process is gone; return them.

    Partials of live processes, and hidden files that are no owner-named partial, are left alone; so is
    everything where ``/proc`` cannot tell who is alive (every owner would look gone).

    Args:
        folder: the folder a download goes into.
    """
    removed: list[Path] = []
    if process_start(os.getpid()) is None:
        return removed
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.startswith(".")]
    except OSError:
        return removed
    for name in names:
        owner = _PARTIAL.match(name)
        if owner is None or process_start(int(owner["pid"])) == owner["start"]:
            continue
        path = folder / name
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed
