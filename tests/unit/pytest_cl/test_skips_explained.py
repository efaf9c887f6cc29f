"""Every skipped or not-checked check is explained by reason, with what to do about it, in every output: the
terminal summary, the JSON and Markdown reports and the HTML page (a real run against the session deployment)."""

from __future__ import annotations

import json

import pytest

from pytest_cl.report import NO_ADVICE, Results, skip_advice
from tests.unit.pytest_cl.conftest import Target, run

GUEST = "the deployment reports guestMode 'on': its job routes are open to everyone (turn guest mode off to check auth)"
SUITE = f"""
import pytest

@pytest.fixture(scope="module")
def auth_target(cl_deployment):
    pytest.skip({GUEST!r})

@pytest.mark.parametrize("n", [1, 2, 3])
def test_refused(compute_client, auth_target, n):
    pass
"""
OTHER = """
import pytest

@pytest.mark.cl_destructive
def test_cleanup(compute_client):
    pass

@pytest.mark.cl_needs_mqtt
def test_events(compute_client):
    pass

def test_fine(compute_client):
    pass

def test_odd(compute_client):
    pytest.skip("the moon is not full")
"""


def test_skips_are_grouped_by_reason_with_what_to_do_everywhere(pytester: pytest.Pytester, cl_target: Target) -> None:
    pytester.makepyfile(
        **{
            "clsuite/__init__": "",
            "clsuite/protocol/__init__": "",
            "clsuite/protocol/test_auth": SUITE,
            "clsuite/protocol/test_uploads": OTHER,
        }
    )
    result = run(pytester, "--cl-server", cl_target.server_url, "--cl-mqtt", "off", "--cl-report", "r.html")
    result.assert_outcomes(passed=1, skipped=6)
    result.stdout.fnmatch_lines(
        [
            "*cl: skipped and not checked, by reason (6)*",
            f"3 auth checks (skipped): {GUEST}",
            "    what to do: run against a deployment with auth on (guest mode off), with a token: cl-client certify "
            "--token JWT*",
            "1 uploads check (not checked): needs the deployment's MQTT broker*",
            "    what to do: give the deployment's broker: cl-client certify URL --mqtt mqtt://host:1883*",
            "1 uploads check (skipped): cl_destructive: not run against * without --cl-allow-destructive",
            "    what to do: these checks change the deployment's settings*--cl-allow-destructive*",
            "1 uploads check (skipped): the moon is not full",
            f"    what to do: {NO_ADVICE}",
        ]
    )
    data = json.loads((pytester.path / "r.json").read_text())
    groups = {g["reason"]: g for g in data["skip_groups"]}
    auth = groups[GUEST]
    assert (auth["kind"], auth["count"], auth["label"]) == ("skipped", 3, "3 auth checks")
    assert auth["tests"] == [f"clsuite/protocol/test_auth.py::test_refused[{n}]" for n in (1, 2, 3)]
    assert auth["what_to_do"] == skip_advice(GUEST) != NO_ADVICE
    assert sum(g["count"] for g in data["skip_groups"]) == 6
    assert [g["kind"] for g in data["skip_groups"]].count("not checked") == 1
    page = (pytester.path / "r.html").read_text()
    assert '<h2 id="skipped">Skipped and not checked (6)</h2>' in page
    assert "<b>3 auth checks</b> (skipped): " in page and "What to do:</span> run against a deployment" in page
    # the Markdown report (the JSON + Markdown pair of a non-HTML report path)
    run(pytester, "--cl-server", cl_target.server_url, "--cl-mqtt", "off", "--cl-report", "r2.json")
    markdown = (pytester.path / "r2.md").read_text()
    assert "## Skipped and not checked, by reason" in markdown
    assert f"* **3 auth checks** (skipped): {GUEST}" in markdown
    assert "  * what to do: run against a deployment with auth on" in markdown


def test_skip_groups_put_the_largest_first_and_name_the_row_across_modules() -> None:
    results = Results()
    results.tests = {
        "p/plugins/test_exif.py::a": ("exif", "skipped", []),
        "p/plugins/test_exif.py::b": ("exif", "skipped", []),
        "p/protocol/test_x.py::c": ("protocol", "skipped", []),
        "p/protocol/test_y.py::d": ("protocol", "skipped", []),
    }
    results.skips = [
        ("p/plugins/test_exif.py::a", "cl: no worker offers exif"),
        ("p/plugins/test_exif.py::b", "cl: no worker offers exif"),
        ("p/protocol/test_x.py::c", "why"),
        ("p/protocol/test_y.py::d", "why"),
    ]
    first, second = results.skip_groups()
    assert first.label == "2 exif checks" and "start a worker" in first.what_to_do
    assert second.label == "2 protocol checks" and second.what_to_do == NO_ADVICE  # two modules: the row
