"""The upstream-style example program runs unchanged, as a subprocess, against a real reference deployment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cl_compute.deployment import Deployment

ROOT = Path(__file__).resolve().parents[4]
PROGRAM = ROOT / "examples" / "upstream_style" / "quickstart.py"


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    with Deployment(workers=1, tasks=["hash", "media_thumbnail"]) as dep:
        yield dep


def test_upstream_style_program_runs_unchanged(deployment: Deployment) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CL_") and k not in ("MQTT_BROKER", "MQTT_PORT")}
    env["COMPUTE_URL"] = deployment.server_url  # upstream's variables, as its users set them
    env["MQTT_URL"] = deployment.mqtt_url
    done = subprocess.run(
        [sys.executable, str(PROGRAM)], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT, check=False
    )
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{out}\nstderr:\n{done.stderr}"
    assert "Job completed:" in out
    assert out.count("Job completed:") == 1, out
    assert "hash job final status: completed" in out
    assert "Downloaded " in out
    assert "deleted job is gone" in out
    assert "missing file answered 404" in out
