"""The name and import spec of the slow plugin of the private deployments (importable without cl_compute)."""

SLOW_TASK = "cl_conformance_slow"
SLOW_SPEC = "pytest_cl.conformance.protocol._slow_plugin:SlowPlugin"
