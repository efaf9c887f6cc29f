"""``--cl-expect-lacks FILE``: the run's "deployment lacks …" entries must equal a committed list.

A deployment that is not the reference one lacks some **[fix]** es of PROTOCOL.md; the suites report each as
"deployment lacks <what>" instead of a failure. An operator who knows their deployment's gaps commits them
in a file, one line per gap, and passes it with ``--cl-expect-lacks``: a new entry (a new gap, or a false one)
and a lost entry (a gap that is no longer detected, or that was fixed) both fail the run, with the lines to
add or remove.

The suites ship the list of upstream's January 2026 stack as ``upstream-2026-01``
(``pytest_cl/conformance/expected/upstream-2026-01.lacks``): give that name instead of a path.

File format: one entry per line; lines that start with ``#`` and blank lines are ignored. A line that starts with
``?`` is an optional entry: a gap that shows only with some timing or history (a worker that died without its
will, a worker claiming a job in the moment between its insertion and its ``queued`` event), which the run may
report or not. An entry is the text after
"deployment lacks" of a ``cl_needs_fix`` check (its marker's argument), or the [fix] named by a lifecycle
finding (for example ``terminal 'error' events over MQTT for failed jobs (upstream is silent)``): the same gap seen by
several checks or jobs is one entry.
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


@dataclass(frozen=True)
class ExpectedLacks:
    """The entries of an expectation file.

    Attributes:
        required: entries the run must report.
        optional: entries (``? `` lines) the run may report or not: gaps seen only with some timing or history.
    """

    required: frozenset[str]
    optional: frozenset[str] = frozenset()

    def lines(self) -> list[str]:
        """Every entry as the file writes it (optional ones with ``? ``), sorted."""
        return sorted([*self.required, *(f"? {e}" for e in self.optional)])


def parse_expected(text: str) -> ExpectedLacks:
    """Parse the text of an expectation file (see the module documentation).

    Args:
        text: the file's text.
    """
    required: set[str] = set()
    optional: set[str] = set()
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith("?"):
            optional.add(entry[1:].strip())
        else:
            required.add(entry)
    return ExpectedLacks(frozenset(required), frozenset(optional - required))


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
    return parse_expected(text)


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

    @property
    def ok(self) -> bool:
        """True when the run reported exactly the expected entries."""
        return not (self.new or self.lost)

    def lines(self) -> list[str]:
        """The terminal summary lines."""
        out: list[str] = [f"not checked by this run (its checks did not run): {e}" for e in self.unchecked]
        if self.ok:
            return [f"the {len(self.seen)} entries reported are the ones {self.source} expects", *out]
        out += [f"new (not in {self.source}): {e}" for e in self.new]
        out += [f"expected by {self.source} but not reported: {e}" for e in self.lost]
        out.append(
            "a new entry is a gap this deployment has that the file does not list, or a check that wrongly "
            "reports one; an entry not reported is a gap no longer detected, or fixed: correct the deployment, "
            "the check, or the file"
        )
        return out


def compare_lacks(
    reported: Iterable[str], expected: ExpectedLacks, source: str, checked: Iterable[str] | None = None
) -> LacksComparison:
    """Compare the lacks a run reported with the expected entries.

    Args:
        reported: the lacks as recorded (``Results.lacks`` texts).
        expected: the entries of the expectation file.
        source: the file's name, for the messages.
        checked: the entries whose checks ran (``Results.fix_checked``); an expected entry that was neither
            reported nor checked is ``unchecked``, not lost. None = every entry was checked.
    """
    seen = {lack_key(text) for text in reported}
    missing = expected.required - seen
    unchecked: frozenset[str] = frozenset() if checked is None else missing - set(checked)
    return LacksComparison(
        source=source,
        new=tuple(sorted(seen - expected.required - expected.optional)),
        lost=tuple(sorted(missing - unchecked)),
        seen=tuple(sorted(seen)),
        unchecked=tuple(sorted(unchecked)),
    )
