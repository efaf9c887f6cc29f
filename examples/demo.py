"""Client demo against the embedded reference deployment (the README's first command).

Starts `cl_compute` (broker + API + workers with the nine real plugins), then submits one job per plugin on the
committed test media through ``ComputeClient`` with MQTT callbacks, waits for all of them, and prints what each
job returned. Run: ``uv run python examples/demo.py``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cl_client import ComputeClient, Job, JobFailedError, JobResponse
from cl_compute.deployment import Deployment

MEDIA = Path(__file__).resolve().parents[1] / "pytest_cl" / "media"
JOBS: list[tuple[str, str, dict[str, object]]] = [
    ("hash", "images/synthetic_800x600.png", {"algorithm": "md5"}),
    ("exif", "images/exif_rich.jpg", {}),
    ("image_conversion", "images/rgba_transparent.png", {"format": "jpg", "quality": 80}),
    ("media_thumbnail", "video/testsrc_720p_5s_audio.mp4", {"width": 320}),
    ("face_detection", "faces/group_4_faces.jpg", {}),
    ("face_embedding", "faces/astronaut.png", {}),
    ("clip_embedding", "faces/astronaut.png", {}),
    ("dino_embedding", "no_face/coffee.png", {}),
    ("hls_streaming", "video/testsrc_720p_5s_audio.mp4", {"variants": [{"resolution": 360, "bitrate": 800}]}),
    ("hash", "hostile/empty.jpg", {}),  # fails on purpose: a clear error, not a hang
]


def summary(job: JobResponse) -> str:
    out = job.task_output or {}
    if job.task_type == "face_detection":
        return f"{out.get('num_faces')} faces"
    if job.task_type in ("clip_embedding", "dino_embedding", "face_embedding"):
        return f"dim {out.get('embedding_dim')}, normalized {out.get('normalized')}"
    if job.task_type == "exif":
        return f"{out.get('make')} {out.get('model')}, ISO {out.get('iso')}, f/{out.get('f_number')}"
    if job.task_type == "hls_streaming":
        return f"{out.get('variants_generated')} variant(s), {out.get('total_segments')} segments"
    return json.dumps(out)[:60] if out else str(job.output_path)


def main() -> int:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="cl-demo-") as data_dir:
        console.print("[bold]Starting the embedded deployment[/] (broker, API, workers)…")
        with Deployment(workers=2, data_dir=Path(data_dir)) as dep:
            console.print(f"ready in {dep.startup_seconds:.2f} s: API {dep.server_url}, MQTT {dep.mqtt_url}")
            done = threading.Event()
            finished: list[str] = []

            def on_complete(job: JobResponse) -> None:
                finished.append(job.job_id)
                console.print(f"  event: {job.task_type} {job.job_id[:8]} → {job.status}")
                if len(finished) == len(JOBS):
                    done.set()

            with ComputeClient(dep.server_url, mqtt_url=dep.mqtt_url) as client:
                start = time.monotonic()
                jobs: list[Job] = [
                    client.submit(task, MEDIA / rel, params, on_complete=on_complete) for task, rel, params in JOBS
                ]
                done.wait(300)
                table = Table(title=f"{len(jobs)} jobs in {time.monotonic() - start:.1f} s")
                for col in ("plugin", "input", "status", "result"):
                    table.add_column(col)
                for (task, rel, _), job in zip(JOBS, jobs, strict=True):
                    try:
                        record = job.result(timeout=120)
                        table.add_row(task, rel, "[green]completed[/]", summary(record))
                    except JobFailedError as exc:
                        table.add_row(task, rel, "[red]error[/]", exc.job.error_message or "")
                    job.delete()
                console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
