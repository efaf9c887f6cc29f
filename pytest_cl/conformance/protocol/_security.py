"""Judges of the security checks (``test_security.py``): pure functions from what the deployment answered to a
finding in words, or None (unit-tested on their own, ``tests/unit/pytest_cl/test_security.py``).

The probes never harm a deployment: they read only ``/etc/hostname`` (harmless, present on every Linux host),
write only under a fresh directory of their own (``/tmp/cl-probe-<uuid>``) or to a file name of their own
(``cl-probe-<uuid>.jpg``), and delete every job they create.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

#: the harmless server file the input probe names
HARMLESS_INPUT = "/etc/hostname"


def _ended(record: Mapping[str, object] | None) -> str:
    if record is None:
        return "did not end within the wait"
    status = record.get("status")
    message = record.get("error_message")
    return f"ended {status} {message!r}" if message else f"ended {status}"


def judge_input_path(status: int, job_id: str | None, record: Mapping[str, object] | None) -> str | None:
    """The finding of ``POST /jobs/hls_streaming`` with ``input_absolute_path=/etc/hostname`` and no file.

    Args:
        status: the POST's HTTP status.
        job_id: the job it created (200), else None.
        record: the job's final record (None: it did not end, or none was created).

    Returns:
        None when the deployment refused the request (any 4xx: it does not know the field, or requires ``file``),
        else the finding in words.
    """
    if 400 <= status < 500:
        return None
    if status != 200:
        return (
            f"POST /jobs/hls_streaming with input_absolute_path={HARMLESS_INPUT} and no file answered {status} instead "
            "of refusing it with a 4xx: the server tried to use a path the caller named"
        )
    return (
        f"POST /jobs/hls_streaming with input_absolute_path={HARMLESS_INPUT} and no file was accepted (200, job "
        f"{job_id}), and the job {_ended(record)}: any caller can make the server read its files (and tell from the "
        "error whether a path exists)"
    )


def judge_output_path(
    status: int, job_id: str | None, record: Mapping[str, object] | None, probe_dir: str, written: bool
) -> str | None:
    """The finding of ``POST /jobs/hls_streaming`` with a video and ``output_absolute_path=<probe_dir>``.

    Args:
        status: the POST's HTTP status.
        job_id: the job it created (200), else None.
        record: the job's final record (None: it did not end, or none was created).
        probe_dir: the fresh directory named (``/tmp/cl-probe-<uuid>``).
        written: the directory exists on this machine (an embedded or local deployment).

    Returns:
        None when the deployment refused the field (4xx) or ignored it (the job's outputs stay in its folder), else
        the finding in words.
    """
    if 400 <= status < 500:
        return None
    if status != 200:
        return (
            f"POST /jobs/hls_streaming with output_absolute_path={probe_dir} answered {status} instead of refusing it "
            "with a 4xx"
        )
    params = record.get("params") if record is not None else None
    output = record.get("task_output") if record is not None else None
    echoed = isinstance(params, Mapping) and probe_dir in str(params)
    master = output.get("master_playlist") if isinstance(output, Mapping) else None
    into = isinstance(master, str) and posixpath.normpath(master).startswith(probe_dir)
    if not (echoed or into or written):
        return None  # the field was ignored: the job wrote into its own folder
    seen = [
        *(["the job's params carry the path"] if echoed else []),
        *([f"its master_playlist is {master}"] if into else []),
        *([f"{probe_dir} now exists on the server's machine"] if written else []),
    ]
    return (
        f"POST /jobs/hls_streaming with output_absolute_path={probe_dir} was accepted (200, job {job_id}) and used "
        f"({'; '.join(seen)}; the job {_ended(record)}): any caller can make the server write files where it names"
    )


def judge_upload_name(sent: str, status: int, job_id: str | None, input_path: object) -> str | None:
    """The finding of an upload whose file name climbs out of ``input/`` (``../../cl-probe-<uuid>.jpg``).

    Args:
        sent: the file name sent.
        status: the POST's HTTP status.
        job_id: the job it created (200), else None.
        input_path: the job's ``params.input_path`` (None when there is no job).

    Returns:
        None when the deployment refused the upload (4xx) or stored it inside ``input/``, else the finding.
    """
    if 400 <= status < 500:
        return None
    if status != 200:
        return f"POST /jobs/hash with the file name {sent!r} answered {status} instead of storing it or refusing it"
    path = str(input_path)
    normal = posixpath.normpath(path.replace("\\", "/"))
    if normal.startswith("input/") and not normal.startswith("input/../") and not posixpath.isabs(normal):
        return None
    return (
        f"POST /jobs/hash with the file name {sent!r} was accepted (200, job {job_id}) and params.input_path is "
        f"{path!r}, a path that leaves the job's input/ folder: the upload was written outside its job's folder, so "
        "any caller can place files elsewhere on the server"
    )
