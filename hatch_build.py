"""Build hook: the package description (the README) with absolute links, for package index pages.

The README links to files of the repository by relative paths (the capacity chart, the suites' README); on a
package index page those break. The description in the built wheel and sdist has each relative link made
absolute: images to ``<Source>/raw/main/<path>``, other links to ``<Source>/blob/main/<path>``, where
``<Source>`` is the ``Source`` entry of ``[project.urls]``. Links with a scheme, ``#anchors`` and ``mailto:`` are
left as they are. Standard library only (it runs in the isolated build environment).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface

#: ``[text](target)`` and ``![alt](target)``, the target possibly on the next line (the README wraps at 120)
_LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\(\s*(?P<target>[^)\s]+)\s*\)")
_ABSOLUTE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|#|/)")


def absolute_links(text: str, source: str, ref: str = "main") -> str:
    """``text`` with every relative Markdown link and image made absolute (see the module docstring).

    Args:
        text: the Markdown.
        source: the repository's web address (``https://github.com/owner/name``).
        ref: the branch the links point into.
    """
    base = source.rstrip("/")

    def repl(match: re.Match[str]) -> str:
        target = match["target"]
        if _ABSOLUTE.match(target):
            return match[0]
        kind = "raw" if match["bang"] else "blob"
        return f"{match['bang']}[{match['text']}]({base}/{kind}/{ref}/{target.removeprefix('./')})"

    return _LINK.sub(repl, text)


class CustomMetadataHook(MetadataHookInterface):
    """Sets ``readme`` (declared dynamic in pyproject.toml) to the README with absolute links."""

    def update(self, metadata: dict[str, Any]) -> None:
        """Fill ``metadata["readme"]``."""
        urls = metadata.get("urls") or {}
        source = urls.get("Source")
        if not source:
            raise ValueError("[project.urls] needs a Source entry (the README's relative links point into it)")
        text = (Path(self.root) / "README.md").read_text(encoding="utf-8")
        metadata["readme"] = {"content-type": "text/markdown", "text": absolute_links(text, source)}
