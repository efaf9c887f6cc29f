"""``hls_streaming``: adaptive HLS (H.264/AAC MPEG-TS segments) with upstream's ffmpeg invocation.

One ffmpeg run encodes every variant (``split`` + ``scale=-2:<H>``; ``-b:v``/``-maxrate``/``-bufsize`` =
``<bitrate>k``; x264 ``keyint=<2 s>:min-keyint=<2 s>:scenecut=0``; ``-hls_time 2``, ``-hls_list_size 0``,
``-hls_playlist_type vod``; AAC 128k per variant), files named as upstream::

    output/adaptive.m3u8                          master playlist
    output/adaptive-<H>p-<bitrate>.m3u8           one per variant, e.g. adaptive-720p-3500.m3u8
    output/adaptive-<H>p-<bitrate>-NNN.ts         its segments
    output/adaptive-orig.m3u8 + adaptive-orig-NNN.ts   only with include_original (stream copy; not in
                                                       the master playlist, as upstream)

Differences from upstream, all fixes: bad ``variants`` are a ParamError (422, not 500); a source without
audio works (upstream maps ``0:a`` unconditionally and fails), only the first audio stream is used; the GOP is
2 s of the source's frame rate plus forced key frames every 2 s (upstream's fixed 60 frames gives 2 s only at
30 fps), so segments are ~2 s whatever the rate; pixels are converted to yuv420p and heights rounded down to
even so any source encodes; ``master_playlist`` is the job-relative ``output/adaptive.m3u8``; when the
original cannot be stream-copied into MPEG-TS (e.g. VP9) it is re-encoded at its own size. Like upstream,
variants taller than the source are upscaled (the master lists exactly the requested variants). ffmpeg 7 and
newer (imageio-ffmpeg's bundled binary on a pip-only machine) leave a variant whose bandwidth they could not
measure, such as a one-frame stream, out of the master playlist: :func:`complete_master` lists it.
Progress comes from ffmpeg's ``-progress`` output against the PyAV-probed duration; the job's time limit
bounds the ffmpeg runs, and a cancellation kills ffmpeg.

Profile ``upstream-2026-01`` (:mod:`cl_compute.profile`): ``hls_master_absolute`` reports ``master_playlist`` as
the absolute server path (``<data>/jobs/<job_id>/output/adaptive.m3u8``; the files stay where they are);
``hls_accepts_stills`` takes a still image as the one-frame video stream upstream's ffprobe sees in it.

Profile ``upstream-2026-02`` (PROTOCOL.md §9) adds ``hls_manifest_progress`` (progress 1 once the master
playlist exists, no ffmpeg-based progress) and ``hls_server_paths``, upstream's hole: ``file`` becomes optional
and the form fields ``input_absolute_path`` / ``output_absolute_path`` name server paths the job reads and
writes. Without a file, the job reads ``input_absolute_path`` (a missing one ends ``error`` "Input file not
found: <path>") and writes to ``output_absolute_path``, creating it (even when the job then fails); without an
output path upstream writes to ``output`` under the worker's working folder, reproduced here as
``<data_dir>/worker_cwd/output``, shared by every such job and outside every job folder (downloads answer 404).
With a file both fields are ignored, as upstream's route does. Without the switch (the fixed and January
profiles) either field is refused with a 422 naming it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar, cast

from cl_compute.plugins import _media
from cl_compute.plugins.base import BOOL_SPELLINGS, NoInputError, ParamError, Plugin, PluginError, TaskContext
from cl_compute.profile import quirks

OUTPUT_DIR = "output"
MASTER = "adaptive.m3u8"
DEFAULT_VARIANTS = '[{"resolution":720,"bitrate":3500},{"resolution":480,"bitrate":1500}]'
MIN_RESOLUTION, MAX_RESOLUTION = 16, 4320
MIN_BITRATE, MAX_BITRATE = 100, 200_000
MAX_VARIANTS = 8
SEGMENT_SECONDS = 2
AUDIO_BITRATE = "128k"
X264_PRESET = "veryfast"
#: The form fields that name server paths (profile switch ``hls_server_paths`` only).
SERVER_PATH_FIELDS = ("input_absolute_path", "output_absolute_path")
#: Where upstream's relative default ``output_absolute_path`` ("output") lands: the worker's working folder,
#: reproduced under the data directory instead of wherever the worker was started.
WORKER_CWD = "worker_cwd"
NO_INPUT = "Either file or input_absolute_path must be provided"


def server_paths_allowed() -> bool:
    """Whether this process's profile reproduces upstream's server-path fields (switch ``hls_server_paths``)."""
    return quirks().hls_server_paths


def _variant_int(value: object, field: str, index: int, lo: int, hi: int) -> int:
    where = f"variants[{index}].{field}"
    if isinstance(value, bool) or value is None:
        raise ParamError("variants", f"{where} must be an integer", "int_type")
    if isinstance(value, float):
        if not value.is_integer():
            raise ParamError("variants", f"{where} must be a whole number", "int_from_float")
        value = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text.lstrip("+-").isdigit():
            raise ParamError("variants", f"{where} must be an integer", "int_parsing")
        value = int(text)
    elif not isinstance(value, int):
        raise ParamError("variants", f"{where} must be an integer", "int_type")
    if not lo <= value <= hi:
        raise ParamError("variants", f"{where} must be between {lo} and {hi} (got {value})", "value_error")
    return value


def parse_variants(text: str) -> list[dict[str, int]]:
    """Validate the ``variants`` JSON: a non-empty array of ``{"resolution": int, "bitrate": int}``."""
    try:
        data = cast(object, json.loads(text))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ParamError("variants", f"Invalid JSON: {exc}", "json_invalid") from exc
    if not isinstance(data, list):
        raise ParamError("variants", "Must be a JSON array of {resolution, bitrate} objects", "list_type")
    entries = cast("list[object]", data)  # a JSON array
    if not entries:
        raise ParamError("variants", "At least one variant is required", "too_short")
    if len(entries) > MAX_VARIANTS:
        raise ParamError("variants", f"At most {MAX_VARIANTS} variants are allowed", "too_long")
    variants: list[dict[str, int]] = []
    seen: set[tuple[int, int]] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ParamError("variants", f"variants[{i}] must be an object", "dict_type")
        item = cast("dict[str, object]", entry)  # a JSON object
        for key in ("resolution", "bitrate"):
            if key not in item:
                raise ParamError("variants", f"variants[{i}].{key} is required", "missing")
        resolution = _variant_int(item["resolution"], "resolution", i, MIN_RESOLUTION, MAX_RESOLUTION)
        bitrate = _variant_int(item["bitrate"], "bitrate", i, MIN_BITRATE, MAX_BITRATE)
        if (resolution, bitrate) in seen:
            raise ParamError("variants", f"variants[{i}] repeats {resolution}p at {bitrate}k", "value_error")
        seen.add((resolution, bitrate))
        variants.append({"resolution": resolution, "bitrate": bitrate})
    return variants


def variant_name(resolution: int, bitrate: int) -> str:
    """Upstream's variant name, used in file names: ``<H>p-<bitrate>``."""
    return f"{resolution}p-{bitrate}"


def _playlist_uris(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _stream_inf(variant: dict[str, int], info: _media.MediaInfo) -> str:
    """An ``#EXT-X-STREAM-INF`` line for a variant from its nominal rates (what ffmpeg writes without measures)."""
    height = max(2, variant["resolution"] - variant["resolution"] % 2)
    audio = int(AUDIO_BITRATE.rstrip("k")) if info.has_audio else 0
    line = f"#EXT-X-STREAM-INF:BANDWIDTH={(variant['bitrate'] + audio) * 1100}"
    if info.width and info.height:
        width = round(info.width * height / info.height / 2) * 2
        line += f",RESOLUTION={max(2, width)}x{height}"
    return line


def complete_master(master: Path, variants: list[dict[str, int]], info: _media.MediaInfo) -> bool:
    """List in the master playlist every variant whose playlist ffmpeg wrote but left out of the master.

    ffmpeg 7 and newer (imageio-ffmpeg's bundled binary, the pip-only path) leave a variant out of the master
    playlist when they cannot measure its bandwidth, as for a one-frame stream; the variant's own playlist and
    segments are there. Such a master is rewritten with the variants in the requested order: ffmpeg's
    ``#EXT-X-STREAM-INF`` line where it wrote one, else one from the nominal bitrates and the scaled size.

    Args:
        master: the master playlist ffmpeg wrote.
        variants: the requested variants.
        info: the probed source (its size and whether it has audio).

    Returns:
        True when the master playlist was rewritten.
    """
    lines = master.read_text(encoding="utf-8", errors="replace").splitlines()
    written: dict[str, str] = {}
    for i, line in enumerate(lines):
        uri = line.strip()
        if uri and not uri.startswith("#"):
            previous = lines[i - 1].strip() if i else ""
            written[uri] = previous if previous.startswith("#EXT-X-STREAM-INF") else ""
    names = [f"adaptive-{variant_name(v['resolution'], v['bitrate'])}.m3u8" for v in variants]
    absent = [n for n in names if n not in written and (master.parent / n).is_file()]
    if not absent:
        return False
    body = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for name, variant in zip(names, variants, strict=True):
        if name in written or name in absent:
            body += [written.get(name) or _stream_inf(variant, info), name]
    master.write_text("\n".join(body) + "\n", encoding="utf-8")
    return True


class HlsStreamingPlugin(Plugin):
    """ffmpeg adaptive HLS (see the module docstring)."""

    task_type: ClassVar[str] = "hls_streaming"
    details: ClassVar[Mapping[str, str]] = {"backend": "ffmpeg (libx264 + aac, HLS muxer)"}
    form_fields: ClassVar[Mapping[str, Mapping[str, object]]] = {
        "variants": {
            "type": "string",
            "default": DEFAULT_VARIANTS,
            "contentMediaType": "application/json",
            "contentSchema": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_VARIANTS,
                "items": {
                    "type": "object",
                    "required": ["resolution", "bitrate"],
                    "properties": {
                        "resolution": {
                            "type": "integer",
                            "minimum": MIN_RESOLUTION,
                            "maximum": MAX_RESOLUTION,
                            "description": "output height in pixels",
                        },
                        "bitrate": {
                            "type": "integer",
                            "minimum": MIN_BITRATE,
                            "maximum": MAX_BITRATE,
                            "description": "video bitrate in kbit/s",
                        },
                    },
                },
            },
            "description": (
                f'A JSON array of 1 to {MAX_VARIANTS} `{{"resolution": int, "bitrate": int}}` objects '
                f"(height {MIN_RESOLUTION}-{MAX_RESOLUTION} px, bitrate {MIN_BITRATE}-{MAX_BITRATE} kbit/s, no "
                "pair twice); one HLS variant each."
            ),
        },
        "include_original": {
            "type": "boolean",
            "default": False,
            "description": (
                f"Also write `adaptive-orig.m3u8`, the source stream-copied (not listed in the master playlist). "
                f"{BOOL_SPELLINGS}."
            ),
        },
    }

    def __init__(self) -> None:
        self._ffmpeg: str | None = None

    def file_optional(self) -> bool:
        """True only in a profile with upstream's server paths (``hls_server_paths``)."""
        return server_paths_allowed()

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        """Validate ``variants`` (JSON array) and ``include_original`` (bool, default false).

        ``input_absolute_path`` / ``output_absolute_path``: refused (ParamError) unless the profile has
        upstream's server paths; there they are the job's input and output when no file was sent
        (``upload_name`` ``""``).

        Raises:
            ParamError: a bad field, or a server-path field where they are not accepted.
            NoInputError: neither a file nor ``input_absolute_path`` (server-path profiles only).
        """
        allowed = server_paths_allowed()
        if not allowed:
            for name in SERVER_PATH_FIELDS:
                if _media.form_value(form, name) is not None:
                    raise ParamError(
                        name,
                        f"{name} is not accepted: this deployment never reads or writes server paths named by a "
                        "client (upstream's February 2026 hole, PROTOCOL.md §9); upload the video as `file`",
                        "extra_forbidden",
                    )
        text = _media.form_value(form, "variants") or DEFAULT_VARIANTS
        variants = parse_variants(text)
        include_original = _media.form_bool(form, "include_original", False)
        params: dict[str, object] = {
            "variants": variants,
            "include_original": include_original,
            "output_path": OUTPUT_DIR,
        }
        if allowed and not upload_name:  # upstream's route: the file wins, then the input path, else 400
            input_absolute = form.get("input_absolute_path") or ""
            if not input_absolute:
                raise NoInputError(NO_INPUT)
            params["output_path"] = ""
            params["input_absolute_path"] = input_absolute
            params["output_absolute_path"] = form.get("output_absolute_path") or OUTPUT_DIR
        return params

    def load(self) -> None:
        """Locate ffmpeg (BackendUnavailable without one) and record its version."""
        self._ffmpeg = _media.require_ffmpeg()
        type(self).details = {"ffmpeg": _media.ffmpeg_label(self._ffmpeg), "probe": _media.av_version()}

    def run(self, ctx: TaskContext) -> dict[str, object]:
        """Encode the variants (and the original on request) into ``output/``."""
        started = time.monotonic()
        raw_variants = ctx.params.get("variants")
        variants = parse_variants(json.dumps(raw_variants)) if raw_variants else parse_variants(DEFAULT_VARIANTS)
        include_original = bool(ctx.params.get("include_original", False))
        # a planted defect (faults profile family): the last requested variant is not made, yet counted
        made = variants[:-1] if len(variants) > 1 and quirks().fault_hls_variant_missing else variants
        server_input = ctx.params.get("input_absolute_path")
        out_dir: Path | None = None
        if server_input:
            path, out_dir = self._server_paths(ctx, str(server_input))
        else:
            path = ctx.input_path
            _media.require_input(path)
        exe = self._ffmpeg or _media.find_ffmpeg()
        if exe is None:
            raise PluginError("No ffmpeg available on this worker")
        mime = _media.detect_mime(path)
        media_type = _media.media_type_of(path, mime)
        if media_type == "image" and not quirks().hls_accepts_stills:
            raise PluginError(f"Input file {path.name} is a still image ({mime}), not a video")
        if media_type in ("text", "url"):
            raise PluginError(f"Input file {path.name} does not contain a video stream (it is {mime})")
        info = _media.probe_media(path)
        if not info.has_video:
            raise PluginError(f"Input file {path.name} does not contain a video stream")
        if out_dir is None:
            out_dir = ctx.output(str(ctx.params.get("output_path") or OUTPUT_DIR))
            out_dir.mkdir(parents=True, exist_ok=True)
        master = out_dir / MASTER
        manifest_only = quirks().hls_manifest_progress
        manifest_reported = False

        def manifest_ready() -> None:
            nonlocal manifest_reported
            if not manifest_reported and master.is_file() and master.stat().st_size > 0:
                manifest_reported = True
                ctx.report_progress(1)

        if not manifest_only:
            ctx.report_progress(2)

        def remaining() -> float:
            left = ctx.time_limit - (time.monotonic() - started)
            if left <= 1:
                raise PluginError(f"hls_streaming exceeded the job time limit ({ctx.time_limit:.0f} s)")
            return left

        span = 85 if include_original else 95

        def on_progress(fraction: float) -> None:
            if manifest_only:  # upstream polls for the master playlist and reports nothing else
                manifest_ready()
            else:
                ctx.report_progress(2 + int(fraction * (span - 2)))

        args = self._variant_args(path, out_dir, made, info)
        _media.run_ffmpeg(
            exe,
            args,
            timeout=remaining(),
            duration=info.duration,
            on_progress=on_progress,
            what="ffmpeg (HLS variants)",
        )
        if manifest_only:
            manifest_ready()  # upstream's last look, for an ffmpeg run that ended before a poll saw the file
        else:
            ctx.report_progress(span)
        if include_original and not quirks().fault_hls_no_original:  # a planted defect: the original skipped
            self._original(exe, path, out_dir, remaining, info)
            if not manifest_only:
                ctx.report_progress(97)

        if not master.exists():
            raise PluginError("ffmpeg did not write the master playlist adaptive.m3u8")
        complete_master(master, variants, info)
        total_segments = 0
        listed = _playlist_uris(master)
        for variant in made:
            name = f"adaptive-{variant_name(variant['resolution'], variant['bitrate'])}.m3u8"
            if name not in listed or not (out_dir / name).exists():
                raise PluginError(f"ffmpeg did not produce the variant playlist {name}")
        for uri in listed:
            playlist = out_dir / uri
            segments = _playlist_uris(playlist)
            missing = [s for s in segments if not (out_dir / s).exists()]
            if not segments or missing:
                raise PluginError(f"Variant playlist {uri} is empty or references missing segments")
            total_segments += len(segments)
        ctx.report_progress(100)
        return {
            "master_playlist": str(master.absolute()) if quirks().hls_master_absolute else f"{OUTPUT_DIR}/{MASTER}",
            "variants_generated": len(variants),
            "total_segments": total_segments,
            "include_original": include_original,
        }

    @staticmethod
    def _server_paths(ctx: TaskContext, input_absolute: str) -> tuple[Path, Path]:
        """Upstream's February server paths: the input file and the (created) output folder of the job.

        Raises:
            PluginError: the profile does not allow server paths, or the input does not exist.
        """
        if not server_paths_allowed():
            raise PluginError("input_absolute_path is not accepted by this deployment")
        path = Path(input_absolute)
        if not path.exists():
            raise PluginError(f"Input file not found: {path}")
        output = Path(str(ctx.params.get("output_absolute_path") or OUTPUT_DIR))
        if not output.is_absolute():
            output = ctx.job_dir.parent.parent / WORKER_CWD / output
        output.mkdir(parents=True, exist_ok=True)
        return path, output

    @staticmethod
    def _variant_args(path: Path, out_dir: Path, variants: list[dict[str, int]], info: _media.MediaInfo) -> list[str]:
        n = len(variants)
        labels = "".join(f"[v{i}in]" for i in range(n))
        scales = ";".join(
            f"[v{i}in]scale=-2:{max(2, v['resolution'] - v['resolution'] % 2)},format=yuv420p[v{i}out]"
            for i, v in enumerate(variants)
        )
        filter_complex = f"[0:v:0]split={n}{labels};{scales}"
        gop = max(1, round(SEGMENT_SECONDS * info.fps)) if info.fps and info.fps < 240 else 60
        args = ["-i", str(path), "-filter_complex", filter_complex]
        for i in range(n):
            args += ["-map", f"[v{i}out]"]
        if info.has_audio:
            for _ in range(n):
                args += ["-map", "0:a:0"]
        args += ["-c:v", "libx264", "-preset", X264_PRESET]
        for i, v in enumerate(variants):
            rate = f"{v['bitrate']}k"
            args += [f"-b:v:{i}", rate, f"-maxrate:v:{i}", rate, f"-bufsize:v:{i}", rate]
        if info.has_audio:
            args += ["-c:a", "aac"]
            for i in range(n):
                args += [f"-b:a:{i}", AUDIO_BITRATE]
        stream_map = " ".join(
            (f"v:{i},a:{i}" if info.has_audio else f"v:{i}") + f",name:{variant_name(v['resolution'], v['bitrate'])}"
            for i, v in enumerate(variants)
        )
        args += [
            "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0",
            "-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT_SECONDS})",
            "-f", "hls",
            "-var_stream_map", stream_map,
            "-hls_list_size", "0",
            "-hls_time", str(SEGMENT_SECONDS),
            "-hls_playlist_type", "vod",
            "-hls_segment_filename", str(out_dir / "adaptive-%v-%03d.ts"),
            "-master_pl_name", MASTER,
            str(out_dir / "adaptive-%v.m3u8"),
        ]  # fmt: skip
        return args

    @staticmethod
    def _original(exe: str, path: Path, out_dir: Path, remaining: Callable[[], float], info: _media.MediaInfo) -> None:
        hls = [
            "-f", "hls",
            "-hls_time", str(SEGMENT_SECONDS),
            "-hls_list_size", "0",
            "-hls_playlist_type", "vod",
            "-hls_segment_filename", str(out_dir / "adaptive-orig-%03d.ts"),
            str(out_dir / "adaptive-orig.m3u8"),
        ]  # fmt: skip
        maps = ["-map", "0:v:0"] + (["-map", "0:a:0"] if info.has_audio else [])
        try:
            _media.run_ffmpeg(
                exe,
                ["-i", str(path), *maps, "-c", "copy", *hls],
                timeout=remaining(),
                what="ffmpeg (original copy)",
            )
        except PluginError:
            for stale in out_dir.glob("adaptive-orig*"):
                stale.unlink(missing_ok=True)
            reencode = ["-c:v", "libx264", "-preset", X264_PRESET, "-pix_fmt", "yuv420p"]
            if info.has_audio:
                reencode += ["-c:a", "aac", "-b:a", AUDIO_BITRATE]
            _media.run_ffmpeg(
                exe,
                ["-i", str(path), *maps, *reencode, "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", *hls],
                timeout=remaining(),
                what="ffmpeg (original re-encode)",
            )
