"""Ports for tests that need a *specific* port to stay free (or theirs) for a while.

``bind(("127.0.0.1", 0))`` hands out a port from the kernel's ephemeral range, the same range that every
``connect()`` on the machine draws its local port from and that every other test's ``bind(0)`` draws from. A
port found free that way can be taken a moment later: CI saw a broker port chosen free on 127.0.0.2 already held
on 127.0.0.1. :func:`unassigned_port` picks below that range instead, where the kernel never assigns a port on
its own, so only an explicit bind to that very number could take it.
"""

from __future__ import annotations

import random
from pathlib import Path

from cl_compute.broker import port_in_use

#: the lowest port we pick from (well above the registered services tests might meet).
FLOOR = 20000
#: used when /proc does not say where the ephemeral range starts (Linux's default start).
DEFAULT_EPHEMERAL_START = 32768


def ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (``ip_local_port_range``), or Linux's default 32768."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_START


def free_on(host: str, port: int) -> bool:
    """Whether ``host:port`` could be bound now (with ``SO_REUSEADDR``, as servers bind)."""
    return not port_in_use(port, host)


def default_span() -> range:
    """The ports :func:`unassigned_port` picks from: ``FLOOR`` up to the start of the ephemeral range."""
    top = ephemeral_start()
    return range(FLOOR if top - FLOOR >= 1000 else 1024, top)


def unassigned_port(*hosts: str, attempts: int = 200, span: range | None = None) -> int:
    """A port of ``span`` (default: below the ephemeral range) that is free on every one of ``hosts``
    (default: 127.0.0.1).

    Raises:
        RuntimeError: no such port was found in ``attempts`` random tries.
    """
    hosts = hosts or ("127.0.0.1",)
    span = span or default_span()
    rng = random.SystemRandom()
    for _ in range(attempts):
        port = rng.choice(span)
        if all(free_on(host, port) for host in hosts):
            return port
    raise RuntimeError(f"no port in {span.start}..{span.stop - 1} free on {', '.join(hosts)} after {attempts} tries")
