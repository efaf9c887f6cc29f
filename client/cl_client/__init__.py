"""cl_client: typed client for CL Server compute deployments."""
