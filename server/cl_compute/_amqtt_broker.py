"""Run the amqtt broker (MQTT 3.1.1) on 127.0.0.1 and print ``PORT <n>`` once it listens.

Used by ``broker.start_amqtt`` as ``python -m cl_compute._amqtt_broker --port N`` (0 = any free port).
SIGTERM/SIGINT shut it down cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys


async def _main(port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config, loop=asyncio.get_running_loop())
    await broker.start()
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
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("transitions").setLevel(logging.WARNING)
    asyncio.run(_main(args.port))


if __name__ == "__main__":
    main()
