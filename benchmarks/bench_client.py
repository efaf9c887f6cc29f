"""Client benchmarks, measured side by side in one run on one broker (numbers are ratios, machines are noisy).

1. Event -> callback latency: a publisher sends job events on ``inference/events``; we time publish ->
   callback for raw paho (on_message) and for cl_client (``subscribe_job_updates`` on_progress), p50/p99.
2. Dispatch throughput with 10,000 live subscriptions: events spread over 10,000 job ids,
   (a) in-process (parse -> route -> tracker -> callback, no network) and (b) through the broker.

Run: ``uv run python benchmarks/bench_client.py [--events N]``.
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


def throughput_broker(broker_url: str, n_subs: int, n_events: int) -> tuple[float, float, int]:
    host, port = broker_url.removeprefix("mqtt://").split(":")
    client = ComputeClient("http://127.0.0.1:9", mqtt_url=broker_url, config=CFG)
    assert client.monitor is not None and client.monitor.wait_ready(5)
    got = [0]
    last_at = [0.0]

    def on_progress(job: JobResponse) -> None:
        got[0] += 1
        last_at[0] = time.perf_counter()

    ids = [f"bjob-{i}" for i in range(n_subs)]
    for job_id in ids:
        client.tracker.subscribe(job_id, on_progress=on_progress)
    raw_count = [0]
    raw_done = threading.Event()
    raw = new_paho("rawt")

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        raw_count[0] += 1
        if raw_count[0] >= n_events:
            raw_done.set()

    raw.on_message = on_message
    raw.connect(host, int(port))
    raw.subscribe(TOPIC, qos=0)
    raw.loop_start()
    pub = new_paho("pubt")
    pub.connect(host, int(port))
    pub.loop_start()
    time.sleep(0.5)
    start = time.perf_counter()
    for i in range(n_events):
        pub.publish(
            TOPIC, json.dumps({"job_id": ids[i % n_subs], "event_type": "processing", "progress": i % 100}), qos=0
        )
    raw_done.wait(120)
    raw_elapsed = time.perf_counter() - start
    # QoS 0: a subscriber that falls behind loses messages at the broker (mosquitto drops QoS 0 beyond its
    # queue), so wait until everything arrived or nothing more came for a second, and report the losses.
    seen = -1
    while got[0] < n_events and got[0] != seen:
        seen = got[0]
        time.sleep(1.0)
    cl_elapsed = max(last_at[0] - start, 1e-9)
    for c in (raw, pub):
        c.loop_stop()
        c.disconnect()
    client.close()
    return raw_count[0] / raw_elapsed, got[0] / cl_elapsed, n_events - got[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--latency-events", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=10_000)
    args = parser.parse_args()
    broker = start_broker()
    try:
        print(f"broker: {broker.kind} at {broker.url}")
        raw_lat, cl_lat = latency(broker.url, args.latency_events)
        rp50, rp99 = percentile(raw_lat, 0.5) * 1e3, percentile(raw_lat, 0.99) * 1e3
        cp50, cp99 = percentile(cl_lat, 0.5) * 1e3, percentile(cl_lat, 0.99) * 1e3
        print(f"latency publish->callback ({len(cl_lat)} events)")
        print(f"  raw paho   p50 {rp50:.3f} ms  p99 {rp99:.3f} ms  mean {statistics.mean(raw_lat) * 1e3:.3f} ms")
        print(f"  cl_client  p50 {cp50:.3f} ms  p99 {cp99:.3f} ms  mean {statistics.mean(cl_lat) * 1e3:.3f} ms")
        print(f"  cl_client - raw: p50 +{cp50 - rp50:.3f} ms, p99 +{cp99 - rp99:.3f} ms (target: p50 within 1 ms)")
        rate = throughput_in_process(args.subscriptions, args.events)
        print(f"dispatch in-process, {args.subscriptions} subscriptions: {rate:,.0f} events/s (target >= 20,000)")
        raw_rate, cl_rate, lost = throughput_broker(broker.url, args.subscriptions, args.events)
        print(
            f"through the broker (QoS 0), {args.subscriptions} subscriptions: raw paho {raw_rate:,.0f} events/s, "
            f"cl_client {cl_rate:,.0f} events/s (ratio {cl_rate / raw_rate:.2f}; "
            f"{lost} of {args.events} events dropped by the broker for cl_client)"
        )
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
