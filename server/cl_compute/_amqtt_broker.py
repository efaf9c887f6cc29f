"""Run the amqtt broker (MQTT 3.1.1) on ``--host`` (default 127.0.0.1) and print ``PORT <n>`` once it listens.

Used by ``broker.start_amqtt`` as ``python -m cl_compute._amqtt_broker --host H --port N`` (0 = any free port).
``--host ::`` listens on every interface, IPv4 and IPv6 (asyncio makes an IPv6 socket IPv6-only, so amqtt is
given no address, which binds one socket per family; their port is picked here so that it is the same).
SIGTERM/SIGINT shut it down cleanly.

amqtt 0.12 delivers retained messages to a client that has not subscribed to them: when any client connects,
``Broker.client_connected`` sends it every retained message matching *any* topic filter that *some* client of
the broker subscribed to (it walks the broker-wide subscription table, meant for the reconnecting session's own
subscriptions). So on a deployment, where the API subscribes to ``inference/workers/+``, a client that
subscribes only to ``inference/events`` received each worker's retained capability message, with its topic and
the retain flag (MQTT 3.1.1 §3.3.1.3: retained messages go only to a *new subscription* that matches them).
:class:`_SubscribedOnlyBroker` sends retained messages for a topic filter only to a session that holds that
subscription, which is what a new subscription (SUBSCRIBE, where amqtt records the subscription before it
publishes the retained messages) always does. ``tests/unit/server/test_amqtt_broker.py`` reproduces the defect.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amqtt.broker import Broker  # pyright: ignore[reportMissingTypeStubs]  # typed inline, no py.typed


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


def _broker_class() -> type[Broker]:
    """amqtt's ``Broker`` with retained messages sent only to the subscriptions that match them (module docs)."""
    from amqtt.broker import Broker  # pyright: ignore[reportMissingTypeStubs]
    from amqtt.session import Session  # pyright: ignore[reportMissingTypeStubs]

    class _SubscribedOnlyBroker(Broker):
        async def _publish_retained_messages_for_subscription(
            self, subscription: tuple[str, int], session: Session
        ) -> None:
            holders = self._subscriptions.get(subscription[0], [])  # pyright: ignore[reportPrivateUsage]
            if any(held is session or held.client_id == session.client_id for held, _qos in holders):
                await super()._publish_retained_messages_for_subscription(subscription, session)  # pyright: ignore[reportPrivateUsage]

    return _SubscribedOnlyBroker


async def _start(host: str, port: int) -> Broker:
    config = {
        "listeners": {"default": {"type": "tcp", "bind": _bind(host, port)}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = _broker_class()(config, loop=asyncio.get_running_loop())
    await broker.start()
    return broker


async def _start_on_free_port(host: str) -> Broker:
    """Start on a port picked here (the same for every socket); the free port may be taken before amqtt binds it."""
    from amqtt.errors import BrokerError  # pyright: ignore[reportMissingTypeStubs]

    from cl_compute.broker import free_port

    for _attempt in range(4):
        try:
            return await _start(host, free_port(host or "0.0.0.0"))
        except BrokerError:
            pass
    return await _start(host, free_port(host or "0.0.0.0"))  # the fifth attempt's error propagates


def _listening_port(broker: Broker) -> int:
    """The port of the broker's ``default`` listener (amqtt has no public accessor for it)."""
    from cl_compute.broker import socket_port

    server = broker._servers["default"]  # pyright: ignore[reportPrivateUsage]
    return socket_port(next(iter(server.instance.sockets)))


async def _main(host: str, port: int) -> None:
    broker = await _start(host, port) if port or _one_socket(host) else await _start_on_free_port(host)
    real_port = _listening_port(broker)
    sys.stdout.write(f"PORT {real_port}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


class _Args(argparse.Namespace):
    host: str
    port: int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(namespace=_Args())
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("transitions").setLevel(logging.WARNING)
    asyncio.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
