"""Benchmark the cl_compute server core: start-up time, claim latency and jobs/s with a trivial plugin.

Run: ``uv run python benchmarks/bench_server.py [--jobs 200] [--workers 1] [--broker auto|mosquitto|amqtt]
[--short]`` (``--short``: a few jobs of each kind, for CI's check that the benchmark still runs). Prints:

* start-up: ``Deployment.start()`` wall time (broker + API + workers announced), test plugins only;
* claim latency: time from the ``queued`` event to the ``processing`` event, as seen by an MQTT subscriber,
  for jobs submitted one at a time to an idle worker (median / p95 / max);
* throughput: jobs/s for a burst of jobs submitted back to back and run by the worker(s) (trivial ``echo``
  plugin), measured from the first POST to the last ``completed`` event;
* per plugin: jobs/s of each of the nine real plugins on ONE worker, on a representative committed media file
  (``--plugin-jobs`` jobs back to back; first-time model loading is excluded by one warm-up job), beside its
  anchor: the same backend called in this process, and the ratio of the two (what serving costs).

Every figure is printed with its anchor from the same run (throughput: POSTs alone; claim latency: one POST
round trip; per plugin: the backend in process), since these machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit" / "server"))

from compute_test_plugins import extra_plugins_spec

from cl_compute.deployment import Deployment
from cl_compute.plugins import get_plugin
from cl_compute.plugins.base import TaskContext


class Events:
    def __init__(self, mqtt_url: str) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()
        parsed = urlparse(mqtt_url)
        ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:6]}")
        self.client.on_connect = lambda c, *a: c.subscribe("inference/events", 1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883)
        self.client.loop_start()
        ready.wait(10)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        # Only job events count; anything else on the topic (a retained capability message, a foreign
        # publisher's text) is skipped: an exception here would end paho's network thread and every later wait.
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(data, dict) or not isinstance(data.get("job_id"), str) or "event_type" not in data:
            return
        with self.cond:
            self.seen.setdefault((data["job_id"], data["event_type"]), time.perf_counter())
            self.cond.notify_all()

    def wait(self, job_id: str, kind: str, timeout: float = 30) -> float:
        with self.cond:
            ok = self.cond.wait_for(lambda: (job_id, kind) in self.seen, timeout)
            if not ok:
                raise TimeoutError(f"no {kind} event for {job_id}")
            return self.seen[(job_id, kind)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


MEDIA = Path(__file__).resolve().parents[1] / "pytest_cl" / "media"
PLUGIN_INPUTS: list[tuple[str, str, dict[str, str]]] = [
    ("hash", "images/synthetic_1920x1080.jpg", {}),
    ("exif", "images/exif_rich.jpg", {}),
    ("image_conversion", "images/synthetic_1920x1080.jpg", {"format": "webp"}),
    ("media_thumbnail", "images/synthetic_1920x1080.jpg", {"width": "256"}),
    ("clip_embedding", "faces/astronaut.png", {}),
    ("dino_embedding", "faces/astronaut.png", {}),
    ("face_detection", "faces/group_4_faces.jpg", {}),
    ("face_embedding", "faces/astronaut.png", {}),
    ("hls_streaming", "video/testsrc_720p_5s_audio.mp4", {"variants": '[{"resolution":360,"bitrate":800}]'}),
]


def in_process_rate(task: str, rel: str, form: dict[str, str], n: int) -> float:
    """The anchor: the same backend called directly in this process (``parse_params`` + ``run``), jobs/s.

    No HTTP, no broker, no job store, no worker hand-off: the ratio of the deployment's rate to this one is what
    serving a job costs on top of computing it. One warm-up run first, so model loading is not counted.
    """
    plugin = get_plugin(task)
    plugin.load()
    name = Path(rel).name
    with tempfile.TemporaryDirectory(prefix="cl-bench-") as tmp:

        def once(i: int) -> None:
            job_dir = Path(tmp) / f"job{i}"
            for sub in ("input", "output", "faces"):
                (job_dir / sub).mkdir(parents=True)
            shutil.copyfile(MEDIA / rel, job_dir / "input" / name)
            params = {**plugin.parse_params(form, name), "input_path": f"input/{name}"}
            plugin.run(TaskContext(f"bench-{i}", job_dir, job_dir / "input" / name, params))

        once(-1)
        t0 = time.perf_counter()
        for i in range(n):
            once(i)
        return n / (time.perf_counter() - t0)


RESULTS = Path(__file__).resolve().parent / "results"


def per_plugin(jobs: int, broker: str = "auto", save: bool = True, note: str = "") -> None:
    """Jobs/s of every real plugin on one worker (a warm-up job first, so model loading is not counted), each
    beside its anchor: the same backend called in this process. ``save``: also write the rates to
    ``results/server-plugins.json`` (``bench_capacity.py`` draws them as the capacity chart's ceiling)."""
    rates: dict[str, float] = {}
    with Deployment(workers=1, broker=broker) as dep:
        events = Events(dep.mqtt_url)
        print(f"per plugin, 1 worker, {jobs} jobs each after one warm-up job; anchor: the backend in process:")
        print(f"  {'plugin':<18} {'input':<34} {'jobs/s':>8} {'ms/job':>8} {'anchor':>8} {'ratio':>6}")
        with httpx.Client(base_url=dep.server_url, timeout=60) as http:
            for task, rel, form in PLUGIN_INPUTS:
                payload = (MEDIA / rel).read_bytes()

                def post(
                    task: str = task, rel: str = rel, form: dict[str, str] = form, payload: bytes = payload
                ) -> str:
                    r = http.post(f"/jobs/{task}", files={"file": (Path(rel).name, payload)}, data=form)
                    r.raise_for_status()
                    return str(r.json()["job_id"])

                events.wait(post(), "completed", timeout=300)
                n = min(2, jobs) if task == "hls_streaming" else jobs
                t0 = time.perf_counter()
                ids = [post() for _ in range(n)]
                last = max(events.wait(job_id, "completed", timeout=300) for job_id in ids)
                rate = n / (last - t0)
                anchor = in_process_rate(task, rel, form, n)
                print(f"  {task:<18} {rel:<34} {rate:8.1f} {1000 / rate:8.0f} {anchor:8.1f} {rate / anchor:6.2f}")
                rates[task] = round(rate, 2)
        events.close()
    if save:
        RESULTS.mkdir(exist_ok=True)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        machine = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
        data = {"date": when, "machine": machine, "note": note, "jobs_per_plugin": jobs, "one_worker_jobs_per_s": rates}
        (RESULTS / "server-plugins.json").write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {RESULTS / 'server-plugins.json'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--latency-samples", type=int, default=30)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--plugin-jobs", type=int, default=10, help="jobs per real plugin (0 skips that part)")
    parser.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto")
    parser.add_argument("--short", action="store_true", help="few samples (CI: the benchmark still runs)")
    parser.add_argument("--note", default="", help='saved with the per-plugin rates, e.g. "idle machine"')
    args = parser.parse_args()
    if args.short:
        args.jobs, args.latency_samples, args.plugin_jobs = 20, 5, 1
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    dep = Deployment(workers=args.workers, tasks=["echo"], extra_plugins=extra_plugins_spec(), broker=args.broker)
    dep.start()
    try:
        print(f"start-up: {dep.startup_seconds:.3f} s (broker {dep.broker_kind}, {args.workers} worker(s))")
        events = Events(dep.mqtt_url)
        with httpx.Client(base_url=dep.server_url, timeout=30) as http:

            def post() -> str:
                r = http.post("/jobs/echo", files={"file": ("x.bin", b"x")})
                r.raise_for_status()
                return str(r.json()["job_id"])

            post_times = []
            latencies = []
            for _ in range(args.latency_samples):
                t0 = time.perf_counter()
                job_id = post()
                post_times.append(time.perf_counter() - t0)
                queued = events.wait(job_id, "queued")
                processing = events.wait(job_id, "processing")
                events.wait(job_id, "completed")
                latencies.append(processing - queued)
            latencies.sort()
            ms = [x * 1000 for x in latencies]
            print(
                f"claim latency (queued -> processing event): median {statistics.median(ms):.1f} ms, "
                f"p95 {ms[int(len(ms) * 0.95) - 1]:.1f} ms, max {ms[-1]:.1f} ms"
            )
            post_ms = statistics.median(post_times) * 1000
            print(
                f"POST /jobs/echo round trip (the claim latency's anchor): median {post_ms:.1f} ms; "
                f"claim latency / round trip = {statistics.median(ms) / post_ms:.2f}"
            )

            t0 = time.perf_counter()
            ids = [post() for _ in range(args.jobs)]
            posted = time.perf_counter()
            last = max(events.wait(job_id, "completed", timeout=120) for job_id in ids)
            rate, post_rate = args.jobs / (last - t0), args.jobs / (posted - t0)
            print(
                f"throughput: {args.jobs} jobs in {last - t0:.2f} s = {rate:.1f} jobs/s "
                f"({args.workers} worker(s); submitting alone took {posted - t0:.2f} s = {post_rate:.1f} POSTs/s; "
                f"ratio to that anchor {rate / post_rate:.2f})"
            )
        events.close()
    finally:
        dep.stop()
    if args.plugin_jobs:
        per_plugin(args.plugin_jobs, args.broker, save=not args.short, note=args.note)


if __name__ == "__main__":
    main()
