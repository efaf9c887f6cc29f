"""The folder an xdist run shares between its controller and workers, named after its owner.

The controller makes ``pytest-cl-<pid>.<start>-<random>`` and removes it at the end. A controller killed with
SIGKILL never gets there; the next xdist run's controller removes the folders whose owner is gone. Both use
``cl_compute.owned_tmp`` (standard library only, so it works without the server's dependencies), imported when
an xdist run starts, not when the plugin loads.
"""

from __future__ import annotations

from pathlib import Path

#: the prefix of the shared folders.
PREFIX = "pytest-cl-"


def make_shared_dir() -> Path:
    """Remove the shared folders of controllers that are gone, then make this process's one and return it."""
    from cl_compute.owned_tmp import make_owned_tmp_dir, sweep_owned_tmp_dirs

    sweep_owned_tmp_dirs([PREFIX])
    return make_owned_tmp_dir(PREFIX)
