"""OpenAPI (PROTOCOL.md §2): ``/openapi.json`` documents a ``POST /jobs/<task_type>`` route per capability.

Upstream has one FastAPI route per plugin (its own tests look for ``/jobs/<plugin>`` in ``/openapi.json``), so
every deployment should document every task type its workers offer, with a multipart body that has the ``file``
part and the ``priority`` field; ``file`` is required except on ``hls_streaming``, where February 2026 upstream makes
it optional (PROTOCOL.md §9).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from pytest_cl.conformance._checks import expect_status, get_field
from pytest_cl.conformance.protocol._helpers import RawHTTP, raw_http
from pytest_cl.deployment import DeploymentInfo

pytestmark = pytest.mark.timeout(60)

#: routes whose ``file`` part may be optional: February 2026 upstream's hls_streaming also takes server paths
#: (``input_absolute_path``); that those fields exist is a security finding of ``test_security.py``, not of this
#: check (PROTOCOL.md §9).
FILE_OPTIONAL = frozenset({"hls_streaming"})


@pytest.fixture
def http(request: pytest.FixtureRequest, cl_deployment: DeploymentInfo) -> Iterator[RawHTTP]:
    with raw_http(request.config, cl_deployment) as client:
        yield client


def _resolve(document: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local ``$ref`` (upstream's bodies are ``#/components/schemas/Body_...``)."""
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        assert isinstance(node, Mapping) and part in node, (
            f"/openapi.json: the $ref {ref!r} leads nowhere (no {part!r})"
        )
        node = node[part]
    assert isinstance(node, Mapping), f"/openapi.json: the $ref {ref!r} is not a schema object: {node!r:.200}"
    return node


def test_every_capability_has_a_documented_job_route(http: RawHTTP, cl_deployment: DeploymentInfo) -> None:
    """Each task type some worker offers: ``POST /jobs/<task_type>`` with a multipart ``file`` + ``priority``."""
    if not cl_deployment.capabilities:
        pytest.skip("no worker offers a capability")
    response = http.get("/openapi.json")
    expect_status(response, 200, what="GET /openapi.json")
    document = response.json()
    paths: Mapping[str, Any] = get_field(document, "paths", where="GET /openapi.json")  # type: ignore[assignment]
    missing = [c for c in cl_deployment.capabilities if "post" not in paths.get(f"/jobs/{c}", {})]
    assert not missing, f"capabilities without a documented POST /jobs/<task_type>: {missing}"
    for capability in cl_deployment.capabilities:
        op = paths[f"/jobs/{capability}"]["post"]
        content = op.get("requestBody", {}).get("content", {})
        assert "multipart/form-data" in content, f"/jobs/{capability}: no multipart/form-data body"
        schema = _resolve(
            document,
            get_field(content["multipart/form-data"], "schema", where=f"/jobs/{capability} multipart body"),  # type: ignore[arg-type]
        )
        properties = schema.get("properties", {})
        assert {"file", "priority"} <= set(properties), (
            f"POST /jobs/{capability} in /openapi.json: expected the fields 'file' and 'priority', the multipart body "
            f"documents {sorted(properties)}"
        )
        if capability not in FILE_OPTIONAL:
            assert "file" in schema.get("required", []), (
                f"POST /jobs/{capability} in /openapi.json: 'file' is documented as optional, expected it required "
                f"(required fields: {sorted(schema.get('required', []))})"
            )
