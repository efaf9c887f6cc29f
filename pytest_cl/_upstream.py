"""Which upstream release does a deployment look like? (``--cl-expect-lacks upstream``, the header of a remote run)

Upstream's January 2026 compute stack and its February 2026 compute service (PROTOCOL.md §8, §9) differ in two
things a client can see without running a job:

* the settings routes that ``/openapi.json`` lists: January ``GET /admin/config`` (and ``PUT
  /admin/config/guest-mode``), February ``GET /admin/pref`` (and ``PUT /admin/pref/guest-mode``);
* the keys of the retained capability payloads on ``inference/workers/<id>``: January ``id`` only, February
  ``worker_id`` only.

The reference deployment serves both route sets and both keys, and its ``GET /`` says service ``cl_compute``.
:func:`identify` turns these facts into a verdict (a pure function); :func:`fingerprint` gathers them (httpx and
paho, imported when called).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

__all__ = ["FEBRUARY", "JANUARY", "Fingerprint", "Verdict", "fingerprint", "identify"]

#: the packaged expectation lists of the two upstream releases
JANUARY = "upstream-2026-01"
FEBRUARY = "upstream-2026-02"
#: the value of ``--cl-expect-lacks`` that picks one of them
PICK = "upstream"
CONFIG_ROUTE = "/admin/config"
PREF_ROUTE = "/admin/pref"
REFERENCE_SERVICE = "cl_compute"
_NAMES = {JANUARY: "upstream's January 2026 compute stack", FEBRUARY: "upstream's February 2026 compute service"}


@dataclass(frozen=True)
class Fingerprint:
    """What a deployment shows of itself.

    Attributes:
        service: the ``service`` of ``GET /``.
        admin_routes: which of ``/admin/config`` and ``/admin/pref`` ``/openapi.json`` lists; None when it could
            not be read.
        payload_keys: for each retained capability payload seen, which of ``id`` / ``worker_id`` it carries
            (``"id"``, ``"worker_id"``, ``"both"`` or ``"neither"``); empty when none was seen (no MQTT).
    """

    service: str
    admin_routes: frozenset[str] | None
    payload_keys: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Verdict:
    """The release a deployment looks like.

    Attributes:
        release: ``upstream-2026-01``, ``upstream-2026-02``, or None (the reference deployment, or neither).
        why: the sentence for the header: ``looks like upstream's February 2026 compute service: /admin/pref
            routes, worker_id-only capability payloads``.
    """

    release: str | None
    why: str


def _routes_text(routes: frozenset[str] | None) -> str:
    if routes is None:
        return "no readable /openapi.json"
    if not routes:
        return "neither /admin/config nor /admin/pref routes"
    return " and ".join(sorted(routes)) + " routes"


def _keys_text(keys: frozenset[str]) -> str:
    if not keys:
        return "capability payloads not seen (no MQTT)"
    words = {
        "id": "id-only",
        "worker_id": "worker_id-only",
        "both": "id + worker_id",
        "neither": "neither id nor worker_id in",
    }
    return ", ".join(f"{words[k]} capability payloads" for k in sorted(keys))


def identify(fp: Fingerprint) -> Verdict:
    """Name the upstream release a deployment looks like (see the module documentation).

    Args:
        fp: what the deployment showed.
    """
    evidence = f"{_routes_text(fp.admin_routes)}, {_keys_text(fp.payload_keys)}"
    if fp.service == REFERENCE_SERVICE:
        return Verdict(None, f"the reference deployment (GET / says service {REFERENCE_SERVICE!r}; {evidence})")
    routes = fp.admin_routes or frozenset()
    keys = fp.payload_keys
    if routes == frozenset({CONFIG_ROUTE}) and keys <= {"id"}:
        return Verdict(JANUARY, f"looks like {_NAMES[JANUARY]}: {evidence}")
    if routes == frozenset({PREF_ROUTE}) and keys <= {"worker_id"}:
        return Verdict(FEBRUARY, f"looks like {_NAMES[FEBRUARY]}: {evidence}")
    return Verdict(None, f"looks like neither upstream release: {evidence}")


def pick_error(verdict: Verdict, known: list[str]) -> str:
    """The usage error of ``--cl-expect-lacks upstream`` for a deployment that looks like no upstream release.

    Args:
        verdict: what :func:`identify` said.
        known: the packaged lists.
    """
    return (
        f"cl: --cl-expect-lacks {PICK}: the deployment under test is {verdict.why.removeprefix('looks like ')}, so no "
        f"upstream list fits. Name a list instead (packaged: {', '.join(known) or 'none'}) or a file of your own."
    )


def _payload_shape(payload: object) -> str:
    if not isinstance(payload, Mapping):
        return "neither"
    keys = cast(Mapping[str, object], payload)
    has_id, has_worker_id = "id" in keys, "worker_id" in keys
    if has_id and has_worker_id:
        return "both"
    return "id" if has_id else "worker_id" if has_worker_id else "neither"


def capability_payloads(mqtt_url: str, expected: int, wait: float = 3.0) -> list[object]:
    """Read the retained capability payloads of a broker (``inference/workers/+``), parsed as JSON.

    Args:
        mqtt_url: ``mqtt://host:port`` or ``mqtts://…``.
        expected: stop waiting once this many non-empty payloads arrived.
        wait: the longest wait for them, seconds.
    """
    import uuid
    from urllib.parse import urlsplit

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    url = urlsplit(mqtt_url)
    payloads: dict[str, object] = {}
    cond = threading.Condition()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"cl-fingerprint-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv311,
    )
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.scheme == "mqtts":
        client.tls_set()  # pyright: ignore[reportUnknownMemberType]

    def on_connect(c: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        c.subscribe("inference/workers/+", qos=1)

    def on_message(c: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with cond:
            try:
                data = cast(object, json.loads(message.payload)) if message.payload.strip() else None
            except ValueError:
                data = "malformed"
            if data is None:
                payloads.pop(message.topic, None)
            else:
                payloads[message.topic] = data
            cond.notify_all()

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(url.hostname or "localhost", url.port or (8883 if url.scheme == "mqtts" else 1883), 30)
    except OSError:
        return []
    client.loop_start()
    try:
        deadline = time.monotonic() + wait
        with cond:
            while len(payloads) < max(1, expected) and time.monotonic() < deadline:
                cond.wait(deadline - time.monotonic())
            return list(payloads.values())
    finally:
        client.disconnect()
        client.loop_stop()


def fingerprint(
    service: str, server_url: str, mqtt_url: str | None, num_workers: int, headers: Mapping[str, str]
) -> Fingerprint:
    """Gather a deployment's :class:`Fingerprint` (``/openapi.json``, the retained capability payloads).

    Args:
        service: the ``service`` of its ``GET /``.
        server_url: its compute API.
        mqtt_url: its broker (None: payloads not read).
        num_workers: ``num_workers`` of ``GET /capabilities`` (how many payloads to wait for).
        headers: request headers (the run's token).
    """
    import httpx

    routes: frozenset[str] | None
    try:
        response = httpx.get(f"{server_url.rstrip('/')}/openapi.json", headers=dict(headers), timeout=10)
        paths = cast(Mapping[str, object], cast(Mapping[str, object], response.json()).get("paths") or {})
        routes = frozenset(p for p in (CONFIG_ROUTE, PREF_ROUTE) if p in paths)
    except (httpx.HTTPError, ValueError, AttributeError):
        routes = None
    keys: frozenset[str] = frozenset()
    if mqtt_url:
        keys = frozenset(_payload_shape(p) for p in capability_payloads(mqtt_url, num_workers))
    return Fingerprint(service, routes, keys)
