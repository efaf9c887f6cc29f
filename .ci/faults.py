"""Run every planted fault of the faults profile family against the checks that should catch it.

For each ``fault_*`` switch of :class:`cl_compute.profile.Quirks` with its entry in ``FAULT_EXPECTATIONS``:
``cl-client certify --profile fault-<class> --plugins <rows> --strict -- --maxfail=1 -x -p no:randomly -k <select>``
with a JUnit XML file, whose first ``<failure>`` (or ``<error>``) message is the *first failure line*. A fault is

* ``caught``: a check failed and its first line contains every expected word (case-insensitive);
* ``MISSED``: no check failed (the suites cannot see the defect);
* ``WRONG WORDS``: a check failed, but its line does not say what the defect is;
* ``NO RUN``: pytest selected nothing or could not run (exit code 2-5), a broken expectation.

Exit code 0 when every fault is caught, 1 otherwise. ``-j N`` runs N faults at once (default 2).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cl_compute.profile import FAULT_EXPECTATIONS, FaultExpectation, fault_fields, fault_profile_name

#: pytest exit code "tests failed" (1); anything else but 0 means the run itself went wrong
TESTS_FAILED = 1
#: one fault's run may take this long (it starts its own embedded deployment)
RUN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Outcome:
    """What one fault's run showed."""

    fault: str
    verdict: str  # caught | MISSED | WRONG WORDS | NO RUN
    line: str
    seconds: float

    @property
    def ok(self) -> bool:
        """The fault was caught with the expected words."""
        return self.verdict == "caught"


def first_failure_line(junit_xml: str) -> str | None:
    """Return the first line of the first ``<failure>`` or ``<error>`` message of a pytest JUnit XML report."""
    root = ET.fromstring(junit_xml)
    for case in root.iter("testcase"):
        for child in case:
            if child.tag in ("failure", "error"):
                message = child.get("message") or (child.text or "")
                lines = [line for line in message.splitlines() if line.strip()]
                return lines[0].strip() if lines else f"{child.tag} without a message in {case.get('name')}"
    return None


def judge(exit_code: int, line: str | None, words: Sequence[str]) -> str:
    """Return the verdict of one fault's run from pytest's exit code, its first failure line and the words."""
    if line is None:
        return "MISSED" if exit_code == 0 else "NO RUN"
    if exit_code not in (TESTS_FAILED, 0):
        return "NO RUN"
    lowered = line.lower()
    return "caught" if all(word.lower() in lowered for word in words) else "WRONG WORDS"


#: task types a row's checks need besides its own plugin (the embedded deployment serves only these: faster start)
ROW_TASKS = {"face_embedding": ("face_embedding", "face_detection"), "protocol": ("hash",)}


def embedded_tasks(rows: Sequence[str]) -> list[str]:
    """Return the task types the embedded deployment must serve for ``rows`` (empty: all, for ``workflows``)."""
    if "workflows" in rows:
        return []
    tasks: list[str] = []
    for row in rows:
        tasks += [t for t in ROW_TASKS.get(row, (row,)) if t not in tasks]
    return tasks


def certify_command(fault: str, expectation: FaultExpectation, junit: Path) -> list[str]:
    """Return the ``cl-client certify`` command line that runs ``fault``'s profile on its rows and checks."""
    argv = [sys.executable, "-m", "cl_client", "certify", "--profile", fault_profile_name(fault), "--strict"]
    argv += ["--plugins", ",".join(expectation.rows), "--"]
    argv += ["--maxfail=1", "-x", "-p", "no:randomly", f"--junitxml={junit}", "--cl-embedded-workers", "1"]
    tasks = embedded_tasks(expectation.rows)
    if tasks:
        argv += ["--cl-embedded-tasks", ",".join(tasks)]
    if expectation.select:
        argv += ["-k", expectation.select]
    return argv


def run_fault(fault: str, workdir: Path) -> Outcome:
    """Certify one fault's profile and judge the first failure line."""
    expectation = FAULT_EXPECTATIONS[fault]
    junit = workdir / f"{fault}.xml"
    log = workdir / f"{fault}.log"
    started = time.monotonic()
    with log.open("wb") as out:
        try:
            code = subprocess.run(
                certify_command(fault, expectation, junit),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT_S,
                check=False,
                env={**os.environ, "CI": "1"},
            ).returncode
        except subprocess.TimeoutExpired:
            return Outcome(fault, "NO RUN", f"timed out after {RUN_TIMEOUT_S:.0f} s (log {log})", RUN_TIMEOUT_S)
    seconds = time.monotonic() - started
    line = first_failure_line(junit.read_text(encoding="utf-8")) if junit.exists() else None
    verdict = judge(code, line, expectation.words)
    if verdict == "NO RUN" and line is None:
        line = f"pytest exit code {code}, no failure recorded (log {log})"
    return Outcome(fault, verdict, line or "", seconds)


def _fault_name(name: str) -> str:
    field = "fault_" + name.removeprefix("fault-").removeprefix("fault_").replace("-", "_")
    if field not in FAULT_EXPECTATIONS:
        raise SystemExit(f"faults: unknown fault {name!r}; known: {', '.join(FAULT_EXPECTATIONS)}")
    return field


def main(argv: Sequence[str] | None = None) -> int:
    """Run the faults (all, or those named) and print one line per fault and a total."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faults", nargs="*", help="fault names (default: every fault switch)")
    parser.add_argument("-j", type=int, default=2, help="faults run at once (default 2)")
    parser.add_argument("--keep", type=Path, default=None, help="keep each run's log and JUnit XML in this folder")
    args = parser.parse_args(argv)
    missing = [f for f in fault_fields() if f not in FAULT_EXPECTATIONS]
    if missing:
        print(f"faults: no expectation for {', '.join(missing)} (add them to FAULT_EXPECTATIONS)", file=sys.stderr)
        return 1
    faults = [_fault_name(n) for n in args.faults] or list(fault_fields())
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cl-faults-") as scratch, ThreadPoolExecutor(max(1, args.j)) as pool:
        tmp = str(args.keep or scratch)
        Path(tmp).mkdir(parents=True, exist_ok=True)
        outcomes = []
        for outcome in pool.map(lambda f: run_fault(f, Path(tmp)), faults):
            outcomes.append(outcome)
            words = ", ".join(repr(w) for w in FAULT_EXPECTATIONS[outcome.fault].words)
            said = "" if outcome.ok or outcome.verdict != "WRONG WORDS" else f" (expected the words {words})"
            print(
                f"{outcome.verdict:<11} {fault_profile_name(outcome.fault):<40} {outcome.seconds:5.1f} s  "
                f"{outcome.line[:400]}{said}",
                flush=True,
            )
            if outcome.verdict == "NO RUN":
                log = Path(tmp) / f"{outcome.fault}.log"
                if log.exists():
                    print("".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:]), flush=True)
    caught = sum(o.ok for o in outcomes)
    counts = {v: sum(o.verdict == v for o in outcomes) for v in ("MISSED", "WRONG WORDS", "NO RUN")}
    print(
        f"faults: {caught} of {len(outcomes)} caught with the expected words"
        + "".join(f", {n} {v}" for v, n in counts.items() if n)
        + f" (wall {time.monotonic() - started:.0f} s, -j {args.j})"
    )
    return 0 if caught == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
