"""A batch reports each job as it ends, not in input order (the CLI's progress bars follow these updates):
a real broker and the scripted server, whose first job stays running while the second one finishes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cl_client import BatchItem, BatchOutcome, BatchUpdate, ComputeClient, ComputeClientConfig, run_batch
from cl_compute.broker import Broker

from .scripted_server import ScriptedServer, wait_until

CFG = ComputeClientConfig(event_silence_timeout=0.6, poll_interval=0.2, poll_max_interval=0.5)


@pytest.fixture
def client(server: ScriptedServer, broker: Broker) -> Iterator[ComputeClient]:
    with ComputeClient(server.url, mqtt_url=broker.url, config=CFG) as c:
        yield c


def test_a_later_job_is_reported_done_while_an_earlier_one_still_runs(
    server: ScriptedServer, client: ComputeClient, tmp_path: Path
) -> None:
    files = []
    for name in ("first.png", "second.png", "third.png"):
        p = tmp_path / name
        p.write_bytes(b"\x89PNG" + name.encode() * 10)
        files.append(p)
    updates: list[BatchUpdate] = []
    lock = threading.Lock()

    def on_progress(update: BatchUpdate) -> None:
        with lock:
            updates.append(update)

    def seen(pred: Callable[[BatchUpdate], bool]) -> bool:
        with lock:
            return any(pred(u) for u in updates)

    box: list[list[BatchOutcome]] = []
    items = [BatchItem("hash", f, {"algorithm": "md5"}) for f in files]
    runner = threading.Thread(
        target=lambda: box.append(run_batch(client, items, timeout=120, on_progress=on_progress, fetch_results=False))
    )
    runner.start()
    try:
        wait_until(lambda: len(server.jobs) == 3 and seen(lambda u: u.index == 2), 30, "three jobs submitted")
        with lock:
            ids = {u.index: u.job_id for u in updates if u.job_id}
        first, second, third = ids[0], ids[1], ids[2]
        assert first is not None and second is not None and third is not None
        server.set_status(first, "processing", 95)
        server.publish_event(first, "processing", 95)
        for job_id in (third, second):  # the later jobs end, the first keeps running
            server.set_status(job_id, "completed", 100)
            server.publish_event(job_id, "completed", 100)
        wait_until(lambda: seen(lambda u: u.index == 1 and u.status == "completed"), 30, "the second job's end")
        wait_until(lambda: seen(lambda u: u.index == 2 and u.status == "completed"), 30, "the third job's end")
        with lock:
            finals = [u for u in updates if u.status == "completed"]
            assert {u.index for u in finals} == {1, 2}
            assert max(u.finished for u in finals) == 2 and all(u.total == 3 for u in finals)
        assert not box  # the batch itself still waits for the first job
        server.set_status(first, "completed", 100)
        server.publish_event(first, "completed", 100)
        runner.join(60)
        assert not runner.is_alive()
    finally:
        for job_id in list(server.jobs):
            server.set_status(job_id, "completed", 100)
        runner.join(60)
    outcomes = box[0]
    assert [o.index for o in outcomes] == [0, 1, 2]  # outcomes stay in input order
    assert all(o.ok for o in outcomes)
    assert [o.item.file for o in outcomes] == files
