"""Settings of the ``cl`` pytest plugin: one table of options, one frozen dataclass, one resolver.

Every setting exists as a command-line option, an ini key and an environment variable. Precedence (first
wins): fixture-factory argument > command line > environment > ini > default. ``resolve_settings`` is the
only place that reads them; fixtures and hooks get a ``Settings`` object.

This module imports only pytest and the standard library (it is loaded in every pytest run).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

import pytest

__all__ = [
    "MISSING_WORKER_POLICIES",
    "MQTT_OFF",
    "OPTIONS",
    "Option",
    "Settings",
    "SettingsError",
    "resolve_settings",
]

MissingWorkerPolicy = Literal["skip", "xfail", "fail"]
#: accepted values of ``--cl-missing-worker`` (``auto``: skip locally, fail in CI or strict mode).
MISSING_WORKER_POLICIES = ("auto", "skip", "xfail", "fail")

#: values of ``--cl-mqtt`` that turn MQTT off (the tests poll; checks that need MQTT are not checked).
MQTT_OFF = frozenset({"off", "none", "disabled", "0", "false"})

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class SettingsError(ValueError):
    """A setting has an invalid value; the message names the option, the ini key and the variable."""


@dataclass(frozen=True)
class Option:
    """One setting and its three spellings.

    Attributes:
        name: the ``Settings`` field.
        flag: the command-line option.
        ini: the ini key.
        env: the environment variable.
        kind: ``str``, ``float``, ``int``, ``bool`` or ``list`` (comma-separated).
        help: one line of help.
        metavar: the metavar shown by ``--help``.
    """

    name: str
    flag: str
    ini: str
    env: str
    kind: Literal["str", "float", "int", "bool", "list"]
    help: str
    metavar: str = ""

    @property
    def name_dest(self) -> str:
        """The ``argparse`` destination (``config.getoption`` name)."""
        return "cl_" + self.name


def _opt(name: str, kind: Literal["str", "float", "int", "bool", "list"], help: str, metavar: str = "") -> Option:
    flag = "--cl-" + name.replace("_", "-")
    return Option(name, flag, "cl_" + name, "CL_" + name.upper(), kind, help, metavar)


#: Every option of the plugin, in ``--help`` order.
OPTIONS: tuple[Option, ...] = (
    dataclasses.replace(
        _opt("server", "str", "compute API under test; omit to start the embedded cl_compute deployment", "URL"),
        env="CL_SERVER_URL",
    ),
    dataclasses.replace(
        _opt(
            "mqtt",
            "str",
            "MQTT broker of the deployment (default: discovered on the server's host: mqtts 8883 for an https "
            "server, then mqtt 1883); 'off': poll only, checks that need MQTT are reported as not checked",
            "URL",
        ),
        env="CL_MQTT_URL",
    ),
    _opt("token", "str", "bearer token (JWT) for the compute API", "JWT"),
    _opt("auth_url", "str", "auth service URL for logging in with --cl-username/--cl-password", "URL"),
    _opt("username", "str", "user name at the auth service", "NAME"),
    _opt("password", "str", "password at the auth service", "PASSWORD"),
    _opt(
        "missing_worker",
        "str",
        "when a required worker is missing: auto|skip|xfail|fail (auto: skip locally, "
        "fail when CI is set or in strict mode)",
        "POLICY",
    ),
    _opt("require_workers", "list", "capabilities the deployment must offer before any test runs", "A,B"),
    _opt("job_timeout", "float", "longest wait for one job in seconds (always shorter than the test's timeout)", "S"),
    _opt("keep_jobs", "bool", "keep the jobs the tests created (their ids are printed) instead of deleting them"),
    _opt(
        "report",
        "str",
        "write the conformance report: PATH.html a self-contained HTML page (and PATH.json beside it), any other "
        "suffix JSON to PATH and Markdown to PATH with suffix .md",
        "PATH",
    ),
    _opt(
        "compare",
        "str",
        "compare with an earlier --cl-report JSON: mark newly failing / passing checks and latency changes beyond "
        "the noise (report and terminal summary)",
        "OLD.json",
    ),
    _opt(
        "expect_lacks",
        "str",
        "file listing the 'deployment lacks' entries this deployment is known to have, one per line: the run fails "
        "when it reports a new one or misses a listed one (use with the whole suites)",
        "FILE",
    ),
    _opt("allow_destructive", "bool", "run cl_destructive tests against a deployment that is not embedded"),
    _opt("strict", "bool", "strict mode: missing workers fail, fix-dependent lifecycle checks fail"),
    _opt("worker_wait", "float", "how long require_worker waits for a capability to appear", "S"),
    _opt("event_deadline", "float", "how long after the REST terminal state its MQTT event may arrive", "S"),
    _opt("embedded_workers", "int", "worker processes of the embedded deployment", "N"),
    _opt(
        "embedded_early",
        "bool",
        "with xdist: start the embedded deployment as the run begins, while the workers start and collect, instead "
        "of when the first test needs it (cl-client certify -n sets it)",
    ),
    _opt("embedded_tasks", "list", "task types the embedded workers serve (default: all plugins)", "A,B"),
    _opt("embedded_plugins", "list", "extra plugins of the embedded deployment: name=/path/file.py:Class,...", "SPECS"),
    _opt(
        "embedded_profile",
        "str",
        "behaviour profile of the embedded deployment: fixed (default; every [fix] of PROTOCOL.md) or "
        "upstream-2026-01 (upstream's January 2026 quirks, to see what the suites report for such a deployment)",
        "NAME",
    ),
    _opt("rows", "list", "run only the tests of these conformance-matrix rows (plugins, protocol, workflows)", "A,B"),
    _opt(
        "ledger",
        "str",
        "file recording the jobs created on a --cl-server deployment until their deletion is verified; the next "
        "run deletes what a killed run left (default: .pytest_cache/d/cl/ledger.jsonl, without the cache "
        "provider $XDG_CACHE_HOME/cl-client/ledger.jsonl)",
        "PATH",
    ),
)

_BY_NAME: Mapping[str, Option] = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Settings:
    """Every setting of the plugin after precedence was applied (see the module docstring).

    Attributes:
        server: compute API URL, or None for the embedded deployment.
        mqtt: broker URL; None = derived (embedded: its broker; remote: discovered on the server's host,
            ``mqtts://host:8883`` first for an https server, then ``mqtt://host:1883``); ``"off"`` = no MQTT.
        token: static bearer token.
        auth_url: auth service URL.
        username: login user name.
        password: login password (never shown).
        missing_worker: the policy in force: ``skip``, ``xfail`` or ``fail`` (``auto`` already resolved).
        missing_worker_why: why that policy (``option``, ``CI is set``, ``strict mode``, ``local run``).
        require_workers: capabilities required before any test runs.
        job_timeout: longest wait for one job, seconds.
        keep_jobs: keep created jobs instead of deleting them.
        report: path of the report (``.html``: HTML, else JSON + Markdown), or None.
        compare: an earlier ``--cl-report`` JSON to compare this run with, or None.
        expect_lacks: file of the expected "deployment lacks" entries (``pytest_cl._lacks``), or None.
        allow_destructive: run ``cl_destructive`` tests against a non-embedded deployment.
        strict: strict mode (``--cl-strict`` or pytest's ``strict`` ini).
        worker_wait: how long ``require_worker`` waits, seconds.
        event_deadline: how long the MQTT terminal event may lag the REST terminal state, seconds.
        embedded_workers: worker processes of the embedded deployment.
        embedded_early: under xdist the controller starts the embedded deployment at once (not on first use).
        embedded_tasks: task types of the embedded deployment (empty = all).
        embedded_plugins: extra plugins of the embedded deployment, name -> ``path:Class``.
        embedded_profile: behaviour profile of the embedded deployment (``cl_compute.profile``).
        rows: conformance-matrix rows whose tests run (empty = all); the others are deselected.
        ledger: the ledger file of created jobs (None = the default: pytest's cache dir, else per user).
        sources: setting name -> where its value came from (``factory``, ``option``, ``env``, ``ini``,
            ``default``).
    """

    server: str | None = None
    mqtt: str | None = None
    token: str | None = field(default=None, repr=False)
    auth_url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    missing_worker: MissingWorkerPolicy = "skip"
    missing_worker_why: str = "local run"
    require_workers: tuple[str, ...] = ()
    job_timeout: float = 120.0
    keep_jobs: bool = False
    report: str | None = None
    compare: str | None = None
    expect_lacks: str | None = None
    allow_destructive: bool = False
    strict: bool = False
    worker_wait: float = 5.0
    event_deadline: float = 5.0
    embedded_workers: int = 2
    embedded_early: bool = False
    embedded_tasks: tuple[str, ...] = ()
    embedded_plugins: Mapping[str, str] = field(default_factory=dict[str, str])
    embedded_profile: str = "fixed"
    rows: tuple[str, ...] = ()
    ledger: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict[str, str], compare=False, repr=False)

    @property
    def embedded(self) -> bool:
        """True when no server is configured: the plugin starts the reference deployment itself."""
        return self.server is None

    @property
    def mqtt_off(self) -> bool:
        """True when ``--cl-mqtt off`` (or ``none``, ``disabled``, ``0``, ``false``): no MQTT in this run."""
        return self.mqtt is not None and self.mqtt.strip().lower() in MQTT_OFF

    @property
    def policy_text(self) -> str:
        """The missing-worker policy and why, e.g. ``skip (local run)``."""
        return f"{self.missing_worker} ({self.missing_worker_why})"


def _parse(opt: Option, raw: object, source: str) -> object:
    """Convert a raw value (from the command line, environment or ini) to the setting's type."""
    where = {"option": opt.flag, "env": opt.env, "ini": opt.ini}.get(source, opt.name)
    if opt.kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise SettingsError(f"{where}: expected true/false, got {raw!r}")
    if opt.kind == "list":
        if isinstance(raw, list | tuple):
            items = [str(x) for x in cast(list[object], raw)]
        else:
            items = str(raw).replace("\n", ",").split(",")
        return tuple(x.strip() for x in items if x.strip())
    if opt.kind in ("float", "int"):
        try:
            value = float(cast(str, raw)) if opt.kind == "float" else int(cast(str, raw))
        except (TypeError, ValueError):
            raise SettingsError(f"{where}: expected a number, got {raw!r}") from None
        if value < 0:
            raise SettingsError(f"{where}: must not be negative, got {raw!r}")
        return value
    text = str(raw).strip()
    return text or None


def _strict_ini(config: pytest.Config) -> bool:
    """Read pytest 9's ``strict`` ini (plugins may hang their own strictness off it)."""
    try:
        return bool(cast(object, config.getini("strict")))
    except (ValueError, KeyError):  # pragma: no cover - pytest < 9
        return False


def _ci(environ: Mapping[str, str]) -> bool:
    return environ.get("CI", "").strip().lower() not in _FALSE


def resolve_settings(
    config: pytest.Config,
    environ: Mapping[str, str] | None = None,
    **overrides: object,
) -> Settings:
    """Resolve every setting once: factory argument > command line > environment > ini > default.

    Args:
        config: the pytest config (command line and ini).
        environ: the environment (``os.environ`` when omitted).
        **overrides: fixture-factory arguments by ``Settings`` field name (None = not given).

    Raises:
        SettingsError: a value is invalid (the message names where it came from).
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    getoption = cast(Callable[[str, object], object], config.getoption)
    getini = cast(Callable[[str], object], config.getini)
    for opt in OPTIONS:
        candidates: list[tuple[str, object]] = [
            ("factory", overrides.pop(opt.name, None)),
            ("option", getoption(opt.name_dest, None)),
            ("env", env.get(opt.env)),
            ("ini", getini(opt.ini)),
        ]
        for source, raw in candidates:
            if raw is None or (source == "ini" and raw in ("", [])):
                continue
            if source == "env" and isinstance(raw, str) and not raw.strip() and opt.kind != "bool":
                continue
            values[opt.name] = _parse(opt, raw, source)
            sources[opt.name] = source
            break
        else:
            sources[opt.name] = "default"
    if overrides:
        raise TypeError(f"unknown cl settings: {', '.join(sorted(overrides))}")

    strict = bool(values.get("strict", False)) or _strict_ini(config)
    policy = cast(str, values.get("missing_worker") or "auto").lower()
    if policy not in MISSING_WORKER_POLICIES:
        opt = _BY_NAME["missing_worker"]
        raise SettingsError(
            f"{opt.flag} / {opt.ini} / {opt.env}: expected one of {', '.join(MISSING_WORKER_POLICIES)}, got {policy!r}"
        )
    if policy != "auto":
        why = {"factory": "fixture factory", "option": opt_flag("missing_worker"), "env": "CL_MISSING_WORKER"}.get(
            sources["missing_worker"], "ini cl_missing_worker"
        )
    elif strict:
        policy, why = "fail", "strict mode"
    elif _ci(env):
        policy, why = "fail", "CI is set"
    else:
        policy, why = "skip", "local run"
    plugins: dict[str, str] = {}
    for spec in cast(tuple[str, ...], values.get("embedded_plugins", ())):
        name, sep, target = spec.partition("=")
        if not sep or not name.strip() or ":" not in target:
            raise SettingsError(f"--cl-embedded-plugins: expected name=/path/file.py:Class, got {spec!r}")
        plugins[name.strip()] = target.strip()
    mqtt = cast(str | None, values.get("mqtt"))
    server = cast(str | None, values.get("server"))
    if server is not None and not server.startswith(("http://", "https://")):
        raise SettingsError(f"--cl-server / cl_server / CL_SERVER_URL: expected an http(s) URL, got {server!r}")
    job_timeout = cast(float, values.get("job_timeout", 120.0))
    if job_timeout <= 0:
        raise SettingsError("--cl-job-timeout / cl_job_timeout / CL_JOB_TIMEOUT: must be positive")
    return Settings(
        server=server.rstrip("/") if server else None,
        mqtt=mqtt,
        token=cast(str | None, values.get("token")),
        auth_url=cast(str | None, values.get("auth_url")),
        username=cast(str | None, values.get("username")),
        password=cast(str | None, values.get("password")),
        missing_worker=policy,
        missing_worker_why=why,
        require_workers=cast(tuple[str, ...], values.get("require_workers", ())),
        job_timeout=job_timeout,
        keep_jobs=cast(bool, values.get("keep_jobs", False)),
        report=cast(str | None, values.get("report")),
        compare=cast(str | None, values.get("compare")),
        expect_lacks=cast(str | None, values.get("expect_lacks")),
        allow_destructive=cast(bool, values.get("allow_destructive", False)),
        strict=strict,
        worker_wait=cast(float, values.get("worker_wait", 5.0)),
        event_deadline=cast(float, values.get("event_deadline", 5.0)),
        embedded_workers=cast(int, values.get("embedded_workers", 2)),
        embedded_early=cast(bool, values.get("embedded_early", False)),
        embedded_tasks=cast(tuple[str, ...], values.get("embedded_tasks", ())),
        embedded_plugins=plugins,
        embedded_profile=cast(str | None, values.get("embedded_profile")) or "fixed",
        rows=cast(tuple[str, ...], values.get("rows", ())),
        ledger=cast(str | None, values.get("ledger")),
        sources=sources,
    )


def opt_flag(name: str) -> str:
    """Return the command-line flag of a setting (``missing_worker`` -> ``--cl-missing-worker``)."""
    return _BY_NAME[name].flag


def add_options(parser: pytest.Parser) -> None:
    """Register every option in the ``cl`` group and its ini twin (called from ``pytest_addoption``)."""
    group = parser.getgroup("cl", "CL compute deployments (pytest_cl)")
    for opt in OPTIONS:
        help_text = f"{opt.help} [ini {opt.ini}, env {opt.env}]"
        if opt.kind == "bool":
            group.addoption(opt.flag, action="store_true", default=None, dest=opt.name_dest, help=help_text)
        else:
            group.addoption(
                opt.flag, action="store", default=None, dest=opt.name_dest, metavar=opt.metavar, help=help_text
            )
        ini_type = "bool" if opt.kind == "bool" else "string"
        parser.addini(opt.ini, f"{opt.help} (option {opt.flag}, env {opt.env})", type=ini_type, default=None)
