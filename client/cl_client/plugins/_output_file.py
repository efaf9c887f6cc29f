"""The result of plugins whose output is one file (image_conversion, media_thumbnail)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import JsonValue

from cl_client._http import as_destination, removing_created_folders
from cl_client.plugins._base import PathLike, PluginResult
from cl_client.plugins._files import Plan, read, save


@dataclass(frozen=True, kw_only=True)
class OutputFileResult(PluginResult):
    """A job whose result is one file on the server.

    Attributes:
        output_path: the file, relative to the job directory (from ``params.output_path``).
    """

    output_path: str

    @property
    def filename(self) -> str:
        """The output file's name."""
        return self.output_path.rsplit("/", 1)[-1]

    def _save_plan(self, dest: Path) -> Plan[Path]:
        return (yield from save(self.output_path, dest))

    def download(self, dest: PathLike) -> Path:
        """Download the output file to ``dest`` (a file path, or a folder to keep the server's name)."""
        with removing_created_folders(dest):
            return self.files.run(self._save_plan(as_destination(dest)))

    async def adownload(self, dest: PathLike) -> Path:
        """Async ``download``."""
        with removing_created_folders(dest):
            return await self.files.arun(self._save_plan(as_destination(dest)))

    def read_bytes(self) -> bytes:
        """The output file's bytes."""
        return self.files.run(read(self.output_path))

    async def aread_bytes(self) -> bytes:
        """Async ``read_bytes``."""
        return await self.files.arun(read(self.output_path))

    def summary(self) -> str:
        """Return the output path."""
        return self.output_path

    def as_dict(self) -> dict[str, JsonValue]:
        """``output_path``."""
        return {"output_path": self.output_path}
