"""The built distribution as a package index shows it: the CHANGELOG inside, project URLs, and a description
whose links and images all work off the repository (no relative ones)."""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import tarfile
import zipfile
from email.message import Message
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: a Markdown link or image whose target has no scheme and is no anchor: it breaks on a package index page
RELATIVE = re.compile(r"!?\[[^\]]*\]\(\s*(?![a-zA-Z][a-zA-Z0-9+.-]*:|#)([^)\s]+)\s*\)")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``uv build`` (the sdist, then the wheel from it, as CI builds them)."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("needs uv to build the distribution")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([uv, "build", "--quiet", "--out-dir", str(out), str(ROOT)], check=True, timeout=600,
                   stdin=subprocess.DEVNULL)  # fmt: skip
    return out


def _metadata(dist: Path) -> Message:
    wheel = next(dist.glob("cl_client-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(z.read(name))


def test_the_wheel_and_the_sdist_carry_the_changelog(dist: Path) -> None:
    with zipfile.ZipFile(next(dist.glob("cl_client-*.whl"))) as z:
        assert z.read("cl_client/CHANGELOG.md") == (ROOT / "CHANGELOG.md").read_bytes()
    with tarfile.open(next(dist.glob("cl_client-*.tar.gz"))) as t:
        assert any(n.endswith("/CHANGELOG.md") and n.count("/") == 1 for n in t.getnames())


def test_the_metadata_names_no_unpublished_address(dist: Path) -> None:
    """No project URL is invented: either none, or each one https (added once the project publishes its address)."""
    urls = dict(u.split(", ", 1) for u in _metadata(dist).get_all("Project-URL") or [])
    assert all(u.startswith("https://") for u in urls.values()), urls


def test_the_description_has_no_relative_link_or_image(dist: Path) -> None:
    meta = _metadata(dist)
    assert meta["Description-Content-Type"] == "text/markdown"
    description = meta.get_payload()
    assert isinstance(description, str)
    assert "# cl-client" in description  # it is the README
    assert RELATIVE.findall(description) == []
    assert RELATIVE.findall((ROOT / "README.md").read_text(encoding="utf-8")), "the README itself has relative links"
    # without a published Source address each image is named in words with its path, which the sdist carries
    paths = re.findall(r"\(image `([^`]+)` in the source distribution\)", description)
    assert paths, "the README's images are neither links nor named paths in the description"
    for path in paths:
        assert (ROOT / path).is_file(), path


def test_relative_links_become_absolute_once_a_source_address_is_given() -> None:
    from hatch_build import absolute_links  # the build hook, at the repository's root

    text = "see [the suites](pytest_cl/conformance/README.md) and ![chart](benchmarks/c.png) or [x](https://a.b/c)"
    assert absolute_links(text, "https://example.org/o/n/") == (
        "see [the suites](https://example.org/o/n/blob/main/pytest_cl/conformance/README.md) and "
        "![chart](https://example.org/o/n/raw/main/benchmarks/c.png) or [x](https://a.b/c)"
    )
    assert absolute_links(text, None) == (
        "see the suites (`pytest_cl/conformance/README.md`) and *chart* (image `benchmarks/c.png` in the source "
        "distribution) or [x](https://a.b/c)"
    )
