"""``cl-client certify [URL]``: certify a deployment with the packaged conformance suites, run by pytest.

Not a second test runner: ``build_command`` (a pure function) turns the options into one pytest command line
and environment, ``run_pytest`` runs it in a child process whose output streams to the terminal, and the
command exits with pytest's exit code. The conformance matrix is printed by the ``cl`` pytest plugin's
terminal summary, as in any other pytest run of the suites; its "deployment under test" section names the upstream
release a deployment given by URL looks like (``which upstream: …``), and security findings lead the summary.

Which deployment: the positional URL, else the global ``--server`` option, else the embedded reference
deployment. ``CL_SERVER_URL`` is never used implicitly (it is removed from the child's environment, where the
``cl`` plugin would read it): certifying means starting hundreds of jobs, so the target is always visible on
the command line, and both targets stay one short command away (``cl-client certify`` /
``cl-client certify "$CL_SERVER_URL"``).

Isolation from the caller's pytest set-up: ``-c /dev/null`` (no pytest.ini, pyproject.toml, tox.ini or
setup.cfg is read, so no ``addopts``/``testpaths``), ``--rootdir`` and ``--confcutdir`` at the suites (node ids
``plugins/test_hash.py::…``; no ``conftest.py`` above them is loaded), the suites given by path (with
``--pyargs`` pytest would load the ``conftest.py`` of the current directory, since that name is no path
there), ``-p no:cacheprovider`` (nothing written to the current directory) and ``python -P`` (the current
directory is not put on ``sys.path``). ``PYTEST_ADDOPTS`` and the ``CL_*`` variables still apply: they are
the caller's explicit choices.

Secrets never go on the child's command line (``ps`` shows it): tokens, user names, passwords and URLs that
carry credentials (``user:pass@``) reach pytest through ``CL_TOKEN``, ``CL_USERNAME``, ``CL_PASSWORD``,
``CL_AUTH_URL``, ``CL_SERVER_URL`` and ``CL_MQTT_URL``.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import cast

import click

from cl_client._cli_common import state, terminal_safe

EXIT_MISSING_EXTRA = 3
CONFORMANCE_HINT = 'pip install "cl-client[conformance]"'
SERVER_HINT = 'pip install "cl-client[server]"'
#: the packaged conformance suites.
SUITES = "pytest_cl.conformance"
#: import names the suites need: pytest, and what the checks compute expected values with.
CONFORMANCE_MODULES = ("pytest", "PIL", "av", "m3u8")
#: import names the embedded reference deployment needs to start.
SERVER_MODULES = ("cl_compute", "fastapi", "uvicorn")
#: pytest-timeout's per-test limit (when it is installed), so that a hung check cannot hang the run.
TEST_TIMEOUT_S = 300
#: environment variables of the credentials, by ``CertifyRequest`` field.
SECRET_VARIABLES = (
    ("token", "CL_TOKEN"),
    ("username", "CL_USERNAME"),
    ("password", "CL_PASSWORD"),
    ("auth_url", "CL_AUTH_URL"),
)
#: upstream's variable names the library also reads (``CL_*`` first), copied for the ``cl`` plugin.
VARIABLE_ALIASES = (("CL_AUTH_URL", "AUTH_URL"), ("CL_MQTT_URL", "MQTT_URL"))
#: ``--mqtt`` values that mean "no MQTT, poll" (as the ``cl`` plugin reads them).
MQTT_OFF = frozenset({"off", "none", "disabled", "0", "false"})
_PYTEST_ARGS = "cl_client.certify.pytest_args"


class CertifyUsageError(ValueError):
    """An option of ``cl-client certify`` has a value that cannot work (shown as a usage error, exit 2)."""


@dataclass(frozen=True)
class CertifyRequest:
    """What to certify and how: the options of ``cl-client certify`` (its own win over the global ones).

    Attributes:
        url: the compute API under test; None = the embedded reference deployment.
        mqtt: the deployment's broker URL, or ``off`` to poll (None = the ``cl`` plugin's default: a broker
            found on the server's host). The embedded deployment takes ``off`` only (it has its own broker).
        workers: pytest-xdist processes (``-n``): a number or ``auto``; None = no xdist.
        report: write the report to this path: ``.html`` one self-contained HTML page (and ``.json`` beside it),
            another suffix JSON and the same path with the suffix ``.md`` (Markdown).
        strict: strict mode (missing workers and fix-dependent checks fail).
        rows: matrix rows to run (plugin names, ``protocol``, ``workflows``); empty = every row.
        token: bearer token (None = ``CL_TOKEN`` of the environment, if set).
        username: user name at the auth service (None = ``CL_USERNAME``).
        password: password (None = ``CL_PASSWORD``).
        auth_url: auth service URL (None = ``CL_AUTH_URL``, else ``AUTH_URL``).
        expect_lacks: a file of the expected "deployment lacks" entries and acknowledged security findings, the
            name of a packaged one (``upstream-2026-01``, ``upstream-2026-02``), or ``upstream``: the packaged list
            of the upstream release the deployment looks like (the summary says which and why). A new or missing
            entry fails the run, and so does a security finding the file does not acknowledge.
        profile: behaviour profile of the embedded deployment (``fixed`` or ``upstream-2026-01``); None = fixed.
        pytest_args: further pytest arguments, appended last.
    """

    url: str | None = None
    mqtt: str | None = None
    workers: str | None = None
    report: str | None = None
    strict: bool = False
    rows: tuple[str, ...] = ()
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    auth_url: str | None = None
    expect_lacks: str | None = None
    profile: str | None = None
    pytest_args: tuple[str, ...] = ()

    @property
    def embedded(self) -> bool:
        """True when no URL was given: the ``cl`` plugin starts the embedded reference deployment."""
        return self.url is None


@dataclass(frozen=True)
class PytestCommand:
    """One pytest run: the argument vector (never a secret in it) and the child's environment.

    Attributes:
        argv: the interpreter, its flags, ``-m pytest`` and pytest's arguments.
        env: the complete environment of the child (credentials included; not shown in the repr).
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)

    def display(self) -> str:
        """The command line as a shell would run it (safe to print: it holds no secret)."""
        return shlex.join(["python", *self.argv[1:]])


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (its parent packages are imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def suite_dir(find: Callable[[str], bool] = is_installed) -> Path | None:
    """The directory of the packaged suites ``pytest_cl.conformance`` (None when they are not installed).

    Args:
        find: the installed-check applied first (``is_installed``).
    """
    if not find(SUITES):
        return None
    spec = importlib.util.find_spec(SUITES)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def missing_extra(request: CertifyRequest, find: Callable[[str], bool] = is_installed) -> str | None:
    """The one-line message naming the extra to install when a dependency of the run is missing, else None.

    Args:
        request: the run (``-n`` needs pytest-xdist; the embedded deployment needs the server extra).
        find: tells whether a module is installed (``is_installed``).
    """
    needed = [*CONFORMANCE_MODULES, SUITES, *(["xdist"] if request.workers is not None else [])]
    missing = [name for name in needed if not find(name)]
    if missing:
        return f"cl-client certify needs the conformance extra ({', '.join(missing)} not installed): {CONFORMANCE_HINT}"
    if request.embedded:
        missing = [name for name in SERVER_MODULES if not find(name)]
        if missing:
            return (
                "cl-client certify without a URL starts the embedded reference deployment, which needs the server "
                f"extra ({', '.join(missing)} not installed): {SERVER_HINT} — or give the URL of a deployment"
            )
    return None


def ignored_server_note(request: CertifyRequest, environ: Mapping[str, str]) -> str | None:
    """The note shown when ``CL_SERVER_URL`` is set but not used (no URL: the embedded deployment), else None.

    Args:
        request: the run.
        environ: the caller's environment.
    """
    exported = environ.get("CL_SERVER_URL", "").strip()
    if not request.embedded or not exported:
        return None
    return (
        f"note: CL_SERVER_URL ({exported}) is not used without a URL: certifying the embedded reference "
        'deployment; cl-client certify "$CL_SERVER_URL" certifies that server'
    )


def _workers(value: str) -> str:
    text = value.strip().lower()
    if text in ("auto", "logical") or (text.isdigit() and int(text) >= 0):
        return text
    raise CertifyUsageError(f"-n: expected a number of processes or 'auto', got {value!r}")


def _chooses_dist(pytest_args: Sequence[str]) -> bool:
    """True when the pytest arguments after ``--`` choose pytest-xdist's distribution themselves.

    Otherwise certify distributes by module (``--dist loadscope``): each module's checks run in one process, so
    a module fixture, such as a workflow's jobs checked part by part, is set up once instead of once per process
    (about 1.4x faster for the whole suites with ``-n 4``, and no duplicate workflow load on the deployment).
    """
    return any(a in ("--dist", "-d") or a.startswith("--dist=") for a in pytest_args)


def _rows(rows: Sequence[str]) -> str:
    names = [name.strip().replace("-", "_") for item in rows for name in item.split(",")]
    names = [name for name in names if name]
    if not names:
        raise CertifyUsageError("--plugins: expected plugin names, 'protocol' or 'workflows' (comma-separated)")
    return ",".join(dict.fromkeys(names))


def _carries_credentials(url: str) -> bool:
    return "@" in url


def build_command(
    request: CertifyRequest,
    *,
    suites: Path,
    environ: Mapping[str, str],
    executable: str | None = None,
    find: Callable[[str], bool] = is_installed,
) -> PytestCommand:
    """Build the pytest command line and environment of a certification run (no I/O).

    Args:
        request: what to certify and how.
        suites: the directory of ``pytest_cl.conformance`` (``suite_dir()``).
        environ: the caller's environment (the child's starts as a copy of it).
        executable: the Python interpreter (default ``sys.executable``).
        find: tells whether a module is installed, for the ini values of optional plugins (pytest-timeout,
            pytest-asyncio); an ini key of a plugin that is not installed would only produce a warning.

    Raises:
        CertifyUsageError: a URL that is not http(s), ``--mqtt`` without a URL, a bad ``-n`` or ``--plugins``.
    """
    env = dict(environ)
    where = str(suites)
    argv = [executable or sys.executable, "-P", "-m", "pytest", "-c", os.devnull, "--rootdir", where]
    argv += ["--confcutdir", where, "-p", "no:cacheprovider", "-q"]
    if find("pytest_timeout"):
        argv += ["-o", f"timeout={TEST_TIMEOUT_S}"]
    if find("pytest_asyncio"):  # silences its warning about an unset loop scope (no ini file is read)
        argv += ["-o", "asyncio_default_fixture_loop_scope=function"]

    if request.url is None:
        env.pop("CL_SERVER_URL", None)  # the cl plugin would read it: no URL means the embedded deployment
        if request.mqtt is not None and request.mqtt.strip().lower() not in MQTT_OFF:
            raise CertifyUsageError(
                "--mqtt URL applies to a deployment given by URL; the embedded deployment uses its own broker "
                "(--mqtt off certifies it by polling)"
            )
    else:
        if not request.url.startswith(("http://", "https://")):
            raise CertifyUsageError(f"URL: expected the http(s) URL of a compute API, got {request.url!r}")
        argv += _setting("--cl-server", "CL_SERVER_URL", request.url, env)
    if request.mqtt is not None:
        argv += _setting("--cl-mqtt", "CL_MQTT_URL", request.mqtt, env)
    for name, variable in SECRET_VARIABLES:
        value = cast(str | None, getattr(request, name))
        if value is not None:
            env[variable] = value
    for variable, alias in VARIABLE_ALIASES:
        if not env.get(variable, "").strip() and env.get(alias, "").strip():
            env[variable] = env[alias]

    if request.strict:
        argv.append("--cl-strict")
    if request.report is not None:
        argv += ["--cl-report", os.path.abspath(request.report)]
    if request.rows:
        argv += ["--cl-rows", _rows(request.rows)]
    if request.expect_lacks is not None:
        lacks = request.expect_lacks
        argv += ["--cl-expect-lacks", os.path.abspath(lacks) if os.sep in lacks or os.path.exists(lacks) else lacks]
    if request.profile is not None:
        if not request.embedded:
            raise CertifyUsageError("--profile chooses the behaviour of the embedded deployment; it takes no URL")
        argv += ["--cl-embedded-profile", request.profile]
    if request.workers is not None:
        argv += ["-n", _workers(request.workers)]
        if not _chooses_dist(request.pytest_args):
            argv += ["--dist", "loadscope"]
    argv.append(where)
    argv += request.pytest_args
    return PytestCommand(tuple(argv), env)


def _setting(flag: str, variable: str, value: str, env: dict[str, str]) -> list[str]:
    """Pass a URL as ``flag`` on the command line, or through ``variable`` when it carries credentials."""
    if _carries_credentials(value):
        env[variable] = value
        return []
    return [flag, value]


class SignalRelay:
    """Relays a termination request to the pytest child so that its clean-up runs.

    Ctrl-C in a terminal reaches the child directly (it shares this process group), so SIGINT is only
    ignored here: pytest stops, deletes its jobs, stops the embedded deployment and exits 2 (interrupted).
    SIGTERM is sent to this process alone (by a supervisor, ``kill``, ``uv run``) and relayed as SIGTERM:
    pytest_cl turns it into the same clean interrupt as Ctrl-C (under xdist the controller passes it on to its
    workers, so each deletes its jobs) and exits 2. A SIGTERM that arrives before the child exists is
    remembered (``terminated``), and the child is not started.

    Attributes:
        child: the pytest process, once started.
        relayed: how many SIGTERMs were received.
        pending: a SIGTERM came while ``child`` was not set yet (``attach`` relays it).
    """

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.relayed = 0
        self.pending = False

    @property
    def terminated(self) -> bool:
        """Whether a SIGTERM was received."""
        return self.relayed > 0

    def on_terminate(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler for SIGTERM: relay it to the child."""
        del signum, frame
        if self.child is None:
            self.pending = True
        else:
            self.child.send_signal(signal.SIGTERM)
        self.relayed += 1

    def attach(self, child: subprocess.Popen[bytes]) -> None:
        """Set the child; relay a SIGTERM that came while it was being started."""
        self.child = child
        if self.pending:
            self.pending = False
            child.send_signal(signal.SIGTERM)

    @staticmethod
    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        """Signal handler for SIGINT: nothing to do, the child got the same signal (the wait goes on)."""
        del signum, frame

    @contextmanager
    def installed(self) -> Generator[None]:
        """Install both handlers for the duration of the block (main thread only; restored afterwards).

        Python-level handlers are reset to the default in a child by ``exec``, so the child started inside
        the block reacts to SIGINT and SIGTERM as usual.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous_int = signal.signal(signal.SIGINT, self.on_interrupt)
        previous_term = signal.signal(signal.SIGTERM, self.on_terminate)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)


def run_pytest(command: PytestCommand) -> int:
    """Run pytest in a child process (its output streams live) and return its exit code.

    The wait survives interrupts (see ``SignalRelay``), so the code is pytest's own: 0 all passed, 1 a test
    failed, 2 interrupted, 3 internal error, 4 usage error, 5 no tests selected; 128 + N when the child was
    killed by signal N (and 143 when this process got SIGTERM before the child started).

    Raises:
        OSError: the interpreter could not be started.
    """
    relay = SignalRelay()
    with relay.installed():
        if relay.terminated:  # pragma: no cover - a SIGTERM in the few statements before this line
            return 128 + signal.SIGTERM
        child = subprocess.Popen(command.argv, env=dict(command.env))
        relay.attach(child)
        code = child.wait()  # interrupted by a signal, the wait resumes after its handler (PEP 475)
    return code if code >= 0 else 128 - code


class _CertifyCommand(click.Command):
    """``certify``: what follows ``--`` goes to pytest untouched (click never parses it)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Keep the arguments after ``--`` for pytest; parse the rest as usual."""
        if "--" in args:
            cut = args.index("--")
            ctx.meta[_PYTEST_ARGS] = tuple(args[cut + 1 :])
            args = args[:cut]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        """Show ``[-- PYTEST_ARGS...]`` in the usage line."""
        return [*super().collect_usage_pieces(ctx), "[-- PYTEST_ARGS...]"]


@click.command("certify", cls=_CertifyCommand)
@click.argument("url", required=False)
@click.option("--mqtt", metavar="URL|off", default=None,
              help="Broker URL, or 'off' to poll [default: found on the URL's host; embedded: its own].")  # fmt: skip
@click.option("-n", "workers", metavar="N", default=None,
              help="Run the checks in N processes (pytest-xdist, by module: --dist loadscope; 'auto').")  # fmt: skip
@click.option("--plugins", "rows", metavar="A,B", multiple=True,
              help="Only these matrix rows: plugin names, 'protocol', 'workflows'.")  # fmt: skip
@click.option("--report", metavar="PATH", type=click.Path(dir_okay=False), default=None,
              help="Write the report to PATH: PATH.html one self-contained HTML page (+ .json), "
                   "else JSON and Markdown (suffix .md).")  # fmt: skip
@click.option("--strict", is_flag=True, help="Missing workers and checks that need a [fix] fail.")
@click.option("--expect-lacks", metavar="FILE|NAME", default=None,
              help="The 'deployment lacks' entries the deployment is known to have, and the security findings it "
                   "acknowledges after a 'security:' line (a file, one per line, or a packaged list: "
                   "upstream-2026-01, upstream-2026-02, or 'upstream' for the release the deployment looks like): a "
                   "new or a missing one fails the run.")  # fmt: skip
@click.option("--profile", metavar="NAME", default=None,
              help="Embedded deployment only: behave as 'fixed' (default) or 'upstream-2026-01'.")  # fmt: skip
@click.option("--token", metavar="JWT", default=None, help="Bearer token [env CL_TOKEN].")
@click.option("--username", default=None, help="Log in at the auth service [env CL_USERNAME].")
@click.option("--password", default=None, help="Password for --username [env CL_PASSWORD].")
@click.option("--auth-url", metavar="URL", default=None, help="Auth service URL [env CL_AUTH_URL, AUTH_URL].")
@click.pass_context
def certify(
    ctx: click.Context,
    url: str | None,
    mqtt: str | None,
    workers: str | None,
    rows: tuple[str, ...],
    report: str | None,
    strict: bool,
    expect_lacks: str | None,
    profile: str | None,
    token: str | None,
    username: str | None,
    password: str | None,
    auth_url: str | None,
) -> None:
    """Certify a deployment: run the packaged conformance suites through pytest.

    pytest runs pytest_cl.conformance against URL (the compute API) and ends with the conformance matrix:
    one row per plugin, protocol, workflows. Without URL: the global --server option when given, else the
    embedded reference deployment (needs the server extra). CL_SERVER_URL is not used implicitly:
    cl-client certify "$CL_SERVER_URL" certifies that server.

    Credentials reach pytest through CL_TOKEN, CL_USERNAME, CL_PASSWORD and CL_AUTH_URL, never on its
    command line; exported ones are used as they are. The pytest configuration of the current directory
    (pytest.ini, pyproject.toml, conftest.py) is ignored; PYTEST_ADDOPTS applies. pytest runs with -q
    (add  -- -vv  for one line per check).

    Exit code: pytest's (0 all passed, 1 a check failed, 2 interrupted, 4 usage error or deployment
    unreachable, 5 no check selected); 3 when the conformance (or server) extra is missing.

    \b
    Examples:
      cl-client certify                              # the embedded reference deployment
      cl-client certify http://host:8002 --mqtt mqtt://host:1883 -n 4 --report cert.json
      cl-client certify http://host:8002 --plugins hash,exif --strict
      cl-client certify http://host:8002 --expect-lacks upstream   # the known gaps of the upstream it looks like
      cl-client certify --profile upstream-2026-01 --expect-lacks upstream-2026-01
      cl-client certify http://host:8002 -- -k md5 -x     # after --: pytest's own options
    """
    st = state(ctx)
    request = CertifyRequest(
        url=url if url is not None else st.server,
        mqtt=mqtt if mqtt is not None else st.mqtt,
        workers=workers,
        report=report,
        strict=strict,
        rows=rows,
        token=token if token is not None else st.token,
        username=username if username is not None else st.username,
        password=password if password is not None else st.password,
        auth_url=auth_url if auth_url is not None else st.auth_url,
        expect_lacks=expect_lacks,
        profile=profile,
        pytest_args=cast(tuple[str, ...], ctx.meta.get(_PYTEST_ARGS, ())),
    )
    problem = missing_extra(request)
    suites = suite_dir()
    if problem is not None or suites is None:
        click.echo(terminal_safe(f"error: {problem or f'{SUITES} is not installed: {CONFORMANCE_HINT}'}"), err=True)
        ctx.exit(EXIT_MISSING_EXTRA)
    try:
        command = build_command(request, suites=suites, environ=os.environ)
    except CertifyUsageError as exc:
        raise click.UsageError(str(exc), ctx) from None
    note = ignored_server_note(request, os.environ)
    if note is not None:
        click.echo(terminal_safe(f"cl-client certify: {note}"), err=True)
    click.echo(terminal_safe(f"cl-client certify: {command.display()}"), err=True)
    ctx.exit(run_pytest(command))
