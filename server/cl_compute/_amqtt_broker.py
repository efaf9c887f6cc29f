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

amqtt 0.12 also never expires a silent client: its reader waits one keep-alive for a packet, and on the time-out
the broker's handler does nothing and waits again. A frozen client (SIGSTOP, a pulled cable) so kept its session
for ever and its will was never sent, so a frozen worker's retained capability message stayed. MQTT 3.1.1
§3.1.2.10: the server disconnects a client that sent nothing for one and a half keep-alives, as a network failure
(so the will is published). :class:`_ExpiringHandler` reads with that time-out and ends the connection on it.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import math
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
    """amqtt's ``Broker`` with retained messages sent only to the subscriptions that match them, and silent clients
    disconnected after one and a half keep-alives (module docs).

    The handler class is replaced in ``amqtt.broker``'s namespace, where ``Broker`` looks it up when a client
    connects; this module runs as the broker's own process, so nothing else sees the change.
    """
    import amqtt.broker  # pyright: ignore[reportMissingTypeStubs]
    from amqtt.adapters import ReaderAdapter, WriterAdapter  # pyright: ignore[reportMissingTypeStubs]
    from amqtt.broker import Broker, BrokerContext  # pyright: ignore[reportMissingTypeStubs]
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler  # pyright: ignore[reportMissingTypeStubs]
    from amqtt.plugins.manager import PluginManager  # pyright: ignore[reportMissingTypeStubs]
    from amqtt.session import Session  # pyright: ignore[reportMissingTypeStubs]

    class _ExpiringHandler(BrokerProtocolHandler):
        @classmethod
        async def init_from_connect(
            cls,
            reader: ReaderAdapter,
            writer: WriterAdapter,
            plugins_manager: PluginManager[BrokerContext],
            loop: asyncio.AbstractEventLoop | None = None,
        ) -> tuple[BrokerProtocolHandler, Session]:
            handler, session = await super().init_from_connect(reader, writer, plugins_manager, loop)
            if session.keep_alive > 0:  # the reader's time-out: 1.5 keep-alives (0: the client asked for none)
                session.keep_alive = math.ceil(session.keep_alive * 1.5)
            return handler, session

        def handle_read_timeout(self) -> None:
            # nothing for 1.5 keep-alives: end the reader (it is the running task), which closes the connection
            # as a failure, so the broker publishes the client's will
            if self._reader_task is not None:  # pyright: ignore[reportPrivateUsage]
                self._reader_task.cancel()  # pyright: ignore[reportPrivateUsage]

    amqtt.broker.BrokerProtocolHandler = _ExpiringHandler  # pyright: ignore[reportAttributeAccessIssue]

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
