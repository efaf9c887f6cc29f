"""MQTT delivery (PROTOCOL.md §5): how events and capability messages are delivered, not only what they say.

A subscriber of the suite's own (``MqttTap``, which records each message's topic and retain flag) checks:

* job events are not retained: a subscriber that connects after a job ended gets no retained event (MQTT 3.1.1
  delivers a retained message with the retain flag set only to a *new* subscription; a live subscriber never
  sees the flag, so this is the only way to see it from outside);
* a subscriber that connects after a job ended receives no event of that job at all, also not later (a replay);
* capability messages are retained (a new subscriber receives one per worker, with the retain flag), and are
  cleared (an empty retained payload) when their worker stops cleanly — the last one only where the suites can
  stop a worker: a private deployment of the embedded run (``_private.py``);
* each event carries the fields its state requires, with the protocol's types;
* two independent subscribers receive the same events of the same jobs;
* a subscriber receives only messages of the topics it subscribed to.

"After everything the broker sent at connect" is a round trip: the tap also subscribes to a private marker
topic (``cl-conformance/marker/<uuid>``, not retained, QoS 1) and publishes one message there; the broker sends
a client its messages in order, so once the marker is back, every retained message of the subscription arrived.
"""

from __future__ import annotations

import json
import signal
import time
import uuid

import httpx
import pytest

from cl_client import ComputeClient, JobResponse
from pytest_cl._media import MediaCatalogue
from pytest_cl.conformance.protocol._helpers import (
    EVENTS_TOPIC,
    WORKERS_TOPIC,
    Message,
    MqttTap,
    bearer_headers,
    job_event_messages,
)
from pytest_cl.conformance.protocol._private import private_deployment
from pytest_cl.deployment import DeploymentInfo
from pytest_cl.plugin import NOT_CHECKED_MQTT

pytestmark = [pytest.mark.timeout(120), pytest.mark.cl_needs_mqtt]

EVENT_LAG_S = 10.0
#: every status an event may carry (PROTOCOL.md §4: both vocabularies)
STATUSES = frozenset({"queued", "processing", "in_progress", "completed", "error", "failed"})


@pytest.fixture
def mqtt_url(cl_deployment: DeploymentInfo) -> str:
    if not cl_deployment.mqtt_url:
        pytest.skip(NOT_CHECKED_MQTT)
    return cl_deployment.mqtt_url


def _tap_with_marker(mqtt_url: str, topics: tuple[str, ...]) -> tuple[MqttTap, str]:
    marker = f"cl-conformance/marker/{uuid.uuid4().hex}"
    return MqttTap(mqtt_url, (*topics, marker)), marker


def _flush(tap: MqttTap, marker: str) -> None:
    """Wait until the broker has sent everything it sent at SUBSCRIBE (a marker round trip; 3 s without one)."""
    tap.publish(marker, b"1")
    if not tap.wait_until(lambda ms: any(m.topic == marker for m in ms), 10.0):
        time.sleep(3.0)  # the broker refused our marker: give retained messages a generous margin instead


def _retained_events(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.topic == EVENTS_TOPIC and m.retain]


def _ended_hash_job(compute_client: ComputeClient, tap: MqttTap, cl_media: MediaCatalogue) -> JobResponse:
    job = compute_client.submit("hash", cl_media["name_spaces"].path, {"algorithm": "md5"})
    record = job.result(60)
    assert tap.wait_until(tap.has_terminal(job.job_id), EVENT_LAG_S), (
        f"hash job {job.job_id} is {record.status} by REST, no terminal event within {EVENT_LAG_S} s"
    )
    return record


@pytest.mark.cl_requires("hash")
def test_job_events_are_not_retained(compute_client: ComputeClient, mqtt_url: str, cl_media: MediaCatalogue) -> None:
    """§5: ``inference/events`` is not retained. After a job ended, a new subscriber to ``inference/events``
    receives no message with the retain flag (a retained job event would be replayed to every new subscriber);
    the live subscriber saw none with the flag either (a broker sets it only for a new subscription)."""
    with MqttTap(mqtt_url, (EVENTS_TOPIC,)) as live:
        record = _ended_hash_job(compute_client, live, cl_media)
        tap, marker = _tap_with_marker(mqtt_url, (EVENTS_TOPIC,))
        with tap:
            _flush(tap, marker)
            retained = _retained_events(tap.snapshot())
        live_retained = _retained_events(live.snapshot())
    assert not retained, (
        f"the deployment publishes job events retained: a subscriber that connected after hash job {record.job_id}"
        f" ended received {len(retained)} retained message(s) on {EVENTS_TOPIC} (retain flag set), the first:"
        f" {retained[0].payload[:200]!r}; every new subscriber gets this old event as if it were news"
    )
    assert not live_retained, (
        f"a live subscriber of {EVENTS_TOPIC} received {len(live_retained)} message(s) with the retain flag set"
        f" (a broker sets it only for a new subscription), the first: {live_retained[0].payload[:200]!r}"
    )


@pytest.mark.cl_requires("hash")
def test_a_late_subscriber_receives_no_event_of_an_ended_job(
    compute_client: ComputeClient, mqtt_url: str, cl_media: MediaCatalogue
) -> None:
    """A subscriber that connects after job A ended receives no event of A: not at connect, and not later (it
    watches until a second job B, submitted after it subscribed, ended and its terminal event arrived)."""
    with MqttTap(mqtt_url, (EVENTS_TOPIC,)) as live:
        first = _ended_hash_job(compute_client, live, cl_media)
    with MqttTap(mqtt_url, (EVENTS_TOPIC,)) as late:
        second = _ended_hash_job(compute_client, late, cl_media)
        replayed = job_event_messages(late.snapshot(), first.job_id)
    assert not replayed, (
        f"old events reach new subscribers: hash job {first.job_id} ended ({first.status}) before a subscriber"
        f" connected, which then received {len(replayed)} event(s) of it while job {second.job_id} ran:"
        f" {[m.json() for m in replayed]} (retain flag {[m.retain for m in replayed]})"
    )


def _capabilities(config: pytest.Config, server_url: str) -> dict[str, object]:
    response = httpx.get(f"{server_url}/capabilities", headers=bearer_headers(config), timeout=10)
    assert response.status_code == 200, f"GET /capabilities answered {response.status_code}: {response.text[:200]}"
    return response.json()


def test_capability_messages_are_retained(
    request: pytest.FixtureRequest, cl_deployment: DeploymentInfo, mqtt_url: str
) -> None:
    """§5: ``inference/workers/<id>`` is retained: a new subscriber receives, with the retain flag, one
    non-empty message per worker that ``GET /capabilities`` counts."""
    body = _capabilities(request.config, cl_deployment.server_url)
    num = int(str(body.get("num_workers", 0)))
    tap, marker = _tap_with_marker(mqtt_url, (WORKERS_TOPIC,))
    with tap:
        _flush(tap, marker)
        tap.wait_until(lambda ms: len({m.topic for m in ms if m.retain and m.payload}) >= num, 5.0)
        workers = [m for m in tap.snapshot() if m.topic.startswith("inference/workers/")]
    retained = {m.topic for m in workers if m.retain and m.payload}
    assert len(retained) >= num, (
        f"capability messages are not retained: GET /capabilities counts {num} worker(s), a new subscriber to"
        f" {WORKERS_TOPIC} received {len(retained)} retained message(s) ({sorted(retained)}); messages without the"
        f" retain flag: {sorted({m.topic for m in workers if not m.retain})}"
    )


def test_a_cleanly_stopped_workers_capability_message_is_cleared(
    request: pytest.FixtureRequest, cl_deployment: DeploymentInfo
) -> None:
    """A worker that stops cleanly (SIGTERM) clears its retained capability message: a live subscriber receives
    an empty retained payload on its topic, and a subscriber that connects afterwards receives nothing there.
    Needs a worker the suites may stop: a private deployment of the embedded run (one worker)."""
    if not cl_deployment.embedded:
        pytest.skip(
            f"not checked: stopping a worker needs a deployment the suites own; {cl_deployment.server_url} is"
            " remote (what is visible of its capability messages is checked by the other capability checks)"
        )
    if not cl_deployment.mqtt_url:
        pytest.skip(NOT_CHECKED_MQTT)
    with private_deployment(request.config) as dep:
        wid = dep.worker_ids[0]
        topic = f"inference/workers/{wid}"
        with MqttTap(dep.mqtt_url, (WORKERS_TOPIC,)) as live:
            assert live.wait_until(lambda ms: any(m.topic == topic and m.payload for m in ms), 10.0), (
                f"private deployment: no capability message of {wid} on {topic}"
            )
            dep.kill_worker(wid, signal.SIGTERM)  # a clean stop: the worker exits by itself
            live.wait_until(lambda ms: any(m.topic == topic and not m.payload for m in ms), 10.0)
            cleared = any(m.topic == topic and not m.payload for m in live.snapshot())
        tap, marker = _tap_with_marker(dep.mqtt_url, (WORKERS_TOPIC,))
        with tap:
            _flush(tap, marker)
            left = [m for m in tap.snapshot() if m.topic == topic and m.payload]
    assert not left and cleared, (
        f"a cleanly stopped worker's capability message is not cleared: worker {wid} exited on SIGTERM, a live"
        f" subscriber {'received' if cleared else 'received no'} empty payload on {topic}, and a new subscriber"
        f" still received its retained message {left[0].payload[:200]!r}"
        if left
        else f"a cleanly stopped worker's capability message is not cleared: worker {wid} exited on SIGTERM and no"
        f" empty retained payload was published on {topic} within 10 s"
    )


def _field_problems(event: dict[str, object], job_id: str) -> list[str]:
    """What an event lacks or has wrong, by §5 and its state (empty when it is right)."""
    problems: list[str] = []
    for key in ("job_id", "event_type", "timestamp", "progress"):
        if key not in event:
            problems.append(f"no {key!r}")
    if event.get("job_id") != job_id:
        problems.append(f"job_id {event.get('job_id')!r}")
    kind = event.get("event_type")
    if kind not in STATUSES:
        problems.append(f"event_type {kind!r} is not a status")
    ts = event.get("timestamp")
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not 1e12 < float(ts) < 1e14:
        problems.append(f"timestamp {ts!r} is not epoch milliseconds")
    progress = event.get("progress")
    if "progress" in event and (not isinstance(progress, int | float) or isinstance(progress, bool)):
        problems.append(f"progress {progress!r} is not a number")
    elif isinstance(progress, int | float) and not 0 <= progress <= 100:
        problems.append(f"progress {progress!r} outside 0..100")
    elif kind == "queued" and progress not in (0, None):
        problems.append(f"a queued event with progress {progress!r} (expected 0)")
    elif kind == "completed" and progress != 100:
        problems.append(f"a completed event with progress {progress!r} (expected 100)")
    return problems


@pytest.mark.cl_requires("hash", "media_thumbnail")
def test_each_event_carries_the_fields_its_state_requires(
    compute_client: ComputeClient, mqtt_url: str, cl_media: MediaCatalogue
) -> None:
    """§5: every event is ``{"job_id","event_type","timestamp","progress"}`` with the job's id, a status, epoch
    milliseconds and a progress 0..100; ``queued`` has progress 0 and ``completed`` 100."""
    with MqttTap(mqtt_url, (EVENTS_TOPIC,)) as tap:
        jobs = [
            compute_client.submit("hash", cl_media["name_unicode"].path, {"algorithm": "md5"}),
            compute_client.submit("media_thumbnail", cl_media["png_800x600"].path, {"width": 40}),
        ]
        for job in jobs:
            job.result(60)
            assert tap.wait_until(tap.has_terminal(job.job_id), EVENT_LAG_S), (
                f"{job.task_type} job {job.job_id}: no terminal event within {EVENT_LAG_S} s"
            )
        wrong: list[str] = []
        for job in jobs:
            for event in tap.job_events(job.job_id):
                problems = _field_problems(event, job.job_id)
                if problems:
                    wrong.append(f"{job.task_type} job {job.job_id} {event.get('event_type')!r} event: "
                                 f"{', '.join(problems)} ({json.dumps(event)[:200]})")  # fmt: skip
    assert not wrong, "events without the fields their state requires: " + "; ".join(wrong)


@pytest.mark.cl_requires("hash")
def test_two_subscribers_receive_the_same_events(
    compute_client: ComputeClient, mqtt_url: str, cl_media: MediaCatalogue
) -> None:
    """Events of one job reach two independent subscribers alike: the same events (type, progress, timestamp),
    in the same order, for each of three jobs."""
    with MqttTap(mqtt_url, (EVENTS_TOPIC,)) as one, MqttTap(mqtt_url, (EVENTS_TOPIC,)) as two:
        jobs = [
            compute_client.submit("hash", cl_media[name].path, {"algorithm": "md5"})
            for name in ("name_spaces", "name_unicode", "name_hash_question")
        ]
        for job in jobs:
            job.result(60)
            for tap in (one, two):
                assert tap.wait_until(tap.has_terminal(job.job_id), EVENT_LAG_S), (
                    f"hash job {job.job_id}: one of two subscribers got no terminal event within {EVENT_LAG_S} s"
                )
        differ: list[str] = []
        for job in jobs:

            def story(tap: MqttTap, job_id: str = job.job_id) -> list[tuple[object, ...]]:
                return [(e.get("event_type"), e.get("progress"), e.get("timestamp")) for e in tap.job_events(job_id)]

            if story(one) != story(two):
                differ.append(f"job {job.job_id}: first {story(one)}, second {story(two)}")
    assert not differ, "two subscribers received different events: " + "; ".join(differ)


@pytest.mark.cl_requires("hash")
def test_a_subscriber_receives_only_its_topics(
    compute_client: ComputeClient, mqtt_url: str, cl_media: MediaCatalogue
) -> None:
    """A client subscribed to ``inference/events`` only receives nothing else (no capability message, no
    internal topic), at connect and while a job runs."""
    tap, marker = _tap_with_marker(mqtt_url, (EVENTS_TOPIC,))
    with tap:
        _flush(tap, marker)
        _ended_hash_job(compute_client, tap, cl_media)
        foreign = [m for m in tap.snapshot() if m.topic not in (EVENTS_TOPIC, marker)]
    assert not foreign, (
        f"a subscriber of {EVENTS_TOPIC} only received {len(foreign)} message(s) of other topics:"
        f" {[(m.topic, m.retain, m.payload[:80]) for m in foreign[:5]]}"
    )
