"""``cl-client certify``: the pytest command it builds (in process), its dependency checks, and the child's
exit code and signals (real child processes). The runs against a real deployment are in test_certify_live.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cl_client._cli_certify import (
    CONFORMANCE_HINT,
    SERVER_HINT,
    CertifyRequest,
    CertifyUsageError,
    PytestCommand,
    SignalRelay,
    build_command,
    ignored_server_note,
    is_installed,
    missing_extra,
    run_pytest,
    suite_dir,
)
from cl_client._cli_common import CliState
from cl_client.cli import cli

SUITES = Path("/site/pytest_cl/conformance")
SECRETS = {"token": "tok.SECRET.jwt", "username": "alice-SECRET", "password": "pw-SECRET"}


def everything(_: str) -> bool:
    return True


def nothing_optional(name: str) -> bool:
    return name not in ("pytest_timeout", "pytest_asyncio")


def build(
    request: CertifyRequest, environ: dict[str, str] | None = None, find: Callable[[str], bool] = everything
) -> PytestCommand:
    return build_command(request, suites=SUITES, environ=environ or {}, executable="/py", find=find)


# -- the command line --------------------------------------------------------------------------------------
def test_remote_run_is_pytest_on_the_suites_isolated_from_the_callers_configuration() -> None:
    cmd = build(CertifyRequest(url="http://host:8002"), find=nothing_optional)
    assert cmd.argv[:4] == ("/py", "-P", "-m", "pytest")
    argv = list(cmd.argv)
    assert argv[argv.index("-c") + 1] == os.devnull  # no pytest.ini / pyproject.toml / tox.ini is read
    assert argv[argv.index("--rootdir") + 1] == str(SUITES)
    assert argv[argv.index("--confcutdir") + 1] == str(SUITES)  # no conftest.py above the suites
    assert "no:cacheprovider" in argv and "-q" in argv
    assert "--pyargs" not in argv and argv[-1] == str(SUITES)  # by path: the cwd's conftest.py stays unloaded
    assert argv[argv.index("--cl-server") + 1] == "http://host:8002"
    assert "-o" not in argv  # no ini value of a plugin that is not installed (it would warn)
    assert cmd.display().startswith("python -P -m pytest -c ")


def test_ini_values_of_installed_optional_plugins() -> None:
    argv = build(CertifyRequest(url="http://host:8002")).argv
    assert "timeout=300" in argv and "asyncio_default_fixture_loop_scope=function" in argv


def test_options_map_to_the_cl_plugins_options_and_extra_arguments_come_last(tmp_path: Path) -> None:
    request = CertifyRequest(
        url="https://host",
        mqtt="off",
        workers="4",
        report="out/cert.json",
        strict=True,
        rows=("hash,clip-embedding", "protocol", "hash"),
        pytest_args=("-k", "md5", "-x"),
    )
    argv = list(build(request).argv)
    assert argv[argv.index("--cl-mqtt") + 1] == "off"
    assert argv[argv.index("-n") + 1] == "4"
    assert argv[argv.index("--cl-report") + 1] == os.path.abspath("out/cert.json")
    assert "--cl-strict" in argv
    assert argv[argv.index("--cl-rows") + 1] == "hash,clip_embedding,protocol"  # CLI spelling accepted, deduplicated
    assert argv[-4:] == [str(SUITES), "-k", "md5", "-x"]
    assert "-n" not in build(CertifyRequest(url="https://host")).argv
    auto = list(build(CertifyRequest(url="https://host", workers=" AUTO ")).argv)
    assert auto[auto.index("-n") + 1] == "auto"


def test_n_distributes_by_module_unless_the_pytest_arguments_choose() -> None:
    argv = list(build(CertifyRequest(url="https://host", workers="4")).argv)
    assert argv[argv.index("--dist") + 1] == "loadscope"  # a module fixture (a workflow) is set up once
    assert argv[argv.index("--dist") + 2] == "--no-loadscope-reorder"  # xdist keeps the longest-first module order
    assert "--dist" not in build(CertifyRequest(url="https://host")).argv  # no xdist, no --dist
    assert "--cl-embedded-early" not in argv  # a deployment given by URL is never started
    embedded = build(CertifyRequest(workers="4")).argv
    assert "--cl-embedded-early" in embedded  # starts while the xdist workers start and collect
    assert "--cl-embedded-early" not in build(CertifyRequest()).argv  # serially: on first use
    for chosen in (("--dist", "load"), ("--dist=worksteal",), ("-d",)):
        argv = list(build(CertifyRequest(url="https://host", workers="4", pytest_args=chosen)).argv)
        assert "loadscope" not in argv and "--no-loadscope-reorder" not in argv, chosen
        assert argv[-len(chosen) :] == list(chosen)


def test_expect_lacks_takes_a_file_or_a_packaged_name_and_profile_goes_to_the_embedded_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.lacks").write_text("x\n")
    argv = list(build(CertifyRequest(url="https://host", expect_lacks="mine.lacks")).argv)
    assert argv[argv.index("--cl-expect-lacks") + 1] == str(tmp_path / "mine.lacks")  # a file: made absolute
    argv = list(build(CertifyRequest(expect_lacks="upstream-2026-01", profile="upstream-2026-01")).argv)
    assert argv[argv.index("--cl-expect-lacks") + 1] == "upstream-2026-01"  # no such file: a packaged list's name
    assert argv[argv.index("--cl-embedded-profile") + 1] == "upstream-2026-01"
    assert "--cl-embedded-profile" not in build(CertifyRequest()).argv


def test_credentials_go_through_the_environment_never_the_command_line() -> None:
    request = CertifyRequest(url="http://host:8002", auth_url="http://auth:8000", **SECRETS)
    cmd = build(request, {"PATH": "/bin", "CL_TOKEN": "old"})
    assert not any("SECRET" in arg for arg in cmd.argv)
    assert cmd.env["CL_TOKEN"] == SECRETS["token"]  # the option wins over an exported variable
    assert cmd.env["CL_USERNAME"] == SECRETS["username"] and cmd.env["CL_PASSWORD"] == SECRETS["password"]
    assert cmd.env["CL_AUTH_URL"] == "http://auth:8000" and cmd.env["PATH"] == "/bin"
    assert SECRETS["token"] not in repr(cmd) + repr(request) and SECRETS["password"] not in repr(cmd) + repr(request)
    exported = build(CertifyRequest(url="http://host:8002"), {"CL_TOKEN": "exported"}).env
    assert exported["CL_TOKEN"] == "exported"  # used as it is


def test_urls_with_credentials_go_through_the_environment() -> None:
    request = CertifyRequest(url="https://u:SECRET@host", mqtt="mqtts://m:SECRET@broker:8883")
    cmd = build(request)
    assert not any("SECRET" in arg for arg in cmd.argv)
    assert "--cl-server" not in cmd.argv and "--cl-mqtt" not in cmd.argv
    assert cmd.env["CL_SERVER_URL"] == "https://u:SECRET@host"
    assert cmd.env["CL_MQTT_URL"] == "mqtts://m:SECRET@broker:8883"


def test_upstream_variable_names_are_copied_for_the_cl_plugin() -> None:
    env = build(CertifyRequest(url="http://h"), {"AUTH_URL": "http://auth", "MQTT_URL": "mqtt://b:1"}).env
    assert env["CL_AUTH_URL"] == "http://auth" and env["CL_MQTT_URL"] == "mqtt://b:1"
    env = build(CertifyRequest(url="http://h"), {"AUTH_URL": "http://upstream", "CL_AUTH_URL": "http://cl"}).env
    assert env["CL_AUTH_URL"] == "http://cl"


def test_without_url_the_embedded_deployment_and_cl_server_url_is_not_passed_on() -> None:
    environ = {"CL_SERVER_URL": "http://exported:8002", "CL_TOKEN": "t"}
    cmd = build(CertifyRequest(), environ)
    assert "CL_SERVER_URL" not in cmd.env  # else the cl plugin would test that server
    assert cmd.env["CL_TOKEN"] == "t"
    assert "--cl-server" not in cmd.argv
    note = ignored_server_note(CertifyRequest(), environ)
    assert note is not None and "http://exported:8002" in note and 'certify "$CL_SERVER_URL"' in note
    assert ignored_server_note(CertifyRequest(url="http://h"), environ) is None
    assert ignored_server_note(CertifyRequest(), {}) is None
    argv = list(build(CertifyRequest(mqtt="OFF")).argv)  # the embedded deployment, by polling
    assert argv[argv.index("--cl-mqtt") + 1] == "OFF"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (CertifyRequest(url="localhost:8002"), "expected the http(s) URL"),
        (CertifyRequest(mqtt="mqtt://b:1883"), "--mqtt URL applies to a deployment given by URL"),
        (CertifyRequest(url="http://h", workers="many"), "-n: expected a number"),
        (CertifyRequest(url="http://h", workers="-1"), "-n: expected a number"),
        (CertifyRequest(url="http://h", rows=(" , ",)), "--plugins: expected plugin names"),
        (CertifyRequest(url="http://h", profile="upstream-2026-01"), "--profile chooses the behaviour of the embedded"),
    ],
)
def test_options_that_cannot_work_are_usage_errors(request_: CertifyRequest, message: str) -> None:
    with pytest.raises(CertifyUsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(request_)


# -- dependencies ------------------------------------------------------------------------------------------
def test_missing_dependencies_name_the_extra_to_install() -> None:
    def without(*names: str) -> Callable[[str], bool]:
        return lambda name: name not in names

    remote = CertifyRequest(url="http://h")
    assert missing_extra(remote, everything) is None
    message = missing_extra(remote, without("m3u8", "av"))
    assert message is not None and "av, m3u8 not installed" in message and message.endswith(CONFORMANCE_HINT)
    assert missing_extra(remote, without("xdist")) is None
    message = missing_extra(CertifyRequest(url="http://h", workers="2"), without("xdist"))
    assert message is not None and "xdist" in message and CONFORMANCE_HINT in message
    message = missing_extra(CertifyRequest(), without("fastapi"))
    assert message is not None and "fastapi" in message and SERVER_HINT in message
    assert missing_extra(remote, without("fastapi")) is None  # a remote deployment needs no server extra


def test_the_suites_are_found_where_pytest_cl_is_installed() -> None:
    import pytest_cl.conformance

    found = suite_dir()
    assert found == Path(pytest_cl.conformance.__file__).parent
    assert suite_dir(lambda _: False) is None
    assert is_installed("pytest") and not is_installed("no_such_module_anywhere")
    assert not is_installed("no_such_package.sub")


def test_cli_missing_dependency_is_one_line_and_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "m3u8", None)  # None in sys.modules: "not installed"
    res = CliRunner().invoke(cli, ["certify", "http://127.0.0.1:9"], obj=CliState())
    assert res.exit_code == 3
    assert res.output.strip().splitlines() == [
        f"error: cl-client certify needs the conformance extra (m3u8 not installed): {CONFORMANCE_HINT}"
    ]


def test_cli_embedded_without_server_extra_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)
    res = CliRunner().invoke(cli, ["certify"], obj=CliState())
    assert res.exit_code == 3
    assert SERVER_HINT in res.output and "give the URL of a deployment" in res.output
    assert "Traceback" not in res.output


def test_cli_usage_errors_are_one_line_and_exit_4() -> None:
    """4 is pytest's usage error, as certify's help says (the table of bad inputs is test_bad_arguments.py)."""
    res = CliRunner().invoke(cli, ["certify", "localhost:8002"], obj=CliState())
    assert res.exit_code == 4 and "expected the http(s) URL" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(cli, ["certify", "http://h", "-k", "md5"], obj=CliState())
    assert res.exit_code == 4 and "No such option '-k'" in res.output  # pytest options only after --
    assert "after --" in res.output
    res = CliRunner().invoke(cli, ["certify", "--help"], obj=CliState())
    assert res.exit_code == 0 and "[URL] [-- PYTEST_ARGS...]" in res.output


# -- the child: arguments, environment, exit codes, signals ------------------------------------------------
PROBE = """
import json, os, sys

def pytest_configure(config):
    with open("/proc/self/cmdline", "rb") as fh:
        cmdline = fh.read().decode().split("\\0")
    names = ("CL_TOKEN", "CL_USERNAME", "CL_PASSWORD", "CL_AUTH_URL", "CL_SERVER_URL")
    record = {"cmdline": cmdline, "env": {n: os.environ.get(n) for n in names}, "inifile": str(config.inipath)}
    with open(os.environ["CERTIFY_PROBE_OUT"], "w") as fh:
        json.dump(record, fh)
"""


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc/<pid>/cmdline (Linux)")
def test_cli_runs_pytest_with_secrets_in_its_environment_only(tmp_path: Path) -> None:
    """The real child (collection only, no deployment needed) records what ``ps`` would show of it."""
    (tmp_path / "certify_probe.py").write_text(PROBE)
    out = tmp_path / "probe.json"
    env = {
        "PYTHONPATH": str(tmp_path),
        "CERTIFY_PROBE_OUT": str(out),
        "CL_SERVER_URL": "http://exported-but-unused:1",
        "CL_TOKEN": None,
        "CL_USERNAME": None,
        "CL_PASSWORD": None,
        "CL_AUTH_URL": None,
    }
    args = ["--token", "tok.SECRET", "--username", "alice", "--password", "pw-SECRET", "--auth-url", "http://a:1"]
    res = CliRunner().invoke(
        cli,
        ["certify", "http://127.0.0.1:9", "-v", *args, "--", "-p", "certify_probe", "--collect-only"],
        obj=CliState(),
        env=env,
    )
    assert res.exit_code == 0, res.output
    assert "cl-client certify: python -P -m pytest" in res.output and "SECRET" not in res.output  # -v shows it
    record = json.loads(out.read_text())
    assert not any("SECRET" in part for part in record["cmdline"]), record["cmdline"]
    assert "--cl-server" in record["cmdline"] and "http://127.0.0.1:9" in record["cmdline"]
    assert record["env"] == {
        "CL_TOKEN": "tok.SECRET",
        "CL_USERNAME": "alice",
        "CL_PASSWORD": "pw-SECRET",
        "CL_AUTH_URL": "http://a:1",
        "CL_SERVER_URL": "http://exported-but-unused:1",  # harmless: --cl-server wins in pytest_cl
    }
    assert record["inifile"] == os.devnull


def test_global_options_are_used_when_certify_has_none(tmp_path: Path) -> None:
    (tmp_path / "certify_probe.py").write_text(PROBE)
    out = tmp_path / "probe.json"
    res = CliRunner().invoke(
        cli,
        ["--server", "http://127.0.0.1:9", "--token", "global.SECRET", "certify", "--", "-p", "certify_probe", "--co"],
        obj=CliState(),
        env={"PYTHONPATH": str(tmp_path), "CERTIFY_PROBE_OUT": str(out), "CL_TOKEN": None},
    )
    assert res.exit_code == 0, res.output
    record = json.loads(out.read_text())
    assert "http://127.0.0.1:9" in record["cmdline"]
    assert record["env"]["CL_TOKEN"] == "global.SECRET"


def child(code: str) -> PytestCommand:
    return PytestCommand((sys.executable, "-c", textwrap.dedent(code)), dict(os.environ))


def test_run_pytest_returns_the_childs_exit_code() -> None:
    assert run_pytest(child("import sys; sys.exit(5)")) == 5
    assert run_pytest(child("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")) == 128 + 9


READY_THEN_WAIT_FOR_SIGTERM = """
    import signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))
    print("ready", flush=True)
    time.sleep(30)
    sys.exit(1)
"""


def test_relay_passes_sigterm_on_to_the_child() -> None:
    code = textwrap.dedent(READY_THEN_WAIT_FOR_SIGTERM)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        relay = SignalRelay()
        relay.on_terminate(signal.SIGTERM, None)  # before the child is known: remembered
        assert relay.terminated and relay.pending
        relay.attach(proc)
        assert proc.wait(10) == 42  # SIGTERM: pytest_cl turns it into a clean interrupt
        assert not relay.pending
    finally:
        proc.kill()
        proc.wait()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], stderr=subprocess.DEVNULL)
    relay = SignalRelay()
    relay.attach(proc)
    relay.on_terminate(signal.SIGTERM, None)  # a plain child dies of SIGTERM
    relay.on_terminate(signal.SIGTERM, None)
    assert proc.wait(10) == -signal.SIGTERM and relay.relayed == 2


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signal handlers")
def test_run_pytest_waits_through_sigint_and_relays_sigterm() -> None:
    """Real signals sent to this process by the child: SIGINT is ignored here (a terminal's Ctrl-C reaches the
    child itself), SIGTERM is passed on to the child; the handlers are restored afterwards."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    code = """
        import os, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))
        os.kill(os.getppid(), signal.SIGTERM)
        time.sleep(30)
        sys.exit(1)
    """
    assert run_pytest(child(code)) == 42
    code = """
        import os, signal, sys, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.kill(os.getppid(), signal.SIGINT)
        time.sleep(0.5)
        sys.exit(7)
    """
    assert run_pytest(child(code)) == 7
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_handlers_are_left_alone_outside_the_main_thread() -> None:
    seen: list[object] = []

    def in_thread() -> None:
        with SignalRelay().installed():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [before]


def test_cli_without_url_certifies_the_embedded_deployment_and_says_cl_server_url_is_unused(tmp_path: Path) -> None:
    """Collection only: the embedded deployment starts with the first check, so none starts here."""
    (tmp_path / "certify_probe.py").write_text(PROBE)
    out = tmp_path / "probe.json"
    env = {"PYTHONPATH": str(tmp_path), "CERTIFY_PROBE_OUT": str(out), "CL_SERVER_URL": "http://exported:8002"}
    res = CliRunner().invoke(cli, ["certify", "--", "-p", "certify_probe", "--co"], obj=CliState(), env=env)
    assert res.exit_code == 0, res.output
    assert "note: CL_SERVER_URL (http://exported:8002) is not used" in res.output
    record = json.loads(out.read_text())
    assert record["env"]["CL_SERVER_URL"] is None
    assert "--cl-server" not in record["cmdline"]
