"""Process-level behaviour: ``cl-compute up``, a standalone ``cl-compute worker``, the amqtt fallback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from server_helpers import Recorder, UpProcess, retained_now, run_job, submit, test_plugin_spec

from cl_compute.deployment import Deployment
from cl_compute.plugins import EXTRA_PLUGINS_ENV, format_extra_plugins, parse_extra_plugins


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_up_prints_urls_serves_and_shuts_down_cleanly(tmp_path: Path) -> None:
    env = dict(os.environ, **{EXTRA_PLUGINS_ENV: format_extra_plugins(test_plugin_spec())})
    args = ["--port", "0", "--mqtt-port", "0", "--workers", "2", "--tasks", "echo,sleep"]
    with UpProcess(*args, "--data-dir", str(tmp_path / "data"), env=env) as up:
        text = "\n".join(up.wait_banner())
        api = re.search(r"^API server:\s+(\S+)$", text, re.MULTILINE)
        mqtt = re.search(r"^MQTT broker:\s+(\S+) \((?:mosquitto|amqtt)\)$", text, re.MULTILINE)
        assert api, text
        assert mqtt, text
        assert re.search(r"^ready in [\d.]+ s; Ctrl-C to stop$", text, re.MULTILINE), text
        assert text.splitlines()[-1] == f"export CL_SERVER_URL={api.group(1)} CL_MQTT_URL={mqtt.group(1)}"
        with httpx.Client(base_url=api.group(1), timeout=10) as client:
            assert client.get("/capabilities").json()["num_workers"] == 2
            workers = client.get("/internal/workers").json()["workers"]
            pids = [w["pid"] for w in workers.values()]
            rec = Recorder(mqtt.group(1))
            try:
                job = run_job(client, rec, "echo")
                assert job["status"] == "completed"
                assert (tmp_path / "data" / "jobs" / job["job_id"] / "output" / "echo.json").is_file()
                t0 = time.monotonic()
                up.proc.send_signal(signal.SIGTERM)
                for wid in workers:
                    gone = rec.wait_worker(wid, lambda w: w.payload is None, after=t0)
                    assert not gone.retained  # a live clear, not a left-over
            finally:
                rec.close()
        assert up.wait_exit() == 0, up.output()
        for pid in pids:
            assert not _alive(pid)


def test_standalone_worker_finds_data_dir_and_clears_retained_on_sigterm(deployment: Deployment) -> None:
    rec = Recorder(deployment.mqtt_url)
    env = dict(os.environ, **{EXTRA_PLUGINS_ENV: format_extra_plugins(test_plugin_spec())})
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "cl_compute.cli", "worker", "--server", deployment.server_url,
            "--mqtt", deployment.mqtt_url, "--tasks", "echo", "--worker-id", "standalone-1", "--log-level", "WARNING",
        ],
        env=env,
    )  # fmt: skip
    try:
        hello = rec.wait_worker("standalone-1", lambda w: w.payload is not None, after=t0, timeout=30)
        assert hello.payload is not None
        assert hello.payload["capabilities"] == ["echo"]
        assert hello.payload["worker_id"] == hello.payload["id"] == "standalone-1"
        with httpx.Client(base_url=deployment.server_url) as client:
            assert client.get("/capabilities").json()["num_workers"] == 3
        t1 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        rec.wait_worker("standalone-1", lambda w: w.payload is None, after=t1)
        assert retained_now(deployment.mqtt_url, "inference/workers/standalone-1") == []
        with httpx.Client(base_url=deployment.server_url) as client:
            assert client.get("/capabilities").json()["num_workers"] == 2
    finally:
        rec.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_amqtt_fallback_broker_runs_a_job() -> None:
    with Deployment(workers=1, broker="amqtt", tasks=["echo"], extra_plugins=test_plugin_spec()) as dep:
        assert dep.broker_kind == "amqtt"
        rec = Recorder(dep.mqtt_url)
        try:
            with httpx.Client(base_url=dep.server_url, timeout=10) as client:
                job_id = submit(client, "echo")
                rec.wait_terminal(job_id)
                assert [e.event_type for e in rec.job_events(job_id)] == ["queued", "processing", "completed"]
                # the worker announces "idle" on its own connection after "completed": wait for it to land
                deadline = time.monotonic() + 5
                caps = client.get("/capabilities").json()
                while caps["capabilities"].get("echo") != 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                    caps = client.get("/capabilities").json()
                assert caps == {"num_workers": 1, "capabilities": {"echo": 1}}
        finally:
            rec.close()


def test_deployment_start_failure_is_clear_and_cleans_up() -> None:
    dep = Deployment(workers=1, mqtt_url="mqtt://127.0.0.1:1", startup_timeout=20)
    try:
        dep.start()
    except Exception as exc:
        message = str(exc)
    else:  # pragma: no cover
        dep.stop()
        raise AssertionError("start() should fail without a broker")
    assert "mqtt://127.0.0.1:1" in message or "exited" in message, message
    assert not _alive(dep.api_pid)


def test_extra_plugins_env_round_trip() -> None:
    spec = {"a": "pkg.mod:A", "b": "/x/y.py:B"}
    assert parse_extra_plugins(format_extra_plugins(spec)) == spec
    assert json.dumps(parse_extra_plugins(" a = m:C , ")) == '{"a": "m:C"}'


def test_no_orphans_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        "import json, sys, time\n"
        "from cl_compute.deployment import Deployment\n"
        "dep = Deployment(workers=1, tasks=['echo'], extra_plugins=json.loads(sys.argv[1]))\n"
        "dep.start()\n"
        "print(json.dumps([dep.api_pid, *dep.worker_pids.values()]), flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), json.dumps(test_plugin_spec())], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        pids = json.loads(proc.stdout.readline())
        broker = [int(p) for p in os.listdir("/proc") if p.isdigit() and (f := _stat(int(p))) and int(f[1]) == proc.pid]
        assert all(_alive(p) for p in pids)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(p) for p in [*pids, *broker]):
            time.sleep(0.05)
        assert not [p for p in [*pids, *broker] if _alive(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()
