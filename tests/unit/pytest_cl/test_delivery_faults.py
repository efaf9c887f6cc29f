"""The delivery, worker-death and cancellation checks catch their planted faults (issue 19 items 1-3).

For each ``fault_*`` switch of ``cl_compute.profile.Quirks`` planted by these items, the conformance module that
claims to catch it runs (in a subprocess, against the embedded deployment with ``--cl-embedded-profile
fault-<name>``, ``--maxfail=1``) and must fail, with a first failure line that names the defect in words. The
same modules pass against the fixed profile (``test_the_checks_pass_on_the_fixed_deployment``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cl_compute.profile import PROFILES, Quirks, fault_profile

#: fault field -> (conformance module, -k expression or "", words of its first failure line)
FAULTS: dict[str, tuple[str, str, str]] = {
    "fault_retained_job_events": ("test_delivery", "", "the deployment publishes job events retained"),
    "fault_events_to_late_subscribers": ("test_delivery", "", "old events reach new subscribers"),
    "fault_capability_not_cleared": ("test_delivery", "", "capability message is not cleared"),
    "fault_worker_death_leaves_processing": ("test_worker_death", "SIGKILL", "a dead worker's job stays processing"),
    "fault_delete_does_not_cancel": ("test_cancellation", "", "a deleted running job went on"),
}  # fmt: skip


def _run(module: str, profile: str, keyword: str) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable, "-m", "pytest", "--pyargs", f"pytest_cl.conformance.protocol.{module}", "-p", "no:randomly",
        "-p", "no:cacheprovider", "--maxfail=1", "-q", "--cl-embedded-profile", profile,
        "--cl-embedded-tasks", "hash,media_thumbnail", "--cl-embedded-workers", "1",
    ]  # fmt: skip
    if keyword:
        args += ["-k", keyword]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CL_", "PYTEST_")) and k != "CI"}
    return subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, check=False)


def test_every_issue_19_fault_has_a_profile_and_an_entry() -> None:
    """Each ``fault_*`` field of ``Quirks`` planted here has its generated profile, on in no other profile."""
    fields = [name for name in Quirks.__dataclass_fields__ if name.startswith("fault_") and name in FAULTS]
    assert sorted(fields) == sorted(FAULTS)
    for name in fields:
        assert getattr(PROFILES[fault_profile(name)], name) is True
        assert [p for p, q in PROFILES.items() if getattr(q, name)] == [fault_profile(name)]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_the_check_catches_its_fault(fault: str) -> None:
    module, keyword, words = FAULTS[fault]
    result = _run(module, fault_profile(fault), keyword)
    out = result.stdout + result.stderr
    assert result.returncode == 1, f"{module} did not fail against {fault_profile(fault)}:\n{out[-3000:]}"
    first = next((line for line in out.splitlines() if line.startswith("E ")), "")
    assert words in first, f"first failure line of {module} against {fault_profile(fault)}: {first!r}"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("module", ["test_delivery", "test_worker_death", "test_cancellation"])
def test_the_checks_pass_on_the_fixed_deployment(module: str) -> None:
    result = _run(module, "fixed", "")
    assert result.returncode == 0, (
        f"{module} failed against the fixed profile:\n{(result.stdout + result.stderr)[-3000:]}"
    )
