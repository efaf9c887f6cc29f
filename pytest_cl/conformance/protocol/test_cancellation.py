"""Cancellation (PROTOCOL.md §4 [fix]): deleting a running job stops it.

A job is deleted (``DELETE /jobs/{id}``, 204) while it is ``processing``; then:

* no further event of it is published (after a grace of ``GRACE_S`` for an event already on its way);
* storage does not grow afterwards (``GET /admin/jobs/storage/size``, sampled during ``WATCH_S``);
* the worker is free again well before the job would have ended: a short job submitted after the DELETE, on a
  one-worker deployment, starts before half of the deleted job's remaining time has passed.

Embedded run: on a private one-worker deployment (``_private.py``) with the slow plugin (40 s, a 4 KiB file
every 0.5 s), so nothing else holds the worker. Remote run (destructive to the one job it creates, allowed as the
other lifecycle checks are): the longest ``hls_streaming`` job of the media (``video_1080p_10s_audio``, four
variants); only its events are judged: neither storage (the other checks, run in parallel, and other people's
jobs add job folders at the same time) nor the worker (their jobs may hold or free workers). Upstream does not
cancel.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from cl_client._tls import shared_ssl_context
from pytest_cl._media import MediaCatalogue
from pytest_cl.conformance.protocol._helpers import EVENTS_TOPIC, MqttTap, bearer_headers
from pytest_cl.conformance.protocol._private import private_deployment, wait_status
from pytest_cl.conformance.protocol._slow_plugin_name import SLOW_TASK
from pytest_cl.deployment import DeploymentInfo
from pytest_cl.plugin import NOT_CHECKED_MQTT

pytestmark = pytest.mark.timeout(180)

GRACE_S = 2.5
WATCH_S = 4.0
SLOW_SECONDS = 40.0
CANCEL_FIX = "a deleted running job is cancelled (upstream lets it run on)"


@dataclass
class Target:
    """Where the cancellation is checked: the API, its broker, headers and whether the worker can be judged."""

    server_url: str
    mqtt_url: str | None
    headers: dict[str, str]
    private: bool


@pytest.fixture
def target(request: pytest.FixtureRequest, cl_deployment: DeploymentInfo) -> Iterator[Target]:
    if cl_deployment.embedded:
        with private_deployment(request.config) as dep:
            yield Target(dep.server_url, dep.mqtt_url if cl_deployment.mqtt_url else None, {}, True)
        return
    if not cl_deployment.mqtt_url:
        pytest.skip(NOT_CHECKED_MQTT)  # on a shared deployment only the deleted job's events can be judged
    if not cl_deployment.offers("hls_streaming"):
        pytest.skip(f"not checked: {cl_deployment.server_url} offers no hls_streaming worker to run a long job on")
    yield Target(cl_deployment.server_url, cl_deployment.mqtt_url, bearer_headers(request.config), False)


def _storage(http: httpx.Client) -> tuple[int, int] | None:
    r = http.get("/admin/jobs/storage/size")
    if r.status_code != 200:
        return None
    body = r.json()
    return int(body.get("total_size", 0)), int(body.get("job_count", 0))


@pytest.mark.cl_needs_fix(CANCEL_FIX)
def test_deleting_a_running_job_stops_it(target: Target, cl_media: MediaCatalogue) -> None:
    """A deleted running job publishes nothing more, writes nothing more and frees its worker (see the module)."""
    http = httpx.Client(base_url=target.server_url, headers=target.headers, timeout=30, verify=shared_ssl_context())
    tap = MqttTap(target.mqtt_url, (EVENTS_TOPIC,)).__enter__() if target.mqtt_url else None
    try:
        if target.private:
            created = http.post(
                f"/jobs/{SLOW_TASK}",
                files={"file": ("x.bin", b"x")},
                data={"seconds": str(SLOW_SECONDS), "steps": "80"},
            )
            what = f"{SLOW_TASK} job of {SLOW_SECONDS:g} s"
        else:
            media = cl_media["video_1080p_10s_audio"]
            created = http.post(
                "/jobs/hls_streaming",
                files={"file": (media.path.name, media.path.read_bytes())},
                data={"variants": json.dumps([{"resolution": r, "bitrate": 4000} for r in (1080, 720, 480, 360)])},
            )
            what = "hls_streaming job"
        assert created.status_code == 200, f"POST of the {what}: HTTP {created.status_code} {created.text[:200]}"
        job_id = str(created.json()["job_id"])
        record = wait_status(target.server_url, job_id, {"processing", "in_progress", "completed", "error"}, 60)
        if record.get("status") not in ("processing", "in_progress"):
            http.delete(f"/jobs/{job_id}")
            pytest.skip(f"not checked: the {what} {job_id} was never seen processing (it is {record.get('status')!r})")
        started_at = float(str(record.get("started_at") or time.time() * 1000))
        deleted = http.delete(f"/jobs/{job_id}")
        deleted_at = time.time()
        assert deleted.status_code == 204, f"DELETE of running job {job_id}: HTTP {deleted.status_code}"
        time.sleep(GRACE_S)  # what was on its way before the DELETE may still land: nothing to await
        base = _storage(http)
        samples: list[tuple[int, int]] = []
        watch_end = time.monotonic() + WATCH_S
        while time.monotonic() < watch_end:
            now = _storage(http)
            if now is not None:
                samples.append(now)
            time.sleep(0.5)
        problems: list[str] = []
        # storage is the whole deployment's: only on the private one is all its growth this job's (on a shared
        # deployment the other checks, run in parallel, and other people add job folders at the same time)
        if target.private and base is not None and samples:
            grew = max(s[0] for s in samples) - base[0]
            folders = max(s[1] for s in samples) - base[1]
            if grew > 0 or folders > 0:
                problems.append(
                    f"storage grew by {grew} bytes ({folders:+d} job folders) in the {WATCH_S:g} s after the DELETE"
                    f" (sampled {GRACE_S:g} s after it)"
                )
        if target.private:
            short = http.post("/jobs/hash", files={"file": ("x.txt", b"after the delete")}, data={"algorithm": "md5"})
            assert short.status_code == 200, f"POST /jobs/hash: HTTP {short.status_code} {short.text[:200]}"
            short_id = str(short.json()["job_id"])
            done = wait_status(target.server_url, short_id, {"completed", "error"}, 60)
            http.delete(f"/jobs/{short_id}")
            would_end = started_at / 1000 + SLOW_SECONDS
            short_start = float(str(done.get("started_at") or time.time() * 1000)) / 1000
            if short_start > deleted_at + (would_end - deleted_at) / 2:
                problems.append(
                    f"the only worker stayed busy: a job submitted after the DELETE started"
                    f" {short_start - deleted_at:.1f} s after it (the deleted one would have ended"
                    f" {would_end - deleted_at:.1f} s after it)"
                )
        if tap is not None:
            late = [
                e
                for m in tap.snapshot()
                if m.received > deleted_at + GRACE_S and (e := m.json()) and isinstance(e, dict)
                if e.get("job_id") == job_id
            ]
            if late:
                problems.append(
                    f"{len(late)} event(s) of it were published later:"
                    f" {[(e.get('event_type'), e.get('progress')) for e in late][:5]}"
                )
        assert not problems, (
            f"a deleted running job went on: the {what} {job_id} was deleted (204) while processing, and then "
            + "; ".join(problems)
        )
    finally:
        if tap is not None:
            tap.close()
        http.close()
