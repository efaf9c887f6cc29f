"""The ``cl-client`` command against a real deployment: exit codes, --json, --output, jobs, workers, env
precedence (click's CliRunner in-process), plus subprocess and real pseudo-terminal runs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from click.testing import CliRunner, Result

from cl_client._cli_common import CliState
from cl_client.cli import cli
from cl_compute.deployment import Deployment
from pytest_cl._media import MediaCatalogue

CL_ENV = ("CL_SERVER_URL", "COMPUTE_URL", "CL_MQTT_URL", "MQTT_URL", "CL_TOKEN", "CL_TIMEOUT", "CL_USERNAME")
CONSOLE_SCRIPT = Path(sys.executable).parent / "cl-client"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CL_ENV:
        monkeypatch.delenv(name, raising=False)


def run(dep: Deployment, *args: str, env: dict[str, str] | None = None) -> Result:
    base = ["--server", dep.server_url, "--mqtt", dep.mqtt_url] if env is None else []
    return CliRunner().invoke(cli, [*base, *args], obj=CliState(), env=env)


def test_health_and_json(deployment: Deployment) -> None:
    res = run(deployment, "health")
    assert res.exit_code == 0, res.output
    assert "healthy" in res.output
    res = run(deployment, "--json", "health")
    assert json.loads(res.stdout)["status"] == "healthy"


def test_hash_batch_json(deployment: Deployment, media: MediaCatalogue) -> None:
    a, b = media["png_800x600"].path, media["face_hopper"].path
    res = run(deployment, "hash", "compute", str(a), str(b), "--algorithm", "md5", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["file"] for r in rows] == [str(a), str(b)]
    assert rows[0]["result"]["hash_value"] == hashlib.md5(a.read_bytes()).hexdigest()
    assert rows[1]["job"]["params"]["algorithm"] == "md5"
    assert all(r["status"] == "completed" for r in rows)


def test_output_dir_and_human_lines(deployment: Deployment, media: MediaCatalogue, tmp_path: Path) -> None:
    res = run(deployment, "face-detection", "detect", str(media["group_4_faces"].path), "--confidence-threshold",
              "0.6", "-o", str(tmp_path))  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "4 faces" in res.stdout
    assert sorted(p.name for p in (tmp_path / "group_4_faces" / "faces").iterdir()) == [
        f"face_{i}.png" for i in range(4)]  # fmt: skip
    res = run(deployment, "clip-embedding", "embed", str(media["face_hopper"].path), "--no-normalize", "-o",
              str(tmp_path))  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "hopper" / "clip_embedding.npy").stat().st_size > 512 * 4
    res = run(deployment, "hls-streaming", "generate", str(media["video_720p_3s_silent"].path), "--variant",
              "144:200", "-o", str(tmp_path / "hls"))  # fmt: skip
    assert res.exit_code == 0, res.output
    names = {p.name for p in (tmp_path / "hls" / "testsrc_720p_3s_silent").iterdir()}
    assert {"adaptive.m3u8", "adaptive-144p-200.m3u8", "adaptive-144p-200-000.ts"} <= names


def test_failed_job_exit_1(deployment: Deployment, media: MediaCatalogue) -> None:
    audio, video = str(media["audio_3s"].path), str(media["video_720p_3s_silent"].path)
    res = run(deployment, "hls-streaming", "generate", audio, video, "--variant", "144:200", "--json")
    assert res.exit_code == 1
    rows = json.loads(res.stdout)
    assert rows[0]["status"] == "error" and "video stream" in rows[0]["error"]
    assert rows[1]["status"] == "completed"


@pytest.mark.parametrize(
    "args",
    [
        ["image-conversion", "convert", "{img}", "-f", "xyz"],
        ["image-conversion", "convert", "{img}"],
        ["image-conversion", "convert", "{img}", "-f", "png", "-q", "0"],
        ["face-detection", "detect", "{img}", "--nms-threshold", "2"],
        ["hls-streaming", "generate", "{img}", "--variant", "720"],
        ["hash", "compute", "/no/such/file.jpg"],
        ["hash", "compute", "{img}", "--priority", "11"],
        ["no-such-command"],
        ["--timeout", "abc", "health"],
    ],
)
def test_usage_errors_exit_2(deployment: Deployment, media: MediaCatalogue, args: list[str]) -> None:
    res = run(deployment, *[a.replace("{img}", str(media["png_800x600"].path)) for a in args])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output


def test_connection_problem_exit_3_one_line() -> None:
    res = CliRunner().invoke(cli, ["--server", "http://127.0.0.1:9", "health"], obj=CliState())
    assert res.exit_code == 3
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: cannot reach the server")
    res = CliRunner().invoke(cli, ["--server", "ftp://x", "health"], obj=CliState())
    assert res.exit_code == 2 and "server_url must start with http" in res.stderr


def test_env_precedence(deployment: Deployment) -> None:
    env = {"CL_SERVER_URL": deployment.server_url, "CL_MQTT_URL": "off"}
    assert run(deployment, "health", env=env).exit_code == 0
    # an explicit option beats the environment
    res = CliRunner().invoke(cli, ["--server", "http://127.0.0.1:9", "health"], obj=CliState(), env=env)
    assert res.exit_code == 3
    # the upstream variable is read when the CL_ one is absent
    assert run(deployment, "health", env={"COMPUTE_URL": deployment.server_url}).exit_code == 0


def test_job_commands(deployment: Deployment, media: MediaCatalogue, tmp_path: Path) -> None:
    res = run(deployment, "--json", "media-thumbnail", "generate", str(media["png_800x600"].path), "-w", "40",
              "--no-wait")  # fmt: skip
    assert res.exit_code == 0, res.output
    job_id = json.loads(res.stdout)[0]["job_id"]
    res = run(deployment, "job", "wait", job_id, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["status"] == "completed"
    assert json.loads(run(deployment, "job", "get", job_id, "--json").stdout)["params"]["width"] == 40
    assert job_id in run(deployment, "job", "get", job_id).stdout
    res = run(deployment, "job", "download", job_id, "output/thumbnail.jpg", str(tmp_path))
    assert res.exit_code == 0 and (tmp_path / "thumbnail.jpg").exists()
    assert run(deployment, "job", "delete", job_id).exit_code == 0
    res = run(deployment, "job", "get", job_id)
    assert res.exit_code == 1 and "not found" in res.stderr


def test_failed_job_wait_exit_1(deployment: Deployment, media: MediaCatalogue) -> None:
    res = run(deployment, "--json", "hls-streaming", "generate", str(media["audio_3s"].path), "--no-wait")
    job_id = json.loads(res.stdout)[0]["job_id"]
    assert run(deployment, "job", "wait", job_id, "-t", "60").exit_code == 1


def test_capabilities_and_workers(deployment: Deployment) -> None:
    caps = json.loads(run(deployment, "capabilities", "--json").stdout)
    assert caps["num_workers"] == 2 and "hash" in caps["capabilities"]
    assert "hls_streaming" in run(deployment, "capabilities").stdout
    workers = json.loads(run(deployment, "workers", "--json").stdout)
    assert sorted(workers) == sorted(deployment.worker_ids)
    res = run(deployment, "workers", "--watch", "--duration", "0.5")
    assert res.exit_code == 0 and deployment.worker_ids[0] in res.stdout
    res = CliRunner().invoke(cli, ["--server", deployment.server_url, "--mqtt", "off", "workers"], obj=CliState())
    assert res.exit_code == 2


def test_debug_shows_traceback() -> None:
    res = CliRunner().invoke(cli, ["--debug", "--server", "http://127.0.0.1:9", "health"], obj=CliState())
    assert res.exit_code == 3 and "Traceback" in res.stderr


# -- the real console script ---------------------------------------------------------------------------------
def test_subprocess_exit_codes_and_json(deployment: Deployment, media: MediaCatalogue) -> None:
    env = {**os.environ, "CL_SERVER_URL": deployment.server_url, "CL_MQTT_URL": deployment.mqtt_url}
    done = subprocess.run([str(CONSOLE_SCRIPT), "--json", "exif", "extract", str(media["jpeg_exif"].path)],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["result"]["make"] == "Canon"
    done = subprocess.run([str(CONSOLE_SCRIPT), "--server", "http://127.0.0.1:9", "health"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 3 and "Traceback" not in done.stderr
    done = subprocess.run([str(CONSOLE_SCRIPT), "hash", "compute"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2


def test_help_does_not_import_numpy() -> None:
    code = "import sys; from cl_client.cli import main; sys.argv=['cl-client','--help']\ntry:\n main()\n"
    code += "except SystemExit: pass\nassert 'numpy' not in sys.modules, 'numpy imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "clip-embedding" in done.stdout


@pytest.mark.parametrize("mqtt", ["events", "off"])
def test_progress_display_in_a_real_terminal(deployment: Deployment, media: MediaCatalogue, mqtt: str) -> None:
    env = {**os.environ, "CL_SERVER_URL": deployment.server_url, "TERM": "xterm-256color", "COLUMNS": "120"}
    env["CL_MQTT_URL"] = deployment.mqtt_url if mqtt == "events" else "off"
    videos = [str(media["video_720p_5s_audio"].path), str(media["video_720p_3s_silent"].path)]
    child = pexpect.spawn(str(CONSOLE_SCRIPT), ["hls-streaming", "generate", *videos, "--variant", "360:800"],
                          env=env, timeout=90, encoding="utf-8", dimensions=(40, 120))  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    screen = child.before or ""
    assert child.exitstatus == 0, screen
    assert "testsrc_720p_5s_audio.mp4 (hls_streaming)" in screen  # one row per job
    assert "testsrc_720p_3s_silent.mp4 (hls_streaming)" in screen
    assert "━" in screen and "100%" in screen and "completed" in screen
    assert "\x1b[" in screen  # drawn live with terminal control sequences
    assert screen.count("✓") == 2
