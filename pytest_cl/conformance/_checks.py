"""Small, independent helpers for the conformance checks (computed by the tests, never by the code under test)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import cast

import httpx
import numpy as np
from numpy.typing import NDArray

from cl_client import JobResponse

#: Leading bytes of each image format the deployments produce.
MAGIC: dict[str, tuple[bytes, ...]] = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
    "bmp": (b"BM",),
    "tiff": (b"II*\x00", b"MM\x00*"),
}


def has_magic(data: bytes, fmt: str) -> bool:
    """True when ``data`` starts like a ``fmt`` file (WebP: RIFF....WEBP)."""
    if fmt == "webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return data.startswith(MAGIC[fmt])


def cosine(a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
    """Cosine similarity of two vectors."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- failure messages in words ---------------------------------------------------------------------------------
# Each helper raises AssertionError with one full sentence: what was looked at (which job, which file, which
# field), what the protocol expects and what the deployment gave, so that the failure line alone tells a
# deployment owner what went wrong.


def show(value: object, limit: int = 300) -> str:
    """``repr(value)`` cut to ``limit`` characters (long records and bodies stay readable in a failure line); a hex
    digest longer than 32 digits is shown by its first 16 (``'6e1d16988fefadaf…'``)."""
    if isinstance(value, str) and len(value) > 32 and all(c in "0123456789abcdefABCDEF" for c in value):
        return f"'{value[:16]}…'"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def job_label(record: JobResponse) -> str:
    """``"<task_type> job <job_id>"``: how a failure names a job."""
    return f"{record.task_type} job {record.job_id}"


def expect(seen: object, expected: object, what: str) -> None:
    """``seen == expected``, else ``"<what>: expected <expected>, got <seen>"``."""
    if not seen == expected:
        raise AssertionError(f"{what}: expected {show(expected)}, got {show(seen)}")


def get_field(data: object, key: str, *, where: str) -> object:
    """``data[key]`` of a JSON object or record mapping, else a sentence naming the missing field and ``where``.

    ``where`` names the object, e.g. ``"hash job 1b2c…: output/hash.json"``.
    """
    if not isinstance(data, Mapping):
        raise AssertionError(f"{where} is not a JSON object, got {show(data)}")
    mapping = cast(Mapping[str, object], data)
    if key not in mapping:
        raise AssertionError(f"{where} has no {key!r} field (it has {sorted(mapping)})")
    return mapping[key]


def expect_field(
    data: object,
    key: str,
    expected: object,
    *,
    where: str,
    meaning: str = "",
    wrong: WrongAnswers | None = None,
    same: Same | None = None,
) -> object:
    """``data[key] == expected`` (the field must exist), else a sentence naming the field; returns the value.

    ``meaning`` says what the expected value is (``"the MD5 of the uploaded bytes"``) and is shown after it;
    ``wrong`` names the common wrong answers (see :func:`expect_value`), ``same`` replaces ``==``.
    """
    seen = get_field(data, key, where=where)
    expect_value(seen, expected, f"{where}: {key!r}", meaning=meaning, wrong=wrong, same=same)
    return seen


# -- naming the wrong answer -------------------------------------------------------------------------------------
# Where a check compares a measured value with an expected one, it also knows the common *wrong* answers (the MD5
# where SHA-512 was asked, the hash of the file's bytes instead of its pixels, a box in pixels, a size swapped)
# and, when the value is wrong, says which of them it is: the failure line names the defect, not only the mismatch.

#: A named wrong answer: its value, or a function that computes it (called only when the check already failed).
WrongAnswers = Mapping[str, object]
#: How a seen value is compared with an expected (or wrong) one; ``==`` by default.
Same = Callable[[object, object], bool]


def _equal(a: object, b: object) -> bool:
    return bool(a == b)


def which_wrong_answer(seen: object, wrong: WrongAnswers, *, same: Same | None = None) -> str | None:
    """The name of the first wrong answer in ``wrong`` that ``seen`` equals, or None.

    A value that is callable is called (with no argument) to get the wrong answer; one whose computation raises is
    skipped (a wrong answer that cannot be computed for this input is simply not the one seen).
    """
    compare = same or _equal
    for name, candidate in wrong.items():
        try:
            value = candidate() if callable(candidate) else candidate
            if compare(seen, value):
                return name
        except Exception:  # an alternative that cannot be computed for this input is not the answer seen
            continue
    return None


def diagnose(seen: object, wrong: WrongAnswers | None, *, same: Same | None = None) -> str:
    """The end of a failure line: ``": that is <name>"`` for a recognised wrong answer; otherwise, when wrong
    answers were tried, ``" (none of the common wrong answers: a; b)"``; ``""`` without any."""
    if not wrong:
        return ""
    name = which_wrong_answer(seen, wrong, same=same)
    if name is not None:
        return f": that is {name}"
    return f" (none of the common wrong answers: {'; '.join(wrong)})"


def expect_value(
    seen: object,
    expected: object,
    what: str,
    *,
    meaning: str = "",
    wrong: WrongAnswers | None = None,
    same: Same | None = None,
) -> None:
    """``seen`` equals ``expected``, else ``"<what>: expected <expected> (<meaning>), got <seen>: that is <name>"``.

    Args:
        seen: the value the deployment gave.
        expected: the value the test computed.
        what: names the value (``"hash job <id>: output/hash.json 'hash_value'"``).
        meaning: what the expected value is, shown after it.
        wrong: the common wrong answers by name (values or functions computing them); the first one ``seen``
            equals is named in the failure (see :func:`diagnose`).
        same: the comparison (default ``==``), used for the expected and the wrong answers alike.

    Raises:
        AssertionError: ``seen`` is not ``expected``.
    """
    if (same or _equal)(seen, expected):
        return
    said = f" ({meaning})" if meaning else ""
    raise AssertionError(f"{what}: expected {show(expected)}{said}, got {show(seen)}{diagnose(seen, wrong, same=same)}")


def expect_param(record: JobResponse, key: str, expected: object) -> object:
    """The job record's ``params[key]`` echoes ``expected`` (PROTOCOL.md §3: params echo the form fields)."""
    seen = record.params.get(key, "<missing>")
    if not seen == expected:
        raise AssertionError(
            f"{job_label(record)}: expected params.{key} {show(expected)}, got {show(seen)}"
            f" (params {show(record.params)})"
        )
    return seen


def expect_status(got: httpx.Response | tuple[int, bytes], expected: int | Collection[int], *, what: str) -> None:
    """An HTTP answer (an httpx response or ``RawHTTP.raw_get``'s ``(status, body)``) has one of the statuses.

    ``what`` names the request, e.g. ``"GET /jobs/<id> of a deleted job"``; the body is shown when it differs.
    """
    allowed = (expected,) if isinstance(expected, int) else tuple(expected)
    status, body = (got.status_code, got.content) if isinstance(got, httpx.Response) else got
    if status not in allowed:
        wanted = " or ".join(str(s) for s in allowed)
        raise AssertionError(f"{what}: expected HTTP {wanted}, got {status} (body {show(body[:300])})")


def expect_one_completion(task_type: str, job_id: str, final: JobResponse, calls: list[JobResponse]) -> None:
    """``on_complete`` fired exactly once, with the status ``GET /jobs/{id}`` confirmed (``final``), for the job
    that ``POST /jobs/<task_type>`` created (``job_id``); the failure says which of the three went wrong."""
    assert len(calls) == 1, f"{task_type} job {job_id}: on_complete fired {len(calls)} times, expected once"
    assert calls[0].status == final.status, (
        f"{task_type} job {job_id}: on_complete reported status {calls[0].status!r},"
        f" GET /jobs/{{id}} says {final.status!r}"
    )
    assert (final.job_id, final.task_type) == (job_id, task_type), (
        f"POST /jobs/{task_type} created job {job_id}, but its record says job_id {final.job_id!r},"
        f" task_type {final.task_type!r}"
    )
