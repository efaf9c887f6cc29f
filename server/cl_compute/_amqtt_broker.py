"""Run the amqtt broker (MQTT 3.1.1) on ``--host`` (default 127.0.0.1) and print ``PORT <n>`` once it listens.

Used by ``broker.start_amqtt`` as ``python -m cl_compute._amqtt_broker --host H --port N`` (0 = any free port).
``--host ::`` listens on every interface, IPv4 and IPv6 (asyncio makes an IPv6 socket IPv6-only, so amqtt is
given no address, which binds one socket per family; their port is picked here so that it is the same).
SIGTERM/SIGINT shut it down cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from typing import Any


def _bind(host: str, port: int) -> str:
    if host == "::":
        return f":{port}"  # no address: every interface, both families
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host or '0.0.0.0'}:{port}"


def _one_socket(host: str) -> bool:
    """Whether binding ``host`` makes exactly one socket (so port 0 gives one port)."""
    if host == "::":
        return False
    try:
        ipaddress.ip_address(host or "0.0.0.0")
    except ValueError:  # a name may resolve to several addresses
        return False
    return True


async def _start(host: str, port: int) -> Any:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": _bind(host, port)}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config, loop=asyncio.get_running_loop())
    await broker.start()
    return broker


async def _main(host: str, port: int) -> None:
    from amqtt.errors import BrokerError

    from cl_compute.broker import free_port

    if port or _one_socket(host):
        broker = await _start(host, port)
    else:
        for attempt in range(5):  # the free port may be taken before amqtt binds it
            try:
                broker = await _start(host, free_port(host or "0.0.0.0"))
                break
            except BrokerError:
                if attempt == 4:
                    raise
    server = broker._servers["default"]
    real_port = server.instance.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {real_port}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("transitions").setLevel(logging.WARNING)
    asyncio.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
