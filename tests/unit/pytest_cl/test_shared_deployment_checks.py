"""Checks that run against a shared deployment by URL (``cl-client certify URL -n N``) must tolerate what the other
checks, and other people, do on it at the same time.

A real deployment (``cl_compute``, started on its own, hash and hls_streaming workers) is certified by URL while a
thread keeps creating hash jobs on it, as the checks of the other modules do under ``-n 4``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cl_compute.deployment import Deployment


@pytest.fixture(scope="module")
def busy_deployment() -> Iterator[Deployment]:
    dep = Deployment(workers=2, tasks=["hash", "hls_streaming"])
    dep.start()
    try:
        yield dep
    finally:
        dep.stop()


def _churn(server_url: str, stop: threading.Event, created: list[str]) -> None:
    """Other checks' jobs: new job folders appear on the deployment while a check watches it."""
    with httpx.Client(base_url=server_url, timeout=30) as http:
        while not stop.is_set():
            response = http.post("/jobs/hash", files={"file": ("other.txt", os.urandom(256))})
            if response.status_code == 200:
                created.append(str(response.json()["job_id"]))
            stop.wait(0.2)


def test_the_cancellation_check_judges_only_its_own_job_on_a_shared_deployment(
    busy_deployment: Deployment, tmp_path: Path
) -> None:
    """Storage grows with the other jobs; the check must not call that its deleted job going on (it did)."""
    stop = threading.Event()
    created: list[str] = []
    churn = threading.Thread(target=_churn, args=(busy_deployment.server_url, stop, created), daemon=True)
    churn.start()
    report = tmp_path / "cert.json"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cl_client", "certify", busy_deployment.server_url, "--mqtt",
             str(busy_deployment.mqtt_url), "--report", str(report), "--", "-k",
             "test_deleting_a_running_job_stops_it", "-p", "no:cacheprovider"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        stop.set()
        churn.join(60)
    assert created, "the churn thread created no job"
    data = json.loads(report.read_text())
    outcomes = {nodeid: test["outcome"] for nodeid, test in data["tests"].items()}
    assert outcomes == {"protocol/test_cancellation.py::test_deleting_a_running_job_stops_it": "passed"}, (
        outcomes,
        done.stdout[-4000:],
        done.stderr[-2000:],
    )
    assert done.returncode == 0, done.stdout[-3000:]
