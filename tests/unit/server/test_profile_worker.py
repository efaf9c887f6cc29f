"""The worker side of the ``upstream-2026-01`` profile, each quirk against the default (``fixed``) profile.

Real deployments (one worker each) and a real MQTT subscriber. Absence of an event is proven with a barrier
where one exists: a later job of the same single worker, whose events travel on the same connection and topic
after the awaited one. Nothing asserts how fast something was: the idle-poll checks rest on the order of the
capability messages and on lower bounds (a sleep of a whole poll interval), which load can only lengthen.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from compute_test_plugins import extra_plugins_spec
from server_helpers import Recorder, WorkerMessage, retained_now, submit, wait_until

from cl_compute.deployment import Deployment
from cl_compute.profile import FIXED, IDLE_POLL_SECONDS, UPSTREAM_2026_01

TASKS = ["sleep", "fail", "echo"]
#: no heartbeat inside a test: every capability message is a state change of the worker loop
HEARTBEAT = 120.0
DEADLINE = 90.0
#: clock granularity and skew between the worker's ``now_ms`` and the monotonic sleep (ms)
CLOCK_SLACK_MS = 100
UPSTREAM_KEYS = {"id", "capabilities", "idle_count", "timestamp"}


@dataclass
class Setup:
    """A running one-worker deployment with a recorder and an HTTP client."""

    dep: Deployment
    rec: Recorder
    http: httpx.Client

    @property
    def wid(self) -> str:
        """The id of the deployment's only worker."""
        return self.dep.worker_ids[0]

    def job(self, job_id: str) -> dict[str, Any]:
        """The job record."""
        r = self.http.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def final(self, job_id: str) -> dict[str, Any]:
        """The job record once it ended."""
        return wait_until(lambda: (j := self.job(job_id))["status"] in ("completed", "error") and j, f"{job_id} ends")

    def capability_messages(self) -> list[WorkerMessage]:
        """Every non-empty capability message of the worker, in the order received."""
        with self.rec.cond:
            return [w for w in self.rec.workers if w.worker_id == self.wid and w.payload is not None]


def _deployment(profile: str, **kw: Any) -> Deployment:
    return Deployment(
        workers=1,
        tasks=TASKS,
        extra_plugins=extra_plugins_spec(),
        profile=profile,
        heartbeat_interval=HEARTBEAT,
        worker_shutdown_grace=0.5,
        **kw,
    )


@pytest.fixture(scope="module", params=[UPSTREAM_2026_01, FIXED])
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    """One deployment per profile for the whole module (parametrized: upstream first)."""
    profile = str(request.param)
    with _deployment(profile) as dep, httpx.Client(base_url=dep.server_url, timeout=10) as http:
        rec = Recorder(dep.mqtt_url)
        try:
            setup = Setup(dep, rec, http)
            rec.wait(setup.capability_messages, what="the retained capability message")  # follows the SUBACK
            yield setup
        finally:
            rec.close()


def _upstream(setup: Setup) -> bool:
    return setup.dep.profile == UPSTREAM_2026_01


def _runs(messages: list[WorkerMessage]) -> list[WorkerMessage]:
    """The first message of each run of equal ``idle_count`` (the state changes)."""
    firsts: list[WorkerMessage] = []
    for m in messages:
        assert m.payload is not None
        if not firsts or firsts[-1].payload is None or firsts[-1].payload["idle_count"] != m.payload["idle_count"]:
            firsts.append(m)
    return firsts


def _stamp(m: WorkerMessage) -> int:
    assert m.payload is not None
    return int(m.payload["timestamp"])


def _idle(m: WorkerMessage) -> int:
    assert m.payload is not None
    return int(m.payload["idle_count"])


# -- silent_failures ---------------------------------------------------------------------------------------


def test_failed_job_publishes_no_error_event_on_upstream_only(setup: Setup) -> None:
    failing = submit(setup.http, "fail", {"message": "boom"})
    barrier = submit(setup.http, "echo")  # FIFO on the one worker: its events follow the failure's
    setup.rec.wait_event(barrier, "completed", timeout=DEADLINE)
    record = setup.final(failing)
    assert record["status"] == "error", record
    assert record["error_message"] == "boom", record
    kinds = [e.event_type for e in setup.rec.job_events(failing)]
    assert "processing" in kinds, kinds  # the claim is still published
    if _upstream(setup):
        assert "error" not in kinds, kinds
    else:
        assert kinds.count("error") == 1, kinds
    assert [e.event_type for e in setup.rec.job_events(barrier)][-1] == "completed"


# -- no_progress_events ------------------------------------------------------------------------------------


def test_progress_is_stored_but_published_only_on_fixed(setup: Setup) -> None:
    job_id = submit(setup.http, "sleep", {"seconds": "2", "steps": "4"})

    def progressing() -> dict[str, Any] | None:
        job = setup.job(job_id)
        return job if job["status"] == "processing" and 0 < job["progress"] < 100 else None

    seen = wait_until(progressing, "stored progress while the job runs", timeout=DEADLINE)
    assert seen["progress"] in (25, 50, 75, 99), seen
    setup.rec.wait_event(job_id, "completed", timeout=DEADLINE)  # published after every progress event
    events = setup.rec.job_events(job_id)
    progress_events = [e for e in events if e.event_type == "processing" and 0 < e.progress < 100]
    if _upstream(setup):
        assert progress_events == [], events
        assert [e.event_type for e in events].count("processing") == 1, events
    else:
        assert progress_events, events
    assert events[-1].event_type == "completed" and events[-1].progress == 100, events


# -- capability_id_only ------------------------------------------------------------------------------------


def test_capability_payload_keys(setup: Setup) -> None:
    [raw] = retained_now(setup.dep.mqtt_url, f"inference/workers/{setup.wid}")
    payload = json.loads(raw)
    assert payload["id"] == setup.wid
    assert sorted(payload["capabilities"]) == sorted(TASKS)
    if _upstream(setup):
        assert set(payload) == UPSTREAM_KEYS, payload
    else:
        assert set(payload) > UPSTREAM_KEYS, payload
        assert payload["worker_id"] == setup.wid
        assert {"details", "unavailable", "pid"} <= set(payload), payload
    # the deployment's own readers (readiness, /internal/workers, /capabilities) take the id from the topic
    assert setup.wid in setup.http.get("/internal/workers").json()["workers"]
    for m in setup.capability_messages():
        assert m.payload is not None
        assert (set(m.payload) == UPSTREAM_KEYS) == _upstream(setup), m.payload


# -- idle_poll ---------------------------------------------------------------------------------------------


def test_idle_worker_flips_idle_count_every_poll_on_upstream_only(setup: Setup) -> None:
    start = len(setup.capability_messages())

    def cycles() -> list[WorkerMessage] | None:
        # two whole poll cycles after the start: 0 (cycle begins), 1 (cycle ends), twice
        changes = [m for m in _runs(setup.capability_messages()[start:]) if _idle(m) == 0]
        return changes if len(changes) >= 3 else None

    if _upstream(setup):
        starts = setup.rec.wait(cycles, timeout=DEADLINE, what="three poll cycles of the idle upstream worker")
        # each cycle begins a whole poll interval after the previous one ended (never woken, never shorter)
        runs = _runs(setup.capability_messages()[start:])
        for begin in starts[1:]:
            i = runs.index(begin)
            ended = runs[i - 1]
            assert _idle(ended) == 1, runs
            assert _stamp(begin) - _stamp(ended) >= IDLE_POLL_SECONDS * 1000 - CLOCK_SLACK_MS, (ended, begin)
    else:
        # the fixed worker stays quiet while idle: nothing at all within two and a half upstream poll intervals
        with pytest.raises(AssertionError, match="timed out"):
            setup.rec.wait(cycles, timeout=2.5 * IDLE_POLL_SECONDS, what="poll cycles")
        assert setup.capability_messages()[start:] == []
        [raw] = retained_now(setup.dep.mqtt_url, f"inference/workers/{setup.wid}")
        assert json.loads(raw)["idle_count"] == 1


def test_new_job_waits_for_the_next_poll_on_upstream_only(setup: Setup) -> None:
    """The upstream worker sleeps a whole poll interval although a job arrived meanwhile (no wake-up)."""
    asleep = len(setup.capability_messages())
    if _upstream(setup):  # submit just after a poll cycle ended: the worker is asleep for IDLE_POLL_SECONDS

        def cycle_ended() -> int | None:
            fresh = setup.capability_messages()[asleep:]
            return next((asleep + n for n, m in enumerate(fresh) if _idle(m) == 1), None)

        asleep = setup.rec.wait(cycle_ended, timeout=DEADLINE, what="the end of a poll cycle")
    else:
        asleep -= 1  # the current (idle) state
    job_id = submit(setup.http, "echo")
    setup.rec.wait_event(job_id, "completed", timeout=DEADLINE)
    record = setup.final(job_id)
    created, started = int(record["created_at"]), int(record["started_at"])
    runs = _runs(setup.capability_messages()[asleep:])  # from the idle state the job found
    assert _idle(runs[0]) == 1, runs
    if _upstream(setup):
        # the cycle that claimed the job announced itself (idle_count 0) before the claim, after the job existed,
        cycles = [m for m in runs if _idle(m) == 0 and _stamp(m) <= started]
        assert cycles, f"no poll cycle announced before the claim at {started}: {runs}"
        claim_cycle = cycles[-1]
        assert _stamp(claim_cycle) >= created - CLOCK_SLACK_MS, (claim_cycle, record)
        # a whole poll interval after the previous cycle ended, although the job arrived during that sleep
        i = runs.index(claim_cycle)
        asleep_since = _stamp(runs[i - 1])
        assert asleep_since <= created + CLOCK_SLACK_MS, (asleep_since, record)
        assert _stamp(claim_cycle) - asleep_since >= IDLE_POLL_SECONDS * 1000 - CLOCK_SLACK_MS, runs
    else:
        # woken: claimed first, and only then reported busy (no poll cycle announced before the claim)
        zeros = [m for m in runs if _idle(m) == 0]
        assert len(zeros) == 1, runs
        assert _stamp(zeros[0]) >= started, (zeros[0], record)


# -- late_will ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", [UPSTREAM_2026_01, FIXED])
def test_killed_worker_leaves_its_retained_idle_message_on_upstream_only(profile: str) -> None:
    with _deployment(profile) as dep:
        wid = dep.worker_ids[0]
        topic = f"inference/workers/{wid}"
        rec = Recorder(dep.mqtt_url)
        try:
            # kill it while idle (upstream: just after a poll cycle ended, so asleep with idle_count 1)
            rec.wait_worker(wid, lambda m: m.payload is not None and m.payload["idle_count"] == 1, timeout=DEADLINE)
            dep.kill_worker(wid)
            if profile == FIXED:
                rec.wait_worker(wid, lambda m: m.payload is None, timeout=DEADLINE)
                assert retained_now(dep.mqtt_url, topic) == []
            else:
                # the broker saw the connection drop at once; had a will been registered it would be out by now
                with pytest.raises(AssertionError, match="timed out"):
                    rec.wait_worker(wid, lambda m: m.payload is None, timeout=3.0)
                [raw] = retained_now(dep.mqtt_url, topic)
                stale = json.loads(raw)
                assert stale["id"] == wid and stale["idle_count"] == 1, stale
        finally:
            rec.close()


@pytest.mark.parametrize("profile", [UPSTREAM_2026_01, FIXED])
def test_graceful_stop_clears_the_retained_message(profile: str) -> None:
    with _deployment(profile) as dep:
        wid = dep.worker_ids[0]
        topic = f"inference/workers/{wid}"
        assert len(retained_now(dep.mqtt_url, topic)) == 1
        rec = Recorder(dep.mqtt_url)
        try:
            dep.kill_worker(wid, signal.SIGTERM)  # stops this worker only; the broker stays up
            rec.wait_worker(wid, lambda m: m.payload is None, timeout=DEADLINE)
            assert retained_now(dep.mqtt_url, topic) == []
        finally:
            rec.close()
