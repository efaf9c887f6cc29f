"""``cl-client certify [URL]``: certify a deployment with the packaged conformance suites, run by pytest.

Not a second test runner: ``check_request`` and ``check_rows`` check every argument (no network), ``preflight``
contacts a deployment given by URL once (API, credentials, ``--mqtt`` broker), ``build_command`` (a pure
function) turns the options into one pytest command line and environment, ``run_pytest`` runs it in a child
process whose stdout is the terminal (its stderr is relayed in certify's vocabulary: ``--plugins``, never
``--cl-rows``), and the command exits with pytest's exit code. A problem found before pytest starts is one line,
``error: …``, and exit 4 (pytest's usage error). ``CL_CERTIFY_LIVE`` asks the ``cl`` plugin for the live view
(``pytest_cl._live``): a progress display in a terminal, plain lines in CI or a pipe; ``-v`` shows the pytest
command line and pytest's one line per check instead. The conformance matrix is printed by the ``cl`` pytest plugin's
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

import difflib
import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from types import FrameType
from typing import IO, cast
from urllib.parse import urlsplit

import click

from cl_client._cli_common import state, terminal_safe

EXIT_MISSING_EXTRA = 3
#: pytest's usage error, the exit code of every bad argument and of a deployment that cannot be used as given.
EXIT_USAGE = 4
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
#: the environment variable that tells the ``cl`` pytest plugin to draw the live view (``tty`` or ``plain``).
LIVE_VARIABLE = "CL_CERTIFY_LIVE"
#: how long the pre-flight check waits for the deployment's API and broker to answer (a connection that is
#: refused fails at once; this bounds a host that drops packets).
PREFLIGHT_TIMEOUT_S = 10.0
#: pytest's arguments that only collect: nothing is contacted, so neither is the deployment before them.
COLLECT_ONLY = frozenset({"--collect-only", "--co"})
#: pytest_cl's option names in its messages, in certify's vocabulary (most specific first).
VOCABULARY: tuple[tuple[str, str], ...] = (
    ("--cl-server / cl_server / CL_SERVER_URL", "the URL argument"),
    ("--cl-rows / cl_rows / CL_ROWS", "--plugins"),
    (
        "--cl-token (env CL_TOKEN), or --cl-auth-url + --cl-username + --cl-password",
        "--token (env CL_TOKEN), or --auth-url + --username + --password",
    ),
    ("--cl-mqtt URL (ini cl_mqtt, env CL_MQTT_URL)", "--mqtt URL"),
    ("--cl-server URL (env CL_SERVER_URL)", "a URL"),
    ("--cl-server", "the URL argument"),
    ("--cl-mqtt", "--mqtt"),
    ("--cl-rows", "--plugins"),
    ("--cl-expect-lacks", "--expect-lacks"),
    ("--cl-embedded-profile", "--profile"),
    ("--cl-report", "--report"),
    ("--cl-strict", "--strict"),
    ("--cl-token", "--token"),
    ("--cl-username", "--username"),
    ("--cl-password", "--password"),
    ("--cl-auth-url", "--auth-url"),
    ("pytest_cl start the embedded", "certify start the embedded"),
)
#: ini and environment twins that follow an option name in pytest_cl's messages (`` / cl_x / CL_X``, ``(ini …)``)
_TWINS = re.compile(r"(?: / cl_[a-z_]+(?: / CL_[A-Z_]+)?| \(ini cl_[a-z_]+(?:, env CL_[A-Z_]+)?\))")


class CertifyUsageError(ValueError):
    """An argument of ``cl-client certify`` has a value that cannot work (one line, exit 4)."""


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
        live: the live view of the run: ``tty`` (a progress display), ``plain`` (plain lines, for CI and pipes)
            or None (pytest's own output).
        verbose: pytest's one line per check (``-v``) instead of its dots (``-q``).
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
    live: str | None = None
    verbose: bool = False

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
    (about 1.4x faster for the whole suites with ``-n 4``, and no duplicate workflow load on the deployment),
    and keeps the suites' module order (``--no-loadscope-reorder``): the longest modules start first.
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


def _port_problem(parts: object) -> str | None:
    try:
        port = cast(int | None, getattr(parts, "port"))  # noqa: B009 - urlsplit raises on a bad port here
    except ValueError:
        return "its port is not a number from 1 to 65535"
    if port == 0:
        return "its port is not a number from 1 to 65535"
    return None


def url_problem(url: str, name: str = "URL") -> str | None:
    """Why ``url`` is not the http(s) URL of a compute API, in one line naming the argument (None: it is).

    Args:
        url: the positional URL of ``certify`` or ``load`` (or the global ``--server``).
        name: the argument's name in the message.
    """
    text = url.strip()
    parts = urlsplit(text)
    expected = f"{name}: expected the http(s) URL of a compute API such as http://host:8002, got {url!r}"
    if parts.scheme not in ("http", "https"):
        if "://" not in text:
            return f"{expected} (did you mean http://{text}?)"
        return f"{expected} (scheme {parts.scheme!r})"
    if not parts.hostname:
        return f"{expected} (no host)"
    port = _port_problem(parts)
    if port is not None:
        return f"{name}: {url!r}: {port}"
    return None


def mqtt_problem(value: str) -> str | None:
    """Why ``value`` is neither ``off`` nor an MQTT broker URL, in one line naming ``--mqtt`` (None: it is fine).

    Args:
        value: the ``--mqtt`` option.
    """
    text = value.strip()
    if text.lower() in MQTT_OFF:
        return None
    parts = urlsplit(text)
    expected = "--mqtt: expected the broker's URL (mqtt://host:1883, mqtts://host:8883) or off"
    if parts.scheme not in ("mqtt", "mqtts"):
        if "://" not in text:
            return f"{expected}, got {value!r} (did you mean mqtt://{text}?)"
        why = "the broker speaks MQTT, not HTTP" if parts.scheme in ("http", "https") else f"scheme {parts.scheme!r}"
        return f"{expected}, got {value!r} ({why})"
    if not parts.hostname:
        return f"{expected}, got {value!r} (no host)"
    port = _port_problem(parts)
    if port is not None:
        return f"--mqtt: {value!r}: {port}"
    return None


def known_rows(suites: Path) -> list[str]:
    """The matrix rows of the packaged suites: one per ``plugins/test_<plugin>.py``, ``protocol``, ``workflows``.

    Args:
        suites: the directory of ``pytest_cl.conformance``.
    """
    rows: set[str] = set()
    for path in suites.rglob("test_*.py"):
        parts = path.relative_to(suites).parts
        if "protocol" in parts[:-1]:
            rows.add("protocol")
        elif "workflows" in parts[:-1]:
            rows.add("workflows")
        else:
            rows.add(PurePath(path).stem.removeprefix("test_"))
    special = {"protocol": 1, "workflows": 2}
    return sorted(rows, key=lambda r: (special.get(r, 0), r))


def check_rows(rows: Sequence[str], known: Sequence[str]) -> None:
    """Check ``--plugins`` against the rows of the suites (``known``).

    Raises:
        CertifyUsageError: an unknown row (the message names the known ones and a close match).
    """
    if not rows or not known:
        return
    wanted = _rows(rows).split(",")
    unknown = [r for r in wanted if r not in known]
    if not unknown:
        return
    close = [m for r in unknown for m in difflib.get_close_matches(r, known, n=1)]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise CertifyUsageError(f"--plugins: unknown row(s): {', '.join(unknown)}{hint}; known: {', '.join(known)}")


def check_request(request: CertifyRequest) -> None:
    """Check the arguments that need no network: the URL, ``--mqtt``, ``-n``, ``--plugins``, ``--profile``.

    Raises:
        CertifyUsageError: the first argument that cannot work, in one line in certify's vocabulary.
    """
    if request.url is not None:
        problem = url_problem(request.url)
        if problem is not None:
            raise CertifyUsageError(problem)
    if request.mqtt is not None:
        problem = mqtt_problem(request.mqtt)
        if problem is not None:
            raise CertifyUsageError(problem)
    if request.workers is not None:
        _workers(request.workers)
    if request.rows:
        _rows(request.rows)


def _contact_problem(server_url: str, exc: BaseException, embedded_hint: bool) -> str:
    from cl_client import AuthenticationError, ComputeConnectionError, HTTPStatusError, PermissionDeniedError

    creds = "fix --token (env CL_TOKEN), or --username + --password (+ --auth-url)"
    if isinstance(exc, AuthenticationError):
        return f"the deployment at {server_url} refused the credentials ({exc}); {creds}"
    if isinstance(exc, PermissionDeniedError):
        return (
            f"the credentials may not run jobs at {server_url} ({exc}): the token needs the "
            f"'ai_inference_support' permission (or is_admin); {creds}"
        )
    if isinstance(exc, ComputeConnectionError):
        hint = " (without a URL certify starts the embedded reference deployment)" if embedded_hint else ""
        return f"the compute API at {server_url} is not reachable ({exc}); start the deployment or fix the URL{hint}"
    if isinstance(exc, HTTPStatusError):
        return (
            f"{server_url} answered {exc.status_code} to {exc.method} {exc.url}: is the URL argument the compute "
            "API (default port 8002)?"
        )
    return f"{server_url} does not look like a CL compute API ({exc}); check the URL argument"


def preflight(request: CertifyRequest) -> str | None:
    """Contact the deployment given by URL once: its API answers, the credentials open its job routes, and the
    ``--mqtt`` broker accepts a connection. Returns the one-line problem, or None (also for the embedded one).

    A refused connection fails at once; a host that drops packets takes at most ``PREFLIGHT_TIMEOUT_S``.
    """
    if request.url is None:
        return None
    return deployment_problem(
        request.url,
        request.mqtt,
        token=request.token,
        username=request.username,
        password=request.password,
        auth_url=request.auth_url,
        embedded_hint=True,
    )


def deployment_problem(
    url: str,
    mqtt: str | None,
    *,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    auth_url: str | None = None,
    embedded_hint: bool = False,
) -> str | None:
    """Contact a deployment once (``GET /``, a job that cannot exist, a TCP connection to the broker).

    Args:
        url: the compute API.
        mqtt: the broker URL, ``off`` or None (not checked).
        token: bearer token (None: ``CL_TOKEN``, as the library reads it).
        username: user name at the auth service.
        password: its password.
        auth_url: the auth service.
        embedded_hint: say that ``certify`` without a URL starts the embedded deployment.

    Returns:
        The problem in one line (no secret in it), or None when the deployment can be used as given.
    """
    from cl_client import (
        AuthenticationError,
        ComputeClient,
        ComputeClientConfig,
        ComputeClientError,
        ComputeConnectionError,
        JobNotFoundError,
        PermissionDeniedError,
    )

    url = url.strip()
    try:
        client = ComputeClient(
            url,
            mqtt_url="off",
            auth_url=auth_url,
            token=token,
            username=username,
            password=password,
            config=ComputeClientConfig(max_retries=0, timeout=PREFLIGHT_TIMEOUT_S),
        )
    except ComputeClientError as exc:
        return str(exc)
    with client:
        try:
            client.health()
        except ComputeClientError as exc:
            return _contact_problem(url, exc, embedded_hint)
        try:
            client.get_job(f"cl-certify-probe-{uuid.uuid4()}")
        except JobNotFoundError:
            pass
        except (AuthenticationError, PermissionDeniedError, ComputeConnectionError) as exc:
            return _contact_problem(url, exc, embedded_hint)
        except ComputeClientError:  # anything else about a job that cannot exist is pytest_cl's to judge
            pass
    if mqtt is not None and mqtt.strip().lower() not in MQTT_OFF:
        return _broker_problem(mqtt.strip())
    return None


def _broker_problem(mqtt_url: str) -> str | None:
    parts = urlsplit(mqtt_url)
    host = parts.hostname or ""
    port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    try:
        with socket.create_connection((host, port), timeout=PREFLIGHT_TIMEOUT_S):
            return None
    except OSError as exc:
        shown = f"{parts.scheme}://{host}:{port}"
        reason = exc.strerror or type(exc).__name__
        return (
            f"--mqtt: no broker accepts connections at {shown} ({reason}); pass the deployment's broker, or "
            "--mqtt off to poll"
        )


def in_certify_words(line: str) -> str:
    """Rewrite a line of pytest_cl's output in certify's vocabulary (``--cl-rows`` -> ``--plugins``, ...)."""
    if "--cl-" not in line and "cl_server" not in line and "pytest_cl" not in line:
        return line
    line = _TWINS.sub("", line)
    for old, new in VOCABULARY:
        line = line.replace(old, new)
    if line.startswith("ERROR: cl: "):
        line = "error: " + line.removeprefix("ERROR: cl: ")
    return line


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
    argv += ["--confcutdir", where, "-p", "no:cacheprovider", "-v" if request.verbose else "-q"]
    env.pop(LIVE_VARIABLE, None)
    if request.live is not None:
        env[LIVE_VARIABLE] = request.live
        argv += ["-o", "console_output_style=classic"]  # no [ 42%] after the dots the live view leaves out
        if request.live == "plain":
            argv.append("--color=no")
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
        problem = url_problem(request.url)
        if problem is not None:
            raise CertifyUsageError(problem)
        argv += _setting("--cl-server", "CL_SERVER_URL", request.url.strip(), env)
    if request.mqtt is not None:
        problem = mqtt_problem(request.mqtt)
        if problem is not None:
            raise CertifyUsageError(problem)
        argv += _setting("--cl-mqtt", "CL_MQTT_URL", request.mqtt.strip(), env)
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
        if request.embedded:
            argv.append("--cl-embedded-early")  # the deployment starts while the xdist workers start and collect
        if not _chooses_dist(request.pytest_args):
            # xdist (3.8) would hand out the modules with the most checks first; the suites order them longest first
            argv += ["--dist", "loadscope", "--no-loadscope-reorder"]
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


def _translate(source: IO[bytes], sink: Callable[[str], None]) -> None:
    """Copy the child's stderr line by line, in certify's vocabulary (``in_certify_words``)."""
    for raw in iter(source.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        if line.strip():  # pytest ends a usage error with an empty line
            sink(in_certify_words(line))
    source.close()


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_pytest(command: PytestCommand, stderr: Callable[[str], None] | None = None) -> int:
    """Run pytest in a child process (its output streams live) and return its exit code.

    The child's stdout is this process's (the terminal: pytest's colours and the live view); its stderr, where
    pytest writes usage errors, is relayed line by line in certify's vocabulary (``--plugins``, not
    ``--cl-rows``). The wait survives interrupts (see ``SignalRelay``), so the code is pytest's own: 0 all
    passed, 1 a test failed, 2 interrupted, 3 internal error, 4 usage error, 5 no tests selected; 128 + N when
    the child was killed by signal N (and 143 when this process got SIGTERM before the child started).

    Args:
        command: the run.
        stderr: where the child's stderr lines go (default: this process's stderr).

    Raises:
        OSError: the interpreter could not be started.
    """
    relay = SignalRelay()
    with relay.installed():
        if relay.terminated:  # pragma: no cover - a SIGTERM in the few statements before this line
            return 128 + signal.SIGTERM
        child = subprocess.Popen(command.argv, env=dict(command.env), stderr=subprocess.PIPE)
        relay.attach(child)
        assert child.stderr is not None
        relay_thread = threading.Thread(
            target=_translate, args=(child.stderr, stderr or _to_stderr), name="cl-certify-stderr", daemon=True
        )
        relay_thread.start()
        code = child.wait()  # interrupted by a signal, the wait resumes after its handler (PEP 475)
        relay_thread.join(10)
    return code if code >= 0 else 128 - code


class CertifyError(click.ClickException):
    """A bad argument of ``certify``, or a deployment it cannot use as given: one line ``error: …`` on stderr.

    Args:
        message: the line (without ``error:``).
        exit_code: ``EXIT_USAGE`` (4, pytest's usage error) unless given.
    """

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = exit_code

    @property
    def exit_code(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]
        """The exit code click ends the command with."""
        return self.code

    def show(self, file: IO[str] | None = None) -> None:
        """Print the one line to stderr (no usage block: the message names the argument)."""
        click.echo(terminal_safe(f"error: {self.format_message()}"), err=True, file=file)


class OneLineUsageCommand(click.Command):
    """A command whose parse errors (an unknown option, a missing or bad value) are one line ``error: …`` and
    ``usage_exit_code`` (click's default: a usage block and the error, exit 2)."""

    usage_exit_code = 2

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse as click does.

        Raises:
            CertifyError: click could not parse the arguments (one line, ``usage_exit_code``).
        """
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            hint = self.hint(exc)
            raise CertifyError(
                f"{exc.format_message().rstrip('.')}{hint}; see cl-client {ctx.command_path.split(' ', 1)[-1]} --help",
                self.usage_exit_code,
            ) from None

    def hint(self, exc: click.UsageError) -> str:
        """More words for a parse error (none by default)."""
        del exc
        return ""


class _CertifyCommand(click.Command):
    """``certify``: what follows ``--`` goes to pytest untouched (click never parses it); a bad option is one
    line and exit 4, like every other bad argument of ``certify``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Keep the arguments after ``--`` for pytest; parse the rest as usual.

        Raises:
            CertifyError: click could not parse the arguments (an unknown option, a missing value).
        """
        if "--" in args:
            cut = args.index("--")
            ctx.meta[_PYTEST_ARGS] = tuple(args[cut + 1 :])
            args = args[:cut]
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            hint = ""
            if isinstance(exc, click.NoSuchOption):
                hint = " (pytest's own options go after --: cl-client certify URL -- -k md5)"
            raise CertifyError(f"{exc.format_message().rstrip('.')}{hint}; see cl-client certify --help") from None

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
              help="Embedded deployment only: behave as 'fixed' (default), 'upstream-2026-01', 'upstream-2026-02' "
                   "or 'upstream-2026-02-20' (upstream's releases; cl-compute's profile table).")  # fmt: skip
@click.option("--token", metavar="JWT", default=None, help="Bearer token [env CL_TOKEN].")
@click.option("--username", default=None, help="Log in at the auth service [env CL_USERNAME].")
@click.option("--password", default=None, help="Password for --username [env CL_PASSWORD].")
@click.option("--auth-url", metavar="URL", default=None, help="Auth service URL [env CL_AUTH_URL, AUTH_URL].")
@click.option("-v", "--verbose", is_flag=True,
              help="Print the pytest command line, and one line per check instead of the live view.")  # fmt: skip
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
    verbose: bool,
) -> None:
    """Certify a deployment: run the packaged conformance suites through pytest.

    pytest runs pytest_cl.conformance against URL (the compute API) and ends with the conformance matrix:
    one row per plugin, protocol, workflows. Without URL: the global --server option when given, else the
    embedded reference deployment (needs the server extra). CL_SERVER_URL is not used implicitly:
    cl-client certify "$CL_SERVER_URL" certifies that server.

    Credentials reach pytest through CL_TOKEN, CL_USERNAME, CL_PASSWORD and CL_AUTH_URL, never on its
    command line; exported ones are used as they are. The pytest configuration of the current directory
    (pytest.ini, pyproject.toml, conftest.py) is ignored; PYTEST_ADDOPTS applies.

    While it runs: in a terminal a progress display (checks done per row, failures so far) and a line when
    the embedded deployment is starting and ready; in CI or a pipe, plain lines. -v shows pytest's command
    line and one line per check instead.

    Before pytest starts, every argument is checked, and a deployment given by URL is contacted once (its
    API, the credentials, the --mqtt broker): a problem is one line and exit 4.

    \b
    Exit codes (pytest's):
      0  every check passed
      1  a check failed (or a security finding, or --expect-lacks did not match)
      2  interrupted (Ctrl-C, SIGTERM)
      3  the conformance (or, without URL, the server) extra is missing
      4  a bad argument, or a deployment that cannot be reached or refuses the credentials
      5  no check selected

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
        live=None if verbose else live_mode(sys.stdout, os.environ),
        verbose=verbose,
    )
    problem = missing_extra(request)
    suites = suite_dir()
    if problem is not None or suites is None:
        raise CertifyError(problem or f"{SUITES} is not installed: {CONFORMANCE_HINT}", EXIT_MISSING_EXTRA)
    try:
        check_request(request)
        check_rows(request.rows, known_rows(suites))
        command = build_command(request, suites=suites, environ=os.environ)
    except CertifyUsageError as exc:
        raise CertifyError(str(exc)) from None
    note = ignored_server_note(request, os.environ)
    if note is not None:
        click.echo(terminal_safe(f"cl-client certify: {note}"), err=True)
    if not COLLECT_ONLY.intersection(request.pytest_args):
        problem = preflight(request)
        if problem is not None:
            raise CertifyError(problem)
    if verbose:
        click.echo(terminal_safe(f"cl-client certify: {command.display()}"), err=True)
    ctx.exit(run_pytest(command))


def live_mode(stream: object, environ: Mapping[str, str]) -> str:
    """``tty`` (a progress display) when ``stream`` is a terminal and ``CI`` is not set, else ``plain``.

    Args:
        stream: the stream the child's output goes to (this process's stdout).
        environ: the environment (``CI`` set to anything but ``""``/``0``/``false`` means CI).
    """
    ci = environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    isatty = cast(Callable[[], bool] | None, getattr(stream, "isatty", None))
    try:
        terminal = bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        terminal = False
    return "tty" if terminal and not ci and environ.get("TERM", "") != "dumb" else "plain"
