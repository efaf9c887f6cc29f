"""Build hook: the package description (the README) without links that break on a package index page.

The README links to files of the repository by relative paths (the capacity chart, the suites' README); on a
package index page those break. In the description of the built wheel and sdist each relative link is rewritten:

* when ``[project.urls]`` has a ``Source`` entry (the repository's public web address), images point to
  ``<Source>/raw/main/<path>`` and other links to ``<Source>/blob/main/<path>``;
* without one, a link becomes its text followed by the file's path in the source distribution
  (``the suites' README (`pytest_cl/conformance/README.md`)``) and an image becomes its description and path in
  words, so nothing points at an address that was never published.

Links with a scheme, ``#anchors`` and ``mailto:`` are left as they are. Standard library only (it runs in the
isolated build environment).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface

#: ``[text](target)`` and ``![alt](target)``, the target possibly on the next line (the README wraps at 120)
_LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\(\s*(?P<target>[^)\s]+)\s*\)")
_ABSOLUTE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|#|/)")


def absolute_links(text: str, source: str | None, ref: str = "main") -> str:
    """``text`` with every relative Markdown link and image rewritten (see the module docstring).

    Args:
        text: the Markdown.
        source: the repository's public web address (``https://host/owner/name``), or None when the project has
            not published one.
        ref: the branch the links point into.
    """

    def repl(match: re.Match[str]) -> str:
        target = match["target"]
        if _ABSOLUTE.match(target):
            return match[0]
        path = target.removeprefix("./")
        if source:
            kind = "raw" if match["bang"] else "blob"
            return f"{match['bang']}[{match['text']}]({source.rstrip('/')}/{kind}/{ref}/{path})"
        if match["bang"]:
            return f"*{match['text']}* (image `{path}` in the source distribution)"
        return f"{match['text']} (`{path}`)"

    return _LINK.sub(repl, text)


class CustomMetadataHook(MetadataHookInterface):
    """Sets ``readme`` (declared dynamic in pyproject.toml) to the README with its relative links rewritten."""

    def update(self, metadata: dict[str, Any]) -> None:
        """Fill ``metadata["readme"]``."""
        urls = metadata.get("urls") or {}
        text = (Path(self.root) / "README.md").read_text(encoding="utf-8")
        metadata["readme"] = {"content-type": "text/markdown", "text": absolute_links(text, urls.get("Source"))}
