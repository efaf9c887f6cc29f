"""The tests' port helper: its ports are outside the kernel's ephemeral range and free where asked."""

from __future__ import annotations

import socket

import pytest

from tests.unit.ports import ephemeral_start, free_on, unassigned_port


def test_unassigned_ports_are_below_the_ephemeral_range_and_bindable_on_every_host() -> None:
    for _ in range(20):
        port = unassigned_port("127.0.0.1", "127.0.0.2")
        assert 1024 <= port < ephemeral_start(), f"port {port} is inside the ephemeral range"
        for host in ("127.0.0.1", "127.0.0.2"):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, port))  # raises if it was not free


def test_a_port_held_on_one_of_the_hosts_is_never_returned() -> None:
    """Of two ports, the one held on 127.0.0.2 is never chosen for (127.0.0.1, 127.0.0.2); held on both: an error."""
    first = unassigned_port("127.0.0.1", "127.0.0.2", span=range(20000, 32000, 2))
    while not (free_on("127.0.0.1", first + 1) and free_on("127.0.0.2", first + 1)):
        first = unassigned_port("127.0.0.1", "127.0.0.2", span=range(20000, 32000, 2))  # first + 1 must be free too
    pair = range(first, first + 2)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.2", first))
        held.listen(1)
        if not all(unassigned_port("127.0.0.1", "127.0.0.2", span=pair) == first + 1 for _ in range(50)):
            raise AssertionError(f"port {first}, held on 127.0.0.2, was returned as free there")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as also:
            also.bind(("127.0.0.1", first + 1))
            also.listen(1)
            with pytest.raises(RuntimeError, match=f"no port in {first}..{first + 1} free on 127.0.0.1, 127.0.0.2"):
                unassigned_port("127.0.0.1", "127.0.0.2", span=pair, attempts=20)
