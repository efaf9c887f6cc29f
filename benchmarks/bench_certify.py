"""Certification time against the deployment's own limit, before and after the longest-first order, in one run.

For each profile (the embedded deployment ``fixed`` and ``upstream-2026-01``) ``cl-client certify -n N`` runs
twice, alternately: "before" as certify distributed until 2026-12-05 (xdist's own module order, the modules with
the most checks first: ``CL_CONFORMANCE_ORDER=collected`` and ``--loadscope-reorder``) and "after" as it does now
(the longest modules first, ``--no-loadscope-reorder``). Each run's JSON report states where its wall time went
(``certification_time``: the deployment busy = processing time / workers, idle with jobs queued, the suites
alone); the table prints them side by side with ``wall / busy``.

Run: ``uv run python benchmarks/bench_certify.py [-n 4] [--profiles fixed,upstream-2026-01] [--repeat 1]``
(about 1 minute a certify run of the fixed profile on a 2-core machine, 3-4 minutes of the upstream one). Writes
``benchmarks/results/certify-time.md`` (``--out``).
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

RESULTS = Path(__file__).resolve().parent / "results"
ORDERS = (
    ("collected", "before: xdist's order (most checks first)"),
    ("longest-first", "after: longest modules first"),
)


def certify(
    profile: str, order: str, workers: str, report: Path, plugins: str | None = None, pyc: bool = False
) -> dict[str, object]:
    env = {**os.environ, "CL_CONFORMANCE_ORDER": order}
    if pyc:  # Python's default: modules compiled once and cached (some CI machines set PYTHONDONTWRITEBYTECODE=1)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    argv = [sys.executable, "-m", "cl_client", "certify", "-n", workers, "--report", str(report)]
    if plugins:
        argv += ["--plugins", plugins]
    pytest_args = ["--loadscope-reorder"] if order == "collected" else []
    if profile != "fixed":
        argv += ["--profile", profile, "--expect-lacks", profile]
        pytest_args += ["--cl-embedded-workers", "4"]  # as in CI
    argv += ["--", *pytest_args]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    if not report.is_file():
        raise SystemExit(f"certify wrote no report ({profile}, {order}): {done.stdout[-3000:]}{done.stderr[-2000:]}")
    data = json.loads(report.read_text())
    timing = dict(data["certification_time"])
    timing["exit"] = done.returncode
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", dest="workers", default="4", help="xdist processes of certify")
    parser.add_argument("--profiles", default="fixed,upstream-2026-01")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (profile, order), interleaved")
    parser.add_argument("--note", default="", help='e.g. "loaded machine"')
    parser.add_argument("--out", default=str(RESULTS / "certify-time.md"))
    parser.add_argument("--short", action="store_true", help="CI's check that it runs: the hash row, fixed profile")
    parser.add_argument(
        "--pyc",
        action="store_true",
        help="run certify with Python's bytecode cache even where PYTHONDONTWRITEBYTECODE is set (after one untimed "
        "run that fills it): without it every process of a run compiles every module it imports",
    )
    args = parser.parse_args()
    plugins = "hash" if args.short else None
    if args.short:
        args.profiles, args.repeat = "fixed", 1
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = f"{os.cpu_count()} cores {platform.machine()}, Python {platform.python_version()}"
    lines = [
        f"Certification time, embedded deployment, `cl-client certify -n {args.workers}` ({where}; {when}"
        f"{'; ' + args.note if args.note else ''}); `uv run python benchmarks/bench_certify.py`.",
        "",
        "| profile | order | wall s | busy s | idle with jobs queued s | suites alone s | wall / busy | exit |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    cache = "on" if args.pyc or not os.environ.get("PYTHONDONTWRITEBYTECODE") else "off (PYTHONDONTWRITEBYTECODE)"
    lines[0] = lines[0].replace("`uv run python", f"bytecode cache {cache}; `uv run python", 1)
    with tempfile.TemporaryDirectory(prefix="cl-bench-certify-") as tmp:
        if args.pyc:
            first = args.profiles.split(",")[0]
            certify(first, "longest-first", args.workers, Path(tmp) / "warm-up.json", plugins, pyc=True)
        for profile in args.profiles.split(","):
            for i in range(args.repeat):
                for order, label in ORDERS:
                    report = Path(tmp) / f"{profile}-{order}-{i}.json"
                    t = certify(profile, order, args.workers, report, plugins, args.pyc)
                    if args.short and (t["exit"] != 0 or not t["jobs"]):
                        raise SystemExit(f"certify ({order}) exited {t['exit']} with {t['jobs']} jobs timed")
                    row = (
                        f"| {profile} | {label} | {t['wall_s']} | {t['busy_s']} | {t['idle_with_jobs_queued_s']} | "
                        f"{t['suites_alone_s']} | {t['wall_over_busy']} | {t['exit']} |"
                    )
                    print(row, flush=True)
                    lines.append(row)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
