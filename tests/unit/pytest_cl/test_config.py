"""Settings: every option as command line, ini and environment variable, and their precedence."""

from __future__ import annotations

import pytest

from pytest_cl.config import OPTIONS, Settings, SettingsError, resolve_settings
from tests.unit.pytest_cl.conftest import QUIET

# (setting, command-line value, ini/env value, expected from the command line, expected from ini/env)
VALUES: list[tuple[str, str, str, object, object]] = [
    ("server", "http://cli:1/", "http://other:2", "http://cli:1", "http://other:2"),
    ("mqtt", "mqtt://cli:1", "mqtt://other:2", "mqtt://cli:1", "mqtt://other:2"),
    ("token", "tok-cli", "tok-other", "tok-cli", "tok-other"),
    ("auth_url", "http://auth-cli", "http://auth-other", "http://auth-cli", "http://auth-other"),
    ("username", "alice", "bob", "alice", "bob"),
    ("password", "pw1", "pw2", "pw1", "pw2"),
    ("missing_worker", "xfail", "fail", "xfail", "fail"),
    ("require_workers", "hash,exif", "clip_embedding", ("hash", "exif"), ("clip_embedding",)),
    ("job_timeout", "7.5", "9", 7.5, 9.0),
    ("report", "out/a.json", "out/b.json", "out/a.json", "out/b.json"),
    ("worker_wait", "0.5", "2", 0.5, 2.0),
    ("event_deadline", "1", "3", 1.0, 3.0),
    ("embedded_workers", "3", "1", 3, 1),
    ("embedded_tasks", "hash", "hash,sleep", ("hash",), ("hash", "sleep")),
    ("rows", "hash", "exif, protocol", ("hash",), ("exif", "protocol")),
    ("ledger", "a/ledger.jsonl", "/b/ledger.jsonl", "a/ledger.jsonl", "/b/ledger.jsonl"),
]
FLAGS = ["keep_jobs", "allow_destructive", "strict"]
BY_NAME = {o.name: o for o in OPTIONS}


def _config(pytester: pytest.Pytester, *args: str, ini: dict[str, str] | None = None) -> pytest.Config:
    if ini:
        body = "\n".join(f"{k} = {v}" for k, v in ini.items())
        pytester.makeini(f"[pytest]\n{body}\n")
    return pytester.parseconfigure(*QUIET, *args)


def test_every_setting_has_a_flag_an_ini_key_and_a_variable() -> None:
    names = {f.name for f in Settings.__dataclass_fields__.values()} - {"missing_worker_why", "sources"}
    assert {o.name for o in OPTIONS} == names
    for opt in OPTIONS:
        assert opt.flag.startswith("--cl-") and opt.ini.startswith("cl_") and opt.env.startswith("CL_")


def test_defaults(pytester: pytest.Pytester) -> None:
    s = resolve_settings(_config(pytester), environ={})
    assert s.embedded and s.server is None
    assert (s.missing_worker, s.missing_worker_why) == ("skip", "local run")
    assert s.job_timeout == 120.0 and not s.keep_jobs and s.report is None
    assert set(s.sources.values()) == {"default"}


@pytest.mark.parametrize(("name", "cli", "other", "from_cli", "from_other"), VALUES, ids=[v[0] for v in VALUES])
def test_precedence_of_each_setting(
    pytester: pytest.Pytester, name: str, cli: str, other: str, from_cli: object, from_other: object
) -> None:
    opt = BY_NAME[name]
    # ini alone
    s = resolve_settings(_config(pytester, ini={opt.ini: other}), environ={})
    assert (getattr(s, name), s.sources[name]) == (from_other, "ini")
    # environment beats ini
    s = resolve_settings(_config(pytester, ini={opt.ini: cli}), environ={opt.env: other})
    assert (getattr(s, name), s.sources[name]) == (from_other, "env")
    # command line beats environment and ini
    s = resolve_settings(_config(pytester, f"{opt.flag}={cli}", ini={opt.ini: other}), environ={opt.env: other})
    assert (getattr(s, name), s.sources[name]) == (from_cli, "option")
    # a fixture-factory argument beats everything
    s = resolve_settings(_config(pytester, f"{opt.flag}={cli}"), environ={opt.env: other}, **{name: other})
    assert (getattr(s, name), s.sources[name]) == (from_other, "factory")


@pytest.mark.parametrize("name", FLAGS)
def test_boolean_flags(pytester: pytest.Pytester, name: str) -> None:
    opt = BY_NAME[name]
    assert getattr(resolve_settings(_config(pytester), environ={}), name) is False
    assert getattr(resolve_settings(_config(pytester, opt.flag), environ={}), name) is True
    assert getattr(resolve_settings(_config(pytester), environ={opt.env: "yes"}), name) is True
    assert getattr(resolve_settings(_config(pytester, ini={opt.ini: "true"}), environ={}), name) is True
    # the environment beats the ini, also to turn a flag off
    assert getattr(resolve_settings(_config(pytester, ini={opt.ini: "true"}), environ={opt.env: "0"}), name) is False


def test_embedded_plugins_spec(pytester: pytest.Pytester) -> None:
    s = resolve_settings(
        _config(pytester, "--cl-embedded-plugins", "sleep=/x/p.py:Sleep, fail=/x/p.py:Fail"), environ={}
    )
    assert dict(s.embedded_plugins) == {"sleep": "/x/p.py:Sleep", "fail": "/x/p.py:Fail"}
    with pytest.raises(SettingsError, match=r"name=/path/file\.py:Class"):
        resolve_settings(_config(pytester), environ={"CL_EMBEDDED_PLUGINS": "sleep"})


@pytest.mark.parametrize(
    ("args", "ini", "environ", "expected"),
    [
        ((), {}, {}, ("skip", "local run")),
        ((), {}, {"CI": "true"}, ("fail", "CI is set")),
        ((), {}, {"CI": "false"}, ("skip", "local run")),
        (("--cl-strict",), {}, {}, ("fail", "strict mode")),
        ((), {"strict": "true"}, {}, ("fail", "strict mode")),
        (("--cl-missing-worker", "skip"), {}, {"CI": "1"}, ("skip", "--cl-missing-worker")),
        ((), {"cl_missing_worker": "xfail"}, {"CI": "1"}, ("xfail", "ini cl_missing_worker")),
        ((), {}, {"CL_MISSING_WORKER": "fail"}, ("fail", "CL_MISSING_WORKER")),
    ],
)
def test_missing_worker_policy(
    pytester: pytest.Pytester, args: tuple[str, ...], ini: dict[str, str], environ: dict[str, str], expected: object
) -> None:
    s = resolve_settings(_config(pytester, *args, ini=ini), environ=environ)
    assert (s.missing_worker, s.missing_worker_why) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CL_MISSING_WORKER": "sometimes"}, "expected one of auto, skip, xfail, fail"),
        ({"CL_JOB_TIMEOUT": "soon"}, "CL_JOB_TIMEOUT: expected a number"),
        ({"CL_JOB_TIMEOUT": "0"}, "must be positive"),
        ({"CL_WORKER_WAIT": "-1"}, "must not be negative"),
        ({"CL_KEEP_JOBS": "maybe"}, "CL_KEEP_JOBS: expected true/false"),
        ({"CL_SERVER_URL": "localhost:8002"}, "expected an http.s. URL"),
    ],
)
def test_invalid_values_name_their_source(pytester: pytest.Pytester, environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        resolve_settings(_config(pytester), environ=environ)


def test_unknown_factory_argument(pytester: pytest.Pytester) -> None:
    with pytest.raises(TypeError, match="unknown cl settings: nonsense"):
        resolve_settings(_config(pytester), environ={}, nonsense=1)


def test_invalid_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*QUIET, "--cl-missing-worker", "never")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cl: --cl-missing-worker / cl_missing_worker / CL_MISSING_WORKER: expected one of*"])


def test_options_are_listed_in_the_cl_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*QUIET, "--help")
    result.stdout.fnmatch_lines(["*CL compute deployments (pytest_cl)*", "*--cl-server=URL*", "*cl_server (string)*"])
    for opt in OPTIONS:
        assert opt.flag in result.stdout.str()


@pytest.mark.parametrize(
    ("value", "off"), [("off", True), ("OFF", True), ("none", True), ("false", True), ("mqtt://h:1883", False)]
)
def test_mqtt_off_spellings(pytester: pytest.Pytester, value: str, off: bool) -> None:
    assert resolve_settings(_config(pytester, "--cl-mqtt", value), environ={}).mqtt_off is off
    assert resolve_settings(_config(pytester), environ={}).mqtt_off is False
