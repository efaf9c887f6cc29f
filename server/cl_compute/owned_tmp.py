"""Temporary folders that name their owner process, and the sweep of those whose owner is gone.

A folder is made as ``<prefix><pid>.<start>-<random>`` (``<start>``: the process start time in clock ticks, field
22 of ``/proc/<pid>/stat``, which tells a reused pid apart). Its owner removes it at the end; an owner killed with
SIGKILL (or by the OOM killer) never gets there, and the next :func:`sweep_owned_tmp_dirs` removes it. Used by
``cl_compute.deployment`` (data, logs, the auth key) and by pytest_cl (the folder an xdist run shares).

Standard library only, so that pytest_cl can use it without the server's dependencies.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

_OWNER = re.compile(r"^(?P<pid>\d+)\.(?P<start>\d+)-")


def proc_stat(pid: int) -> list[str] | None:
    """Return the fields after the command name of /proc/<pid>/stat (state, ppid, pgrp, ...), or None if gone.

    Args:
        pid: the process.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        return stat[stat.rindex(")") + 2 :].split()
    except (OSError, ValueError):
        return None


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of /proc/<pid>/stat), or None when it is gone or unknown.

    With the pid it identifies a process even after the pid was reused.

    Args:
        pid: the process.
    """
    fields = proc_stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def make_owned_tmp_dir(prefix: str) -> Path:
    """Make a folder in the system temporary folder whose name names this process as its owner.

    Args:
        prefix: the start of the name; the owner and mkdtemp's random part follow it.
    """
    pid = os.getpid()
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{pid}.{process_start(pid) or 0}-"))


def sweep_owned_tmp_dirs(prefixes: Iterable[str], root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the folders made by :func:`make_owned_tmp_dir` with one of ``prefixes`` whose owner is gone.

    Folders of live processes, and folders whose name names no owner after the prefix (another kind, or made by
    an older version), are left alone; so is everything where ``/proc`` cannot tell who is alive (every owner
    would look gone, live ones too).

    Args:
        prefixes: the prefixes the folders were made with.
        root: the folder to look in (default: the system temporary folder).

    Returns:
        the folders removed.
    """
    removed: list[Path] = []
    if process_start(os.getpid()) is None:
        return removed
    wanted = tuple(prefixes)
    base = Path(root) if root is not None else Path(tempfile.gettempdir())
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(wanted) and p.is_dir()]
    except OSError:
        return removed
    for folder in candidates:
        prefix = next(p for p in wanted if folder.name.startswith(p))
        owner = _OWNER.match(folder.name[len(prefix) :])
        if owner is None or process_start(int(owner["pid"])) == owner["start"]:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed
