"""Lifecycle checks on every job the fixtures created: REST and MQTT must tell the same story.

* progress never decreases;
* nothing arrives after the terminal event;
* the terminal event agrees with the final REST status;
* the terminal event arrives within a deadline of the REST terminal state.

A check that only a deployment with a **[fix]** of PROTOCOL.md can pass (upstream publishes no event when a
job fails) is a *lack*, not a violation, unless the target is the reference deployment or strict mode is on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pytest_cl._events import RecordedEvent

FAILURE_EVENTS_FIX = "terminal 'error' events over MQTT (PROTOCOL.md §5 [fix])"


@dataclass(frozen=True)
class Finding:
    """One result of the checks.

    Attributes:
        kind: ``violation`` (fails the test) or ``lack`` (reported as "deployment lacks X").
        message: what was wrong.
    """

    kind: Literal["violation", "lack"]
    message: str


def check_job(
    job_id: str,
    events: Sequence[RecordedEvent],
    rest_status: str,
    *,
    terminal_event: RecordedEvent | None,
    deadline: float,
    fix_required: bool,
) -> list[Finding]:
    """Check one finished job.

    Args:
        job_id: the job.
        events: its events in arrival order (after waiting for the terminal one).
        rest_status: the final status from ``GET /jobs/{id}``.
        terminal_event: the first terminal event, or None when none came within ``deadline``.
        deadline: the allowed lag, for the message.
        fix_required: treat fix-dependent checks as violations (reference deployment or strict mode).
    """
    found: list[Finding] = []
    last: float | None = None
    for event in events:
        if event.progress is None:
            continue
        if last is not None and event.progress < last:
            found.append(Finding("violation", f"job {job_id}: progress decreased from {last:g} to {event.progress:g}"))
            break
        last = event.progress
    terminal_index = next((i for i, e in enumerate(events) if e.is_terminal), None)
    if terminal_index is not None:
        after = events[terminal_index + 1 :]
        if after:
            kinds = ", ".join(e.event_type for e in after)
            found.append(
                Finding(
                    "violation",
                    f"job {job_id}: {len(after)} event(s) after the terminal "
                    f"'{events[terminal_index].event_type}' event: {kinds}",
                )
            )
    if terminal_event is None:
        if rest_status == "error" and not fix_required:
            found.append(Finding("lack", f"job {job_id} ended 'error' without an event: {FAILURE_EVENTS_FIX}"))
        else:
            found.append(
                Finding(
                    "violation",
                    f"job {job_id}: REST says '{rest_status}' but no terminal event arrived within {deadline:g} s",
                )
            )
    elif terminal_event.event_type != rest_status:
        found.append(
            Finding(
                "violation",
                f"job {job_id}: terminal event '{terminal_event.event_type}' disagrees with REST status "
                f"'{rest_status}'",
            )
        )
    return found
