"""A worker killed with SIGKILL, and the heartbeat rule (PROTOCOL.md §4, §5); see ``_death.py`` for what is checked
and the bounds. SIGSTOP is in ``test_worker_freeze.py``.

Remote run: nothing can be killed; what is visible is the heartbeat. **Heartbeat rule:** a worker republishes
its retained capability message at least every 10 s while idle (the reference deployment and upstream's
February service send a heartbeat every 10 s; upstream's January workers republish on each 5 s idle poll). An
idle worker (``idle_count`` 1) whose retained message is older than ``STALE_AFTER_S`` = 60 s (6 intervals) by
the server's clock, and stays so for another interval, has a stopped heartbeat: a dead worker whose message was
never cleared. A busy worker is not judged (January's sends nothing during a job).
"""

from __future__ import annotations

import email.utils
import signal
import time

import httpx
import pytest

from pytest_cl.conformance.protocol._death import (
    HEARTBEAT_S,
    STALE_AFTER_S,
    STALE_FIX,
    death_fixture,
    test_a_dead_workers_capability_message_goes,
    test_a_dead_workers_job_does_not_stay_processing,
    test_capabilities_stop_counting_a_dead_worker,
)
from pytest_cl.conformance.protocol._helpers import WORKERS_TOPIC, Message, MqttTap, bearer_headers
from pytest_cl.deployment import DeploymentInfo
from pytest_cl.plugin import NOT_CHECKED_MQTT

pytestmark = [pytest.mark.timeout(300), pytest.mark.cl_needs_mqtt]

__all__ = [
    "test_a_dead_workers_capability_message_goes",
    "test_a_dead_workers_job_does_not_stay_processing",
    "test_capabilities_stop_counting_a_dead_worker",
    "test_no_idle_worker_has_a_stopped_heartbeat",
]

death = death_fixture(signal.SIGKILL)


def _server_now_ms(response: httpx.Response) -> float:
    date = response.headers.get("date")
    if date:
        return email.utils.parsedate_to_datetime(date).timestamp() * 1000
    return time.time() * 1000


def _idle_and_old(messages: list[Message], now_ms: float) -> dict[str, float]:
    """Worker id -> age in seconds of its latest retained message, for idle workers older than the rule."""
    latest: dict[str, Message] = {}
    for m in messages:
        if m.topic.startswith("inference/workers/"):
            latest[m.topic.rsplit("/", 1)[-1]] = m
    old: dict[str, float] = {}
    for wid, m in latest.items():
        data = m.json() if m.payload else None
        if not isinstance(data, dict) or data.get("idle_count") != 1:
            continue
        ts = data.get("timestamp")
        if isinstance(ts, int | float) and now_ms - float(ts) > STALE_AFTER_S * 1000:
            old[wid] = (now_ms - float(ts)) / 1000
    return old


@pytest.mark.cl_needs_fix(STALE_FIX)
def test_no_idle_worker_has_a_stopped_heartbeat(request: pytest.FixtureRequest, cl_deployment: DeploymentInfo) -> None:
    """The heartbeat rule of the module documentation: no idle worker's retained capability message is older than
    60 s by the server's clock (``Date`` of ``GET /capabilities``), also after waiting one more interval for a
    fresh one."""
    if not cl_deployment.mqtt_url:
        pytest.skip(NOT_CHECKED_MQTT)
    response = httpx.get(f"{cl_deployment.server_url}/capabilities", headers=bearer_headers(request.config), timeout=10)
    skew_ms = _server_now_ms(response) - time.time() * 1000
    with MqttTap(cl_deployment.mqtt_url, (WORKERS_TOPIC,)) as tap:
        tap.wait_until(lambda ms: len(ms) >= int(cl_deployment.num_workers or 1), 5.0)
        old = _idle_and_old(tap.snapshot(), time.time() * 1000 + skew_ms)
        if old:
            time.sleep(HEARTBEAT_S + 2)  # a live worker sends a fresh message within one interval
            old = _idle_and_old(tap.snapshot(), time.time() * 1000 + skew_ms)
    assert not old, (
        f"stale workers: the retained capability message of idle worker(s) {sorted(old)} is"
        f" {', '.join(f'{age:.0f} s' for age in old.values())} old by the server's clock (a live worker republishes"
        f" within {HEARTBEAT_S:g} s; stale after {STALE_AFTER_S:g} s): their heartbeat stopped, the workers are gone"
        " and their messages were never cleared"
    )
