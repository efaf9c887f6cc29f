"""``--cl-expect-lacks FILE``: the run's "deployment lacks …" entries and security findings must equal a committed list.

A deployment that is not the reference one lacks some **[fix]** es of PROTOCOL.md; the suites report each as
"deployment lacks <what>" instead of a failure. An operator who knows their deployment's gaps commits them
in a file, one line per gap, and passes it with ``--cl-expect-lacks``: a new entry (a new gap, or a false one)
and a lost entry (a gap that is no longer detected, or that was fixed) both fail the run, with the lines to
add or remove.

**Security findings** (checks marked ``cl_security(what)``: a caller can name server paths, an upload is written
outside its job's folder, tokens without ``exp`` are accepted, admin routes are open in guest mode while auth is
configured) are never a tolerated gap: every finding fails the run unless the file acknowledges it in its
``security:`` section. Acknowledged or not, findings are listed first (red) in the terminal summary and the
reports. An acknowledged finding that the run looked for and did not see is reported like a lost lack.

The suites ship the lists of upstream's January and February 2026 compute services as ``upstream-2026-01`` and
``upstream-2026-02`` (``pytest_cl/conformance/expected/<name>.lacks``): give that name instead of a path, or
``upstream`` to let the run pick the list of the upstream release the deployment looks like
(:mod:`pytest_cl._upstream`).

File format: one entry per line; lines that start with ``#`` and blank lines are ignored. A line that starts with
``?`` is an optional entry: a gap that shows only with some timing or history (a worker that died without its
will, a worker claiming a job in the moment between its insertion and its ``queued`` event), which the run may
report or not. An entry is the text after
"deployment lacks" of a ``cl_needs_fix`` check (its marker's argument), or the [fix] named by a lifecycle
finding (for example ``terminal 'error' events over MQTT for failed jobs (upstream is silent)``): the same gap seen by
several checks or jobs is one entry. A line ``security:`` starts the security section: every entry after it is an
acknowledged security finding (the text of a ``cl_security`` marker); security entries cannot be optional::

    # gaps
    a real updated_at (upstream echoes created_at)
    ? one job's events arrive in state order (upstream's API and worker publish independently)
    security:
    tokens without 'exp' accepted (a leaked token never expires)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_NEEDS_FIX = "needs fix: "
#: a lifecycle finding: ``job <id> <what happened>: <the [fix] it lacks>``
_LIFECYCLE = re.compile(r"^job \S+ [^:]*: (?P<fix>.+)$")


class ExpectLacksError(ValueError):
    """The expectation file cannot be read (the message names it and why)."""


def lack_key(text: str) -> str:
    """Return the entry of one reported lack: the same gap seen by several checks or jobs gives one key.

    Args:
        text: a lack as the plugin records it (``needs fix: <what>`` or a lifecycle finding).
    """
    if text.startswith(_NEEDS_FIX):
        return text.removeprefix(_NEEDS_FIX).strip()
    match = _LIFECYCLE.match(text)
    return match.group("fix").strip() if match else text.strip()


def packaged_lists() -> list[str]:
    """Names of the expectation files shipped with the suites (``pytest_cl/conformance/expected/<name>.lacks``)."""
    try:
        folder = resources.files("pytest_cl.conformance") / "expected"
        return sorted(e.name.removesuffix(".lacks") for e in folder.iterdir() if e.name.endswith(".lacks"))
    except (ModuleNotFoundError, OSError):
        return []


#: the line that starts the security section of an expectation file
SECURITY_SECTION = "security:"


@dataclass(frozen=True)
class ExpectedLacks:
    """The entries of an expectation file.

    Attributes:
        required: entries the run must report.
        optional: entries (``? `` lines) the run may report or not: gaps seen only with some timing or history.
        security: acknowledged security findings (the ``security:`` section): the run must report each.
    """

    required: frozenset[str]
    optional: frozenset[str] = frozenset()
    security: frozenset[str] = frozenset()

    def lines(self) -> list[str]:
        """Every entry as the file writes it (optional ones with ``? ``, then the security section), sorted."""
        out = sorted([*self.required, *(f"? {e}" for e in self.optional)])
        if self.security:
            out += [SECURITY_SECTION, *sorted(self.security)]
        return out


def parse_expected(text: str, source: str = "the expectation file") -> ExpectedLacks:
    """Parse the text of an expectation file (see the module documentation).

    Args:
        text: the file's text.
        source: its name, for the messages.

    Raises:
        ExpectLacksError: an optional (``?``) entry in the security section, or a second ``security:`` line.
    """
    required: set[str] = set()
    optional: set[str] = set()
    security: set[str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.lower() == SECURITY_SECTION:
            if security is not None:
                raise ExpectLacksError(f"--cl-expect-lacks: {source} line {number}: a second '{SECURITY_SECTION}' line")
            security = set()
        elif security is not None:
            if entry.startswith("?"):
                raise ExpectLacksError(
                    f"--cl-expect-lacks: {source} line {number}: security findings cannot be optional ({entry!r}): "
                    "acknowledge a finding without '?', or fix the deployment"
                )
            security.add(entry)
        elif entry.startswith("?"):
            optional.add(entry[1:].strip())
        else:
            required.add(entry)
    return ExpectedLacks(frozenset(required), frozenset(optional - required), frozenset(security or ()))


def read_expected(path: str | Path) -> ExpectedLacks:
    """Read an expectation file (see the module documentation).

    Args:
        path: the file, or the name of a packaged list (:func:`packaged_lists`, e.g. ``upstream-2026-01``) when
            no such file exists.

    Raises:
        ExpectLacksError: it does not exist or cannot be read.
    """
    name = str(path)
    try:
        if not Path(path).exists() and name in packaged_lists():
            text = (resources.files("pytest_cl.conformance") / "expected" / f"{name}.lacks").read_text("utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        known = ", ".join(packaged_lists()) or "none"
        raise ExpectLacksError(
            f"--cl-expect-lacks: cannot read {path}: {exc.strerror or exc} (packaged lists: {known})"
        ) from None
    return parse_expected(text, name)


@dataclass(frozen=True)
class LacksComparison:
    """The run's lacks against the expectation file.

    Attributes:
        source: the expectation file.
        new: entries the run reported that the file does not list (a new gap, or a false one).
        lost: entries the file lists that the run did not report although a check that looks for them ran (no
            longer detected, or fixed).
        seen: every entry the run reported.
        unchecked: entries the file lists whose checks did not run (skipped, deselected, not checked): the run
            says nothing about them, so they are neither reported nor lost.
    """

    source: str
    new: tuple[str, ...]
    lost: tuple[str, ...]
    seen: tuple[str, ...]
    unchecked: tuple[str, ...] = ()
    security_lost: tuple[str, ...] = ()
    security_unchecked: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the run reported exactly the expected entries (and saw every acknowledged security finding)."""
        return not (self.new or self.lost or self.security_lost)

    def lines(self) -> list[str]:
        """The terminal summary lines (a security finding the file does not acknowledge is listed by the security
        section, not here)."""
        out: list[str] = [f"not checked by this run (its checks did not run): {e}" for e in self.unchecked]
        out += [f"not checked by this run (its checks did not run): security: {e}" for e in self.security_unchecked]
        if self.ok:
            return [f"the {len(self.seen)} entries reported are the ones {self.source} expects", *out]
        out += [f"new (not in {self.source}): {e}" for e in self.new]
        out += [f"expected by {self.source} but not reported: {e}" for e in self.lost]
        out += [
            f"security finding acknowledged by {self.source} but not seen: {e} (fixed, or no longer detected: remove "
            "it from the security: section)"
            for e in self.security_lost
        ]
        out.append(
            "a new entry is a gap this deployment has that the file does not list, or a check that wrongly "
            "reports one; an entry not reported is a gap no longer detected, or fixed: correct the deployment, "
            "the check, or the file"
        )
        return out


def compare_lacks(
    reported: Iterable[str],
    expected: ExpectedLacks,
    source: str,
    checked: Iterable[str] | None = None,
    *,
    security_seen: Iterable[str] = (),
    security_checked: Iterable[str] | None = None,
) -> LacksComparison:
    """Compare the lacks a run reported with the expected entries.

    Args:
        reported: the lacks as recorded (``Results.lacks`` texts).
        expected: the entries of the expectation file.
        source: the file's name, for the messages.
        checked: the entries whose checks ran (``Results.fix_checked``); an expected entry that was neither
            reported nor checked is ``unchecked``, not lost. None = every entry was checked.
        security_seen: the security findings the run reported (their ``cl_security`` texts).
        security_checked: the security checks that ran (``Results.security_checked``); None = all of them.
    """
    seen = {lack_key(text) for text in reported}
    missing = expected.required - seen
    unchecked: frozenset[str] = frozenset() if checked is None else missing - set(checked)
    security_missing = expected.security - set(security_seen)
    security_unchecked: frozenset[str] = (
        frozenset() if security_checked is None else security_missing - set(security_checked)
    )
    return LacksComparison(
        source=source,
        new=tuple(sorted(seen - expected.required - expected.optional)),
        lost=tuple(sorted(missing - unchecked)),
        seen=tuple(sorted(seen)),
        unchecked=tuple(sorted(unchecked)),
        security_lost=tuple(sorted(security_missing - security_unchecked)),
        security_unchecked=tuple(sorted(security_unchecked)),
    )
