"""Which upstream release a deployment looks like, and ``--cl-expect-lacks upstream``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cl_compute.deployment import Deployment
from pytest_cl._upstream import Fingerprint, identify
from tests.unit.pytest_cl.conftest import Target, run

JAN = frozenset({"/admin/config"})
FEB = frozenset({"/admin/pref"})
BOTH = frozenset({"/admin/config", "/admin/pref"})


@pytest.mark.parametrize(
    ("fp", "release", "why"),
    [
        (
            Fingerprint("Task Server", JAN, frozenset({"id"})),
            "upstream-2026-01",
            "looks like upstream's January 2026 compute stack: /admin/config routes, id-only capability payloads",
        ),
        (
            Fingerprint("compute", FEB, frozenset({"worker_id"})),
            "upstream-2026-02",
            "looks like upstream's February 2026 compute service: /admin/pref routes, worker_id-only capability "
            "payloads",
        ),
        (
            Fingerprint("compute", FEB, frozenset()),
            "upstream-2026-02",
            "looks like upstream's February 2026 compute service: /admin/pref routes, capability payloads not seen "
            "(no MQTT)",
        ),
        (
            Fingerprint("cl_compute", BOTH, frozenset({"both"})),
            None,
            "the reference deployment (GET / says service 'cl_compute'; /admin/config and /admin/pref routes, "
            "id + worker_id capability payloads)",
        ),
        (
            Fingerprint("Task Server", JAN, frozenset({"worker_id"})),
            None,
            "looks like neither upstream release: /admin/config routes, worker_id-only capability payloads",
        ),
        (
            Fingerprint("Task Server", None, frozenset()),
            None,
            "looks like neither upstream release: no readable /openapi.json, capability payloads not seen (no MQTT)",
        ),
    ],
    ids=["january", "february", "february-no-mqtt", "reference", "mixed", "nothing"],
)
def test_identify(fp: Fingerprint, release: str | None, why: str) -> None:
    verdict = identify(fp)
    assert (verdict.release, verdict.why) == (release, why)


def test_expect_lacks_upstream_against_the_reference_is_a_usage_error(
    pytester: pytest.Pytester, cl_target: Target
) -> None:
    pytester.makepyfile(test_x="def test_x(compute_client):\n    pass\n")
    result = run(pytester, *cl_target.args, "--cl-expect-lacks", "upstream")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*cl: --cl-expect-lacks upstream: the deployment under test is the reference deployment (GET / says "
            "service 'cl_compute'; *), so no upstream list fits. Name a list instead (packaged: *upstream-2026-01*) "
            "or a file of your own.*"
        ]
    )


def test_expect_lacks_upstream_with_the_embedded_profiles(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(compute_client):\n    pass\n")
    result = run(pytester, "--cl-expect-lacks", "upstream", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*cl: --cl-expect-lacks upstream: the embedded deployment runs the profile 'fixed' (the reference "
         "deployment), which is no upstream release. Name a list instead (packaged: *upstream-2026-01*)*"]
    )  # fmt: skip
    result = run(
        pytester, "--cl-expect-lacks", "upstream", "--cl-embedded-profile", "upstream-2026-01", "--collect-only"
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["cl: --cl-expect-lacks upstream: using upstream-2026-01 (the embedded deployment runs the profile "
         "upstream-2026-01)"]
    )  # fmt: skip


@pytest.fixture(scope="module")
def january() -> Iterator[Target]:
    dep = Deployment(workers=1, tasks=["hash"], worker_shutdown_grace=1.0, profile="upstream-2026-01")
    dep.start()
    try:
        yield Target(dep.server_url, dep.mqtt_url)
    finally:
        dep.stop()


def test_a_january_like_deployment_is_named_and_picks_its_list(pytester: pytest.Pytester, january: Target) -> None:
    pytester.makepyfile(test_x="def test_x(compute_client):\n    pass\n")
    result = run(pytester, *january.args, "--cl-expect-lacks", "upstream")
    why = "looks like upstream's January 2026 compute stack: /admin/config routes, id-only capability payloads"
    result.stdout.fnmatch_lines(
        [
            f"cl: which upstream: {why}",
            f"cl: --cl-expect-lacks upstream: using upstream-2026-01 ({why})",
        ]
    )
    result.stdout.fnmatch_lines([f"which upstream: {why}", "*cl: deployment lacks: *"])
