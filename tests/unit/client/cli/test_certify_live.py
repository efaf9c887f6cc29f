"""``cl-client certify`` as a user runs it: a real process (``python -m cl_client``) running the packaged suites
through pytest against a real one-worker ``hash`` deployment."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import cast

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
        [
            sys.executable,
            "-m",
            "cl_client",
            "certify",
            dep.server_url,
            "--mqtt",
            dep.mqtt_url,
            "--plugins",
            "hash",
            "-v",
        ],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        seen = b""
        while b"PASSED" not in seen:  # -v: the first check passed, pytest is in the middle of the run
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


# -- the live view -----------------------------------------------------------------------------------------
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_in_a_pipe_the_live_view_is_plain_lines_with_failures_per_row(
    hash_deployment: Deployment, tmp_path: Path
) -> None:
    """Not a terminal (a pipe, CI): plain lines, no ANSI code, no carriage return, no pytest command line, no
    progress dots and no xdist status lines; a line per finished row with its failures."""
    dep = hash_deployment
    res = certify(
        dep.server_url, "--mqtt", dep.mqtt_url, "--plugins", "hash,exif", "--strict", "-n", "2",
        "--", "--cl-worker-wait", "0", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1, res.stdout + res.stderr  # exif has no worker: strict fails its checks
    out = res.stdout
    assert "\x1b[" not in out and "\r" not in out, repr(out[:2000])
    assert "python -P -m pytest" not in res.stderr and "bringing up nodes" not in out
    counts = re.search(r"^cl: (\d+) checks in 2 row\(s\): exif (\d+), hash (\d+)$", out, re.M)
    assert counts is not None, out
    total, exif, hashes = (int(x) for x in counts.groups())
    assert total == exif + hashes
    assert re.search(rf"^cl: \[\d+/{total}\] exif: {exif} checks done, {exif} failed \(\d+ failed so far\)$", out, re.M)
    assert re.search(rf"^cl: \[\d+/{total}\] hash: {hashes} checks done, 0 failed", out, re.M), out
    assert re.search(rf"^cl: {total}/{total} checks done in .*, {exif} failed$", out, re.M), out
    assert not re.search(r"^[.FsxE]{3,}", out, re.M), out  # pytest's progress letters are left to the view
    assert "cl: conformance matrix" in out


def test_in_a_terminal_a_progress_display_and_the_embedded_deployment_start(tmp_path: Path) -> None:
    """A pseudo-terminal (pexpect): a line that the embedded deployment is starting, one that it is ready and how
    long that took, then rich's progress bars (checks done of the total, per row), and the matrix."""
    pexpect = pytest.importorskip("pexpect")
    env = {**clean_env(), "TERM": "xterm-256color"}
    args = ["-m", "cl_client", "certify", "--plugins", "hash", "--", "--cl-embedded-tasks", "hash",
            "--cl-embedded-workers", "1"]  # fmt: skip
    child = pexpect.spawn(sys.executable, args, cwd=str(tmp_path), env=env, timeout=200, dimensions=(40, 120))
    try:
        child.expect(pexpect.EOF)
        raw = cast(bytes, child.before).decode(errors="replace")
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, raw[-3000:]
    text = ANSI.sub("", raw)
    starting = text.index("cl: starting the embedded reference deployment")
    ready = re.search(r"cl: embedded deployment ready in \d+(\.\d)? s \(1 worker\(s\), 1 capabilities\)", text)
    assert ready is not None and ready.start() > starting, text[-3000:]
    assert "\x1b[" in raw  # drawn with colours and cursor moves: a progress display, not lines
    total = int(re.findall(r"cl: (\d+) checks in 1 row\(s\): hash \d+", text)[0])
    assert re.search(rf"all checks .*\b0/{total}\b", text) and re.search(rf"hash .*\b{total}/{total}\b", text)
    assert f"cl: {total}/{total} checks done in" in text and "cl: conformance matrix" in text
    assert "python -P -m pytest" not in text
