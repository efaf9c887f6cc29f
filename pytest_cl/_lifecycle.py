"""Lifecycle checks on every job the fixtures created: REST and MQTT must tell the same story.

* progress never decreases (in the order of the server's timestamps);
* nothing arrives after the terminal event (an event that arrives later but carries an earlier server
  timestamp was only delivered late: the API server and the worker publish independently);
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

#: the same words as the ``cl_needs_fix`` marker of the suites' failure-event check: one gap, one entry
FAILURE_EVENTS_FIX = "terminal 'error' events over MQTT for failed jobs (upstream is silent)"


@dataclass(frozen=True)
class Finding:
    """One result of the checks.

    Attributes:
        kind: ``violation`` (fails the test) or ``lack`` (reported as "deployment lacks X").
        message: what was wrong.
    """

    kind: Literal["violation", "lack"]
    message: str


def in_server_order(events: Sequence[RecordedEvent]) -> list[RecordedEvent]:
    """Order events by the server's timestamp (arrival order breaks ties and is kept without timestamps).

    The API server publishes ``queued`` and the worker the rest, so their messages may arrive out of order.
    """
    if any(e.timestamp is None for e in events):
        return list(events)
    return sorted(events, key=lambda e: e.timestamp or 0.0)


def _published_before(event: RecordedEvent, terminal: RecordedEvent) -> bool:
    """True when ``event`` arrived late but carries a server timestamp not after the terminal event's."""
    return event.timestamp is not None and terminal.timestamp is not None and event.timestamp <= terminal.timestamp


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
    for event in in_server_order(events):
        if event.progress is None:
            continue
        if last is not None and event.progress < last:
            found.append(Finding("violation", f"job {job_id}: progress decreased from {last:g} to {event.progress:g}"))
            break
        last = event.progress
    terminal_index = next((i for i, e in enumerate(events) if e.is_terminal), None)
    if terminal_index is not None:
        terminal = events[terminal_index]
        after = [e for e in events[terminal_index + 1 :] if not _published_before(e, terminal)]
        if after:
            kinds = ", ".join(e.event_type for e in after)
            found.append(
                Finding(
                    "violation",
                    f"job {job_id}: {len(after)} event(s) after the terminal '{terminal.event_type}' event: {kinds}",
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
