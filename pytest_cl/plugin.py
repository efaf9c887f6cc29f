"""Entry point module loaded by pytest through the ``pytest11`` entry point ``cl`` (disable: ``-p no:cl``).

Options, hooks and fixtures only. At load time it imports pytest, the standard library and the light
modules ``pytest_cl.config``, ``pytest_cl.deployment`` and ``pytest_cl.report`` (themselves pytest and
standard library only, like ``pytest_cl._signals`` and ``pytest_cl._ledgerfile``); the client, httpx, paho
and the reference deployment are imported inside the fixtures and hooks that need them.

Nothing left behind: SIGTERM and SIGHUP stop a run like Ctrl-C, so the teardown deletes the jobs
(``_signals``); against a ``--cl-server`` deployment every created job is also written to a ledger file until
its deletion is verified, and the next run deletes what a hard-stopped run left (``_ledgerfile``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from pytest_cl._keys import NEEDS_FIX, SECURITY, STATE, TEST_PROPS
from pytest_cl._lacks import (
    ExpectedLacks,
    ExpectLacksError,
    LacksComparison,
    compare_lacks,
    packaged_lists,
    read_expected,
)
from pytest_cl._ledgerfile import (
    LedgerFile,
    Leftover,
    RunInfo,
    RunLock,
    RunSettlement,
    default_ledger_path,
    settle_leftovers,
)
from pytest_cl._signals import Stopper, XdistHalt
from pytest_cl._timing import from_report
from pytest_cl._tmp import make_shared_dir
from pytest_cl._upstream import PICK, Verdict, pick_error
from pytest_cl.config import Settings, SettingsError, add_options, resolve_settings
from pytest_cl.deployment import (
    STANDARD_TASK_TYPES,
    DeploymentInfo,
    DeploymentUnavailableError,
    EmbeddedDeployment,
    probe,
    read_state,
)
from pytest_cl.report import (
    NOT_CHECKED,
    PROP_FAILURE,
    PROP_FIX_CHECKED,
    PROP_LACKS,
    PROP_MISSING,
    PROP_PROBLEMS,
    PROP_ROW,
    PROP_SECURITY,
    PROP_SECURITY_CHECKED,
    PROP_TIMELINE,
    Comparison,
    Results,
    compare,
    load_previous,
    row_for_path,
    row_sort_key,
    terminal_sections,
)

if TYPE_CHECKING:
    from cl_client import ComputeClient
    from pytest_cl._media import MediaCatalogue
    from pytest_cl._runtime import Runtime

MARKERS = (
    "cl_requires(*capabilities): the test needs workers offering these task types; without one the "
    "missing-worker policy applies (--cl-missing-worker: skip locally, fail in CI or strict mode)",
    "cl_destructive: the test changes server settings (guest mode, clean-up); skipped against a deployment "
    "that is not embedded unless --cl-allow-destructive",
    "cl_needs_fix(what): the test relies on a [fix] of PROTOCOL.md; against a deployment that is not the "
    "reference one (and not in strict mode) a failure is reported as 'deployment lacks <what>' (xfail)",
    "cl_security(what): the test looks for a security hole; when its assertion fails the deployment has the "
    "security finding <what>, on every deployment and in every mode: listed first (red), and the run fails unless "
    "the --cl-expect-lacks file acknowledges it in its 'security:' section",
    "cl_row(name): the row of the conformance matrix (default: from the test file's path)",
    "cl_needs_mqtt: the check needs the deployment's MQTT broker (job events, capability messages); with "
    "--cl-mqtt off it is reported as 'not checked' (a skip), never as a failure of the deployment",
)
#: Skip reasons that start with this are "not checked" (their own column of the matrix), not skips.
NOT_CHECKED_MQTT = f"{NOT_CHECKED}needs the deployment's MQTT broker, and this run has none (--cl-mqtt off)"
#: Node id of the collect report that carries an unknown-row error from an xdist worker to the controller.
ROWS_ERROR_NODEID = "cl: --cl-rows"
# A test that uses one of these (directly or through another fixture, such as a factory's client, which uses
# ``_cl_test``) is one of ours: it gets a row, job records and a time line in the report.
CL_FIXTURES = frozenset(
    {"cl_deployment", "compute_client", "async_compute_client", "cl_session_client", "require_worker", "cl_jobs",
     "_cl_test"}
)  # fmt: skip
ASYNC_HINT = (
    'async_compute_client needs pytest-asyncio, which the pytest extra installs: pip install "cl-client[pytest]" '
    "(or use compute_client)"
)
REPORT_HINT = 'cl: --cl-report PATH.html needs jinja2: pip install "cl-client[report]"'


class ClCleanupWarning(pytest.PytestWarning):
    """A job created by a test could not be deleted (or its deletion could not be verified)."""


@dataclass
class _State:
    """Per-process plugin state (light: no client objects until a fixture needs them)."""

    settings: Settings
    process: str
    worker: bool
    embedded: EmbeddedDeployment
    info: DeploymentInfo | None = None
    shared_dir: Path | None = None
    own_shared_dir: bool = False
    results: Results = field(default_factory=Results)
    runtime: Runtime | None = None
    session_problems: list[str] = field(default_factory=list[str])
    session_kept: list[str] = field(default_factory=list[str])
    #: the time lines of the jobs created outside tests (module and session fixtures): the certification time
    session_timeline: list[dict[str, object]] = field(default_factory=list[dict[str, object]])
    stopper: Stopper = field(default_factory=Stopper)
    journal: LedgerFile | None = None
    run_lock: RunLock | None = None
    settlements: list[RunSettlement] = field(default_factory=list[RunSettlement])
    previous: dict[str, object] | None = None
    expected_lacks: ExpectedLacks | None = None
    #: the list the expectation was read from (``upstream`` resolved to the packaged list it picked)
    expected_source: str | None = None
    #: why ``--cl-expect-lacks upstream`` picked that list (for the header)
    expected_why: str | None = None
    lacks_comparison: LacksComparison | None = None


def _state(config: pytest.Config) -> _State:
    return cast(_State, config.stash[STATE])


def _workerinput(config: pytest.Config) -> dict[str, object] | None:
    return cast(dict[str, object] | None, getattr(config, "workerinput", None))


# -- options and configuration ---------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``cl`` option group; each option has an ini twin and an environment variable."""
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers, resolve the settings once, join the xdist run's shared deployment."""
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    try:
        settings = resolve_settings(config)
    except SettingsError as exc:
        raise pytest.UsageError(f"cl: {exc}") from None
    winput = _workerinput(config)
    process = cast(str, winput.get("workerid", "main")) if winput else "main"
    shared = cast(str | None, winput.get("cl_shared_dir")) if winput else None
    shared_dir = Path(shared) if shared else None
    state = _State(
        settings=settings,
        process=process,
        worker=winput is not None,
        embedded=EmbeddedDeployment(settings, shared_dir, process),
        shared_dir=shared_dir,
    )
    if winput and winput.get("cl_info"):
        state.info = DeploymentInfo.from_json(cast(str, winput["cl_info"]))
    if winput and winput.get("cl_ledger") and state.info is not None and not settings.keep_jobs:
        run = RunInfo.from_json(cast(str, winput["cl_run"]))
        state.journal = LedgerFile(Path(cast(str, winput["cl_ledger"])), state.info.server_url, run)
    state.embedded.join()
    config.stash[STATE] = state
    if not state.worker:
        state.stopper.workers = lambda: _worker_pids(state)
    handled = state.stopper.install()
    if state.worker and shared_dir is not None:
        _pid_file(shared_dir, process).parent.mkdir(exist_ok=True)
        _pid_file(shared_dir, process).write_text(json.dumps({"pid": os.getpid(), "signals": list(handled)}))
    if not state.worker:
        state.results.started = time.time()
        _check_report_settings(state)
        config.pluginmanager.register(_ResultCollector(state.results), "cl-results")
        _register_live_view(config, state)
    config.pluginmanager.register(_TeardownGuard(state.stopper), "cl-teardown-guard")
    if config.pluginmanager.hasplugin("asyncio"):
        from pytest_cl import _async

        config.pluginmanager.register(_async, "cl-async")
    else:
        config.pluginmanager.register(_AsyncStub(), "cl-async")


def _register_live_view(config: pytest.Config, state: _State) -> None:
    """``cl-client certify`` asked for a live view (``CL_CERTIFY_LIVE``): register it (controller only)."""
    from pytest_cl._live import LiveView, live_mode

    mode = live_mode()
    if mode is None or cast(bool, config.option.collectonly) or config.get_verbosity() > 0:
        return  # collecting only, or one line per check asked for (-v after --): pytest's own output
    view = LiveView(config, mode, embedded=state.settings.embedded, info=lambda: _live_info(state), row_of=_row)
    config.pluginmanager.register(view, "cl-live")


def _live_info(state: _State) -> DeploymentInfo | str | None:
    """Return the deployment once known (this process's, or the xdist run's from the shared state); its start error."""
    info = state.info or state.embedded.info
    if info is not None:
        return info
    if state.shared_dir is not None:
        saved = read_state(state.shared_dir)
        if isinstance(saved.get("info"), str):
            return DeploymentInfo.from_json(cast(str, saved["info"]))
        if saved.get("status") == "failed":
            return str(saved.get("error"))
    return None


def _check_report_settings(state: _State) -> None:
    """Fail early (controller): ``--cl-report x.html`` without jinja2, an unreadable ``--cl-compare`` file."""
    import importlib.util

    s = state.settings
    if s.report and Path(s.report).suffix.lower() == ".html":
        try:
            found = importlib.util.find_spec("jinja2") is not None
        except ValueError:  # a None entry in sys.modules (import blocked)
            found = False
        if not found:
            raise pytest.UsageError(REPORT_HINT)
    if s.compare:
        try:
            state.previous = load_previous(Path(s.compare).expanduser())
        except ValueError as exc:
            raise pytest.UsageError(f"cl: --cl-compare / cl_compare / CL_COMPARE: {exc}") from None
    if s.expect_lacks == PICK and not Path(PICK).exists():
        if not s.embedded:
            return  # picked once the deployment was probed (pytest_sessionstart)
        profile = s.embedded_profile
        if profile not in packaged_lists():
            raise pytest.UsageError(
                f"cl: --cl-expect-lacks {PICK}: the embedded deployment runs the profile {profile!r} (the reference "
                f"deployment), which is no upstream release. Name a list instead (packaged: "
                f"{', '.join(packaged_lists()) or 'none'}) or a file of your own."
            )
        _use_expected(state, profile, f"the embedded deployment runs the profile {profile}")
    elif s.expect_lacks:
        try:
            state.expected_lacks = read_expected(Path(s.expect_lacks).expanduser())
        except ExpectLacksError as exc:
            raise pytest.UsageError(f"cl: {exc}") from None


def _use_expected(state: _State, name: str, why: str) -> None:
    """``--cl-expect-lacks upstream``: read the packaged list ``name`` and remember why it was picked."""
    try:
        state.expected_lacks = read_expected(name)
    except ExpectLacksError as exc:
        raise pytest.UsageError(f"cl: {exc}") from None
    state.expected_source, state.expected_why = name, why


def _pick_expected(state: _State, info: DeploymentInfo) -> None:
    """``--cl-expect-lacks upstream`` against a ``--cl-server``: the list of the release it looks like."""
    if state.settings.expect_lacks != PICK or state.expected_lacks is not None:
        return
    verdict = Verdict(info.upstream_release, info.upstream_why or "looks like neither upstream release")
    known = packaged_lists()
    if verdict.release is None:
        raise pytest.UsageError(pick_error(verdict, known))
    if verdict.release not in known:
        raise pytest.UsageError(
            f"cl: --cl-expect-lacks {PICK}: the deployment {verdict.why}, but the list {verdict.release} is not "
            f"installed (packaged: {', '.join(known) or 'none'}); upgrade cl-client or name a file of your own."
        )
    _use_expected(state, verdict.release, verdict.why)


def _comparison(state: _State) -> Comparison | None:
    if state.previous is None or state.settings.compare is None:
        return None
    return compare(state.previous, state.results, state.settings.compare)


def _header(state: _State) -> dict[str, object]:
    """Return the report's header: the deployment (URL, version, workers, capabilities), policy, when and how long."""
    info = state.info or state.embedded.info
    s = state.settings
    header: dict[str, object] = {"policy": s.policy_text, "strict": s.strict, "job_timeout_s": s.job_timeout}
    if info is not None:
        header.update(
            {
                "mode": info.mode,
                "server_url": info.server_url,
                "mqtt_url": info.mqtt_url,
                "service": info.service,
                "version": info.version,
                "workers": list(info.workers),
                "num_workers": info.num_workers,
                "capabilities": list(info.capabilities),
                "upstream_release": info.upstream_release,
                "which_upstream": info.upstream_why,
            }
        )
    if state.expected_source:
        header["expect_lacks"] = state.expected_source
        header["expect_lacks_why"] = state.expected_why
    return header


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave the xdist run's shared deployment; the controller removes the shared directory."""
    if STATE not in config.stash:
        return
    state = _state(config)
    state.stopper.restore()
    state.embedded.leave()
    if state.run_lock is not None:
        if state.journal is not None:
            with contextlib.suppress(OSError):
                state.journal.compact()
        state.run_lock.release()
        state.run_lock = None
    if state.own_shared_dir and state.shared_dir is not None:
        shutil.rmtree(state.shared_dir, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """With ``--cl-server``: probe the deployment once, before any worker starts (one clear error).

    Then delete the jobs earlier runs against it left (their ledger entries) and open this run's ledger.
    """
    state = _state(session.config)
    if state.worker or state.settings.server is None or cast(bool, session.config.option.collectonly):
        return
    try:
        state.info = probe(state.settings)
    except DeploymentUnavailableError as exc:
        raise pytest.UsageError(str(exc)) from None
    _pick_expected(state, state.info)
    _open_ledger(session.config, state, state.info)


def _ledger_path(config: pytest.Config, settings: Settings) -> Path:
    """``--cl-ledger``, else pytest's cache dir, else the per-user fallback (the cache provider is disabled)."""
    if settings.ledger:
        return config.invocation_params.dir / Path(settings.ledger).expanduser()
    cache = cast(pytest.Cache | None, getattr(config, "cache", None))
    return default_ledger_path(cache.mkdir("cl") if cache is not None else None)


def _open_ledger(config: pytest.Config, state: _State, info: DeploymentInfo) -> None:
    """Settle what earlier runs left on this deployment; take this run's lock and keep its ledger file."""
    path = _ledger_path(config, state.settings)
    run = RunInfo.new()
    journal = LedgerFile(path, info.server_url, run)
    try:
        state.settlements = settle_leftovers(
            journal, lambda items: _delete_leftovers(state.settings, info, items), keep=state.settings.keep_jobs
        )
        if not state.settings.keep_jobs:
            state.run_lock = RunLock(path, run)
            state.journal = journal
    except OSError as exc:
        raise pytest.UsageError(
            f"cl: the ledger of created jobs {path} cannot be used ({exc}). Point --cl-ledger (ini cl_ledger, env "
            "CL_LEDGER) at a writable file."
        ) from None


def _delete_leftovers(
    settings: Settings, info: DeploymentInfo, items: Sequence[Leftover]
) -> list[tuple[Leftover, str]]:
    """Delete jobs earlier runs left, verifying each deletion; return each with ``deleted``/``gone``/``failed: …``."""
    if not items:
        return []
    from cl_client import ComputeClientError
    from pytest_cl._jobs import JobRecord, cleanup
    from pytest_cl.deployment import client_for

    records = [JobRecord(i.job_id, i.task_type, i.nodeid, i.run.started, i.run.started) for i in items]
    try:
        with client_for(settings, info.server_url) as janitor:
            cleanup(janitor, records, keep=False)
    except ComputeClientError as exc:
        for record in records:
            record.cleanup = record.cleanup or f"failed: {exc}"
    return [(item, record.cleanup) for item, record in zip(items, records, strict=True)]


def _pid_file(shared_dir: Path, process: str) -> Path:
    return shared_dir / "pids" / process


def _worker_pids(state: _State) -> dict[int, frozenset[str]]:
    """Return (controller) the running xdist workers: pid -> the signals each handles (from their pid files)."""
    if state.shared_dir is None:
        return {}
    found: dict[int, frozenset[str]] = {}
    for path in (state.shared_dir / "pids").glob("*"):
        try:
            raw = cast(dict[str, object], json.loads(path.read_text()))
            found[int(cast(int, raw["pid"]))] = frozenset(cast(list[str], raw["signals"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    """Hand (controller) the deployment (or the shared directory for the embedded one) to each xdist worker."""
    config = cast(pytest.Config, getattr(node, "config"))  # noqa: B009
    state = _state(config)
    dsession = config.pluginmanager.getplugin("dsession")
    if dsession is not None and not config.pluginmanager.has_plugin("cl-xdist-halt"):
        halt = XdistHalt(state.stopper, dsession)  # after a signal, xdist starts no worker and no test again
        config.pluginmanager.register(halt, "cl-xdist-halt")
        state.stopper.on_forward = halt.halt
    if state.shared_dir is None:
        state.shared_dir = make_shared_dir()  # and remove those of controllers that were SIGKILLed
        state.own_shared_dir = True
        s = state.settings
        if s.embedded_early and s.embedded and state.info is None and not config.getoption("collectonly"):
            state.embedded.start_early(state.shared_dir)  # while the workers start and collect
    workerinput = cast(dict[str, object], getattr(node, "workerinput"))  # noqa: B009
    workerinput["cl_shared_dir"] = str(state.shared_dir)
    if state.info is not None:
        workerinput["cl_info"] = state.info.to_json()
    if state.journal is not None:
        workerinput["cl_ledger"] = str(state.journal.path)
        workerinput["cl_run"] = state.journal.run.to_json()


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which deployment is under test, its version, workers and capabilities, and the policy in force."""
    state = _state(config)
    s = state.settings
    if state.info is not None:
        target = state.info.describe()
        workers = ", ".join(state.info.workers)
        lines = [f"cl: deployment under test: {target}"]
        if workers:
            lines.append(f"cl: workers: {workers}")
        if state.info.upstream_why:
            lines.append(f"cl: which upstream: {state.info.upstream_why}")
        absent = [t for t in STANDARD_TASK_TYPES if not state.info.offers(t)]
        if absent and not state.info.embedded:
            lines.append(
                f"cl: NOT OFFERED by this deployment: {', '.join(absent)}: their checks are skipped and certify "
                f"nothing (missing-worker policy: {s.policy_text})"
            )
    else:
        tasks = ",".join(s.embedded_tasks) or "all plugins"
        extra = f" + {','.join(s.embedded_plugins)}" if s.embedded_plugins else ""
        when = "started on first use, under xdist as the run begins" if s.embedded_early else "started on first use"
        lines = [
            f"cl: deployment under test: embedded cl_compute ({when}; {s.embedded_workers} "
            f"worker(s); capabilities: {tasks}{extra})"
        ]
        if s.embedded_profile != "fixed":
            lines.append(f"cl: embedded profile: {s.embedded_profile} (upstream's quirks, not the fixed reference)")
    keep = "keep jobs" if s.keep_jobs else "delete jobs after each test"
    lines.append(
        f"cl: missing-worker policy: {s.policy_text}; job timeout {s.job_timeout:g} s; {keep}"
        + ("; strict" if s.strict else "")
    )
    if _mqtt_off(state):
        lines.append(
            "cl: MQTT off (--cl-mqtt off): jobs are watched by polling; checks that need MQTT (cl_needs_mqtt) "
            "and the REST-vs-MQTT lifecycle checks are not checked"
        )
    if s.rows:
        lines.append(f"cl: rows: {', '.join(s.rows)} (--cl-rows; the other tests are deselected)")
    if state.expected_source and state.expected_why:
        lines.append(f"cl: --cl-expect-lacks {PICK}: using {state.expected_source} ({state.expected_why})")
    for settlement in state.settlements:
        lines += settlement.lines(_ledger_path(config, s))
    return lines


def _mqtt_off(state: _State) -> bool:
    """Return True when this run uses no MQTT (``--cl-mqtt off``, or a deployment known to have no broker)."""
    return state.settings.mqtt_off or (state.info is not None and state.info.mqtt_url is None)


# -- collection -----------------------------------------------------------------------------------------
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--cl-rows a,b``: keep the tests of those matrix rows, deselect the rest; an unknown row is a usage error.

    Under xdist the workers collect; a worker reports an unknown row through a failed collect report that the
    controller turns into the usage error (``pytest_collectreport``), so the run ends with one message.
    """
    state = _state(config)
    wanted = state.settings.rows
    if not wanted:
        return
    rows = {item.nodeid: _row(item) for item in items}
    known = sorted(set(rows.values()), key=row_sort_key)
    unknown = [r for r in wanted if r not in known]
    if unknown:
        message = (
            f"cl: --cl-rows / cl_rows / CL_ROWS: unknown row(s): {', '.join(unknown)}. Known rows of the collected "
            f"tests: {', '.join(known) or 'none'}."
        )
        if not state.worker:
            raise pytest.UsageError(message)
        config.hook.pytest_deselected(items=list(items))
        items[:] = []
        config.hook.pytest_collectreport(report=pytest.CollectReport(ROWS_ERROR_NODEID, "failed", message, []))
        return
    keep = [item for item in items if rows[item.nodeid] in wanted]
    dropped = [item for item in items if rows[item.nodeid] not in wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# -- per-test hooks -------------------------------------------------------------------------------------
def _is_cl_item(item: pytest.Item) -> bool:
    names = cast(list[str], getattr(item, "fixturenames", []))
    if CL_FIXTURES.intersection(names):
        return True
    return any(any(item.iter_markers(name)) for name in ("cl_requires", "cl_needs_fix", "cl_needs_mqtt", "cl_security"))


def _node(request: pytest.FixtureRequest) -> pytest.Item:
    return cast(pytest.Item, request.node)


def _props(item: pytest.Item) -> dict[str, str]:
    props = item.stash.get(TEST_PROPS, None)
    if props is None:
        props = item.stash[TEST_PROPS] = {}
    return props


def _test_timeout(item: pytest.Item) -> float | None:
    """Return the test's pytest-timeout: marker > --timeout > PYTEST_TIMEOUT > ini ``timeout``."""
    import os

    marker = item.get_closest_marker("timeout")
    raw: object = None
    if marker is not None:
        raw = marker.args[0] if marker.args else marker.kwargs.get("timeout")
    if raw is None:
        raw = cast(object, item.config.getoption("timeout", None))
    if raw is None:
        raw = os.environ.get("PYTEST_TIMEOUT")
    if raw is None:
        try:
            raw = cast(object, item.config.getini("timeout"))
        except ValueError:
            raw = None
    try:
        return float(cast(str, raw)) if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """After a test passed: the lifecycle checks on its jobs (a violation fails the test)."""
    result = yield
    runtime = _state(item.config).runtime
    if runtime is not None and runtime.ledger.jobs_of(item.nodeid):
        from pytest_cl._runtime import raise_violations

        findings = runtime.lifecycle(item.nodeid)
        lacks = [f.message for f in findings if f.kind == "lack"]
        if lacks:
            props = _props(item)
            props[PROP_LACKS] = "\n".join(filter(None, [props.get(PROP_LACKS, ""), *lacks]))
        raise_violations(findings, runtime.transcript(item.nodeid))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Failure output (job records, MQTT events, curl commands) and the per-test properties at teardown."""
    state = _state(item.config)
    runtime = state.runtime
    if call.when == "teardown" and _is_cl_item(item):
        props = _props(item)
        props[PROP_ROW] = _row(item)
        if runtime is not None:
            from pytest_cl._jobs import summary_of

            for key, value in summary_of(runtime.ledger.jobs_of(item.nodeid)).items():
                if value:
                    props[key] = value
            timeline = runtime.timeline(item.nodeid)
            if timeline:
                props[PROP_TIMELINE] = json.dumps(timeline, separators=(",", ":"))
        for key, value in props.items():
            item.user_properties.append((key, value))
    report = yield
    if call.when == "call" and report.failed and call.excinfo is not None and runtime is not None:
        from pytest_cl._runtime import LifecycleViolationError

        if isinstance(call.excinfo.value, LifecycleViolationError):  # the deployment's fault, not a code location
            report.longrepr = call.excinfo.value.summary()
    if (
        report.failed
        and runtime is not None
        and runtime.ledger.jobs_of(item.nodeid) + runtime.ledger.requests_of(item.nodeid)
    ):
        report.sections.append(("cl: jobs, MQTT events and requests", runtime.transcript(item.nodeid)))
        if _is_cl_item(item):
            detail = json.dumps(runtime.failure_detail(item.nodeid), separators=(",", ":"))
            report.user_properties.append((PROP_FAILURE, detail))
    security = item.stash.get(SECURITY, None)
    found = call.excinfo is not None and isinstance(call.excinfo.value, AssertionError)
    if call.when == "call" and security is not None and report.failed and found:
        report.outcome = "skipped"  # the check found the hole: a finding, not a failure
        report.wasxfail = f"SECURITY: {security}"
    xfailed = report.skipped and hasattr(report, "wasxfail")  # not a pytest.skip() inside the check
    if call.when == "call" and xfailed and item.stash.get(NEEDS_FIX, None):
        props = _props(item)
        props[PROP_LACKS] = "\n".join(filter(None, [props.get(PROP_LACKS, ""), item.stash[NEEDS_FIX]]))
    if call.when == "call" and security is not None:
        if xfailed and call.excinfo is not None:
            finding = [security, _finding_detail(call.excinfo.value)]
            _props(item)[PROP_SECURITY] = json.dumps([finding])
        if report.passed or report.failed or xfailed:
            _props(item)[PROP_SECURITY_CHECKED] = security  # the check ran: its hole was looked for
    fix = item.get_closest_marker("cl_needs_fix")
    if call.when == "call" and security is None and fix is not None and (report.passed or report.failed or xfailed):
        _props(item)[PROP_FIX_CHECKED] = _fix_text(fix)  # the check ran: its gap was looked for
    if call.when in ("setup", "call") and _is_cl_item(item):
        # in case no teardown report follows (an interrupted xdist worker): see Results.settle_unfinished
        props = {PROP_ROW: _row(item), **_props(item)}
        if runtime is not None:
            from pytest_cl._jobs import summary_of

            props.update({k: v for k, v in summary_of(runtime.ledger.jobs_of(item.nodeid)).items() if v})
        report.user_properties.extend(props.items())
    return report


def _finding_detail(exc: BaseException) -> str:
    """Return what a ``cl_security`` check's assertion says the deployment did (without pytest's ``assert …`` lines)."""
    text = str(exc).strip()
    return text.split("\nassert ", 1)[0].strip() or type(exc).__name__


def _fix_text(marker: pytest.Mark) -> str:
    """Return what a ``cl_needs_fix`` marker says the deployment may lack."""
    return str(cast(object, marker.args[0])) if marker.args else "a [fix] of PROTOCOL.md"


def _row(item: pytest.Item) -> str:
    marker = item.get_closest_marker("cl_row")
    if marker is not None and marker.args:
        return str(cast(object, marker.args[0]))
    try:
        path = item.path.relative_to(item.config.rootpath)
    except ValueError:
        path = item.path
    return row_for_path(path)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the owned embedded deployment, then hand the session data to the controller or write the report.

    The owner waits here for the other xdist workers before stopping the deployment: in the session fixture's
    finalizer that wait would run within the last test's teardown, under its pytest-timeout (a long module on another
    worker ended the run with a teardown error).
    """
    state = _state(session.config)
    state.embedded.release()
    if state.stopper.received is not None and session.exitstatus in (
        pytest.ExitCode.OK,
        pytest.ExitCode.TESTS_FAILED,
        pytest.ExitCode.NO_TESTS_COLLECTED,
    ):
        session.exitstatus = pytest.ExitCode.INTERRUPTED  # a stopped run never passes
    data: dict[str, object] = {
        "starts": state.embedded.starts,
        "jobs_at_start": state.embedded.jobs_at_start,
        "jobs_at_end": state.embedded.jobs_at_end,
        "problems": state.session_problems,
        "kept": state.session_kept,
        "timeline": state.session_timeline,
        "info": state.embedded.info.to_json() if state.embedded.info else None,
    }
    if state.worker:
        workeroutput = cast(dict[str, object], getattr(session.config, "workeroutput"))  # noqa: B009
        workeroutput["cl_session"] = json.dumps(data)
        return
    if state.embedded.info is not None or state.session_problems or state.session_kept or state.session_timeline:
        state.results.add_session(state.process, data)
    state.results.settle_unfinished(interrupted=session.exitstatus == pytest.ExitCode.INTERRUPTED)
    state.results.finished = time.time()
    expected = state.expected_lacks
    if expected is not None:
        state.results.security_acknowledged = expected.security
    if expected is not None and state.settings.expect_lacks and state.stopper.received is None:
        comparison = compare_lacks(
            (lack for _, lack in state.results.lacks),
            expected,
            state.expected_source or state.settings.expect_lacks,
            checked=state.results.fix_checked,
            security_seen=(f.what for f in state.results.security),
            security_checked=state.results.security_checked,
        )
        state.lacks_comparison = comparison
        if not comparison.ok and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if state.results.security_unacknowledged and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a security finding is never a tolerated gap
    if state.settings.report and (state.results.tests or state.results.sessions):
        state.results.write(
            state.settings.report,
            _deployment_text(state),
            state.settings.policy_text,
            header=_header(state),
            comparison=_comparison(state),
            redact=[state.settings.token or "", state.settings.password or ""],
        )


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """Take (controller) a finished worker's session data."""
    config = cast(pytest.Config, getattr(node, "config"))  # noqa: B009
    output = cast(dict[str, object], getattr(node, "workeroutput", {}))
    gateway = cast(object, getattr(node, "gateway", None))
    process = str(cast(object, getattr(gateway, "id", "worker")))
    state = _state(config)
    if state.shared_dir is not None:
        with contextlib.suppress(OSError):
            _pid_file(state.shared_dir, process).unlink()  # no signal is passed on to it any more
    raw = output.get("cl_session")
    if isinstance(raw, str):
        data = cast(dict[str, object], json.loads(raw))
        if cast(int, data.get("starts", 0)) or data.get("problems") or data.get("kept") or data.get("timeline"):
            state.results.add_session(process, data)
        if state.info is None and isinstance(data.get("info"), str):
            state.info = DeploymentInfo.from_json(cast(str, data["info"]))


def _deployment_text(state: _State) -> str:
    info = state.info or state.embedded.info
    if info is not None:
        return info.describe()
    if state.shared_dir is not None:
        saved = read_state(state.shared_dir).get("info")
        if isinstance(saved, str):
            return DeploymentInfo.from_json(saved).describe()
    return "embedded cl_compute (not started)" if state.settings.embedded else str(state.settings.server)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None]:
    """Lead the summary with the security findings and the plugins that failed every job.

    They come before pytest's tracebacks; the cl sections (``_write_summary``) come after them.
    """
    state = _state(terminalreporter.config)
    if not state.worker:
        _write_leading_sections(terminalreporter, state)
    try:
        return (yield)
    finally:
        if not state.worker:
            _write_summary(terminalreporter)


def _write_leading_sections(terminalreporter: pytest.TerminalReporter, state: _State) -> None:
    results = state.results
    if state.expected_lacks is not None:
        results.security_acknowledged = state.expected_lacks.security
    if results.security:
        unacknowledged = len(results.security_unacknowledged)
        title = f"cl: SECURITY FINDINGS ({len(results.security)}, {unacknowledged} not acknowledged)"
        terminalreporter.write_sep("=", title, red=True, bold=True)
        for line in results.security_lines():
            terminalreporter.write_line(line, red=True, bold=line.startswith("SECURITY (NOT"))
    failures = results.plugin_failures()
    if failures:
        terminalreporter.write_sep("=", "cl: plugins that failed every job", red=True, bold=True)
        for failure in failures:
            terminalreporter.write_line(failure.text(), red=True)
        terminalreporter.write_line(
            "one cause, not separate defects: the plugin is broken on this deployment (each check's traceback "
            "follows and stays in the report files)"
        )


def _write_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Write the cl sections: deployment, skips for lack of a worker, lacks, clean-up, the conformance matrix."""
    state = _state(terminalreporter.config)
    results = state.results
    if state.worker:
        return
    stopped = [line for line in (state.stopper.summary(), results.stopped_not_crashed_line()) if line]
    path = _ledger_path(terminalreporter.config, state.settings)
    settled = [line for s in state.settlements for line in s.lines(path)]
    if stopped or settled:
        terminalreporter.write_sep("-", "cl: nothing left behind")
        for line in [*settled, *stopped]:
            terminalreporter.write_line(line)
    if not (results.tests or results.sessions):
        return
    head = [f"which upstream: {info.upstream_why}"] if (info := state.info) is not None and info.upstream_why else []
    if state.expected_source and state.expected_why:
        head.append(f"--cl-expect-lacks {PICK}: using {state.expected_source} ({state.expected_why})")
    sections = terminal_sections(
        results, _deployment_text(state), state.settings.policy_text, _comparison(state), extra_head=head
    )
    for title, lines in sections:
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)
    if results.timelines:
        terminalreporter.write_sep("-", "cl: certification time")
        terminalreporter.write_line(
            from_report(results.all_timelines(), _header(state), results.started, results.finished).line()
        )
    comparison = state.lacks_comparison
    if comparison is not None:
        title = "cl: deployment lacks: as expected" if comparison.ok else "cl: deployment lacks: NOT as expected"
        terminalreporter.write_sep("-", title, red=not comparison.ok, green=comparison.ok)
        for line in comparison.lines():
            terminalreporter.write_line(line, red=not comparison.ok)
    untested = results.untested_capabilities()
    if untested:
        terminalreporter.write_sep("-", "cl: NOT CERTIFIED: capabilities no worker offered", red=True, bold=True)
        for capability, count in untested:
            terminalreporter.write_line(
                f"{capability}: {count} check(s) not run, nothing certified (missing-worker policy: "
                f"{state.settings.policy_text})",
                red=True,
            )
        terminalreporter.write_line(
            "these checks say nothing about the deployment; --cl-require-workers "
            f"{','.join(c for c, _ in untested)} (or --cl-strict) turns a missing worker into a failure",
            red=True,
        )
    if state.settings.report:
        html = Path(state.settings.report).suffix.lower() == ".html"
        terminalreporter.write_line(f"cl: report written to {state.settings.report} ({'+ .json' if html else '+ .md'})")


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def _cl_runtime(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """Provide the per-process runtime: deployment (probed or embedded), clients, ledger, MQTT witness."""
    from pytest_cl._jobs import SESSION
    from pytest_cl._runtime import Runtime

    state = _state(request.config)
    info = state.info
    if info is None:
        failure = ""
        try:
            info = state.embedded.acquire()
        except DeploymentUnavailableError as exc:
            failure = str(exc)
        if info is None:
            request.session.shouldstop = failure
            pytest.fail(failure, pytrace=False)
        state.info = info
    runtime = Runtime(state.settings, info, journal=state.journal)
    state.runtime = runtime
    try:
        yield runtime
    finally:
        try:
            state.session_timeline = runtime.timeline(SESSION)  # for the certification time
        finally:
            state.session_problems += runtime.close()
            state.session_kept += runtime.kept_at_session_end()
            for problem in state.session_problems:
                warnings.warn(ClCleanupWarning(problem), stacklevel=1)
        # The embedded deployment is stopped in pytest_sessionfinish, not here: the owner waits there for the other
        # xdist workers, and a wait inside this finalizer would run within the last test's teardown and so under
        # its pytest-timeout (a long module on another worker ended the run with a teardown error).


@pytest.fixture(scope="session")
def cl_deployment(_cl_runtime: Runtime) -> DeploymentInfo:
    """Return the deployment under test (session): URLs, mode, version, workers, capabilities.

    Without ``--cl-server`` the embedded reference deployment is started on first use (once per run, also
    under xdist) and stopped at the end.
    """
    return _cl_runtime.info


@pytest.fixture
def _cl_test(request: pytest.FixtureRequest, _cl_runtime: Runtime) -> Iterator[float]:
    """Attribute jobs to the running test; at teardown delete them and verify the deletion."""
    node = _node(request)
    deadline = _cl_runtime.begin(node.nodeid, _test_timeout(node))
    try:
        yield deadline
    finally:
        problems = _cl_runtime.finish(node.nodeid)
        if problems:
            _props(node)[PROP_PROBLEMS] = "\n".join(problems)
            for problem in problems:
                warnings.warn(ClCleanupWarning(problem), stacklevel=1)


@pytest.fixture
def compute_client(_cl_runtime: Runtime, _cl_test: float) -> ComputeClient:
    """Return a connected ``ComputeClient`` for the deployment under test.

    Every job it creates (``submit`` or the plugin clients) is recorded with the test's node id, checked
    (lifecycle) and deleted at teardown, also when the test fails, times out or is interrupted. Job waits
    never exceed the test's job-wait deadline (shorter than its pytest-timeout).
    """
    return _cl_runtime.client


@pytest.fixture(scope="session")
def cl_session_client(_cl_runtime: Runtime) -> ComputeClient:
    """Return the connected ``ComputeClient`` for session- or module-scoped fixtures of your own.

    Jobs it creates while such a fixture is set up belong to the session: they are deleted (and the deletion
    verified) at the end of the run, or listed with ``--cl-keep-jobs``. Used inside a test it behaves like
    ``compute_client`` (it is the same client): its jobs belong to that test.
    """
    return _cl_runtime.client


@pytest.fixture
def require_worker(request: pytest.FixtureRequest, _cl_runtime: Runtime) -> Callable[..., None]:
    """``require_worker("face_detection", ...)``: wait briefly for the capabilities, else apply the policy.

    The policy is ``--cl-missing-worker``: ``skip`` (default locally), ``xfail``, or ``fail`` (default when
    ``CI`` is set or in strict mode). The terminal summary lists every test stopped this way.
    """
    node = _node(request)
    policy = _cl_runtime.settings.missing_worker

    def require(*capabilities: str) -> None:
        missing, message = _cl_runtime.require(node.nodeid, capabilities)
        if not missing:
            return
        _props(node)[PROP_MISSING] = ",".join(missing)
        if policy == "fail":
            pytest.fail(message, pytrace=False)
        elif policy == "xfail":
            pytest.xfail(message)
        pytest.skip(message)

    return require


@pytest.fixture
def cl_jobs(_cl_runtime: Runtime, _cl_test: float, request: pytest.FixtureRequest) -> Callable[[], list[str]]:
    """Return a callable giving the ids of the jobs the running test created so far (in creation order)."""
    nodeid = _node(request).nodeid
    return lambda: [j.job_id for j in _cl_runtime.ledger.jobs_of(nodeid)]


@pytest.fixture(scope="session")
def cl_media() -> MediaCatalogue:
    """Return the committed test media: paths plus the known facts of ``media/manifest.json`` (``$CL_MEDIA_DIR``)."""
    from pytest_cl._media import load_catalogue

    return load_catalogue()


@pytest.fixture(autouse=True)
def _cl_markers(request: pytest.FixtureRequest) -> None:
    """Apply ``cl_needs_mqtt``, ``cl_destructive``, ``cl_requires`` and ``cl_needs_fix`` (tests that carry them)."""
    node = _node(request)
    state = _state(request.config)
    settings = state.settings
    if node.get_closest_marker("cl_needs_mqtt") is not None and _mqtt_off(state):
        pytest.skip(NOT_CHECKED_MQTT)
    if "cl_session_client" in request.fixturenames:  # jobs its tests create belong to them, as compute_client's
        request.getfixturevalue("_cl_test")
    if node.get_closest_marker("cl_destructive") is not None and not (settings.embedded or settings.allow_destructive):
        pytest.skip(f"cl_destructive: not run against {settings.server} without --cl-allow-destructive")
    requires = [str(a) for m in node.iter_markers("cl_requires") for a in cast(tuple[object, ...], m.args)]
    if requires:
        require = cast(Callable[..., None], request.getfixturevalue("require_worker"))
        require(*requires)
    security = node.get_closest_marker("cl_security")
    if security is not None:  # never a tolerated gap: on every deployment, in every mode
        what = _fix_text(security) if security.args else "a security hole"
        node.stash[SECURITY] = what  # a failed assertion becomes the finding (pytest_runtest_makereport)
        return
    fix = node.get_closest_marker("cl_needs_fix")
    if fix is not None:
        info = cast(DeploymentInfo, request.getfixturevalue("cl_deployment"))
        if not (info.is_reference or settings.strict):
            what = _fix_text(fix)
            node.stash[NEEDS_FIX] = f"needs fix: {what}"
            node.add_marker(pytest.mark.xfail(reason=f"deployment lacks {what}", strict=False))


class _ResultCollector:
    """Feeds every test report to the conformance matrix (controller, or the only process)."""

    def __init__(self, results: Results) -> None:
        self.results = results

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Take one report (reports from xdist workers arrive here too)."""
        self.results.add(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """End the run with the usage error of an xdist worker that found an unknown ``--cl-rows`` row (once)."""
        if report.nodeid == ROWS_ERROR_NODEID and report.failed:
            raise pytest.UsageError(str(report.longrepr))


class _TeardownGuard:
    """Keeps SIGTERM/SIGHUP from cutting a teardown (the clean-up) short: the interrupt comes right after it."""

    def __init__(self, stopper: Stopper) -> None:
        self.stopper = stopper

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self) -> Generator[None, object, object]:
        """Defer a signal during a test's teardown (session fixtures too, after the last test) until it is over."""
        self.stopper.deferring = True
        try:
            result = yield
        finally:
            self.stopper.deferring = False
        self.stopper.check()
        return result

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self) -> None:
        """Raise a deferred interrupt whose teardown ended with an error."""
        self.stopper.check()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        """Note that the session ends (this runs before pytest tears its fixtures down)."""
        self.stopper.finishing = True


class _AsyncStub:
    """Registered instead of ``pytest_cl._async`` when pytest-asyncio is not installed."""

    @pytest.fixture
    def async_compute_client(self) -> None:
        """Needs pytest-asyncio (see ``pytest_cl._async``)."""
        pytest.fail(ASYNC_HINT, pytrace=False)
