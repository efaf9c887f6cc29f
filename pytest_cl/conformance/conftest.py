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
