"""The cl_compute reference deployment (API server, workers, broker, nine plugin backends)."""
