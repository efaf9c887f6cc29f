"""Upstream's CLI spellings as aliases of ours (``--compute-url``, ``--mqtt-url``, ``download``, ``admin compute
capabilities``, ``hls-streaming generate-manifest``) and the guest-mode commands (``guest-mode``, ``admin
guest-mode``, ``admin compute guest-mode``): each shows in ``--help`` and behaves like the original, against the
real reference deployment; the route-set output also against MOCKS of upstream's January and February routes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cl_client._cli_common import CliState
from cl_client.cli import cli
from cl_compute.deployment import Deployment
from pytest_cl._media import MediaCatalogue
from tests.unit.client.upstream_mocks import FEBRUARY, JANUARY, UpstreamMock

CL_ENV = ("CL_SERVER_URL", "COMPUTE_URL", "CL_MQTT_URL", "MQTT_URL", "CL_TOKEN", "CL_TIMEOUT", "CL_USERNAME")
GUEST_GET = (["guest-mode", "get"], ["admin", "guest-mode", "get"], ["admin", "compute", "guest-mode", "get"])


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CL_ENV:
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=CliState())


def run(dep: Deployment, *args: str) -> Result:
    return invoke("--server", dep.server_url, "--mqtt", dep.mqtt_url, *args)


def one_error_line(res: Result) -> str:
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    return res.stderr


@pytest.mark.parametrize(
    ("where", "shown"),
    [
        ([], ["--compute-url", "--mqtt-url", "download", "guest-mode", "admin"]),
        (["admin"], ["compute", "guest-mode"]),
        (["admin", "compute"], ["capabilities", "guest-mode"]),
        (["admin", "compute", "guest-mode"], ["get", "set"]),
        (["hls-streaming"], ["generate-manifest"]),
        (["hls-streaming", "generate-manifest"], ["--input-absolute-path", "--output-absolute-path", "Alias of"]),
        (["hls-streaming", "generate"], ["--input-absolute-path", "--output-absolute-path"]),
        (["download"], ["Alias of `cl-client job download`", "JOB_ID FILE_PATH [DEST]"]),
    ],
)
def test_aliases_show_in_help(where: list[str], shown: list[str]) -> None:
    res = invoke(*where, "--help")
    assert res.exit_code == 0, res.output
    for text in shown:
        assert text in res.stdout, (text, res.stdout)


def test_compute_url_and_mqtt_url_are_server_and_mqtt(deployment: Deployment, media: MediaCatalogue) -> None:
    ours = invoke("--server", deployment.server_url, "--json", "health")
    theirs = invoke("--compute-url", deployment.server_url, "--json", "health")
    assert ours.exit_code == theirs.exit_code == 0
    assert json.loads(ours.stdout) == json.loads(theirs.stdout)
    photo = str(media["png_800x600"].path)
    res = invoke("--compute-url", deployment.server_url, "--mqtt-url", deployment.mqtt_url, "--json",
                 "hash", "compute", photo, "--algorithm", "md5")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["status"] == "completed"
    res = invoke("--compute-url", deployment.server_url, "--mqtt-url", "off", "--json", "hash", "compute", photo)
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["status"] == "completed"
    # the same errors and exit codes as the originals
    for flag in ("--server", "--compute-url"):
        res = invoke(flag, "http://127.0.0.1:9", "health")
        assert res.exit_code == 3 and one_error_line(res).startswith("error: cannot reach the server")
    for flag in ("--mqtt", "--mqtt-url"):
        res = invoke("--server", deployment.server_url, flag, "ftp://x", "hash", "compute", photo)
        assert res.exit_code == 2 and "Traceback" not in res.output


def test_download_is_job_download(deployment: Deployment, media: MediaCatalogue, tmp_path: Path) -> None:
    res = run(deployment, "--json", "media-thumbnail", "generate", str(media["png_800x600"].path), "-w", "40")
    assert res.exit_code == 0, res.output
    job_id = json.loads(res.stdout)[0]["job_id"]
    ours = run(deployment, "--json", "job", "download", job_id, "output/thumbnail.jpg", str(tmp_path / "a") + "/")
    theirs = run(deployment, "--json", "download", job_id, "output/thumbnail.jpg", str(tmp_path / "b") + "/")
    assert ours.exit_code == theirs.exit_code == 0, theirs.output
    a, b = Path(json.loads(ours.stdout)["path"]), Path(json.loads(theirs.stdout)["path"])
    assert a.read_bytes() == b.read_bytes() and b.read_bytes()[:3] == b"\xff\xd8\xff"
    commands = (["job", "download"], ["download"])
    missing = [run(deployment, *cmd, job_id, "output/nothing.jpg", str(tmp_path)) for cmd in commands]
    assert missing[0].exit_code == missing[1].exit_code == 1
    assert one_error_line(missing[0]) == one_error_line(missing[1])


def test_admin_compute_capabilities_is_capabilities(deployment: Deployment) -> None:
    ours = run(deployment, "capabilities", "--json")
    theirs = run(deployment, "admin", "compute", "capabilities", "--json")
    assert ours.exit_code == theirs.exit_code == 0
    a, b = json.loads(ours.stdout), json.loads(theirs.stdout)
    assert a["num_workers"] == b["num_workers"] == 2 and set(a["capabilities"]) == set(b["capabilities"])
    assert "hls_streaming" in run(deployment, "admin", "compute", "capabilities").stdout


def test_generate_manifest_is_generate(deployment: Deployment, media: MediaCatalogue, tmp_path: Path) -> None:
    video = str(media["video_720p_3s_silent"].path)
    rows = []
    for name in ("generate", "generate-manifest"):
        res = run(
            deployment, "hls-streaming", name, video, "--variant", "144:200", "--json", "-o", str(tmp_path / name)
        )
        assert res.exit_code == 0, res.output
        rows.append(json.loads(res.stdout)[0])
    assert rows[0]["status"] == rows[1]["status"] == "completed"
    assert [s["height"] for s in rows[0]["result"]["streams"]] == [s["height"] for s in rows[1]["result"]["streams"]]
    assert [Path(f).name for f in rows[0]["files"]] == [Path(f).name for f in rows[1]["files"]]
    # a failing input fails the same way (exit 1)
    audio = str(media["audio_3s"].path)
    assert run(deployment, "hls-streaming", "generate-manifest", audio, "--variant", "144:200").exit_code == 1


def test_generate_manifest_server_paths_on_the_reference_deployment(deployment: Deployment) -> None:
    """The reference deployment refuses a server input path (422): exit 2, the server's answer in one line."""
    for name in ("generate", "generate-manifest"):
        res = run(deployment, "hls-streaming", name, "--input-absolute-path", "/etc/hostname")
        assert res.exit_code == 2, res.output
        assert "422" in one_error_line(res)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give at least one VIDEO or --input-absolute-path"),
        (["--input-absolute-path", "rel/in.mp4"], "relative path"),
        (["{video}", "--input-absolute-path", "/in.mp4"], "not both"),
    ],
)
def test_generate_manifest_usage_errors(
    deployment: Deployment, media: MediaCatalogue, args: list[str], message: str
) -> None:
    video = str(media["video_720p_3s_silent"].path)
    res = run(deployment, "hls-streaming", "generate-manifest", *[a.replace("{video}", video) for a in args])
    assert res.exit_code == 2 and message in res.stderr, res.output
    assert "Traceback" not in res.output


# -- guest mode -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", GUEST_GET)
def test_guest_mode_get_on_the_reference_deployment(deployment: Deployment, command: list[str]) -> None:
    res = run(deployment, *command, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["guest_mode"] is True and data["routes"] in ("pref", "config")
    assert data["read_path"] in ("/admin/pref", "/admin/config")
    human = run(deployment, *command)
    assert human.exit_code == 0 and human.stdout.startswith("guest mode on (via GET /admin/")


def test_guest_mode_set_on_the_reference_deployment(deployment: Deployment) -> None:
    """Without auth configured the reference deployment keeps guest mode on and says why; the CLI shows it."""
    for command in (["guest-mode", "set"], ["admin", "compute", "guest-mode", "set"]):
        res = run(deployment, *command, "off", "--json")
        assert res.exit_code == 0, res.output
        data = json.loads(res.stdout)
        assert data["guest_mode"] is True and "not configured" in data["message"]
    res = run(deployment, "admin", "guest-mode", "set", "maybe")
    assert res.exit_code == 2 and "Traceback" not in res.output


@pytest.fixture
def mock(request: pytest.FixtureRequest) -> Iterator[UpstreamMock]:
    release, auth = request.param
    server = UpstreamMock(release, auth=auth)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("mock", [(JANUARY, False), (FEBRUARY, False)], indirect=True)
def test_guest_mode_route_set_is_shown(mock: UpstreamMock) -> None:
    """MOCKS of each release: the value and the route set that answered, as text and JSON."""
    read, write, release = (
        ("/admin/config", "/admin/config/guest-mode", "January 2026")
        if mock.release == JANUARY
        else ("/admin/pref", "/admin/pref/guest-mode", "February 2026")
    )
    res = invoke("--server", mock.url, "admin", "compute", "guest-mode", "set", "off")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(f"guest mode off (via PUT {write}, {release} routes)")
    assert mock.guest_mode is False
    res = invoke("--server", mock.url, "--json", "guest-mode", "get")
    data = json.loads(res.stdout)
    assert (data["guest_mode"], data["read_path"], data["write_path"], data["release"]) == (
        False, read, write, release)  # fmt: skip
    assert isinstance(data["updated_at"], int)
    res = invoke("--server", mock.url, "admin", "guest-mode", "get")
    assert res.stdout.startswith(f"guest mode off (via GET {read}, {release} routes); last changed ")


@pytest.mark.parametrize("mock", [(FEBRUARY, True)], indirect=True)
def test_guest_mode_auth_errors_exit_3(mock: UpstreamMock) -> None:
    """MOCK of February with auth: 401 and 403 are one line and exit 3; the admin token works."""
    res = invoke("--server", mock.url, "guest-mode", "get")
    assert res.exit_code == 3 and one_error_line(res).startswith("error: authentication failed")
    res = invoke("--server", mock.url, "--token", "user", "admin", "compute", "guest-mode", "set", "on")
    assert res.exit_code == 3 and one_error_line(res).startswith("error: permission denied")
    res = invoke("--server", mock.url, "--token", "admin", "--json", "admin", "compute", "guest-mode", "get")
    assert res.exit_code == 0 and json.loads(res.stdout)["routes"] == "pref"
