"""Client demo against the embedded reference deployment (the README's shorter tour).

Starts `cl_compute` (broker + API + workers with the nine real plugins), then submits one job per plugin on the
committed test media through the typed plugin clients (``client.hash.compute(...)``, …) with MQTT callbacks, waits
for all of them and prints what each returned as a person reads it: the MD5 in hex, the camera, the number of
faces, the vector's first values. The output fits the terminal, down to 40 columns (it follows ``COLUMNS``).
Run: ``uv run python examples/demo.py``.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.text import Text

from cl_client import ComputeClient, JobFailedError, JobResponse
from cl_compute.deployment import Deployment

MEDIA = Path(__file__).resolve().parents[1] / "pytest_cl" / "media"
PNG = MEDIA / "images" / "synthetic_800x600.png"
VIDEO = MEDIA / "video" / "testsrc_720p_5s_audio.mp4"

#: (plugin, input, how to submit it on a client with an on_complete callback)
Submit = Callable[[ComputeClient, Path, Callable[[JobResponse], None]], Any]
FACES, NO_FACE = MEDIA / "faces", MEDIA / "no_face"
JOBS: list[tuple[str, Path, Submit]] = [
    ("hash", PNG, lambda c, p, cb: c.hash.compute(p, algorithm="md5", on_complete=cb)),
    ("exif", MEDIA / "images" / "exif_rich.jpg", lambda c, p, cb: c.exif.extract(p, on_complete=cb)),
    ("image_conversion", MEDIA / "images" / "rgba_transparent.png",
     lambda c, p, cb: c.image_conversion.convert(p, "jpg", 80, on_complete=cb)),
    ("media_thumbnail", VIDEO, lambda c, p, cb: c.media_thumbnail.generate(p, width=320, on_complete=cb)),
    ("face_detection", FACES / "group_4_faces.jpg", lambda c, p, cb: c.face_detection.detect(p, on_complete=cb)),
    ("face_embedding", FACES / "astronaut.png", lambda c, p, cb: c.face_embedding.embed_faces(p, on_complete=cb)),
    ("clip_embedding", FACES / "astronaut.png", lambda c, p, cb: c.clip_embedding.embed_image(p, on_complete=cb)),
    ("dino_embedding", NO_FACE / "coffee.png", lambda c, p, cb: c.dino_embedding.embed_image(p, on_complete=cb)),
    ("hls_streaming", VIDEO,
     lambda c, p, cb: c.hls_streaming.generate_manifest(p, variants=["360:800"], on_complete=cb)),
    ("hash", MEDIA / "hostile" / "empty.jpg", lambda c, p, cb: c.hash.compute(p, on_complete=cb)),  # fails on purpose
]  # fmt: skip


def entry(console: Console, ok: bool, plugin: str, source: Path, result: str) -> None:
    """Two short lines per job, wrapped to the terminal: what ran on what, then what came back."""
    mark = Text("✓ ", style="green") if ok else Text("✗ ", style="red")
    console.print(mark + Text(f"{plugin}  {source.name}", style="bold"))
    console.print(Padding(Text(result, style="" if ok else "red"), (0, 0, 0, 4)))


def main() -> int:
    console = Console(highlight=False)
    with tempfile.TemporaryDirectory(prefix="cl-demo-") as data_dir:
        console.print("[bold]Starting the embedded deployment[/] (broker, API, workers)…")
        with Deployment(workers=2, data_dir=Path(data_dir)) as dep:
            console.print(f"ready in {dep.startup_seconds:.2f} s")
            console.print(f"API {dep.server_url}", overflow="fold")
            console.print(f"MQTT {dep.mqtt_url}", overflow="fold")
            done = threading.Event()
            finished: list[str] = []

            def on_complete(job: JobResponse) -> None:
                finished.append(job.job_id)
                console.print(f"  event: {job.task_type} {job.job_id[:8]} → {job.status}")
                if len(finished) == len(JOBS):
                    done.set()

            with ComputeClient(dep.server_url, mqtt_url=dep.mqtt_url) as client:
                start = time.monotonic()
                jobs = [submit(client, path, on_complete) for _, path, submit in JOBS]
                done.wait(300)
                console.rule(f"{len(jobs)} jobs in {time.monotonic() - start:.1f} s")
                for (plugin, path, _), job in zip(JOBS, jobs, strict=True):
                    try:
                        entry(console, True, plugin, path, job.result(timeout=120).summary())
                    except JobFailedError as exc:
                        entry(console, False, plugin, path, f"error: {exc.job.error_message or exc}")
                    job.delete()
                expected = hashlib.md5(PNG.read_bytes()).hexdigest()
                console.print(f"md5sum of {PNG.name} here, to compare: {expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
