"""MQTT (PROTOCOL.md §5): job events agree with REST, capability messages agree with ``/capabilities``.

A paho client of the suite's own (``_helpers.MqttTap``) subscribes before anything is submitted, so these
checks do not rely on ``cl_client``'s event handling; a second check goes through the client's callbacks.
Every check that needs the broker is marked ``cl_needs_mqtt``: with ``--cl-mqtt off`` it is reported as not
checked. The shape of ``/capabilities`` is checked over REST alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from cl_client import ComputeClient, JobResponse
from pytest_cl._media import MediaCatalogue
from pytest_cl.conformance._checks import expect, expect_status, get_field
from pytest_cl.conformance.protocol._helpers import EVENTS_TOPIC, TERMINAL, WORKERS_TOPIC, MqttTap, bearer_headers
from pytest_cl.deployment import DeploymentInfo
from pytest_cl.plugin import NOT_CHECKED_MQTT

pytestmark = pytest.mark.timeout(120)

ORDER = {"queued": 0, "processing": 1, "in_progress": 1, "completed": 2, "error": 2, "failed": 2}
#: How long a job's terminal event may lag its REST terminal state (PROTOCOL.md §7: clients confirm by GET).
EVENT_LAG_S = 10.0


@pytest.fixture
def mqtt_url(cl_deployment: DeploymentInfo) -> str:
    if not cl_deployment.mqtt_url:  # cl_needs_mqtt already stopped the test; kept for checks that forget it
        pytest.skip(NOT_CHECKED_MQTT)
    return cl_deployment.mqtt_url


@pytest.fixture
def events(mqtt_url: str) -> Iterator[MqttTap]:
    with MqttTap(mqtt_url, (EVENTS_TOPIC,)) as tap:
        yield tap


def _server_order(events: list[dict[str, object]]) -> list[dict[str, object]]:
    """Events ordered by the server's timestamp (the API server and the worker publish independently).

    Events stamped in the same millisecond carry no order of their own: they are taken in status order.
    """
    return sorted(
        events,
        key=lambda e: (float(e["timestamp"]), ORDER.get(str(e["event_type"]), 1), float(e.get("progress") or 0)),  # type: ignore[arg-type]
    )


def _check_story(job_id: str, events: list[dict[str, object]], record: JobResponse) -> None:
    """One job's events against its final REST record."""
    assert events, f"{record.task_type} job {job_id}: no MQTT event at all on {EVENTS_TOPIC}"
    for e in events:
        where = f"{record.task_type} job {job_id}: MQTT event {e.get('event_type')!r}"
        for key in ("job_id", "event_type", "timestamp", "progress"):
            get_field(e, key, where=where)
        assert isinstance(e["timestamp"], int | float) and not isinstance(e["timestamp"], bool), (
            f"{where}: 'timestamp' is {e['timestamp']!r}, expected a number (epoch ms)"
        )
    ordered = _server_order(events)
    kinds = [str(e["event_type"]) for e in ordered]
    # the stored statuses, in order: queued -> processing -> terminal (repeats allowed for progress updates)
    assert kinds[0] == "queued", f"job {job_id}: first event {kinds}"
    assert "processing" in kinds or "in_progress" in kinds, f"job {job_id}: no processing event: {kinds}"
    ranks = [ORDER.get(k, 1) for k in kinds]
    assert ranks == sorted(ranks), f"job {job_id}: statuses out of order {kinds}"
    terminal = [k for k in kinds if k in TERMINAL]
    assert len(terminal) == 1 and kinds[-1] == terminal[0], f"job {job_id}: terminal events {kinds}"
    expect(
        {"completed": "completed", "error": "error", "failed": "error"}[terminal[0]],
        record.status,
        f"{record.task_type} job {job_id}: the terminal MQTT event {terminal[0]!r} against the REST status",
    )
    progress = [float(e["progress"]) for e in ordered if e.get("progress") is not None]  # type: ignore[arg-type]
    assert progress == sorted(progress), f"job {job_id}: progress not monotonic {progress}"
    if record.status == "completed":
        assert progress[-1] == 100, f"job {job_id}: completed event progress {progress[-1]}"
    # timestamps are the record's ms clock: inside [created_at, completed_at] (1 s slack for rounding)
    assert record.completed_at is not None, (
        f"{record.task_type} job {job_id} ended {record.status} without completed_at"
    )
    for e in ordered:
        ts = float(e["timestamp"])  # type: ignore[arg-type]
        assert record.created_at - 1000 <= ts <= record.completed_at + 1000, (
            f"job {job_id}: event timestamp {ts} outside the record's [{record.created_at}, {record.completed_at}]"
        )


@pytest.mark.cl_needs_mqtt
@pytest.mark.cl_requires("hash", "media_thumbnail", "exif")
def test_every_job_tells_the_same_story_over_mqtt_and_rest(
    compute_client: ComputeClient, events: MqttTap, cl_media: MediaCatalogue
) -> None:
    """For each of several jobs: queued → processing → one terminal event equal to the REST status, progress
    monotonic and 100 at the end, event timestamps within the record's, the queued one first."""
    jobs = [
        compute_client.submit("hash", cl_media["name_unicode"].path, {"algorithm": "md5"}),
        compute_client.submit("hash", cl_media["png_pixels_twin"].path, {"algorithm": "sha512"}),
        compute_client.submit("media_thumbnail", cl_media["name_spaces"].path, {"width": 32}),
        compute_client.submit("exif", cl_media["jpeg_exif"].path),
    ]
    records = {j.job_id: j.result(60) for j in jobs}
    for job_id, record in records.items():
        assert events.wait_until(events.has_terminal(job_id), EVENT_LAG_S), (
            f"job {job_id} is {record.status} by REST, no terminal event within {EVENT_LAG_S} s: "
            f"{events.job_events(job_id)}"
        )
        _check_story(job_id, events.job_events(job_id), record)


@pytest.mark.cl_needs_mqtt
@pytest.mark.cl_requires("hash")
def test_queued_event_is_published_before_the_post_returns(
    compute_client: ComputeClient, events: MqttTap, cl_media: MediaCatalogue
) -> None:
    """§5: the server publishes ``queued`` before answering the POST, so it is never missed by a subscriber."""
    job = compute_client.submit("hash", cl_media["name_spaces"].path, {"algorithm": "md5"})
    # the tap's broker connection may deliver a moment after the POST's answer: wait on the message itself
    assert events.wait_until(
        lambda _m: any(e.get("event_type") == "queued" for e in events.job_events(job.job_id)), 5.0
    ), f"hash job {job.job_id}: no 'queued' event within 5 s of the POST (events seen: {events.job_events(job.job_id)})"
    record = job.result(60)
    queued = next(e for e in events.job_events(job.job_id) if e["event_type"] == "queued")
    start = record.started_at or record.completed_at or 0
    assert float(queued["timestamp"]) <= start, (  # type: ignore[arg-type]
        f"hash job {job.job_id}: the 'queued' event's timestamp {queued['timestamp']} is after its start ({start})"
    )


@pytest.mark.cl_needs_mqtt
@pytest.mark.cl_requires("hash")
@pytest.mark.cl_needs_fix("one job's events arrive in state order (upstream's API and worker publish independently)")
def test_each_jobs_events_arrive_in_state_order(
    compute_client: ComputeClient, events: MqttTap, cl_media: MediaCatalogue
) -> None:
    """In *arrival* order, not by timestamp: ``queued`` first, never a status after a later one, progress never
    lower than an earlier event's. Jobs are submitted from 3 threads so that workers claim while the API is
    still answering other POSTs (the window in which a worker's ``processing`` can overtake ``queued``)."""
    path = cl_media["name_spaces"].path

    def submit_some(n: int) -> list[str]:
        return [compute_client.submit("hash", path, {"algorithm": "md5"}).job_id for _ in range(n)]

    with ThreadPoolExecutor(3) as pool:
        ids = [job_id for batch in pool.map(submit_some, [6, 6, 6]) for job_id in batch]
    for job_id in ids:
        status = compute_client.wait_for_job(job_id, timeout=60).status
        assert status == "completed", f"hash job {job_id} ended {status!r}, expected 'completed'"
        assert events.wait_until(events.has_terminal(job_id), EVENT_LAG_S), (
            f"hash job {job_id} is completed by REST, no terminal event within {EVENT_LAG_S} s:"
            f" {events.job_events(job_id)}"
        )
    disorder: dict[str, list[str]] = {}
    for job_id in ids:
        arrival = events.job_events(job_id)
        kinds = [str(e["event_type"]) for e in arrival]
        ranks = [ORDER.get(k, 1) for k in kinds]
        progress = [float(e["progress"]) for e in arrival if e.get("progress") is not None]  # type: ignore[arg-type]
        if kinds[0] != "queued" or ranks != sorted(ranks) or progress != sorted(progress):
            disorder[job_id] = [f"{k}:{e.get('progress')}" for k, e in zip(kinds, arrival, strict=True)]
    assert not disorder, f"{len(disorder)} of {len(ids)} jobs had events arrive out of order: {disorder}"


@pytest.mark.cl_needs_mqtt
@pytest.mark.cl_requires("hash", "media_thumbnail")
def test_client_callbacks_follow_the_events(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """Through ``on_progress``/``on_complete``: progress monotonic, on_complete exactly once with the REST record.

    Both inputs are ordinary RGB images that every upstream-compatible deployment handles (PROTOCOL §8: upstream
    fails thumbnails of paletted images, a [fix] checked in the media_thumbnail suite, not here).
    """
    progress: dict[str, list[int]] = {}
    completed: dict[str, list[JobResponse]] = {}
    done = threading.Condition()

    def on_progress(job: JobResponse) -> None:
        with done:
            progress.setdefault(job.job_id, []).append(job.progress)

    def on_complete(job: JobResponse) -> None:
        with done:
            completed.setdefault(job.job_id, []).append(job)
            done.notify_all()

    jobs = [
        compute_client.submit(
            "hash", cl_media["name_hash_question"].path, {"algorithm": "md5"}, on_progress=on_progress,
            on_complete=on_complete,
        ),
        compute_client.submit(
            "media_thumbnail", cl_media["png_800x600"].path, {"width": 48}, on_progress=on_progress,
            on_complete=on_complete,
        ),
    ]  # fmt: skip
    with done:
        ended = done.wait_for(lambda: all(j.job_id in completed for j in jobs), 60)
    assert ended, f"on_complete never ran for {[j.job_id for j in jobs if j.job_id not in completed]} within 60 s"
    for job in jobs:
        rest = compute_client.get_job(job.job_id)
        calls = [c.status for c in completed[job.job_id]]
        assert rest.status == "completed", (
            f"job {job.job_id} ({job.task_type}) ended {rest.status!r}: {rest.error_message}"
        )
        assert calls == ["completed"], (
            f"job {job.job_id}: on_complete ran {len(calls)} time(s) with {calls}, expected once"
        )
        seen = progress.get(job.job_id, [])
        assert seen == sorted(seen), f"job {job.job_id}: on_progress went backwards: {seen}"


@pytest.mark.cl_needs_mqtt
@pytest.mark.cl_requires("image_conversion")
@pytest.mark.cl_needs_fix("terminal 'error' events over MQTT for failed jobs (upstream is silent)")
def test_failed_job_publishes_an_error_event(
    compute_client: ComputeClient, events: MqttTap, cl_media: MediaCatalogue
) -> None:
    """A job that fails (text bytes named ``.jpg`` to convert) ends ``error`` with a message, and an ``error``
    event says so over MQTT."""
    job = compute_client.submit("image_conversion", cl_media["hostile_text_as_jpeg"].path, {"format": "png"})
    record = job.wait(60)
    expect(record.status, "error", f"image_conversion job {job.job_id} of text named .jpg: status")
    assert record.error_message, f"image_conversion job {job.job_id} ended 'error' without an error_message"
    assert events.wait_until(events.has_terminal(job.job_id), EVENT_LAG_S), (
        f"image_conversion job {job.job_id} ended 'error' by REST, no terminal event within {EVENT_LAG_S} s:"
        f" {events.job_events(job.job_id)}"
    )
    _check_story(job.job_id, events.job_events(job.job_id), record)


# -- capability messages -----------------------------------------------------------------------------------
def _live_workers(tap: MqttTap) -> dict[str, dict[str, object]]:
    """Latest non-empty payload per ``inference/workers/<id>`` topic (an empty payload = worker gone)."""
    latest: dict[str, dict[str, object] | None] = {}
    for m in tap.snapshot():
        if not m.topic.startswith("inference/workers/"):
            continue
        data = m.json() if m.payload else None
        latest[m.topic.rsplit("/", 1)[-1]] = data if isinstance(data, dict) else None
    return {wid: data for wid, data in latest.items() if data is not None}


@pytest.fixture
def capabilities_body(request: pytest.FixtureRequest, cl_deployment: DeploymentInfo) -> dict[str, Any]:
    """``GET /capabilities`` (REST only)."""
    caps = httpx.get(f"{cl_deployment.server_url}/capabilities", headers=bearer_headers(request.config), timeout=10)
    expect_status(caps, 200, what="GET /capabilities")
    return caps.json()


@pytest.fixture
def capability_view(mqtt_url: str, capabilities_body: dict[str, Any]):
    """The retained capability messages (once every worker of ``/capabilities`` has one) and ``/capabilities``."""
    body = capabilities_body
    with MqttTap(mqtt_url, (WORKERS_TOPIC,)) as tap:
        tap.wait_until(lambda _m: len(_live_workers(tap)) >= int(body["num_workers"]), 5.0)
        return _live_workers(tap), body


def test_capabilities_endpoint_shape(capabilities_body: dict[str, Any]) -> None:
    """``/capabilities`` is ``{"num_workers": int, "capabilities": {task_type: idle count ≥ 0}}``."""
    body = capabilities_body
    num_workers = get_field(body, "num_workers", where="GET /capabilities")
    assert isinstance(num_workers, int) and num_workers >= 1, (
        f"GET /capabilities: num_workers is {num_workers!r}, expected an integer ≥ 1"
    )
    capabilities = get_field(body, "capabilities", where="GET /capabilities")
    assert isinstance(capabilities, dict) and capabilities, (
        f"GET /capabilities: capabilities is {capabilities!r}, expected a non-empty object"
    )
    for name, count in capabilities.items():
        assert isinstance(name, str) and isinstance(count, int) and count >= 0, (
            f"GET /capabilities: capabilities[{name!r}] is {count!r}, expected an idle count (integer ≥ 0)"
        )


@pytest.mark.cl_needs_mqtt
def test_every_worker_announces_its_capabilities(capability_view) -> None:
    """One retained message per worker counted by ``/capabilities``; the union of their capability lists is
    exactly the task types of ``/capabilities``; no task type has more idle workers than workers offering it."""
    workers, body = capability_view
    assert len(workers) >= body["num_workers"], (
        f"/capabilities counts {body['num_workers']} worker(s), the broker has retained messages for {sorted(workers)}"
    )
    offered: dict[str, int] = {}
    for wid, payload in workers.items():
        topic = f"inference/workers/{wid}"
        assert isinstance(payload.get("capabilities"), list) and payload["capabilities"], (
            f"{topic}: 'capabilities' is {payload.get('capabilities')!r}, expected a non-empty list ({payload})"
        )
        assert payload.get("idle_count") in (0, 1), (
            f"{topic}: 'idle_count' is {payload.get('idle_count')!r}, expected 0 or 1"
        )
        get_field(payload, "timestamp", where=f"the retained message on {topic}")
        named = payload.get("worker_id", payload.get("id"))
        assert named in (None, wid), f"payload names worker {named!r} on topic inference/workers/{wid}"
        for cap in payload["capabilities"]:
            offered[str(cap)] = offered.get(str(cap), 0) + 1
    expect(
        sorted(offered),
        sorted(body["capabilities"]),
        "the task types of the retained capability messages against those of GET /capabilities",
    )
    for cap, idle in body["capabilities"].items():
        assert idle <= offered[cap], f"{cap}: {idle} idle worker(s) but only {offered[cap]} offer it"


@pytest.mark.cl_needs_mqtt
@pytest.mark.cl_needs_fix("no stale retained capability messages (upstream sets the last will after CONNECT)")
def test_no_stale_worker_messages(capability_view) -> None:
    """Exactly ``num_workers`` live retained messages: a worker that went away left none behind."""
    workers, body = capability_view
    assert len(workers) == body["num_workers"], (
        f"GET /capabilities counts {body['num_workers']} worker(s), the broker has {len(workers)} live retained"
        f" capability messages: {sorted(workers)}"
    )


@pytest.mark.cl_needs_mqtt
@pytest.mark.cl_needs_fix("capability payloads with both 'id' and 'worker_id'")
def test_capability_payloads_carry_id_and_worker_id(capability_view) -> None:
    """Each payload has ``id`` (upstream compute) and ``worker_id`` (newer upstream), both the topic's id."""
    workers, _body = capability_view
    for wid, payload in workers.items():
        expect(
            (payload.get("id"), payload.get("worker_id")),
            (wid, wid),
            f"inference/workers/{wid}: the payload's 'id' and 'worker_id'",
        )
