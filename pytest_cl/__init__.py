"""pytest_cl: the pytest plugin that certifies CL compute deployments."""
