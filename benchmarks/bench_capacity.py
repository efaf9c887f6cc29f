"""Capacity curve of the reference deployment: sustained jobs/s and p95 latency with 1, 2 and 4 workers.

For each worker count a fresh ``Deployment`` (random ports) runs the plugins of the mix, and ``cl-client load``
(Locust, the packaged locustfile) drives it with a fixed number of closed-loop users, more than the workers can
serve, for ``--run-time`` seconds; the JOB rows of its JSON summary give the sustained rate (jobs that ended per
second over the run) and the latency (submit -> terminal state). Every job is checked and deleted.

Writes into ``benchmarks/results/``: ``capacity.json`` (the raw rows), ``capacity.md`` (the table) and
``capacity.png`` / ``capacity.svg`` (the chart, matplotlib). The ratios printed are against the 1-worker point of
the same run (the anchor): ideal scaling is 2.00 and 4.00, and a 2-core machine cannot give more than ~2.

Run: ``uv run python benchmarks/bench_capacity.py [--workers 1,2,4] [--run-time 40] [--users 16]`` (bounded:
about (run time + 30 s) per point).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from cl_client._load import Summary, parse_mix
from cl_compute.deployment import Deployment

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    model = f" ({cpu})" if cpu else ""
    return f"{os.cpu_count()} cores {platform.machine()}{model}, Python {platform.python_version()}"


def point(workers: int, mix: str, users: int, run_time: int, locust_workers: int) -> dict[str, object]:
    tasks = sorted(parse_mix(mix))
    with Deployment(workers=workers, tasks=tasks) as dep, tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        argv = [
            sys.executable, "-m", "cl_client", "load", dep.server_url, "--mqtt", dep.mqtt_url,
            "--users", str(users), "--run-time", f"{run_time}s", "--mix", mix, "--workers", str(locust_workers),
            "--summary", str(summary_path), "--fail-on", "errors=100%",
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=run_time + 240)
        if not summary_path.is_file():
            raise SystemExit(f"no summary for {workers} worker(s): {done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        summary = Summary.from_json(summary_path.read_text())
    jobs = summary.jobs
    if jobs.failures:
        raise SystemExit(f"{jobs.failures} of {jobs.requests} jobs failed with {workers} worker(s): {summary.errors}")
    return {
        "workers": workers, "jobs": jobs.requests, "failed": jobs.failures, "jobs_per_s": round(jobs.rps, 2),
        "p50_ms": jobs.p50, "p95_ms": jobs.p95, "p99_ms": jobs.p99, "duration_s": round(summary.duration, 1),
    }  # fmt: skip


def chart(rows: list[dict[str, object]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [int(str(r["workers"])) for r in rows]
    rate = [float(str(r["jobs_per_s"])) for r in rows]
    p95 = [float(str(r["p95_ms"])) for r in rows]
    fig, left = plt.subplots(figsize=(7, 4.2))
    left.plot(xs, rate, "o-", color="tab:blue", label="sustained jobs/s")
    left.set_xlabel("deployment workers")
    left.set_ylabel("jobs/s", color="tab:blue")
    left.set_xticks(xs)
    left.set_ylim(0, max(rate) * 1.2)
    right = left.twinx()
    right.plot(xs, p95, "s--", color="tab:red", label="p95 latency (submit → end)")
    right.set_ylabel("p95 ms", color="tab:red")
    right.set_ylim(0, max(p95) * 1.2)
    for x, r in zip(xs, rate, strict=True):
        left.annotate(f"{r:.1f}", (x, r), textcoords="offset points", xytext=(0, 6), ha="center", color="tab:blue")
    fig.legend(loc="lower center", bbox_to_anchor=(0.5, 0.16), fontsize=8)
    left.set_title(title, fontsize=9)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(RESULTS / f"capacity.{ext}", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", default="1,2,4", help="deployment worker counts")
    parser.add_argument("--mix", default="hash=5,exif=2")
    parser.add_argument("--users", type=int, default=16, help="closed-loop Locust users (more than the workers)")
    parser.add_argument("--run-time", type=int, default=40, help="seconds of load per point")
    parser.add_argument("--locust-workers", type=int, default=1, help="Locust worker processes (0: one process)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = machine()
    print(f"machine: {where}; {when}; mix {args.mix}, {args.users} users, {args.run_time} s per point")
    rows: list[dict[str, object]] = []
    for n in (int(x) for x in args.workers.split(",")):
        row = point(n, args.mix, args.users, args.run_time, args.locust_workers)
        rows.append(row)
        anchor = float(str(rows[0]["jobs_per_s"]))
        ratio = float(str(row["jobs_per_s"])) / anchor if anchor else 0.0
        print(
            f"  {n} worker(s): {row['jobs']} jobs, {row['jobs_per_s']} jobs/s (x{ratio:.2f} the 1st point), "
            f"p50 {row['p50_ms']:.0f} ms, p95 {row['p95_ms']:.0f} ms, failed {row['failed']}"
        )
    title = f"cl_compute capacity, mix {args.mix}, {args.users} users, {args.run_time} s a point\n{where}, {when}"
    (RESULTS / "capacity.json").write_text(
        json.dumps(
            {
                "machine": where,
                "date": when,
                "mix": args.mix,
                "users": args.users,
                "run_time_s": args.run_time,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    anchor = float(str(rows[0]["jobs_per_s"])) or 1.0
    lines = [
        f"Capacity of the reference deployment ({where}; {when}); mix `{args.mix}`, {args.users} Locust users, "
        f"{args.run_time} s per point; `uv run python benchmarks/bench_capacity.py`.",
        "",
        "| workers | jobs | failed | sustained jobs/s | × 1 worker | p50 ms | p95 ms | p99 ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['jobs']} | {r['failed']} | {r['jobs_per_s']} | "
            f"{float(str(r['jobs_per_s'])) / anchor:.2f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} |"
        )
    (RESULTS / "capacity.md").write_text("\n".join(lines) + "\n")
    chart(rows, title)
    print("\n".join(lines))
    print(f"wrote {RESULTS}/capacity.{{json,md,png,svg}}")


if __name__ == "__main__":
    main()
