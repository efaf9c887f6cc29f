"""The HTML report as a person sees it: rendered by headless chromium (Debian's ``chromium``; ``.ci/run`` installs it).

The page of a small real run is opened from a ``file://`` URL with every network request sent to a local proxy
that only counts connections: the page must load with no console error and make no outgoing request.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.pytest_cl.conftest import Target, run
from tests.unit.pytest_cl.test_html_report import SUITE

#: chromium's own calls (network time, component and safe-browsing services), never made by a page we wrote
BROWSER_OWN = re.compile(r"^\S+ (?:https?://)?[^/ ]*\b(?:google\.com|googleapis\.com|gvt1\.com|gstatic\.com)[:/ ]")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)"
)


class CountingProxy:
    """A TCP listener used as chromium's proxy: it records every connection and answers none."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.seen: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                try:
                    self.seen.append(conn.recv(1024))
                except OSError:
                    self.seen.append(b"")

    def close(self) -> None:
        self.sock.close()

    def page_requests(self) -> list[str]:
        """The request lines seen, without chromium's own background calls to Google's services."""
        lines = [raw.split(b"\r\n", 1)[0].decode(errors="replace") for raw in self.seen]
        return [line for line in lines if not BROWSER_OWN.search(line)]


@pytest.fixture
def proxy() -> Iterator[CountingProxy]:
    p = CountingProxy()
    try:
        yield p
    finally:
        p.close()


def chromium(
    page: Path, profile: Path, proxy: CountingProxy, *args: str, width: int = 1200
) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
        "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter", f"--user-data-dir={profile}",
        f"--proxy-server=http://127.0.0.1:{proxy.port}", "--proxy-bypass-list=<-loopback>",
        "--enable-logging=stderr", "--v=0", f"--window-size={width},2000", *args, page.as_uri(),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


#: added to a copy of the page only (the report itself has no script): how much wider than the window it is
MEASURE = (
    "<script>document.body.setAttribute('data-overflow', "
    "String(document.documentElement.scrollWidth - window.innerWidth))</script></body>"
)
#: the widths people look at the report with: a desktop window and a phone
WIDTHS = (1400, 390)


def overflow(page: Path, tmp_path: Path, proxy: CountingProxy, width: int) -> int:
    """How many pixels the page is wider than a ``width`` px window (0: no horizontal scrolling)."""
    probe = tmp_path / f"measure-{width}.html"
    probe.write_text(page.read_text().replace("</body>", MEASURE))
    dom = chromium(probe, tmp_path / "profile", proxy, "--dump-dom", width=width)
    found = re.search(r'data-overflow="(-?\d+)"', dom.stdout)
    assert found is not None, dom.stderr[-2000:]
    return int(found.group(1))


def test_report_renders_in_chromium_without_errors_or_requests(
    pytester: pytest.Pytester, cl_target: Target, proxy: CountingProxy, tmp_path: Path
) -> None:
    """At a desktop width and a phone's: a screenshot, no console error, no outgoing request, no horizontal
    scrolling of the page (wide tables scroll inside their own box)."""
    pytester.makepyfile(**{"clsuite/__init__": "", "clsuite/plugins/__init__": "", "clsuite/plugins/test_mix": SUITE})
    run(pytester, *cl_target.args, "--cl-token", "s3cret-token", "--cl-report", "cert.html").assert_outcomes(
        passed=5, failed=1
    )
    page = pytester.path / "cert.html"
    logs: list[str] = []
    for width in WIDTHS:
        screenshot = tmp_path / f"cl-report-{width}.png"
        shot = chromium(page, tmp_path / "profile", proxy, f"--screenshot={screenshot}", width=width)
        assert shot.returncode == 0, shot.stderr[-2000:]
        assert screenshot.stat().st_size > 10_000
        logs.append(shot.stderr)
        print(f"screenshot: {screenshot}")
    dom = chromium(page, tmp_path / "profile", proxy, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    logs.append(dom.stderr)
    assert "<h1>CL conformance report</h1>" in dom.stdout and 'aria-label="job time line"' in dom.stdout
    assert "<h2>Not certified</h2>" in dom.stdout and 'id="legend"' in dom.stdout
    assert "deliberate boom" in dom.stdout and "s3cret-token" not in dom.stdout
    for log in logs:
        console = [line for line in log.splitlines() if "CONSOLE" in line or "Failed to load resource" in line]
        assert console == [], console
    assert proxy.page_requests() == []  # no outgoing request (chromium sends every one to this proxy)
    for width in WIDTHS:
        assert overflow(page, tmp_path, proxy, width) <= 0, f"the page scrolls sideways at {width} px"


def test_the_overflow_check_sees_a_page_wider_than_a_phone(proxy: CountingProxy, tmp_path: Path) -> None:
    page = tmp_path / "wide.html"
    page.write_text('<html><body><div style="width: 900px">wide</div></body></html>')
    assert overflow(page, tmp_path, proxy, 390) > 0
    assert overflow(page, tmp_path, proxy, 1400) <= 0


def test_the_check_sees_a_page_that_loads_from_the_network(proxy: CountingProxy, tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text('<html><body><img src="http://example.invalid/x.png"><script>nosuch();</script></body></html>')
    result = chromium(page, tmp_path / "profile", proxy, "--dump-dom")
    assert result.returncode == 0
    assert any("example.invalid" in line for line in proxy.page_requests())
    assert any("CONSOLE" in line and "nosuch" in line for line in result.stderr.splitlines())
