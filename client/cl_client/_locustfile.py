"""The packaged locustfile: one ``ComputeUser`` whose plugin mix is ``--cl-mix`` (``cl-client load`` runs it).

Run it with Locust directly (one machine or several; see the README's "Load testing")::

    locust -f "$(python -m cl_client.locust)" --host http://127.0.0.1:8002 --cl-mix hash=5,exif=2
"""

from cl_client.locust import ComputeUser


class PluginMixUser(ComputeUser):
    """Runs the jobs of ``--cl-mix`` (``hash=5,exif=2`` by default) against ``--host``."""
