"""``cl-compute`` as a user meets it: ``up`` on the ports clients expect, port fallbacks and errors,
``python -m cl_compute``, and the message when the ``server`` extra is missing (also from a ``worker``). Real
processes, no mocks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import Recorder, UpProcess, check_md5_job_over_mqtt, default_ports_lock, run_job, test_plugin_spec

from cl_client import ComputeClient
from cl_compute.broker import start_broker
from cl_compute.plugins import EXTRA_PLUGINS_ENV, PLUGIN_MODULES, format_extra_plugins

API_PORT = 8002
MQTT_PORT = 1883
INSTALL_HINT = 'pip install "cl-client[server]"'

#: variables that would point a client somewhere other than its defaults.
CLIENT_ENV = ("CL_SERVER_URL", "COMPUTE_URL", "CL_MQTT_URL", "MQTT_URL", "CL_AUTH_URL", "AUTH_URL", "CL_TOKEN")


@pytest.fixture
def default_ports() -> Iterator[None]:
    """Hold the machine-wide lock of the fixed ports 8002/1883 (see ``server_helpers.default_ports_lock``)."""
    with default_ports_lock():
        yield


def _in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _skip_unless_free(*ports: int) -> None:
    for port in ports:
        if _in_use(port):
            pytest.skip(f"port {port} on 127.0.0.1 is used by another program; this test needs it free")


@contextlib.contextmanager
def _occupied(port: int = 0) -> Iterator[int]:
    """A listening socket on 127.0.0.1:``port`` (0 = a free one); yields its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)
        yield s.getsockname()[1]


@pytest.mark.parametrize("broker", ["auto", "amqtt"])
def test_up_defaults_to_8002_and_1883_and_a_default_client_works(
    broker: str, default_ports: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _skip_unless_free(API_PORT, MQTT_PORT)
    args = ["--broker", broker, "--workers", "1", "--tasks", "hash", "--data-dir", str(tmp_path / "data")]
    with UpProcess(*args) as up:
        lines = up.wait_banner()
        for name, port in (("API server", API_PORT), ("MQTT broker", MQTT_PORT)):
            if not [x for x in lines if x.startswith(name) and re.search(rf"127\.0\.0\.1:{port}\b", x)]:
                up.wait_stderr(f"port {port} is in use")  # else a failure: fallen back without saying so
                pytest.skip(f"port {port} on 127.0.0.1 was taken by another program while up started")
        assert "API server:  http://127.0.0.1:8002" in lines, up.output()
        kind = "amqtt" if broker == "amqtt" else "(mosquitto|amqtt)"
        assert any(re.fullmatch(rf"MQTT broker: mqtt://127\.0\.0\.1:1883 \({kind}\)", x) for x in lines), up.output()
        assert lines[-1] == "export CL_SERVER_URL=http://127.0.0.1:8002 CL_MQTT_URL=mqtt://127.0.0.1:1883"
        assert lines[-2].startswith("# "), up.output()  # a shell comment: the last lines paste as they are

        # a client with no arguments and no environment reaches it through http://localhost:8002 and
        # mqtt://localhost:1883 and gets the job's events over MQTT
        for name in CLIENT_ENV:
            monkeypatch.delenv(name, raising=False)
        with ComputeClient() as client:
            assert client.config.base_url.rstrip("/") == "http://localhost:8002"
            assert client.monitor is not None
            check_md5_job_over_mqtt(client, tmp_path)
    assert up.proc.returncode == 0, up.output()
    assert not [x for x in up.stderr if "in use" in x], up.output()  # all of stderr is read once it exited


@pytest.mark.parametrize("broker", ["auto", "amqtt"])
def test_up_falls_back_to_free_ports_and_says_so(broker: str, default_ports: None, tmp_path: Path) -> None:
    env = dict(os.environ, **{EXTRA_PLUGINS_ENV: format_extra_plugins(test_plugin_spec())})
    with contextlib.ExitStack() as stack:
        for port in (API_PORT, MQTT_PORT):
            try:
                stack.enter_context(_occupied(port))
            except OSError as exc:  # another program holds it already: it is taken all the same
                if exc.errno != errno.EADDRINUSE:
                    raise
        args = ["--broker", broker, "--workers", "1", "--tasks", "echo", "--data-dir", str(tmp_path / "d")]
        with UpProcess(*args, env=env) as up:
            lines = up.wait_banner()
            api = re.search(r"^API server:\s+http://127\.0\.0\.1:(\d+)$", "\n".join(lines), re.MULTILINE)
            mqtt = re.search(r"^MQTT broker:\s+mqtt://127\.0\.0\.1:(\d+) ", "\n".join(lines), re.MULTILINE)
            assert api, up.output()
            assert mqtt, up.output()
            api_port, mqtt_port = int(api.group(1)), int(mqtt.group(1))
            assert api_port != API_PORT
            assert mqtt_port != MQTT_PORT
            assert up.wait_stderr("port 8002 is in use") == (
                f"cl-compute: port 8002 is in use; the API server listens on 127.0.0.1:{api_port} instead"
            )
            assert up.wait_stderr("port 1883 is in use") == (
                f"cl-compute: port 1883 is in use; the MQTT broker listens on 127.0.0.1:{mqtt_port} instead"
            )
            server_url, mqtt_url = f"http://127.0.0.1:{api_port}", f"mqtt://127.0.0.1:{mqtt_port}"
            assert lines[-1] == f"export CL_SERVER_URL={server_url} CL_MQTT_URL={mqtt_url}"
            rec = Recorder(mqtt_url)
            try:
                with httpx.Client(base_url=server_url, timeout=30) as client:
                    assert run_job(client, rec, "echo")["status"] == "completed"
            finally:
                rec.close()
    assert up.proc.returncode == 0, up.output()


@pytest.mark.parametrize(("option", "part"), [("--mqtt-port", "MQTT broker"), ("--port", "API server")])
def test_an_explicit_port_that_is_taken_is_a_clear_error(option: str, part: str, tmp_path: Path) -> None:
    other = "--port" if option == "--mqtt-port" else "--mqtt-port"
    with _occupied() as port:
        args = [option, str(port), other, "0", "--workers", "0", "--data-dir", str(tmp_path / "d")]
        with UpProcess(*args) as up:
            code = up.wait_exit()
    assert code == 1, up.output()
    message = [x for x in up.stderr if "in use" in x]
    assert message == [
        f"cl-compute: port {port} is in use, so the {part} cannot listen on it; choose another {option} "
        "(0 = any free port) or leave it out to fall back to a free port"
    ], up.output()
    assert "Traceback" not in up.output()
    assert not [x for x in up.stdout if x.startswith("export ")]


def test_mqtt_url_and_mqtt_port_together_is_a_usage_error() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "cl_compute", "up", "--mqtt", "mqtt://127.0.0.1:1", "--mqtt-port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert "either --mqtt" in run.stderr


def test_python_dash_m_cl_compute_is_the_cli() -> None:
    run = subprocess.run([sys.executable, "-m", "cl_compute", "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    for command in ("up", "serve", "worker", "token", "keygen"):
        assert re.search(rf"^\s+{command}\s", run.stdout, re.MULTILINE), run.stdout
    run = subprocess.run(
        [sys.executable, "-m", "cl_compute", "up", "--help"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "--mqtt-port" in run.stdout
    assert "export CL_SERVER_URL=" in run.stdout


#: the ``server`` extra's import names; blocking them simulates ``pip install cl-client`` without the extra.
SERVER_EXTRA = (
    "fastapi", "starlette", "uvicorn", "multipart", "python_multipart", "jwt", "cryptography", "PIL", "cv2",
    "skimage", "imageio_ffmpeg", "av", "magic", "mtcnn", "dlib", "onnxruntime", "amqtt", "pillow_heif",
)  # fmt: skip

# `sys.modules[name] = None` makes `import name` raise ModuleNotFoundError, as if it were not installed.
WRAPPER = (
    "import sys\n"
    "for name in sys.argv[1].split(','):\n"
    "    sys.modules[name] = None\n"
    "from cl_compute.cli import main\n"
    "main(sys.argv[2:], prog_name='cl-compute')\n"
)


def _run_without(blocked: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WRAPPER, ",".join(blocked), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("blocked", "args", "module"),
    [
        (SERVER_EXTRA, ["up"], "fastapi"),
        (SERVER_EXTRA, ["up", "--mqtt-port", "0", "--port", "0"], "fastapi"),
        (SERVER_EXTRA, ["serve", "--data-dir", "{tmp}/d"], "fastapi"),
        (SERVER_EXTRA, ["token", "--private-key", "{tmp}/key.pem"], "jwt"),
        (SERVER_EXTRA, ["keygen", "{tmp}/keys"], "jwt"),
        (("amqtt",), ["up", "--broker", "amqtt"], "amqtt"),
        # found by the up-front check but broken underneath: the message comes from the command group
        (("starlette",), ["serve", "--data-dir", "{tmp}/d"], "starlette"),
    ],
)
def test_without_the_server_extra_the_cli_says_what_to_install(
    blocked: tuple[str, ...], args: list[str], module: str, tmp_path: Path
) -> None:
    (tmp_path / "key.pem").write_text("not a key")
    run = _run_without(blocked, *[a.format(tmp=tmp_path) for a in args])
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.splitlines() == [
        f"cl-compute: the server extra is not installed (no module named {module!r}); install it with: {INSTALL_HINT}"
    ], run.stderr
    assert run.stdout == ""
    assert not (tmp_path / "keys").exists()


def test_without_the_server_extra_help_and_version_still_work() -> None:
    run = _run_without(SERVER_EXTRA, "up", "--help")
    assert run.returncode == 0, run.stderr
    assert "--mqtt-port" in run.stdout
    run = _run_without(SERVER_EXTRA, "--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("cl-compute, version ")


# A worker loads its plugins in a spawned child process, which `sys.modules` entries of the parent do not
# reach: a `sitecustomize` on PYTHONPATH blocks the extra in every Python process of the test instead.
SITECUSTOMIZE = (
    "import os, sys\n"
    "for name in os.environ.get('CL_TEST_BLOCKED_MODULES', '').split(','):\n"
    "    if name:\n"
    "        sys.modules[name] = None\n"
)


def _env_without(blocked: tuple[str, ...], tmp_path: Path, **extra: str) -> dict[str, str]:
    site = tmp_path / "block-extra"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {k: v for k, v in os.environ.items() if k != EXTRA_PLUGINS_ENV}  # the built-in plugins only
    return dict(env, PYTHONPATH=path, CL_TEST_BLOCKED_MODULES=",".join(blocked), **extra)


def _worker_cmd(tmp_path: Path, mqtt_url: str, *args: str) -> list[str]:
    data = tmp_path / "data"
    return [sys.executable, "-m", "cl_compute", "worker", "--data-dir", str(data), "--mqtt", mqtt_url, *args]


@pytest.mark.parametrize("tasks", [[], ["--tasks", "hash"], ["--tasks", "image_conversion,media_thumbnail"]])
def test_a_worker_without_the_server_extra_says_what_to_install_and_exits(tasks: list[str], tmp_path: Path) -> None:
    """No plugin can load without the extra: one line with the install hint, exit 1, before any broker is asked
    (nothing listens at the --mqtt URL). The exif plugin would load with ExifTool: the Python backend is forced."""
    env = _env_without(SERVER_EXTRA, tmp_path, CL_COMPUTE_EXIF_BACKEND="python")
    cmd = _worker_cmd(tmp_path, "mqtt://127.0.0.1:1", *tasks)
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert len(run.stderr.splitlines()) == 1, run.stderr
    line = run.stderr.splitlines()[0]
    assert re.fullmatch(
        rf"cl-compute: the server extra is not installed \(no modules? named '\w+'(, '\w+')*\); "
        rf"install it with: {re.escape(INSTALL_HINT)}",
        line,
    ), line
    assert set(re.findall(r"'(\w+)'", line)) <= set(SERVER_EXTRA), line
    assert run.stdout == ""


def test_a_worker_without_the_server_extra_serves_what_loads_and_names_the_extra_once(tmp_path: Path) -> None:
    """exif loads with ExifTool and no extra: the worker serves it, and one line says what the others lack."""
    if shutil.which("exiftool") is None:
        pytest.skip("needs ExifTool on PATH (the one plugin that loads without the server extra)")
    env = _env_without(SERVER_EXTRA, tmp_path, CL_COMPUTE_EXIF_BACKEND="exiftool")
    broker = start_broker()
    rec = Recorder(broker.url)
    proc = subprocess.Popen(
        _worker_cmd(tmp_path, broker.url, "--worker-id", "no-extra"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        announced = rec.wait_worker("no-extra", lambda w: w.payload is not None, timeout=120)
        assert announced.payload is not None
        assert announced.payload["capabilities"] == ["exif"], announced.payload
        assert set(announced.payload["unavailable"]) == set(PLUGIN_MODULES) - {"exif"}, announced.payload
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        rec.close()
        broker.stop()
    assert proc.returncode == 0, stderr
    hints = [line for line in stderr.splitlines() if INSTALL_HINT in line]
    assert len(hints) == 1, stderr
    assert "the server extra is not installed (no module" in hints[0], stderr
    assert "plugin hash unavailable" not in stderr  # no line per plugin for the same cause
    assert stdout == ""


@pytest.mark.parametrize("profile", ["upstream-2026-02", "upstream-2026-02-20", "upstream-2026-01", "fixed"])
def test_up_warns_about_the_server_paths_of_the_february_profiles(profile: str, tmp_path: Path) -> None:
    args = ["--port", "0", "--mqtt-port", "0", "--workers", "1", "--tasks", "hash", "--data-dir", str(tmp_path / "d")]
    with UpProcess(*args, "--profile", profile) as up:
        up.wait_banner()
        if profile.startswith("upstream-2026-02"):
            line = up.wait_stderr("hls_streaming server paths")  # not another warning of a loaded machine
            assert line.startswith(f"cl-compute: WARNING: profile {profile} reproduces upstream's hls_streaming")
            assert "read and write files anywhere" in line
        up.stop()
    warned = [x for x in up.stderr if "hls_streaming server paths" in x]  # all of stderr is read once it stopped
    assert len(warned) == (1 if profile.startswith("upstream-2026-02") else 0), up.output()
