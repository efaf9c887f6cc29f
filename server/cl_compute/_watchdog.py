"""Run a command and make sure it dies with us: ``python -m cl_compute._watchdog CMD ARGS...``.

Used for mosquitto, which drops privileges on start-up (clearing ``PR_SET_PDEATHSIG``), so it would outlive a
killed parent. This wrapper keeps the death signal (set by the launcher) and forwards SIGTERM/SIGINT.
"""

from __future__ import annotations

import signal
import subprocess
import sys


def main() -> None:
    child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)

    def forward(signum: int, frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    sys.exit(child.wait())


if __name__ == "__main__":
    main()
