"""Upstream's module path ``cl_client.plugins.base``: ``BasePluginClient``.

For upstream code that subclasses it or calls ``submit_with_files``, ``submit_job`` or ``.endpoint`` directly.

The nine plugin clients of this package (``client.clip_embedding`` ...) do not derive from it; they offer
upstream's methods (``embed_image`` ...) with typed results. ``BasePluginClient`` works on an
``AsyncComputeClient`` (``cl_client.compute_client.ComputeClient`` included) and returns ``JobResponse``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cl_client._client import AsyncComputeClient
from cl_client._config import ComputeClientConfig
from cl_client._exceptions import ConfigurationError
from cl_client._models import JobResponse
from cl_client._tracker import JobCallback

__all__ = ["BasePluginClient"]


class BasePluginClient:
    """Submission of one plugin's jobs, as upstream's base class.

    Args:
        client: the async client.
        task_type: the plugin (``clip_embedding`` ...).

    Attributes:
        client: the async client.
        task_type: the plugin.
        endpoint: its job-creation path (``/jobs/clip_embedding``).

    Raises:
        ConfigurationError: an unknown task type (also a ValueError, as upstream).
    """

    def __init__(self, client: AsyncComputeClient, task_type: str) -> None:
        self.client = client
        self.task_type = task_type
        self.endpoint = ComputeClientConfig.get_plugin_endpoint(task_type)

    async def submit_job(
        self,
        params: Mapping[str, object] | None = None,
        priority: int = 5,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
    ) -> JobResponse:
        """Upstream's file-less submission. Every compute plugin needs an input file, so this raises.

        Raises:
            NotImplementedError: always; use ``submit_with_files({"file": path}, ...)``.
        """
        del params, priority, wait, timeout, on_progress, on_complete
        raise NotImplementedError(
            f"{self.task_type}: every compute plugin needs an input file; use submit_with_files({{'file': path}})"
        )

    async def submit_with_files(
        self,
        files: Mapping[str, Path],
        params: Mapping[str, object] | None = None,
        priority: int = 5,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
    ) -> JobResponse:
        """Upload the input file and create the job; return its record (the final one with ``wait=True``).

        Args:
            files: one entry, the input file (upstream uses the field name ``file``; the file is always sent
                as the part ``file``, as the protocol requires).
            params: form fields (``None`` values are left out).
            priority: 0-10.
            wait: wait for the end (the final record is returned, failed jobs included).
            timeout: how long ``wait`` may take (default the client's ``job_timeout``).
            on_progress: called with a JobResponse on every update.
            on_complete: called once with the final JobResponse.

        Raises:
            ConfigurationError: not exactly one file, or a bad priority.
            FileNotFoundError: no such file.
            HTTPStatusError: the server refused.
        """
        if len(files) != 1:
            raise ConfigurationError(f"{self.task_type}: give exactly one input file, got {len(files)}")
        (path,) = files.values()
        job = await self.client.submit(
            self.task_type, path, params, priority, on_progress=on_progress, on_complete=on_complete
        )
        if wait:
            return await job.wait(timeout)
        return await job.refresh()
