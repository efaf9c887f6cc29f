"""Fan-out workflow: 50 cheap jobs across four plugins from one client.

The 50 jobs are submitted together once (a module fixture), every job with callbacks at submission. Each
plugin's part is its own check, so one plugin's defect does not hide the others passing: every result is
right (md5 of the bytes, the EXIF fixture's known values, thumbnail and conversion sizes computed with
Pillow). One check covers what the 50 share (all end under the deadline, each ``on_complete`` fires exactly
once, progress never goes backwards), and the last one deletes all 50 explicitly and finds none of them left
on the server (each id answers 404 to a GET and to a download). That check goes by job id, not by the
server's job count, because other tests may run on the same deployment at the same time (xdist).

Every input is an RGB or greyscale image or a text file that every upstream-compatible deployment handles
(PROTOCOL.md §8): no part relies on a [fix].
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from PIL import Image

from cl_client import ComputeClient, JobNotFoundError, JobResponse, JobTimeoutError, NotFoundError
from cl_client.plugins import PluginJob, PluginResult
from pytest_cl._media import MediaCatalogue, MediaItem
from pytest_cl.conformance._checks import expect, expect_value, has_magic
from pytest_cl.conformance.plugins._media_helpers import byte_digest_answers
from pytest_cl.deployment import DeploymentInfo

PLUGINS = ("hash", "exif", "media_thumbnail", "image_conversion")
pytestmark = [pytest.mark.timeout(240)]

N_JOBS = 50
DEADLINE_S = 180.0
#: Small decodable images (≥ 64 px on each side, so a 64 px thumbnail never upscales).
IMAGES = (
    "name_spaces",
    "name_unicode",
    "name_hash_question",
    "face_hopper",
    "png_pixels_twin",
    "webp_pixels_twin",
    "png_800x600",
    "jpeg_exif_stripped",
)


@dataclass
class Spec:
    """One job of the fan-out: how to submit it and how to check its result."""

    plugin: str
    label: str
    submit: Callable[..., PluginJob[PluginResult]]
    check: Callable[[PluginResult, str], None]


def _size(item: MediaItem) -> tuple[int, int]:
    with Image.open(item.path) as im:
        return im.size


def _hash_spec(client: ComputeClient, item: MediaItem) -> Spec:
    expected = hashlib.md5(item.read_bytes()).hexdigest()

    def check(result: PluginResult, where: str) -> None:
        expect_value(
            getattr(result, "hash_value"),  # noqa: B009
            expected,
            f"{where}: hash_value",
            meaning="the MD5 of the uploaded bytes",
            wrong=byte_digest_answers(item.path, expected),
        )

    return Spec("hash", f"hash {item.name}", lambda **cb: client.hash.compute(item.path, algorithm="md5", **cb), check)


def _exif_spec(client: ComputeClient, item: MediaItem) -> Spec:
    typed = item.fact_mapping("exif").get("typed") if "exif" in item.facts else None

    def check(result: PluginResult, where: str) -> None:
        get = getattr(result, "get")  # noqa: B009
        if typed is not None:
            expect((get("Make"), get("Model")), (typed["make"], typed["model"]), f"{where}: Make, Model")
            expect(get("ISO"), typed["iso"], f"{where}: ISO")
        else:
            expect((get("Make"), get("Model")), (None, None), f"{where}: Make, Model of an image without EXIF")

    return Spec("exif", f"exif {item.name}", lambda **cb: client.exif.extract(item.path, **cb), check)


def _thumbnail_spec(client: ComputeClient, item: MediaItem) -> Spec:
    w, h = _size(item)
    scale = 64 / max(w, h)
    expected = (round(w * scale), round(h * scale))

    def check(result: PluginResult, where: str) -> None:
        data = getattr(result, "read_bytes")()  # noqa: B009
        assert has_magic(data, "jpg"), f"{where}: the thumbnail is not a JPEG (starts with {data[:4]!r})"
        with Image.open(io.BytesIO(data)) as im:
            got = im.size
        assert max(got) == 64 and all(abs(a - b) <= 1 for a, b in zip(got, expected, strict=True)), (
            f"{where}: a {w}x{h} image in a 64x64 box gave {got[0]}x{got[1]}, expected {expected[0]}x{expected[1]} ± 1"
        )

    return Spec(
        "media_thumbnail",
        f"thumbnail {item.name}",
        lambda **cb: client.media_thumbnail.generate(item.path, width=64, height=64, **cb),
        check,
    )


def _conversion_spec(client: ComputeClient, item: MediaItem) -> Spec:
    size = _size(item)

    def check(result: PluginResult, where: str) -> None:
        data = getattr(result, "read_bytes")()  # noqa: B009
        assert has_magic(data, "png"), f"{where}: the converted file is not a PNG (starts with {data[:8]!r})"
        with Image.open(io.BytesIO(data)) as im:
            expect((im.format, im.size), ("PNG", size), f"{where}: format and size (the source's)")

    return Spec(
        "image_conversion",
        f"png {item.name}",
        lambda **cb: client.image_conversion.convert(item.path, "png", **cb),
        check,
    )


def _specs(client: ComputeClient, media: MediaCatalogue) -> list[Spec]:
    makers = (_hash_spec, _thumbnail_spec, _conversion_spec)
    specs: list[Spec] = [
        _exif_spec(client, media["jpeg_exif"]),
        _exif_spec(client, media["jpeg_exif_stripped"]),
        _hash_spec(client, media["text_plain"]),
    ]
    i = 0
    while len(specs) < N_JOBS:
        item = media[IMAGES[i % len(IMAGES)]]
        specs.append(makers[i % len(makers)](client, item))
        i += 1
    return specs


@dataclass
class FanoutRun:
    """The 50 jobs, their final records (None: not ended by the deadline) and what their callbacks saw."""

    specs: list[Spec]
    jobs: list[PluginJob[PluginResult]]
    records: list[JobResponse | None]
    cond: threading.Condition
    completions: Counter[str]
    statuses: dict[str, list[str]]
    progress: dict[str, list[int]]
    seconds: float

    @property
    def ids(self) -> list[str]:
        return [j.job_id for j in self.jobs]

    def check_part(self, plugin: str) -> None:
        """Every job of ``plugin`` completed with the right result and a ``params.output_path``; all the
        part's wrong jobs are reported together, each by label and job id."""
        problems: list[str] = []
        checked = 0
        for spec, job, record in zip(self.specs, self.jobs, self.records, strict=True):
            if spec.plugin != plugin:
                continue
            checked += 1
            where = f"{spec.plugin} job {job.job_id} ({spec.label})"
            if record is None:
                problems.append(f"{where} did not end within the {DEADLINE_S:.0f} s deadline")
                continue
            if record.status != "completed":
                problems.append(f"{where} ended {record.status!r} ({record.error_message or 'no error_message'})")
                continue
            try:
                result = job.result(30)
                spec.check(result, where)
                output_path = result.job.params.get("output_path")
                assert isinstance(output_path, str), f"{where}: params has no output_path: {result.job.params}"
            except AssertionError as exc:
                problems.append(str(exc).split("\n", 1)[0])
        assert checked, f"the fan-out has no {plugin} job"
        shown = "; ".join(problems[:5]) + (f"; … and {len(problems) - 5} more" if len(problems) > 5 else "")
        assert not problems, f"{len(problems)} of {checked} {plugin} jobs are wrong: {shown}"


@pytest.fixture(scope="module")
def fanout(
    cl_session_client: ComputeClient, cl_media: MediaCatalogue, cl_deployment: DeploymentInfo
) -> FanoutRun | None:
    """Submit the 50 jobs together once, with callbacks, and wait for all of them under one deadline. Only the
    jobs of plugins the deployment offers are submitted (None when it offers none): the other parts' checks apply
    the missing-worker policy through their ``cl_requires``, and the parts that ran are still checked."""
    specs = [spec for spec in _specs(cl_session_client, cl_media) if cl_deployment.offers(spec.plugin)]
    if not specs:
        return None
    cond = threading.Condition()
    completions: Counter[str] = Counter()
    statuses: dict[str, list[str]] = {}
    progress: dict[str, list[int]] = {}

    def on_progress(job: JobResponse) -> None:
        with cond:
            progress.setdefault(job.job_id, []).append(job.progress)

    def on_complete(job: JobResponse) -> None:
        with cond:
            completions[job.job_id] += 1
            statuses.setdefault(job.job_id, []).append(job.status)
            cond.notify_all()

    started = time.monotonic()
    jobs = [spec.submit(on_progress=on_progress, on_complete=on_complete) for spec in specs]
    ids = [j.job_id for j in jobs]
    with cond:
        cond.wait_for(lambda: all(completions[i] for i in ids), DEADLINE_S)
    records: list[JobResponse | None] = []
    for job in jobs:
        try:
            records.append(job.wait(max(1.0, DEADLINE_S - (time.monotonic() - started))))
        except JobTimeoutError:
            records.append(None)
    return FanoutRun(specs, jobs, records, cond, completions, statuses, progress, time.monotonic() - started)


def _run(fanout: FanoutRun | None) -> FanoutRun:
    assert fanout is not None, "the fan-out's jobs were not submitted (a worker is missing)"
    return fanout


# -- each plugin's part ---------------------------------------------------------------------------------------
@pytest.mark.cl_requires("hash")
def test_hash_part(fanout: FanoutRun | None) -> None:
    """Every md5 job (images and a text file) gives the MD5 of the uploaded bytes."""
    _run(fanout).check_part("hash")


@pytest.mark.cl_requires("exif")
def test_exif_part(fanout: FanoutRun | None) -> None:
    """The EXIF fixture gives its known Make, Model and ISO; its stripped copy gives neither Make nor Model."""
    _run(fanout).check_part("exif")


@pytest.mark.cl_requires("media_thumbnail")
def test_thumbnail_part(fanout: FanoutRun | None) -> None:
    """Every thumbnail is a JPEG fitting 64x64 with the source's aspect ratio (± 1 px)."""
    _run(fanout).check_part("media_thumbnail")


@pytest.mark.cl_requires("image_conversion")
def test_conversion_part(fanout: FanoutRun | None) -> None:
    """Every PNG conversion is a PNG of the source's size."""
    _run(fanout).check_part("image_conversion")


# -- what the 50 share ----------------------------------------------------------------------------------------
@pytest.mark.cl_requires(*PLUGINS)
def test_all_fifty_end_under_the_deadline_each_callback_once(fanout: FanoutRun | None) -> None:
    """50 distinct ids; every job ends within the deadline; ``on_complete`` fires exactly once per job (status
    completed) and for no other job; ``on_progress`` never goes backwards."""
    run = _run(fanout)
    assert len(run.specs) == N_JOBS, f"the test built {len(run.specs)} jobs, not {N_JOBS}"
    ids = run.ids
    assert len(set(ids)) == N_JOBS, f"{N_JOBS} submissions got only {len(set(ids))} distinct job ids"
    labels = {job.job_id: spec.label for spec, job in zip(run.specs, run.jobs, strict=True)}
    with run.cond:
        missing = {i: labels[i] for i in ids if not run.completions[i]}
    assert not missing, f"no on_complete within {DEADLINE_S:.0f} s for {len(missing)} jobs: {missing}"
    assert run.seconds < DEADLINE_S, f"the {N_JOBS} jobs took {run.seconds:.0f} s, the deadline is {DEADLINE_S:.0f} s"
    for job in run.jobs:  # every record fetched again: late duplicate callbacks had time to arrive
        job.wait(30)
    with run.cond:
        foreign = set(run.completions) - set(ids)
        assert not foreign, f"on_complete fired for jobs not submitted: {sorted(foreign)}"
        repeated = {f"{i} ({labels[i]})": n for i, n in run.completions.items() if n != 1}
        assert not repeated, f"on_complete fired more than once: {repeated}"
        not_completed = {f"{i} ({labels[i]})": run.statuses[i] for i in ids if run.statuses[i] != ["completed"]}
        assert not not_completed, f"on_complete reported other statuses than one 'completed': {not_completed}"
        backwards = {f"{i} ({labels.get(i, '?')})": p for i, p in run.progress.items() if p != sorted(p)}
        assert not backwards, f"on_progress went backwards: {backwards}"


# -- last: this check deletes the 50 jobs, so it stays at the end of the file (pytest and xdist run a
# module's checks in file order within each process, and each process has its own 50 jobs) ------------------
@pytest.mark.cl_requires(*PLUGINS)
def test_none_left_after_deleting_all_fifty(fanout: FanoutRun | None, compute_client: ComputeClient) -> None:
    """After an explicit DELETE of each of the 50 jobs, every id answers 404 to a GET and to a download of its
    output file (checked by id, not by the server's job count: other tests share the deployment)."""
    run = _run(fanout)
    outputs: dict[str, str] = {}
    for spec, job, record in zip(run.specs, run.jobs, run.records, strict=True):
        output_path = (record.params if record is not None else {}).get("output_path")
        assert isinstance(output_path, str), (
            f"{spec.plugin} job {job.job_id} ({spec.label}): no params.output_path to check after the deletion"
        )
        outputs[job.job_id] = output_path
    for job_id in run.ids:
        compute_client.delete_job(job_id)
    left: list[str] = []
    for job_id in run.ids:
        try:
            compute_client.get_job(job_id)
            left.append(f"GET /jobs/{job_id} still answers 200")
        except JobNotFoundError:
            pass
        try:
            compute_client.read_job_file(job_id, outputs[job_id])
            left.append(f"job {job_id}: {outputs[job_id]} still downloads")
        except NotFoundError:
            pass
    shown = "; ".join(left[:5]) + (f"; … and {len(left) - 5} more" if len(left) > 5 else "")
    assert not left, f"{len(left)} traces of the {N_JOBS} deleted jobs are left on the server: {shown}"
