"""The faults profile family (issue 19 item 5): one ``fault_*`` switch per defect class, a generated profile per
switch, an expectation per switch, each switch read in exactly one place, and ``.ci/faults`` judging a real run.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Protocol, cast

import pytest

from cl_compute.profile import (
    FAULT_EXPECTATIONS,
    FAULT_PROFILES,
    FIXED,
    PROFILES,
    FaultExpectation,
    Quirks,
    check_profile,
    fault_fields,
    fault_profile_name,
)

REPO = Path(__file__).resolve().parents[3]
SERVER = REPO / "server" / "cl_compute"
PLUGIN_ROWS = {p.stem.removeprefix("test_") for p in (REPO / "pytest_cl/conformance/plugins").glob("test_*.py")}
ROWS = PLUGIN_ROWS | {"protocol", "workflows"}


class _Outcome(Protocol):
    verdict: str
    line: str


class _FaultsScript(Protocol):
    """The parts of ``.ci/faults.py`` these tests call."""

    def first_failure_line(self, junit_xml: str) -> str | None: ...
    def judge(self, exit_code: int, line: str | None, words: Sequence[str]) -> str: ...
    def certify_command(self, fault: str, expectation: FaultExpectation, junit: Path) -> list[str]: ...
    def run_fault(self, fault: str, workdir: Path) -> _Outcome: ...


def _faults_script() -> _FaultsScript:
    """``.ci/faults.py`` imported as a module (its pure parts and ``run_fault``)."""
    spec = importlib.util.spec_from_file_location("ci_faults", REPO / ".ci" / "faults.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ci_faults", module)
    spec.loader.exec_module(module)
    return cast(_FaultsScript, module)


def test_there_is_a_fault_per_plugin_and_protocol_faults() -> None:
    names = fault_fields()
    assert len(names) >= 12
    covered = {row for name in names for row in FAULT_EXPECTATIONS[name].rows}
    assert covered >= PLUGIN_ROWS, f"plugins without a fault: {sorted(PLUGIN_ROWS - covered)}"
    assert "protocol" in covered


def test_every_fault_switch_has_an_expectation_and_every_expectation_a_switch() -> None:
    assert set(FAULT_EXPECTATIONS) == set(fault_fields())
    for name, expectation in FAULT_EXPECTATIONS.items():
        assert expectation.rows and set(expectation.rows) <= ROWS, f"{name}: unknown rows {expectation.rows}"
        assert expectation.words and all(w.strip() for w in expectation.words), f"{name}: no words"


def test_a_profile_is_generated_for_each_fault_with_only_that_switch_on() -> None:
    fixed = PROFILES[FIXED]
    assert set(FAULT_PROFILES) == {fault_profile_name(name) for name in fault_fields()}
    for name in fault_fields():
        profile = fault_profile_name(name)
        assert check_profile(profile) == profile
        assert profile == "fault-" + name.removeprefix("fault_").replace("_", "-")
        quirks = PROFILES[profile]
        changed = [f.name for f in fields(Quirks) if getattr(quirks, f.name) != getattr(fixed, f.name)]
        assert changed == [name]
    for profile, quirks in PROFILES.items():
        if not profile.startswith("fault-"):
            assert not any(getattr(quirks, name) for name in fault_fields()), f"{profile} has a fault on"
    with pytest.raises(ValueError, match="not a fault switch"):
        fault_profile_name("upstream_identity")


def test_each_fault_switch_is_read_in_exactly_one_place() -> None:
    sources = {p: p.read_text(encoding="utf-8") for p in SERVER.rglob("*.py") if p.name != "profile.py"}
    for name in fault_fields():
        reads = [(p.name, m.start()) for p, text in sources.items() for m in re.finditer(rf"\.{name}\b", text)]
        assert len(reads) == 1, f"{name} is read {len(reads)} times: {reads}"


def test_the_judge_of_a_fault_run() -> None:
    faults = _faults_script()
    xml = (
        '<testsuites><testsuite><testcase name="a"/><testcase name="b">'
        '<failure message="AssertionError: hash job 1: that is the SHA-512 of the file&apos;s bytes&#10;assert False">'
        "trace</failure></testcase></testsuite></testsuites>"
    )
    line = faults.first_failure_line(xml)
    assert line == "AssertionError: hash job 1: that is the SHA-512 of the file's bytes"
    assert faults.first_failure_line("<testsuites><testsuite><testcase name='a'/></testsuite></testsuites>") is None
    error = "<testsuite><testcase name='c'><error message='fixture broke'/></testcase></testsuite>"
    assert faults.first_failure_line(error) == "fixture broke"
    assert faults.judge(1, line, ["file's BYTES"]) == "caught"
    assert faults.judge(1, line, ["file's bytes", "pixels"]) == "WRONG WORDS"
    assert faults.judge(0, None, ["x"]) == "MISSED"
    assert faults.judge(5, None, ["x"]) == "NO RUN"
    assert faults.judge(4, "usage error", ["usage"]) == "NO RUN"
    command = faults.certify_command("fault_hls_no_original", FAULT_EXPECTATIONS["fault_hls_no_original"], Path("j"))
    assert command[1:] == [
        "-m", "cl_client", "certify", "--profile", "fault-hls-no-original", "--strict", "--plugins", "hls_streaming",
        "--", "--maxfail=1", "-x", "-p", "no:randomly", "--junitxml=j", "--cl-embedded-workers", "1",
        "--cl-embedded-tasks", "hls_streaming", "-k", "include_original_adds",
    ]  # fmt: skip


@pytest.mark.timeout(600)
def test_one_fault_is_caught_end_to_end(tmp_path: Path) -> None:
    """``fault-post-status-201`` certified for real (embedded deployment, the protocol row's checks): caught, and the
    first failure line carries the expected words."""
    faults = _faults_script()
    outcome = faults.run_fault("fault_post_status_201", tmp_path)
    assert outcome.verdict == "caught", (outcome, (tmp_path / "fault_post_status_201.log").read_text()[-3000:])
    assert "expected HTTP 200, got 201" in outcome.line
