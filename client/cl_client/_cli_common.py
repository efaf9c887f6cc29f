"""Shared parts of the ``cl-client`` command: global state, exit codes, error lines, output helpers."""

from __future__ import annotations

import copy
import json
import sys
import traceback
import unicodedata
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import click
from rich.console import Console

from cl_client._exceptions import (
    AuthenticationError,
    ComputeClientError,
    ComputeConnectionError,
    ConfigurationError,
    HTTPStatusError,
    JobFailedError,
    PermissionDeniedError,
    ValidationError,
)

if TYPE_CHECKING:
    from cl_client._client import ComputeClient

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
#: 128 + SIGTERM: the command was stopped by SIGTERM (after its clean-up)
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM reached the command: it stops like after Ctrl-C (partial downloads removed), exit code 143."""


def _on_sigterm(signum: int, frame: object) -> None:
    del signum, frame
    raise Terminated("SIGTERM")


@contextmanager
def sigterm_stops_like_ctrl_c() -> Generator[None]:
    """Within the block, SIGTERM raises ``Terminated`` in the main thread, so ``finally`` clean-ups run.

    Only where SIGTERM has its default action (a handler someone else installed is left alone) and in the
    main thread; the previous action comes back afterwards. Commands that relay SIGTERM to a child (``certify``,
    ``load``) install their own handler for their duration.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: HTTP statuses that refuse what the user gave (exit code 2): bad fields (400, 422), an input too big (413)
USAGE_STATUSES = frozenset({400, 413, 422})


def exit_code_for(exc: BaseException) -> int:
    """Map an error to the documented exit code.

    2: the user's input was refused (a bad option or setting, a missing file, or the server answered 400, 413 or
    422); 3: the server or the auth service could not be reached, or refused the credentials (401, 403); 1:
    everything else (a job that failed, another HTTP error, a server error).
    """
    if isinstance(exc, ConfigurationError | ValidationError | FileNotFoundError | IsADirectoryError):
        return EXIT_USAGE
    if isinstance(exc, HTTPStatusError) and exc.status_code in USAGE_STATUSES:
        return EXIT_USAGE
    if isinstance(exc, ComputeConnectionError | AuthenticationError | PermissionDeniedError):
        return EXIT_CONNECTION
    return EXIT_JOB_FAILED


def terminal_safe(value: object, *, keep_newlines: bool = False) -> str:
    """``str(value)`` with the characters that act on a terminal written as escapes: safe to print.

    Control characters (``\x1b[31m``, a carriage return, a backspace) would drive the terminal, and bidi and other
    invisible format characters (U+202E) would show a name other than the real one; each becomes ``\x1b`` /
    ``\u202e``. Every name, id and server text the CLI prints goes through it (file names, job ids, server
    details, error messages); JSON output escapes them already. Rich markup in the result is not interpreted
    where the CLI prints it (``markup=False``, ``rich.text.Text``, ``rich.markup.escape``).

    Args:
        value: what is printed.
        keep_newlines: leave ``\n`` (and tabs) as they are (multi-line messages); else they are escaped too.
    """
    text = str(value)
    out: list[str] = []
    for ch in text:
        if keep_newlines and ch in "\n\t":
            out.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") or "\ud800" <= ch <= "\udfff":
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def error_line(exc: BaseException) -> str:
    """One readable line for an error (no traceback)."""
    if isinstance(exc, ComputeConnectionError):
        return f"cannot reach the server: {exc} (check --server / CL_SERVER_URL)"
    if isinstance(exc, AuthenticationError):
        return f"authentication failed: {exc} (check --token or --username/--password)"
    if isinstance(exc, PermissionDeniedError):
        return f"permission denied: {exc}"
    if isinstance(exc, JobFailedError | ConfigurationError | HTTPStatusError | ComputeClientError):
        return str(exc)
    if isinstance(exc, OSError):
        filename = cast(str | None, exc.filename)
        return f"{exc.strerror or exc}: {filename}" if filename else str(exc)
    return f"{type(exc).__name__}: {exc}"


@dataclass
class CliState:
    """The global options, resolved later by the library's own precedence (option > env > default)."""

    server: str | None = None
    mqtt: str | None = None
    token: str | None = None
    username: str | None = None
    password: str | None = None
    auth_url: str | None = None
    timeout: float | None = None
    json: bool = False
    debug: bool = False
    progress: bool | None = None
    out: Console = field(default_factory=lambda: Console(highlight=False, soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True))

    def client(self, *, events: bool = True) -> ComputeClient:
        """A ``ComputeClient`` from the options (``events=False``: no MQTT connection, for one-shot REST calls).

        Raises:
            ConfigurationError: an invalid URL or setting.
        """
        from cl_client._client import ComputeClient

        return ComputeClient(
            self.server,
            mqtt_url=self.mqtt if events else "off",
            auth_url=self.auth_url,
            token=self.token,
            username=self.username,
            password=self.password,
            timeout=self.timeout,
        )

    def print_json(self, data: object) -> None:
        """Print machine output on stdout (one JSON document)."""
        click.echo(json.dumps(data, indent=2, default=str))

    def show_progress(self) -> bool:
        """Whether to draw live progress (a terminal on stderr, no ``--json``, unless forced)."""
        if self.progress is not None:
            return self.progress
        return not self.json and self.err.is_terminal


def state(ctx: click.Context) -> CliState:
    """The ``CliState`` of the root command."""
    found = ctx.find_object(CliState)
    return found if found is not None else ctx.ensure_object(CliState)


@contextmanager
def handled(ctx: click.Context) -> Generator[None]:
    """Turn library errors into one line on stderr and the documented exit code (``--debug``: traceback)."""
    try:
        yield
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
        raise
    except Terminated:
        click.echo("terminated (SIGTERM)", err=True)
        ctx.exit(EXIT_TERMINATED)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        ctx.exit(130)
    except Exception as exc:
        st = ctx.find_object(CliState)
        if (st is not None and st.debug) or "--debug" in sys.argv:
            traceback.print_exc()
        click.echo(f"error: {terminal_safe(error_line(exc), keep_newlines=True)}", err=True)
        ctx.exit(exit_code_for(exc))


def alias(command: click.Command, name: str, of: str) -> click.Command:
    """The same command under another name (upstream's CLI spelling), saying in ``--help`` what it is an alias of.

    Args:
        command: the original command (its parameters and callback are shared).
        name: the alias.
        of: the original's full spelling for the help text (``job download``).

    Returns:
        A shallow copy of ``command`` named ``name``.
    """
    copied = copy.copy(command)
    copied.name = name
    note = f"Alias of `cl-client {of}` (upstream's spelling)."
    copied.short_help = note
    copied.help = f"{note}\n\n{command.help or ''}".rstrip()
    return copied
