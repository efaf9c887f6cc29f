"""``cl-client certify`` as a user runs it: a real process (``python -m cl_client``) running the packaged suites
through pytest against a real one-worker ``hash`` deployment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cl_compute.deployment import Deployment

pytestmark = pytest.mark.timeout(240)

HOSTILE_PYTEST_INI = """\
[pytest]
addopts = --bogus-option-from-the-callers-ini
testpaths = nowhere
cl_server = http://hostile.invalid:1
"""
HOSTILE_PYPROJECT = """\
[tool.pytest.ini_options]
addopts = "--cov=nothing --bogus-option-from-pyproject"
"""


@pytest.fixture(scope="module")
def hash_deployment() -> Iterator[Deployment]:
    with Deployment(workers=1, tasks=["hash"]) as dep:
        yield dep


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    """A project directory whose pytest configuration would break any pytest run that read it."""
    (tmp_path / "pytest.ini").write_text(HOSTILE_PYTEST_INI)
    (tmp_path / "pyproject.toml").write_text(HOSTILE_PYPROJECT)
    (tmp_path / "conftest.py").write_text('raise RuntimeError("the caller\'s conftest.py was loaded")\n')
    return tmp_path


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the settings of the pytest run that runs these tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CL_", "PYTEST_", "COV_CORE"))}
    env.pop("CI", None)
    return {**env, **extra}


def certify(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cl_client", "certify", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_count(dep: Deployment) -> int:
    return int(httpx.get(f"{dep.server_url}/admin/jobs/storage/size", timeout=10).json()["job_count"])


def matrix_row(output: str, row: str) -> list[str]:
    lines = [line for line in output.splitlines() if line.startswith(f"| {row} |")]
    assert len(lines) == 1, output
    return [cell.strip() for cell in lines[0].strip("|").split("|")]


def test_certify_hash_row_from_a_directory_with_a_hostile_pytest_configuration(
    hash_deployment: Deployment, hostile_dir: Path
) -> None:
    report = hostile_dir / "out" / "cert.json"
    report.parent.mkdir()
    res = certify(
        hash_deployment.server_url,
        "--mqtt",
        hash_deployment.mqtt_url,
        "--plugins",
        "hash",
        "--report",
        "out/cert.json",
        "-v",
        cwd=hostile_dir,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    row, passed, failed = matrix_row(res.stdout, "hash")[:3]
    assert (row, failed) == ("hash", "0") and int(passed) >= 10
    assert "cl: conformance matrix" in res.stdout
    assert "| protocol |" not in res.stdout  # only the row asked for
    assert "python -P -m pytest -c" in res.stderr  # -v: the command it ran, for a rerun by hand
    rows = {r["row"] for r in json.loads(report.read_text())["matrix"]}
    assert rows == {"hash"}
    assert report.with_suffix(".md").exists()
    assert sorted(p.name for p in hostile_dir.iterdir()) == ["conftest.py", "out", "pyproject.toml", "pytest.ini"]
    assert job_count(hash_deployment) == 0


def test_pytests_exit_code_passes_through(hash_deployment: Deployment, tmp_path: Path) -> None:
    res = certify(hash_deployment.server_url, "--mqtt", "off", "--", "-k", "no_check_has_this_name", cwd=tmp_path)
    assert res.returncode == 5, res.stdout + res.stderr  # pytest: no tests selected


def test_strict_certify_of_a_plugin_without_worker_fails(hash_deployment: Deployment, tmp_path: Path) -> None:
    res = certify(
        hash_deployment.server_url,
        "--mqtt",
        hash_deployment.mqtt_url,
        "--plugins",
        "exif",
        "--strict",
        "--",
        "-x",
        "--cl-worker-wait",
        "0",
        cwd=tmp_path,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "no worker offers exif" in res.stdout
    assert matrix_row(res.stdout, "exif")[2] != "0"  # failed


def test_unknown_plugin_name_is_a_usage_error_before_pytest(hash_deployment: Deployment, tmp_path: Path) -> None:
    res = certify(hash_deployment.server_url, "--mqtt", "off", "--plugins", "hashh", cwd=tmp_path, timeout=60)
    assert res.returncode == 4, res.stdout + res.stderr
    assert "--plugins: unknown row(s): hashh (did you mean hash?)" in res.stderr and "hash, hls_streaming" in res.stderr
    assert "--cl-rows" not in res.stderr and res.stdout == ""


def test_sigterm_interrupts_pytest_cleanly(hash_deployment: Deployment, tmp_path: Path) -> None:
    """SIGTERM to certify reaches pytest, which stops like on Ctrl-C, deletes its jobs, and exits 2."""
    dep = hash_deployment
    proc = subprocess.Popen(
        [sys.executable, "-m", "cl_client", "certify", dep.server_url, "--mqtt", dep.mqtt_url, "--plugins", "hash"],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        seen = b""
        while b"." not in seen:  # the first check passed: pytest is in the middle of the run
            chunk = proc.stdout.read(1)
            assert chunk, seen + proc.stderr.read()
            seen += chunk
        proc.send_signal(signal.SIGTERM)
        out = seen + proc.stdout.read()
        assert proc.wait(60) == 2, out
    finally:
        proc.kill()
        proc.wait()
    assert b"KeyboardInterrupt" in out
    assert job_count(hash_deployment) == 0  # the interrupted test's jobs were deleted by its teardown


def test_missing_dependency_in_a_real_process_is_one_line(tmp_path: Path) -> None:
    code = "import sys; sys.modules['m3u8'] = None; from cl_client.cli import main; main()"
    res = subprocess.run(
        [sys.executable, "-c", code, "certify", "http://127.0.0.1:9"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 3
    assert res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "error: cl-client certify needs the conformance extra (m3u8 not installed): "
        'pip install "cl-client[conformance]"'
    ]
