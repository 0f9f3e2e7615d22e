"""The Zenoh backend: ROS 2 CDR bytes (rosbags typestores) under rmw_zenoh's key expressions.

Data key: `<domain>/<topic without leading slash>/<pkg>::msg::dds_::<Type>_/<type hash>`, the type hash
being RIHS01 for Jazzy and `TypeHashNotSupported` for Humble, as rmw_zenoh writes them. Each sample
carries rmw_zenoh's attachment (sequence number, source timestamp, publisher gid).

Sessions are peers on 127.0.0.1 with multicast scouting off; they connect to one endpoint (a
`dbp zenoh router`, or rmw_zenoh's `rmw_zenohd`) and find each other by gossip, so samples go peer to
peer. Keep-last QoS is kept per subscription: when callbacks fall behind, the oldest samples are dropped
(and counted), never queued without bound.
"""

from __future__ import annotations

import itertools
import os
import struct
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import zenoh

from dbp_control.core.channels import Channel, Qos
from dbp_control.core.data.bags import typestore
from dbp_control.middleware.port import (
    QOS_DEPTH,
    Executor,
    MessageCallback,
    Node,
    PortError,
    Publisher,
    load_parameters,
    resolve_parameters,
)

DEFAULT_ENDPOINT = "tcp/127.0.0.1:7447"  # rmw_zenoh's router default
ENDPOINT_ENV = "DBP_ZENOH_ENDPOINT"


def dds_type_name(msg_type: str) -> str:
    package, kind, name = msg_type.split("/")
    return f"{package}::{kind}::dds_::{name}_"


def type_hash(msg_type: str, distro: str) -> str:
    return typestore(distro).hash_rihs01(msg_type) if distro != "humble" else "TypeHashNotSupported"


def topic_key(topic: str, msg_type: str, distro: str, domain_id: int = 0) -> str:
    return f"{domain_id}/{topic.lstrip('/')}/{dds_type_name(msg_type)}/{type_hash(msg_type, distro)}"


def session_config(mode: str, connect: list[str], listen: str = "tcp/127.0.0.1:0",
                   connect_timeout_s: float = 30.0) -> zenoh.Config:
    config = zenoh.Config()
    config.insert_json5("mode", f'"{mode}"')
    config.insert_json5("scouting/multicast/enabled", "false")
    config.insert_json5("listen/endpoints", f'["{listen}"]')
    config.insert_json5("connect/endpoints", "[" + ",".join(f'"{e}"' for e in connect) + "]")
    if connect:  # wait for the router (nodes may start first), retrying, then fail with a clear error
        config.insert_json5("connect/timeout_ms", str(int(connect_timeout_s * 1000)))
        config.insert_json5("connect/exit_on_failure", "true")
        config.insert_json5("connect/retry", '{"period_init_ms": 200, "period_max_ms": 1000, "period_increase_factor": 2}')
    return config


def open_router(endpoint: str = DEFAULT_ENDPOINT) -> zenoh.Session:
    """A Zenoh router listening on `endpoint`: the rendezvous point of the peers."""
    try:
        return zenoh.open(session_config("router", [], listen=endpoint))
    except zenoh.ZError as exc:
        raise PortError(f"cannot start a Zenoh router on {endpoint}: {exc}") from exc


class _Attachment:
    """rmw_zenoh's per-sample attachment: u64 sequence, u64 source time (ns), u8 gid length, gid."""

    def __init__(self) -> None:
        self.gid = uuid.uuid4().bytes
        self.sequence = itertools.count(1)

    def next(self, stamp_ns: int) -> bytes:
        return struct.pack("<QQB", next(self.sequence), stamp_ns, len(self.gid)) + self.gid


class ZenohPublisher(Publisher):
    def __init__(self, node: ZenohNode, channel: Channel) -> None:
        self._serialize = typestore(node.distro).serialize_cdr
        self._msg_type = channel.msg_type
        self.key = topic_key(channel.topic, channel.msg_type, node.distro, node.domain_id)
        reliable = channel.qos is Qos.RELIABLE
        self._publisher = node.session.declare_publisher(
            self.key,
            congestion_control=zenoh.CongestionControl.BLOCK if reliable else zenoh.CongestionControl.DROP,
            reliability=zenoh.Reliability.RELIABLE if reliable else zenoh.Reliability.BEST_EFFORT,
            express=not reliable,  # sensor data goes out at once instead of being batched
        )
        self._attachment = _Attachment()
        self._now_ns = node.now_ns

    def publish(self, msg: Any) -> None:
        payload = self._serialize(msg, self._msg_type).tobytes()  # zenoh takes bytes, not buffers: one copy
        self._publisher.put(payload, attachment=self._attachment.next(self._now_ns()))


class _Subscription:
    def __init__(self, node: ZenohNode, channel: Channel, callback: MessageCallback) -> None:
        self.dropped = 0
        self._queue: deque[Any] = deque(maxlen=QOS_DEPTH[channel.qos])
        self._lock = threading.Lock()
        self._callback = callback
        self._executor = node.executor
        deserialize, msg_type = typestore(node.distro).deserialize_cdr, channel.msg_type
        self.key = topic_key(channel.topic, channel.msg_type, node.distro, node.domain_id)

        def on_sample(sample: zenoh.Sample) -> None:
            try:
                msg = deserialize(sample.payload.to_bytes(), msg_type)
            except Exception as exc:  # a foreign publisher's malformed bytes must not kill the session thread
                node.logger.warning("dropped a malformed %s on %s: %s", msg_type, channel.topic, exc)
                return
            with self._lock:
                if len(self._queue) == self._queue.maxlen:
                    self.dropped += 1
                self._queue.append(msg)
            self._executor.post(self._deliver)

        self._subscriber = node.session.declare_subscriber(self.key, on_sample)

    def _deliver(self) -> None:
        with self._lock:
            if not self._queue:
                return  # an earlier delivery took it
            msg = self._queue.popleft()
        self._callback(msg)


class ZenohNode(Node):
    def __init__(self, name: str, *, endpoint: str | None = None, distro: str = "humble",
                 parameters_files: Sequence[Path] = (), overrides: Mapping[str, Any] | None = None,
                 domain_id: int | None = None, connect_timeout_s: float = 30.0) -> None:
        super().__init__(name, distro)
        self.domain_id = int(os.environ.get("ROS_DOMAIN_ID", "0")) if domain_id is None else domain_id
        self.endpoint = endpoint or os.environ.get(ENDPOINT_ENV, DEFAULT_ENDPOINT)
        self._given = {**load_parameters(parameters_files, name), **(overrides or {})}
        try:
            self.session = zenoh.open(session_config("peer", [self.endpoint], connect_timeout_s=connect_timeout_s))
        except zenoh.ZError as exc:
            raise PortError(f"node {name!r}: no Zenoh router reachable at {self.endpoint} within {connect_timeout_s:g} s "
                            "(start `dbp zenoh router`, rmw_zenoh's rmw_zenohd, or use `dbp launch`)") from exc
        self.executor = Executor()
        self.subscriptions: list[_Subscription] = []

    def publisher(self, channel: Channel) -> Publisher:
        return ZenohPublisher(self, channel)

    def subscribe(self, channel: Channel, callback: MessageCallback) -> None:
        self.subscriptions.append(_Subscription(self, channel, callback))

    def timer(self, period_s: float, callback: Callable[[], None]) -> None:
        self.executor.add_timer(period_s, callback)

    def parameters(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        return resolve_parameters(defaults, self._given, self.name)

    def spin(self, until: Callable[[], bool] | None = None) -> None:
        self.executor.spin(until)

    def shutdown(self) -> None:
        self.executor.stop()
        self._run_shutdown_callbacks()
        if not self.session.is_closed():
            self.session.close()
