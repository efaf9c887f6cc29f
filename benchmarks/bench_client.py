"""Client benchmarks, measured side by side in one run on one broker (numbers are ratios, machines are noisy).

1. Event -> callback latency: a publisher sends job events on ``inference/events``; we time publish ->
   callback for raw paho (on_message) and for cl_client (``subscribe_job_updates`` on_progress), p50/p99.
2. Dispatch throughput with 10,000 live subscriptions: events spread over 10,000 job ids,
   (a) in-process (parse -> route -> tracker -> callback, no network), against the bare minimum (json.loads and
   a dict lookup) as its anchor, and (b) through the broker: raw paho, then cl_client, each alone, fed by the same
   publisher at QoS 1 paced to at most WINDOW events ahead of the subscriber, so no event is dropped (the run
   fails if one is) and both rates are sustained delivery rates.

Every figure is printed with its ratio to its anchor measured in the same run.

Run: ``uv run python benchmarks/bench_client.py [--events N] [--broker auto|mosquitto|amqtt] [--short]``
(``--short``: few events, for CI's check that the benchmark still runs; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cl_client import ComputeClient, ComputeClientConfig, JobResponse
from cl_compute.broker import start_broker

TOPIC = "inference/events"
CFG = ComputeClientConfig(event_silence_timeout=3600.0)  # no polling during the benchmark


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def new_paho(name: str) -> mqtt.Client:
    return mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-{name}-{uuid.uuid4().hex[:6]}"
    )


def latency(broker_url: str, n: int) -> tuple[list[float], list[float]]:
    host, port = broker_url.removeprefix("mqtt://").split(":")
    sent: dict[str, float] = {}
    raw_lat: list[float] = []
    cl_lat: list[float] = []
    raw_done = threading.Event()
    cl_done = threading.Event()

    raw = new_paho("raw")

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        key = json.loads(msg.payload)["progress"]
        raw_lat.append(now - sent[f"{key}"])
        if len(raw_lat) >= n:
            raw_done.set()

    raw.on_message = on_message
    raw.connect(host, int(port))
    raw.subscribe(TOPIC, qos=1)
    raw.loop_start()

    client = ComputeClient("http://127.0.0.1:9", mqtt_url=broker_url, config=CFG)
    assert client.monitor is not None and client.monitor.wait_ready(5)
    job_id = "bench-latency-job"

    def on_progress(job: JobResponse) -> None:
        now = time.perf_counter()
        cl_lat.append(now - sent[f"{job.progress}"])
        if len(cl_lat) >= n:
            cl_done.set()

    client.subscribe_job_updates(job_id, on_progress=on_progress)
    pub = new_paho("pub")
    pub.connect(host, int(port))
    pub.loop_start()
    time.sleep(0.5)
    for i in range(n):
        # progress carries the key; keep it a valid int so both sides can read it.
        payload = json.dumps({"job_id": job_id, "event_type": "processing", "timestamp": 0, "progress": i})
        sent[f"{i}"] = time.perf_counter()
        pub.publish(TOPIC, payload, qos=1)
        time.sleep(0.002)  # one event in flight at a time: latency, not queueing
    raw_done.wait(30)
    cl_done.wait(30)
    for c in (raw, pub):
        c.loop_stop()
        c.disconnect()
    client.close()
    return raw_lat, cl_lat


def anchor_in_process(n_subs: int, n_events: int) -> float:
    """The anchor of the in-process figure: the least any dispatcher does (parse, look the id up, call)."""
    ids = [f"job-{i}" for i in range(n_subs)]
    count = [0]

    def callback(data: dict[str, object]) -> None:
        count[0] += 1

    routes = {job_id: callback for job_id in ids}
    payloads = [
        json.dumps({"job_id": ids[i % n_subs], "event_type": "processing", "progress": i % 100}).encode()
        for i in range(n_events)
    ]
    start = time.perf_counter()
    for p in payloads:
        data = json.loads(p)
        routes[data["job_id"]](data)
    return count[0] / (time.perf_counter() - start)


def throughput_in_process(n_subs: int, n_events: int) -> float:
    client = ComputeClient(
        "http://127.0.0.1:9", mqtt_url="mqtt://127.0.0.1:9", config=CFG.replace(mqtt_connect_timeout=0.01)
    )
    monitor = client.monitor
    assert monitor is not None
    received = [0]
    done = threading.Event()

    def on_progress(job: JobResponse) -> None:
        received[0] += 1
        if received[0] >= n_events:
            done.set()

    ids = [f"job-{i}" for i in range(n_subs)]
    for job_id in ids:
        client.tracker.subscribe(job_id, on_progress=on_progress)
    payloads = [
        json.dumps(
            {"job_id": ids[i % n_subs], "event_type": "processing", "timestamp": 0, "progress": i % 100}
        ).encode()
        for i in range(n_events)
    ]
    msgs = []
    for p in payloads:
        m = mqtt.MQTTMessage(topic=TOPIC.encode())
        m.payload = p
        msgs.append(m)
    start = time.perf_counter()
    for m in msgs:  # what paho's network thread calls for each message
        monitor._on_message(monitor._client, None, m)
    done.wait(120)
    elapsed = time.perf_counter() - start
    client.close()
    return received[0] / elapsed


WINDOW = 500  # events in flight at most: far below mosquitto's per-client queue (1,000), so nothing is dropped


def _paced_publish(host: str, port: int, ids: list[str], n_events: int, received: list[int]) -> None:
    """Publish ``n_events`` at QoS 1 as fast as the subscriber takes them, never more than WINDOW ahead of it.

    A flood (the old version of this benchmark, QoS 0, no pacing) made the broker drop a quarter of the events
    for the slower subscriber, so the two rates measured different things. Here every event is delivered, the
    rate is the subscriber's sustained one, and ``received`` must reach ``n_events``.
    """
    pub = new_paho("pubt")
    pub.max_inflight_messages_set(100)
    pub.connect(host, port)
    pub.loop_start()
    deadline = time.monotonic() + 300
    for i in range(n_events):
        while i - received[0] >= WINDOW:
            if time.monotonic() > deadline:
                raise SystemExit(f"benchmark stalled: {received[0]} of {i} published events received")
            time.sleep(0.0005)
        pub.publish(TOPIC, json.dumps({"job_id": ids[i % len(ids)], "event_type": "processing", "progress": i % 100}),
                    qos=1)  # fmt: skip
    pub.loop_stop()
    pub.disconnect()


def _wait_all(received: list[int], n_events: int, idle: float = 5.0) -> None:
    seen, last_change = -1, time.monotonic()
    while received[0] < n_events and time.monotonic() - last_change < idle:
        if received[0] != seen:
            seen, last_change = received[0], time.monotonic()
        time.sleep(0.01)


def throughput_broker(broker_url: str, n_subs: int, n_events: int) -> tuple[float, float, int, int]:
    """Events/s through the broker, raw paho then cl_client, each alone, same paced QoS 1 publisher.

    Returns (raw rate, cl_client rate, raw drops, cl_client drops); the rates are events received per second
    from the first publish to the last event received.
    """
    host, port_text = broker_url.removeprefix("mqtt://").split(":")
    port = int(port_text)
    ids = [f"bjob-{i}" for i in range(n_subs)]

    raw_count = [0]
    raw_last = [0.0]
    raw = new_paho("rawt")

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        json.loads(m.payload)  # the same parse cl_client does, so the comparison is fair
        raw_count[0] += 1
        raw_last[0] = time.perf_counter()

    subscribed = threading.Event()
    raw.on_message = on_message
    raw.on_subscribe = lambda *a: subscribed.set()
    raw.connect(host, port)
    raw.subscribe(TOPIC, qos=1)
    raw.loop_start()
    assert subscribed.wait(5)
    start = time.perf_counter()
    _paced_publish(host, port, ids, n_events, raw_count)
    _wait_all(raw_count, n_events)
    raw_rate = raw_count[0] / max(raw_last[0] - start, 1e-9)
    raw.loop_stop()
    raw.disconnect()

    client = ComputeClient("http://127.0.0.1:9", mqtt_url=broker_url, config=CFG)
    assert client.monitor is not None and client.monitor.wait_ready(5)
    got = [0]
    last_at = [0.0]

    def on_progress(job: JobResponse) -> None:
        got[0] += 1
        last_at[0] = time.perf_counter()

    for job_id in ids:
        client.tracker.subscribe(job_id, on_progress=on_progress)
    start = time.perf_counter()
    _paced_publish(host, port, ids, n_events, got)
    _wait_all(got, n_events)
    cl_rate = got[0] / max(last_at[0] - start, 1e-9)
    client.close()
    return raw_rate, cl_rate, n_events - raw_count[0], n_events - got[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--latency-events", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto")
    parser.add_argument("--short", action="store_true", help="few samples (CI: the benchmark still runs)")
    args = parser.parse_args()
    if args.short:
        args.events, args.latency_events, args.subscriptions = 2000, 100, 1000
    broker = start_broker(prefer=args.broker)
    try:
        print(f"broker: {broker.kind} at {broker.url}")
        raw_lat, cl_lat = latency(broker.url, args.latency_events)
        rp50, rp99 = percentile(raw_lat, 0.5) * 1e3, percentile(raw_lat, 0.99) * 1e3
        cp50, cp99 = percentile(cl_lat, 0.5) * 1e3, percentile(cl_lat, 0.99) * 1e3
        print(f"latency publish->callback ({len(cl_lat)} events)")
        print(f"  raw paho   p50 {rp50:.3f} ms  p99 {rp99:.3f} ms  mean {statistics.mean(raw_lat) * 1e3:.3f} ms")
        print(f"  cl_client  p50 {cp50:.3f} ms  p99 {cp99:.3f} ms  mean {statistics.mean(cl_lat) * 1e3:.3f} ms")
        print(
            f"  cl_client - raw: p50 +{cp50 - rp50:.3f} ms, p99 +{cp99 - rp99:.3f} ms (target: p50 within 1 ms); "
            f"ratio p50 {cp50 / rp50:.2f}"
        )
        rate = throughput_in_process(args.subscriptions, args.events)
        anchor = anchor_in_process(args.subscriptions, args.events)
        print(
            f"dispatch in-process, {args.subscriptions} subscriptions: {rate:,.0f} events/s (target >= 20,000); "
            f"anchor json.loads + dict route {anchor:,.0f} events/s, ratio {rate / anchor:.2f}"
        )
        raw_rate, cl_rate, raw_lost, cl_lost = throughput_broker(broker.url, args.subscriptions, args.events)
        print(
            f"through the broker (QoS 1, publisher paced to {WINDOW} events in flight), {args.subscriptions} "
            f"subscriptions: raw paho {raw_rate:,.0f} events/s, cl_client {cl_rate:,.0f} events/s "
            f"(ratio {cl_rate / raw_rate:.2f}); dropped: raw paho {raw_lost}, cl_client {cl_lost} of {args.events}"
        )
        if raw_lost or cl_lost:
            raise SystemExit(f"FAIL: events dropped (raw paho {raw_lost}, cl_client {cl_lost}): the ratio is void")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
