"""The CLI's auth options against a real (scripted) server that requires tokens it issued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cl_client._cli_common import CliState
from cl_client.cli import cli
from tests.unit.client.scripted_server import ScriptedServer


@pytest.fixture
def secured(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    for name in ("CL_SERVER_URL", "COMPUTE_URL", "CL_MQTT_URL", "MQTT_URL", "CL_TOKEN", "CL_USERNAME", "CL_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    server = ScriptedServer(None)
    server.auth_required = True
    server.start()
    yield server
    server.stop()


def invoke(server: ScriptedServer, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--server", server.url, "--mqtt", "off", *args], obj=CliState(), env=env)


def test_login_options_submit_and_read_a_job(secured: ScriptedServer, tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("hello")
    login = ["--username", "alice", "--password", "s3cret", "--auth-url", secured.url]
    res = invoke(secured, *login, "--json", "hash", "compute", str(f), "--no-wait")
    assert res.exit_code == 0, res.output
    job_id = json.loads(res.stdout)[0]["job_id"]
    assert secured.tokens_issued == 1
    res = invoke(secured, *login, "--json", "job", "get", job_id)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["job_id"] == job_id
    token = next(iter(secured.issued))
    res = invoke(secured, "--json", "job", "get", job_id, env={"CL_TOKEN": token})  # the variable works too
    assert res.exit_code == 0, res.output


def test_refused_token_and_password_exit_3_without_secrets(secured: ScriptedServer) -> None:
    res = invoke(secured, "--token", "forged.SECRET.token", "job", "get", "some-job")
    assert res.exit_code == 3
    assert "SECRET" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = invoke(secured, "--username", "alice", "--password", "WRONGPW", "--auth-url", secured.url, "job", "get", "x")
    assert res.exit_code == 3
    assert "login refused" in res.output
    assert "WRONGPW" not in res.output
