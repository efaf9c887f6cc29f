"""A worker frozen with SIGSTOP (PROTOCOL.md §4, §5): its capability message must go when the broker's keep-alive
expires, and its job must not stay ``processing``; see ``_death.py`` for the bounds. A module of its own, so that
its wait for the keep-alive runs beside ``test_worker_death`` (SIGKILL) under ``--dist loadscope``.
"""

from __future__ import annotations

import signal

import pytest

from pytest_cl.conformance.protocol._death import (
    death_fixture,
    test_a_dead_workers_capability_message_goes,
    test_a_dead_workers_job_does_not_stay_processing,
    test_capabilities_stop_counting_a_dead_worker,
)

pytestmark = [pytest.mark.timeout(300), pytest.mark.cl_needs_mqtt]

__all__ = [
    "test_a_dead_workers_capability_message_goes",
    "test_a_dead_workers_job_does_not_stay_processing",
    "test_capabilities_stop_counting_a_dead_worker",
]

death = death_fixture(signal.SIGSTOP)
