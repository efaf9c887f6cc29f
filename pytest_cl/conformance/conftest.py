"""Shared fixtures of the conformance suites (on top of pytest_cl's fixtures).

* ``polling_client``: a tracked client without MQTT, for the polling variants.
* ``any_client``: parametrized ``mqtt`` / ``polling``: the same check through events and through polling. The
  ``mqtt`` variant is marked ``cl_needs_mqtt``: with ``--cl-mqtt off`` it is reported as not checked.
"""

from __future__ import annotations

import pytest

from cl_client import ComputeClient
from pytest_cl import factories

polling_client = factories.compute_client(polling_only=True)


@pytest.fixture(params=[pytest.param("mqtt", marks=pytest.mark.cl_needs_mqtt), "polling"])
def any_client(request: pytest.FixtureRequest) -> ComputeClient:
    """The fixture client that waits on MQTT events, then one that polls (same checks, both paths)."""
    name = "compute_client" if request.param == "mqtt" else "polling_client"
    client = request.getfixturevalue(name)
    assert isinstance(client, ComputeClient)
    return client


#: The modules that take longest in one process (wall time per module in a ``-n 4`` run on the embedded
#: deployment: the worker-death and cancellation checks wait on private deployments for a keep-alive or a slow
#: job, HLS and WebP conversion are the longest jobs), longest first. ``cl-client certify`` runs ``--dist loadscope
#: --no-loadscope-reorder``, so xdist hands the modules out in this order and no long module starts last and ends the
#: run alone; the rest keeps the order of collection. ``CL_CONFORMANCE_ORDER=collected`` keeps pytest's order (to
#: measure the difference).
LONGEST_FIRST = (
    "protocol/test_worker_freeze.py",
    "plugins/test_hls_streaming.py",
    "plugins/test_image_conversion.py",
    "protocol/test_cancellation.py",
    "plugins/test_media_thumbnail.py",
    "plugins/test_face_detection.py",
    "plugins/test_hash.py",
    "protocol/test_downloads.py",
    "protocol/test_worker_death.py",
    "plugins/test_face_embedding.py",
    "workflows/test_image.py",
    "protocol/test_delivery.py",
    "workflows/test_fanout.py",
    "protocol/test_auth.py",
    "workflows/test_video.py",
)
#: Then the modules that give the deployment (almost) no job (the API's answers to bad uploads, its schema, its
#: security checks): they run while the other processes still keep the deployment busy, and the run ends on short
#: modules that submit jobs (the embedding plugins, exif, events, jobs) rather than on checks that leave it idle.
DEPLOYMENT_LIGHT = (
    "protocol/test_uploads.py",
    "protocol/test_security.py",
    "protocol/test_openapi.py",
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the modules with the longest jobs first (``LONGEST_FIRST``), then ``DEPLOYMENT_LIGHT``; a stable sort
    keeps the rest in order."""
    import os

    if os.environ.get("CL_CONFORMANCE_ORDER", "").strip().lower() == "collected":
        return

    order = LONGEST_FIRST + DEPLOYMENT_LIGHT

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0].replace("\\", "/")
        return next((i for i, tail in enumerate(order) if path.endswith(tail)), len(order))

    items.sort(key=rank)
