"""A worker that dies, seen from outside (PROTOCOL.md §4, §5): what ``test_worker_death`` (SIGKILL and the
heartbeat rule) and ``test_worker_freeze`` (SIGSTOP) share. Two modules, so that ``--dist loadscope`` runs the two
private deployments in different processes at the same time.

Embedded run: a private one-worker deployment (``_private.py``, the run's profile, no worker restarts, an MQTT
keep-alive of ``KEEPALIVE_S`` = 5 s and a heartbeat of ``LEASE_HEARTBEAT_S`` = 2 s instead of cl_compute's 30 s
and 10 s, so that a frozen worker shows within seconds) runs a slow job; its worker is killed with SIGKILL, or
frozen with SIGSTOP, and the checks watch what the deployment tells the world:

* its retained capability message goes (an empty retained payload): at once for SIGKILL (the TCP connection
  closes and the broker publishes the last will registered at CONNECT); for SIGSTOP when the broker's keep-alive
  expires: a broker closes a connection after 1.5 keep-alives without a packet (MQTT 3.1.1 §3.1.2.10), so the
  bound is 1.5 × 5 s plus 10 s of slack (on a deployment with the default keep-alive: 45 s plus slack);
* ``GET /capabilities`` stops counting it, within the same bound;
* the job it held ends ``error`` with a message, or is run again (``queued``/``processing`` by another
  incarnation and then ended), but does not stay ``processing``: within the same bound, or the job lease of
  the reference deployment (3 heartbeats) plus slack.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from pytest_cl.conformance.protocol._helpers import EVENTS_TOPIC, WORKERS_TOPIC, MqttTap
from pytest_cl.conformance.protocol._private import private_deployment, wait_status
from pytest_cl.conformance.protocol._slow_plugin_name import SLOW_TASK
from pytest_cl.deployment import DeploymentInfo
from pytest_cl.plugin import NOT_CHECKED_MQTT

#: the MQTT keep-alive of the private deployment's processes, seconds
KEEPALIVE_S = 5
#: its workers' heartbeat, seconds (the reference deployment's job lease is 3 heartbeats)
LEASE_HEARTBEAT_S = 2.0
#: how long a deployment may take to say a worker is gone: the broker's keep-alive expiry plus slack
GONE_BOUND_S = 1.5 * KEEPALIVE_S + 10.0
#: and to end the job it held: that, or the reference's job lease plus slack
JOB_BOUND_S = max(GONE_BOUND_S, 3 * LEASE_HEARTBEAT_S + 10.0)
HEARTBEAT_S = 10.0
STALE_AFTER_S = 6 * HEARTBEAT_S
STALE_FIX = "no stale retained capability messages (upstream sets the last will after CONNECT)"


@dataclass
class Death:
    """What the deployment said after one worker was killed (times in seconds after the signal; None: never)."""

    how: str
    worker_id: str
    job_id: str
    capability_gone: float | None = None
    capabilities_stopped: float | None = None
    job_ended: float | None = None
    job_record: dict[str, object] = field(default_factory=dict[str, object])
    counted: object = None


def death_fixture(sig: signal.Signals) -> Callable[..., Iterator[Death]]:
    """The module fixture ``death`` of a test module: one private deployment whose worker gets ``sig``.

    Args:
        sig: ``signal.SIGKILL`` or ``signal.SIGSTOP``.
    """

    @pytest.fixture(scope="module", params=[sig], ids=[sig.name])
    def death(request: pytest.FixtureRequest, cl_deployment: DeploymentInfo) -> Iterator[Death]:
        yield from _observe(request, cl_deployment, signal.Signals(request.param))

    return death


def _observe(request: pytest.FixtureRequest, cl_deployment: DeploymentInfo, sig: signal.Signals) -> Iterator[Death]:
    if not cl_deployment.embedded:
        pytest.skip(
            f"not checked: killing a worker needs a deployment the suites own; {cl_deployment.server_url} is remote"
            " (test_no_idle_worker_has_a_stopped_heartbeat checks what is visible)"
        )
    if not cl_deployment.mqtt_url:
        pytest.skip(NOT_CHECKED_MQTT)
    with private_deployment(request.config, keepalive=KEEPALIVE_S, heartbeat=LEASE_HEARTBEAT_S) as dep:
        wid = dep.worker_ids[0]
        topic = f"inference/workers/{wid}"
        pid = dep.worker_pids[wid]
        with MqttTap(dep.mqtt_url, (WORKERS_TOPIC, EVENTS_TOPIC)) as tap:
            created = httpx.post(
                f"{dep.server_url}/jobs/{SLOW_TASK}",
                files={"file": ("x.bin", b"x")},
                data={"seconds": "300", "steps": "600"},
                timeout=30,
            )
            assert created.status_code == 200, f"private deployment: {created.status_code} {created.text[:200]}"
            job_id = str(created.json()["job_id"])
            record = wait_status(dep.server_url, job_id, {"processing", "in_progress"}, 30)
            assert record.get("status") in ("processing", "in_progress"), f"the slow job never started: {record}"
            # before the kill: a deployment whose first /capabilities is empty (upstream's lazy subscription) must
            # not look as if it had stopped counting the worker
            httpx.get(f"{dep.server_url}/capabilities", timeout=10)
            try:
                killed_at = time.time()
                os.kill(pid, sig)
                t0 = time.monotonic()
                seen = Death(sig.name, wid, job_id)
                deadline = t0 + max(GONE_BOUND_S, JOB_BOUND_S)
                while time.monotonic() < deadline:
                    now = time.monotonic() - t0
                    if seen.capability_gone is None and any(
                        m.topic == topic and not m.payload and m.received >= killed_at for m in tap.snapshot()
                    ):
                        seen.capability_gone = now
                    caps = httpx.get(f"{dep.server_url}/capabilities", timeout=10).json()
                    seen.counted = caps.get("num_workers")
                    if seen.capabilities_stopped is None and caps.get("num_workers") == 0:
                        seen.capabilities_stopped = now
                    job = httpx.get(f"{dep.server_url}/jobs/{job_id}", timeout=10)
                    seen.job_record = job.json() if job.status_code == 200 else {"status": f"HTTP {job.status_code}"}
                    if seen.job_ended is None and seen.job_record.get("status") not in ("processing", "in_progress"):
                        seen.job_ended = now
                    if None not in (seen.capability_gone, seen.capabilities_stopped, seen.job_ended):
                        break
                    time.sleep(0.25)
            finally:
                if sig == signal.SIGSTOP:
                    os.kill(pid, signal.SIGKILL)  # a frozen worker would hold the private deployment's stop()
        yield seen


@pytest.mark.cl_needs_fix(STALE_FIX)
def test_a_dead_workers_capability_message_goes(death: Death) -> None:
    """The killed worker's retained capability message is cleared (its last will) within the bound above."""
    assert death.capability_gone is not None, (
        f"a dead worker's capability message stays: worker {death.worker_id} was stopped with {death.how}, and no"
        f" empty retained payload came on inference/workers/{death.worker_id} within {GONE_BOUND_S:g} s (bound: the"
        f" broker's keep-alive expiry, 1.5 x {KEEPALIVE_S:g} s, plus slack); its 'idle' message misleads clients"
    )


@pytest.mark.cl_needs_fix(STALE_FIX)
def test_capabilities_stop_counting_a_dead_worker(death: Death) -> None:
    """``GET /capabilities`` stops counting the killed worker (num_workers 0 on the one-worker deployment)."""
    assert death.capabilities_stopped is not None, (
        f"GET /capabilities still counts a dead worker: worker {death.worker_id} was stopped with {death.how}, and"
        f" num_workers was still {death.counted!r} after {GONE_BOUND_S:g} s (expected 0)"
    )


@pytest.mark.cl_needs_fix("a job whose worker died ends 'error' (upstream leaves it 'processing' forever)")
def test_a_dead_workers_job_does_not_stay_processing(death: Death) -> None:
    """The job the killed worker held ends ``error`` with a message (or runs again and ends), never staying
    ``processing``."""
    record = death.job_record
    assert death.job_ended is not None, (
        f"a dead worker's job stays processing: job {death.job_id} was running on worker {death.worker_id} when it"
        f" was stopped with {death.how}; {JOB_BOUND_S:g} s later it is still {record.get('status')!r}"
        f" (progress {record.get('progress')!r})"
    )
    if record.get("status") in ("error", "failed"):
        assert record.get("error_message"), (
            f"job {death.job_id} of the dead worker {death.worker_id} ended {record.get('status')!r} without an"
            " error_message"
        )
