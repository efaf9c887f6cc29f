"""A program written for upstream's SDK (its README quick start style), run unchanged on cl_client.

Start a deployment (``cl-compute up``), then::

    python examples/upstream_style/quickstart.py [IMAGE]

The URLs come from upstream's variables ``COMPUTE_URL`` and ``MQTT_URL`` (defaults: localhost:8002 and
localhost:1883), as they did with upstream's SDK. Nothing below is specific to this project.
"""

import asyncio
import sys
import tempfile
from pathlib import Path

import httpx

from cl_client import ComputeClient
from cl_client.exceptions import JobNotFoundError, WorkerUnavailableError
from cl_client.models import JobResponse

#: a photo from the repository's test media (pass another path as the first argument).
PHOTO = Path(__file__).resolve().parents[2] / "pytest_cl" / "media" / "images" / "synthetic_800x600.png"


async def main(image: Path, out: Path) -> int:
    async with ComputeClient() as client:
        try:
            await client.wait_for_workers(required_capabilities=["hash", "media_thumbnail"], timeout=60)
        except WorkerUnavailableError as exc:
            print(f"no worker: {exc.task_type}; available: {exc.available_capabilities}")
            return 2

        completed = asyncio.Event()
        finals: list[JobResponse] = []

        async def on_complete(job: JobResponse) -> None:  # async callbacks run on this loop
            print(f"Job completed: {job.job_id} status={job.status}")
            finals.append(job)
            completed.set()

        job = await client.hash.compute(
            image=image,
            on_progress=lambda j: print(f"Progress: {j.progress}%"),
            on_complete=on_complete,
        )
        print(f"Job submitted: {job.job_id}")
        await asyncio.wait_for(completed.wait(), 120)

        record = await client.get_job(job.job_id)
        if record.status in ["completed", "failed"]:
            print(f"hash job final status: {record.status}, output: {record.task_output}")

        thumb = await client.media_thumbnail.generate(media=image, width=32, height=32, wait=True, timeout=120)
        if thumb.status != "completed":
            print(f"thumbnail failed: {thumb.error_message}")
            return 1
        output_path = thumb.params["output_path"]
        assert isinstance(output_path, str)
        await client.download_job_file(thumb.job_id, output_path, out)
        size = len(await asyncio.to_thread(out.read_bytes))
        print(f"Downloaded {size} bytes to {out.name}")

        await client.delete_job(thumb.job_id)
        try:
            await client.get_job(thumb.job_id)
        except JobNotFoundError:
            print("deleted job is gone")
        try:
            await client.download_job_file(job.job_id, "output/no-such-file", out.with_suffix(".none"))
        except httpx.HTTPStatusError as exc:
            print(f"missing file answered {exc.response.status_code}")
        return 0 if finals and finals[0].status == "completed" else 1


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        picture = Path(sys.argv[1]) if len(sys.argv) > 1 else PHOTO
        sys.exit(asyncio.run(main(picture, Path(tmp) / "thumbnail.jpg")))
