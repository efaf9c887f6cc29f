"""Every bad argument of ``certify``, ``load`` and the plugin commands, as a user types it: a real process each
(``python -m cl_client``), one line on stderr naming the argument in the command's own words, the documented exit
code, no traceback.

"Fast" here means "no network wait": nothing is asserted about wall-clock time. An unreachable deployment is an
unassigned local port (nothing listens, the connection is refused at once); wrong credentials are a real HTTP
server that requires tokens it issued (``ScriptedServer``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cl_client._cli_certify import is_installed
from tests.unit.client.scripted_server import ScriptedServer
from tests.unit.ports import unassigned_port

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Bad:
    """One bad input: the arguments (``{closed}``: a URL nothing listens on, ``{secured}``: a server that wants a
    token, ``{file}``: an existing file, ``{broker}``: a broker URL nothing listens on), the exit code and words
    the one line must contain."""

    args: tuple[str, ...]
    code: int
    says: tuple[str, ...]


CERTIFY = [
    Bad(("certify", "http://"), 4, ("URL:", "no host")),
    Bad(("certify", "localhost:8002"), 4, ("URL:", "did you mean http://localhost:8002")),
    Bad(("certify", "htp://host:8002"), 4, ("URL:", "scheme 'htp'")),
    Bad(("certify", "http://host:99999"), 4, ("URL:", "port")),
    Bad(("certify", "{closed}", "--mqtt", "http://host:1883"), 4, ("--mqtt:", "MQTT, not HTTP")),
    Bad(("certify", "{closed}", "--mqtt", "localhost:1883"), 4, ("--mqtt:", "did you mean mqtt://localhost:1883")),
    Bad(("certify", "--mqtt", "mqtt://host:1883"), 4, ("--mqtt URL applies to a deployment given by URL",)),
    Bad(("certify", "{closed}", "--plugins", "hashh"), 4, ("--plugins:", "hashh", "did you mean hash")),
    Bad(("certify", "{closed}", "--plugins", " , "), 4, ("--plugins:",)),
    Bad(("certify", "{closed}", "-n", "many"), 4, ("-n:",)),
    Bad(("certify", "{closed}", "--profile", "upstream-2026-01"), 4, ("--profile",)),
    Bad(("certify", "{closed}", "-k", "md5"), 4, ("-k", "after --")),
    Bad(("certify", "{closed}"), 4, ("not reachable", "Connection refused", "fix the URL")),
    Bad(("certify", "{secured}", "--token", "forged.SECRET.token"), 4, ("refused the credentials", "--token")),
    Bad(("certify", "{secured}", "--mqtt", "{broker}"), 4, ("refused the credentials",)),
    Bad(("certify", "{open}", "--mqtt", "{broker}"), 4, ("--mqtt: no broker accepts connections",)),
    Bad(("certify", "{open}", "--mqtt", "off", "--expect-lacks", "nope"), 4, ("--expect-lacks:", "cannot read nope")),
]
LOAD = [
    Bad(("load", "localhost:8002"), 2, ("URL:", "did you mean http://localhost:8002")),
    Bad(("load", "http://"), 2, ("URL:", "no host")),
    Bad(("load", "htp://host"), 2, ("URL:", "scheme 'htp'")),
    Bad(("load", "{closed}", "--mqtt", "http://host:1883"), 2, ("--mqtt:", "MQTT, not HTTP")),
    Bad(("load", "{closed}", "-u", "x"), 2, ("--users", "'x'")),
    Bad(("load", "{closed}", "-t", "0s"), 2, ("--run-time",)),
    Bad(("load", "{closed}", "--mix", "nope=1"), 2, ("--mix", "nope")),
    Bad(("load", "{closed}", "-t", "1s"), 2, ("not reachable", "Connection refused")),
    Bad(("--token", "forged.SECRET.token", "load", "{secured}", "-t", "1s"), 2, ("refused the credentials",)),
]
PLUGINS = [
    Bad(("--server", "http://", "hash", "compute", "{file}"), 2, ("--server:", "no host")),
    Bad(("--server", "localhost:8002", "hash", "compute", "{file}"), 2, ("--server:", "did you mean")),
    Bad(("--server", "{closed}", "--mqtt", "http://h:1883", "hash", "compute", "{file}"), 2, ("--mqtt:",)),
    Bad(("--server", "{closed}", "hash", "compute", "/no/such/file"), 2, ("FILE", "does not exist")),
    Bad(("--server", "{closed}", "hash", "compute"), 2, ("Missing argument",)),
    Bad(("--server", "{closed}", "hash", "compute", "{file}", "--algorithm", "crc"), 2, ("--algorithm",)),
    Bad(("--server", "{closed}", "--mqtt", "off", "hash", "compute", "{file}"), 3, ("cannot reach the server",)),
    Bad(
        ("--server", "{secured}", "--mqtt", "off", "--token", "forged.SECRET.token", "hash", "compute", "{file}"),
        3,
        ("authentication failed",),
    ),
]


@pytest.fixture(scope="module")
def secured() -> Iterator[ScriptedServer]:
    server = ScriptedServer(None)
    server.auth_required = True
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def open_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer(None)
    server.start()
    yield server
    server.stop()


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CL_", "PYTEST_", "COV_CORE"))}
    for name in ("CI", "COMPUTE_URL", "MQTT_URL", "AUTH_URL"):
        env.pop(name, None)
    return env


def check(bad: Bad, tmp_path: Path, secured: ScriptedServer, open_server: ScriptedServer) -> None:
    (tmp_path / "in.txt").write_text("hello")
    fill = {
        "{closed}": f"http://127.0.0.1:{unassigned_port()}",
        "{broker}": f"mqtt://127.0.0.1:{unassigned_port()}",
        "{secured}": secured.url,
        "{open}": open_server.url,
        "{file}": str(tmp_path / "in.txt"),
    }
    args = [fill.get(a, a) for a in bad.args]
    res = subprocess.run(
        [sys.executable, "-m", "cl_client", *args],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    shown = f"{args}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert res.returncode == bad.code, shown
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert all(word in lines[0] for word in bad.says), shown
    assert res.stdout == "", shown
    assert "Traceback" not in res.stderr and "INTERNALERROR" not in res.stderr, shown
    assert "--cl-" not in res.stderr, shown  # the command's own words, never pytest_cl's options
    assert "SECRET" not in res.stderr, shown


def _id(bad: Bad) -> str:
    return " ".join(bad.args)


@pytest.mark.parametrize("bad", CERTIFY, ids=_id)
def test_certify_bad_argument(bad: Bad, tmp_path: Path, secured: ScriptedServer, open_server: ScriptedServer) -> None:
    check(bad, tmp_path, secured, open_server)


@pytest.mark.skipif(not is_installed("locust"), reason="cl-client load needs the load extra")
@pytest.mark.parametrize("bad", LOAD, ids=_id)
def test_load_bad_argument(bad: Bad, tmp_path: Path, secured: ScriptedServer, open_server: ScriptedServer) -> None:
    check(bad, tmp_path, secured, open_server)


@pytest.mark.parametrize("bad", PLUGINS, ids=_id)
def test_plugin_command_bad_argument(
    bad: Bad, tmp_path: Path, secured: ScriptedServer, open_server: ScriptedServer
) -> None:
    check(bad, tmp_path, secured, open_server)
