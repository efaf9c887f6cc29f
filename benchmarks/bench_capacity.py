"""Capacity of the reference deployment under a latency objective, found by ``cl-client load --find-capacity``.

A fresh ``Deployment`` (random ports, ``--deployment-workers`` workers, the plugins of the mix) is driven by
``cl-client load --find-capacity`` (Locust; a master and ``--locust-workers`` worker processes): the offered
jobs/s rises step by step until the objective breaks. Every job is checked and deleted. The per-plugin one-worker
rates of ``bench_server.py`` (``results/server-plugins.json``, when present) are drawn as the ceiling.

Writes ``benchmarks/results/capacity.{json,csv,svg}`` (the chart carries the machine, the date, the mix and
``--note``, e.g. "loaded machine"); ``--compare OLD.json`` adds the change per plugin.

Run: ``uv run python benchmarks/bench_capacity.py [--mix hash=5,exif=2] [--slo p95=2s,errors=0]
[--deployment-workers 2] [--note "loaded machine"] [--broker amqtt] [--short]`` (``--short``: three short steps,
for CI's check that the benchmark still runs; ``--out`` elsewhere than ``results/``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from cl_client._capacity import CapacityReport
from cl_client._load import parse_mix
from cl_compute.deployment import Deployment

RESULTS = Path(__file__).resolve().parent / "results"


def ceiling(mix: str) -> str | None:
    """``--ceiling`` from bench_server.py's saved one-worker rates (None when they do not cover the mix)."""
    path = RESULTS / "server-plugins.json"
    if not path.is_file():
        return None
    rates = json.loads(path.read_text())["one_worker_jobs_per_s"]
    names = parse_mix(mix)
    if not all(name in rates for name in names):
        return None
    return ",".join(f"{name}={rates[name]}" for name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mix", default="hash=5,exif=2")
    parser.add_argument("--slo", default="p95=2s,errors=0")
    parser.add_argument("--deployment-workers", type=int, default=2)
    parser.add_argument("--locust-workers", type=int, default=1, help="Locust worker processes (0: one process)")
    parser.add_argument("--start", type=float, default=2.0, help="first step's offered jobs/s")
    parser.add_argument("--factor", type=float, default=1.4)
    parser.add_argument("--step-time", default="30s")
    parser.add_argument("--settle", default="10s")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--note", default="", help='shown in the chart, e.g. "loaded machine"')
    parser.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto")
    parser.add_argument("--compare", default=None, help="a previous capacity.json")
    parser.add_argument("--out", default=str(RESULTS / "capacity"), help="output prefix")
    parser.add_argument("--short", action="store_true", help="three short steps (CI: the benchmark still runs)")
    args = parser.parse_args()
    if args.short:
        args.start, args.factor, args.step_time, args.settle, args.max_steps = 2.0, 2.0, "6s", "3s", 3
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tasks = sorted(parse_mix(args.mix))
    with Deployment(workers=args.deployment_workers, tasks=tasks, broker=args.broker) as dep:
        print(f"deployment: {args.deployment_workers} worker(s) of {', '.join(tasks)}, broker {dep.broker_kind}")
        argv = [
            sys.executable, "-m", "cl_client", "load", dep.server_url, "--mqtt", dep.mqtt_url, "--mix", args.mix,
            "--workers", str(args.locust_workers), "--find-capacity", "--slo", args.slo,
            "--capacity-start", str(args.start), "--capacity-factor", str(args.factor),
            "--step-time", args.step_time, "--settle", args.settle, "--max-steps", str(args.max_steps),
            "--capacity-out", args.out,
            "--note", f"{args.note + '; ' if args.note else ''}{args.deployment_workers} deployment worker(s)",
        ]  # fmt: skip
        if rates := ceiling(args.mix):
            argv += ["--ceiling", rates]
        if args.compare:
            argv += ["--compare", args.compare]
        print("$ cl-client load ... " + " ".join(argv[argv.index("--mix") :]), flush=True)
        done = subprocess.run(argv, timeout=args.max_steps * 200 + 300)
    if done.returncode != 0:
        raise SystemExit(f"cl-client load --find-capacity failed (exit {done.returncode})")
    report = CapacityReport.from_json(Path(args.out + ".json").read_text())
    if not report.steps:
        raise SystemExit("no step was measured")


if __name__ == "__main__":
    main()
