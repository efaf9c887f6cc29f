"""hls_streaming: adaptive HLS renditions of a video (``output/adaptive.m3u8`` + variant playlists + segments).

Upstream's February 2026 service adds two form fields that name paths *on the server*: ``input_absolute_path``
(the video to read, instead of an upload) and ``output_absolute_path`` (where to write the stream). They let any
caller make the server read and write arbitrary server files (PROTOCOL.md §9); the client sends them only when
asked. The reference deployment refuses them with 422; January 2026 servers ignore them or want a file.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import JsonValue

from cl_client._exceptions import ComputeClientError, ConfigurationError, NotFoundError
from cl_client._models import JobResponse
from cl_client._tracker import JobCallback
from cl_client.plugins._base import OutT_co, PathLike, PluginClient, PluginResult, PluginSpec
from cl_client.plugins._fields import BoolField, HlsVariant, ServerPathField, VariantsField
from cl_client.plugins._files import JobFiles, Plan, read, safe_relative, save
from cl_client.plugins._parse import as_bool, as_int, job_relative, task_output_value

_URI_ATTR = re.compile(r'URI="([^"]*)"')
_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


@dataclass(frozen=True)
class HlsStream:
    """A variant listed in the master playlist.

    Attributes:
        uri: the variant playlist, relative to the master playlist's folder.
        bandwidth: ``BANDWIDTH`` in bit/s (None if absent).
        width, height: ``RESOLUTION`` (None if absent).
    """

    uri: str
    bandwidth: int | None
    width: int | None
    height: int | None

    def as_dict(self) -> dict[str, JsonValue]:
        """JSON-ready data."""
        return {"uri": self.uri, "bandwidth": self.bandwidth, "width": self.width, "height": self.height}


def playlist_references(text: str, *, where: str) -> list[str]:
    """Every URI a playlist references (variant playlists, segments, ``EXT-X-MAP``/``EXT-X-KEY`` files).

    Raises:
        ComputeClientError: a reference is absolute, a URL, or contains ``..``.
    """
    refs: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            refs += [m.group(1) for m in _URI_ATTR.finditer(line)]
        else:
            refs.append(line)
    return [safe_relative(r, where=where) for r in refs]


def parse_master(text: str, *, where: str) -> list[HlsStream]:
    """Parse the ``#EXT-X-STREAM-INF`` entries of a master playlist.

    Raises:
        ComputeClientError: not a playlist (no ``#EXTM3U``) or an unsafe reference.
    """
    if not text.lstrip().startswith("#EXTM3U"):
        raise ComputeClientError(f"{where} is not an HLS playlist")
    streams: list[HlsStream] = []
    pending: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXT-X-STREAM-INF:"):
            pending = {m.group(1): m.group(2).strip('"') for m in _ATTR.finditer(line.split(":", 1)[1])}
        elif line and not line.startswith("#") and pending is not None:
            width = height = None
            match = re.fullmatch(r"(\d+)x(\d+)", pending.get("RESOLUTION", ""))
            if match:
                width, height = int(match.group(1)), int(match.group(2))
            bandwidth = pending.get("BANDWIDTH", "")
            streams.append(
                HlsStream(
                    uri=safe_relative(line, where=where),
                    bandwidth=int(bandwidth) if bandwidth.isdigit() else None,
                    width=width,
                    height=height,
                )
            )
            pending = None
    return streams


@dataclass(frozen=True, kw_only=True)
class HlsResult(PluginResult):
    """An HLS stream on the server.

    Attributes:
        master_playlist: the master playlist relative to the job directory (upstream's absolute server path is
            normalised: everything up to and including ``jobs/<job_id>/`` is stripped).
        streams: the variants the master playlist lists.
        variants_generated: ``task_output.variants_generated``.
        total_segments: ``task_output.total_segments``.
        include_original: whether an ``-orig`` stream copy was asked for (not listed in the master).
        master_text: the master playlist's text.
    """

    master_playlist: str
    streams: tuple[HlsStream, ...]
    variants_generated: int | None = None
    total_segments: int | None = None
    include_original: bool = False
    master_text: str = ""

    @property
    def variants(self) -> tuple[HlsStream, ...]:
        """Alias of ``streams``."""
        return self.streams

    def _tree_plan(self, dest: Path) -> Plan[list[Path]]:
        dest.mkdir(parents=True, exist_ok=True)
        base = posixpath.dirname(self.master_playlist)
        written: list[Path] = []
        seen: set[str] = set()
        master_name = posixpath.basename(self.master_playlist)
        queue: list[tuple[str, bool]] = [(master_name, True)]
        if self.include_original:
            stem = master_name.rsplit(".", 1)[0]
            queue.append((f"{stem}-orig.m3u8", False))
        while queue:
            rel, required = queue.pop(0)
            if rel in seen:
                continue
            seen.add(rel)
            server_path = posixpath.join(base, rel) if base else rel
            target = dest.joinpath(*rel.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                written.append((yield from save(server_path, target)))
            except NotFoundError:
                if required:
                    raise
                continue
            if rel.lower().endswith(".m3u8"):
                text = target.read_text(encoding="utf-8", errors="replace")
                folder = posixpath.dirname(rel)
                for ref in playlist_references(text, where=f"job {self.job_id} {server_path}"):
                    joined = posixpath.normpath(posixpath.join(folder, ref)) if folder else ref
                    queue.append((safe_relative(joined, where=f"job {self.job_id} {server_path}"), True))
        return written

    def download_stream(self, dest: PathLike) -> list[Path]:
        """Download the master playlist and every playlist and segment it references into the folder ``dest``.

        The original-quality stream (``include_original``) is included when it exists. References that are
        absolute, URLs or contain ``..`` are refused.

        Returns:
            The files written (master playlist first).

        Raises:
            ComputeClientError: an unsafe reference, or a referenced file is missing.

        All or nothing: the files are staged in a temporary folder beside ``dest`` and moved into ``dest``
        only once every playlist and segment has downloaded and every reference was checked; after an error
        nothing of this download is in ``dest`` (its other files are never touched).
        """
        return self.files.run_into(dest, self._tree_plan)

    async def adownload_stream(self, dest: PathLike) -> list[Path]:
        """Async ``download_stream`` (all or nothing too)."""
        return await self.files.arun_into(dest, self._tree_plan)

    def _outputs_plan(self, dest: Path) -> Plan[list[Path]]:
        return self._tree_plan(dest)

    def summary(self) -> str:
        """Return the master playlist and the renditions."""
        renditions = ", ".join(f"{s.height}p" if s.height else s.uri for s in self.streams)
        return f"{self.master_playlist} ({renditions})"

    def as_dict(self) -> dict[str, JsonValue]:
        """Return the master path, streams and counts."""
        return {
            "master_playlist": self.master_playlist,
            "streams": [s.as_dict() for s in self.streams],
            "variants_generated": self.variants_generated,
            "total_segments": self.total_segments,
            "include_original": self.include_original,
        }


def build(record: JobResponse, files: JobFiles) -> Plan[HlsResult]:
    """Read the master playlist into an ``HlsResult``."""
    master = task_output_value(record, "master_playlist")
    if isinstance(master, str) and master.strip():
        path = job_relative(master, record.job_id)
    else:
        base = record.output_path or "output"
        path = safe_relative(posixpath.join(base, "adaptive.m3u8"), where=f"job {record.job_id}")
    data = yield from read(path)
    text = data.decode("utf-8", errors="replace")
    streams = parse_master(text, where=f"job {record.job_id} {path}")
    include = as_bool(task_output_value(record, "include_original"))
    if include is None:
        include = as_bool(record.params.get("include_original")) or False
    return HlsResult(
        job=record,
        files=files,
        master_playlist=path,
        streams=tuple(streams),
        variants_generated=as_int(task_output_value(record, "variants_generated")),
        total_segments=as_int(task_output_value(record, "total_segments")),
        include_original=include,
        master_text=text,
    )


SPEC: PluginSpec[HlsResult] = PluginSpec(
    task_type="hls_streaming",
    fields=(
        VariantsField("variants", "renditions to encode"),
        BoolField("include_original", "also make a stream copy of the original", value_default=False),
        ServerPathField(
            "input_absolute_path",
            "read this video path on the server instead of an upload; only upstream's Feb 2026 service takes it, "
            "and lets any caller read server files with it",
        ),
        ServerPathField(
            "output_absolute_path",
            "write the stream into this server folder; only upstream's Feb 2026 service takes it, and lets any "
            "caller write server files with it",
        ),
    ),
    build=build,
    method="generate_manifest",
    command="generate",
    metavar="VIDEO",
    summary="adaptive HLS stream (master playlist, variants, segments)",
)

VariantSpec = HlsVariant | tuple[int, int] | str


class HlsStreamingClient(PluginClient[OutT_co]):
    """``client.hls_streaming``: HLS packaging; ``result()`` gives an ``HlsResult``."""

    TASK_TYPE: ClassVar[str] = "hls_streaming"

    def generate_manifest(
        self,
        video: PathLike | None = None,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        *,
        variants: Sequence[VariantSpec] | None = None,
        include_original: bool = False,
        priority: int | None = None,
        filename: str | None = None,
        input_absolute_path: str | None = None,
        output_absolute_path: str | None = None,
    ) -> OutT_co:
        """Encode a video into adaptive HLS.

        Warning:
            ``input_absolute_path`` and ``output_absolute_path`` name paths on the *server*: a server that honours
            them (only upstream's February 2026 service does) reads and writes any file its worker can reach, for
            any caller, and its error messages tell whether a path exists. Use them only on a server you run
            yourself, never on a shared one. The reference deployment refuses them with 422; January 2026
            servers want a file. With ``output_absolute_path`` the files are written on the server outside the
            job's folder, so ``result()`` and downloads may not find them.

        Args:
            video: the video file to upload (it needs a video stream, or the job fails); may be left out when
                ``input_absolute_path`` is given.
            wait: wait for the job to end before returning (a failed job is returned, not raised).
            timeout: seconds ``wait`` may take.
            on_progress: called with a JobResponse on every update.
            on_complete: called once with the final JobResponse.
            variants: renditions as ``HlsVariant``, ``(height, kbps)`` or ``"720:3500"``; default 720:3500 and
                480:1500.
            include_original: also make an ``adaptive-orig`` stream copy (default false, like the server;
                upstream's SDK defaults to true).
            priority: 0-10.
            filename: upload name.
            input_absolute_path: an absolute path on the server of the video to read instead of an upload
                (upstream February 2026; see the warning).
            output_absolute_path: an absolute server folder to write the stream into (upstream February 2026; see
                the warning).

        Returns:
            ``PluginJob[HlsResult]`` (awaitable ``AsyncPluginJob`` on the async client).

        Raises:
            ConfigurationError: neither ``video`` nor ``input_absolute_path``, or a bad argument (nothing sent).
            FileNotFoundError: no such video. ValidationError: the server refused the request (400 or 422, with
            the server's detail), e.g. a server that takes no server paths.
        """
        if video is None and input_absolute_path is None:
            raise ConfigurationError(
                "hls_streaming: give a video file to upload, or input_absolute_path (a video path on the server, "
                "upstream February 2026 servers only)"
            )
        params: dict[str, object] = {
            "variants": variants,
            "include_original": include_original,
            "input_absolute_path": input_absolute_path,
            "output_absolute_path": output_absolute_path,
        }
        return self.submit(
            video, params, priority=priority, wait=wait, timeout=timeout,
            on_progress=on_progress, on_complete=on_complete, filename=filename,
        )  # fmt: skip
