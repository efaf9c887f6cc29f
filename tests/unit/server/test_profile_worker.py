"""The worker side of the upstream profiles (January and February 2026), each quirk against the ``fixed`` profile.

Real deployments (one worker each) and a real MQTT subscriber. Absence of an event is proven with a barrier
where one exists: a later job of the same single worker, whose events travel on the same connection and topic
after the awaited one. Nothing asserts how fast something was: the idle-poll checks rest on the order of the
capability messages and on lower bounds (a sleep of a whole poll interval), which load can only lengthen.
"""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from compute_test_plugins import extra_plugins_spec
from server_helpers import Recorder, WorkerMessage, retained_now, submit, wait_until

from cl_compute.deployment import Deployment
from cl_compute.profile import (
    FIXED,
    IDLE_POLL_SECONDS,
    IDLE_POLL_SECONDS_2026_02,
    ML_TOOLS_BROKEN_PLUGINS,
    UPSTREAM_2026_01,
    UPSTREAM_2026_02,
    UPSTREAM_2026_02_20,
)

TASKS = ["sleep", "fail", "echo", "hls_streaming", "hash", "media_thumbnail"]
ONE_VARIANT = json.dumps([{"resolution": 72, "bitrate": 100}])
MEDIA = Path(__file__).resolve().parents[3] / "pytest_cl" / "media"
#: no heartbeat inside a test: every capability message is a state change of the worker loop
HEARTBEAT = 120.0
DEADLINE = 90.0
#: clock granularity and skew between the worker's ``now_ms`` and the monotonic sleep (ms)
CLOCK_SLACK_MS = 100
UPSTREAM_KEYS = {"id", "capabilities", "idle_count", "timestamp"}
FEBRUARY_KEYS = {"worker_id", "capabilities", "idle_count", "timestamp"}
#: the capability payload keys of each upstream profile
PAYLOAD_KEYS = {UPSTREAM_2026_01: UPSTREAM_KEYS, UPSTREAM_2026_02: FEBRUARY_KEYS}
#: the idle poll interval of each upstream profile (s)
POLL = {UPSTREAM_2026_01: IDLE_POLL_SECONDS, UPSTREAM_2026_02: IDLE_POLL_SECONDS_2026_02}


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


@pytest.fixture(scope="module", params=[UPSTREAM_2026_01, UPSTREAM_2026_02, FIXED])
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    """One deployment per profile for the whole module (parametrized: January, February, fixed)."""
    profile = str(request.param)
    # no keep-alive: upstream's 5 s poll outlasts uvicorn's 5 s keep-alive, and a request sent on a connection the
    # server is just closing fails 'Server disconnected without sending a response'
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    with _deployment(profile) as dep, httpx.Client(base_url=dep.server_url, timeout=10, limits=no_keepalive) as http:
        rec = Recorder(dep.mqtt_url)
        try:
            setup = Setup(dep, rec, http)
            rec.wait(setup.capability_messages, what="the retained capability message")  # follows the SUBACK
            yield setup
        finally:
            rec.close()


def _upstream(setup: Setup) -> bool:
    """Either upstream profile (the worker polls, the will is late)."""
    return setup.dep.profile != FIXED


def _january(setup: Setup) -> bool:
    return setup.dep.profile == UPSTREAM_2026_01


def _february(setup: Setup) -> bool:
    return setup.dep.profile == UPSTREAM_2026_02


def _sender(payload: dict[str, Any]) -> object:
    """The worker id a capability payload names (February: ``worker_id`` only; January: ``id`` only)."""
    return payload.get("worker_id", payload.get("id"))


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


def test_failed_job_publishes_no_error_event_on_january_only(setup: Setup) -> None:
    failing = submit(setup.http, "fail", {"message": "boom"})
    barrier = submit(setup.http, "echo")  # FIFO on the one worker: its events follow the failure's
    setup.rec.wait_event(barrier, "completed", timeout=DEADLINE)
    record = setup.final(failing)
    assert record["status"] == "error", record
    assert record["error_message"] == "boom", record
    kinds = [e.event_type for e in setup.rec.job_events(failing)]
    assert "processing" in kinds, kinds  # the claim is still published
    if _january(setup):  # February publishes failures, as the fixed profile does
        assert "error" not in kinds, kinds
    else:
        assert kinds.count("error") == 1, kinds
    assert [e.event_type for e in setup.rec.job_events(barrier)][-1] == "completed"


# -- no_progress_events ------------------------------------------------------------------------------------


def test_progress_is_stored_but_not_published_on_january(setup: Setup) -> None:
    job_id = submit(setup.http, "sleep", {"seconds": "2", "steps": "4"})

    def progressing() -> dict[str, Any] | None:
        job = setup.job(job_id)
        return job if job["status"] == "processing" and 0 < job["progress"] < 100 else None

    seen = wait_until(progressing, "stored progress while the job runs", timeout=DEADLINE)
    assert seen["progress"] in (25, 50, 75, 99), seen
    setup.rec.wait_event(job_id, "completed", timeout=DEADLINE)  # published after every progress event
    events = setup.rec.job_events(job_id)
    progress_events = [e for e in events if e.event_type == "processing" and 0 < e.progress < 100]
    if _january(setup):  # February publishes progress (capped at 99), as the fixed profile does
        assert progress_events == [], events
        assert [e.event_type for e in events].count("processing") == 1, events
    else:
        assert progress_events, events
    assert events[-1].event_type == "completed" and events[-1].progress == 100, events


# -- capability_id_only ------------------------------------------------------------------------------------


def test_capability_payload_keys(setup: Setup) -> None:
    [raw] = retained_now(setup.dep.mqtt_url, f"inference/workers/{setup.wid}")
    payload = json.loads(raw)
    assert _sender(payload) == setup.wid
    assert sorted(payload["capabilities"]) == sorted(TASKS)
    expected = PAYLOAD_KEYS.get(setup.dep.profile)
    if expected is not None:
        assert set(payload) == expected, payload
    else:
        assert set(payload) > UPSTREAM_KEYS | FEBRUARY_KEYS, payload
        assert payload["worker_id"] == payload["id"] == setup.wid
        assert {"details", "unavailable", "pid"} <= set(payload), payload
    # the deployment's own readers (readiness, /internal/workers, /capabilities) take the id from the topic
    assert setup.wid in setup.http.get("/internal/workers").json()["workers"]
    for m in setup.capability_messages():
        assert m.payload is not None
        if expected is not None:
            assert set(m.payload) == expected, m.payload
        else:
            assert m.payload["id"] == m.payload["worker_id"] == setup.wid, m.payload


# -- idle_poll ---------------------------------------------------------------------------------------------


def test_idle_worker_flips_idle_count_every_poll_on_upstream_only(setup: Setup) -> None:
    start = len(setup.capability_messages())

    def cycles() -> list[WorkerMessage] | None:
        # two whole poll cycles after the start: 0 (cycle begins), 1 (cycle ends), twice
        changes = [m for m in _runs(setup.capability_messages()[start:]) if _idle(m) == 0]
        return changes if len(changes) >= 3 else None

    if _upstream(setup):
        poll = POLL[setup.dep.profile]
        starts = setup.rec.wait(cycles, timeout=DEADLINE, what="three poll cycles of the idle upstream worker")
        # each cycle begins a whole poll interval after the previous one ended (never woken, never shorter)
        runs = _runs(setup.capability_messages()[start:])
        for begin in starts[1:]:
            i = runs.index(begin)
            ended = runs[i - 1]
            assert _idle(ended) == 1, runs
            assert _stamp(begin) - _stamp(ended) >= poll * 1000 - CLOCK_SLACK_MS, (ended, begin)
        if _february(setup):
            # February's 1 s poll: sooner or later a sleep shorter than January's 5 s, which January never has
            # (the lower bound above); load can only make us wait longer for one
            def short_sleep() -> bool:
                runs = _runs(setup.capability_messages()[start:])
                gaps = [_stamp(b) - _stamp(a) for a, b in itertools.pairwise(runs) if _idle(a) == 1 and _idle(b) == 0]
                return any(g < IDLE_POLL_SECONDS * 1000 - CLOCK_SLACK_MS for g in gaps)

            setup.rec.wait(short_sleep, timeout=DEADLINE, what="a poll sleep shorter than January's 5 s")
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
    if _upstream(setup):  # submit just after a poll cycle ended: the worker is asleep for a whole poll interval

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
        assert _stamp(claim_cycle) - asleep_since >= POLL[setup.dep.profile] * 1000 - CLOCK_SLACK_MS, runs
    else:
        # woken: claimed first, and only then reported busy (no poll cycle announced before the claim)
        zeros = [m for m in runs if _idle(m) == 0]
        assert len(zeros) == 1, runs
        assert _stamp(zeros[0]) >= started, (zeros[0], record)


# -- hls_server_paths, hls_manifest_progress (February), end to end ---------------------------------------


def _post_hls(setup: Setup, data: dict[str, str]) -> httpx.Response:
    return setup.http.post("/jobs/hls_streaming", data=data)


def test_hls_reads_and_writes_server_paths_on_february_only(setup: Setup, tmp_path: Path) -> None:
    out = tmp_path / "made" / "by the job"
    r = _post_hls(setup, {"input_absolute_path": "/etc/hostname", "output_absolute_path": str(out)})
    if not _february(setup):
        assert r.status_code == 422, r.text
        assert ["body", "input_absolute_path"] in [e["loc"] for e in r.json()["detail"]]
        assert not out.exists()
        return
    assert r.status_code == 200, r.text
    hostname = r.json()["job_id"]
    record = setup.final(hostname)
    assert record["status"] == "error", record
    assert "does not contain a video stream" in record["error_message"], record
    assert out.is_dir()  # created although the job failed
    setup.rec.wait_event(hostname, "error", timeout=DEADLINE)  # February publishes failures

    missing = tmp_path / "no such video.mp4"
    r = _post_hls(setup, {"input_absolute_path": str(missing)})
    assert r.status_code == 200, r.text
    record = setup.final(r.json()["job_id"])
    assert (record["status"], record["error_message"]) == ("error", f"Input file not found: {missing}")

    served = tmp_path / "served"
    video = MEDIA / "video" / "testsrc_720p_3s_silent.mp4"
    r = _post_hls(
        setup, {"input_absolute_path": str(video), "output_absolute_path": str(served), "variants": ONE_VARIANT}
    )
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    record = setup.final(job_id)
    assert record["status"] == "completed", record
    assert record["task_output"]["master_playlist"] == str(served / "adaptive.m3u8")
    assert (served / "adaptive.m3u8").is_file()
    assert (served / "adaptive-72p-100.m3u8").is_file()
    assert (served / "adaptive-72p-100-000.ts").stat().st_size > 0
    # the files are not the job's: its download route does not reach them
    assert setup.http.get(f"/jobs/{job_id}/files/adaptive.m3u8").status_code == 404
    setup.rec.wait_event(job_id, "completed", timeout=DEADLINE)
    progress = [e.progress for e in setup.rec.job_events(job_id) if e.event_type == "processing"]
    # the claim, then the manifest-ready event, nothing from ffmpeg; the final 100 is stored capped at 99 (and
    # published) only when it comes a while after the 1
    assert progress[:2] == [0, 1], progress
    assert set(progress[2:]) <= {99}, progress


# -- ml_tools_broken_plugins (upstream-2026-02-20) --------------------------------------------------------


def _hash_and_thumbnail(dep: Deployment, rec: Recorder, http: httpx.Client) -> dict[str, dict[str, Any]]:
    photo = (MEDIA / "images" / "synthetic_1920x1080.jpg").read_bytes()
    jobs = {
        "hash": submit(http, "hash", {"algorithm": "md5"}, filename="photo.jpg", content=photo),
        "media_thumbnail": submit(http, "media_thumbnail", {"width": "64"}, filename="photo.jpg", content=photo),
    }
    for job_id in jobs.values():
        rec.wait_terminal(job_id, timeout=DEADLINE)
    return {task: http.get(f"/jobs/{job_id}").json() for task, job_id in jobs.items()}


def test_hash_and_thumbnail_work_without_the_broken_ml_tools(setup: Setup) -> None:
    for task, record in _hash_and_thumbnail(setup.dep, setup.rec, setup.http).items():
        assert record["status"] == "completed", (task, record)


def test_broken_ml_tools_fail_every_hash_and_thumbnail_job() -> None:
    with (
        Deployment(
            workers=1,
            tasks=["hash", "media_thumbnail", "echo"],
            extra_plugins=extra_plugins_spec(),
            profile=UPSTREAM_2026_02_20,
            worker_shutdown_grace=0.5,
        ) as dep,
        httpx.Client(base_url=dep.server_url, timeout=10) as http,
    ):
        rec = Recorder(dep.mqtt_url)
        try:
            for _ in range(2):  # every job, not just the first
                for task, record in _hash_and_thumbnail(dep, rec, http).items():
                    assert (record["status"], record["error_message"]) == ("error", ML_TOOLS_BROKEN_PLUGINS[task])
                    kinds = [e.event_type for e in rec.job_events(record["job_id"])]
                    assert kinds.count("error") == 1, kinds  # published, as February publishes failures
            assert http.get("/capabilities").json()["capabilities"].keys() >= {"hash", "media_thumbnail"}
            echo = submit(http, "echo")  # the other plugins work
            rec.wait_event(echo, "completed", timeout=DEADLINE)
        finally:
            rec.close()


# -- late_will ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", [UPSTREAM_2026_01, UPSTREAM_2026_02, FIXED])
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
                assert _sender(stale) == wid and stale["idle_count"] == 1, stale
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
