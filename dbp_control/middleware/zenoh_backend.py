"""The Zenoh backend: ROS 2 CDR bytes (rosbags typestores) under rmw_zenoh's key expressions.

Data key: `<domain>/<topic without leading slash>/<pkg>::msg::dds_::<Type>_/<type hash>`, the type hash
being RIHS01 for Jazzy and `TypeHashNotSupported` for Humble, as rmw_zenoh writes them. Each sample
carries rmw_zenoh's attachment (sequence number, source timestamp, publisher gid).

Sessions are peers on 127.0.0.1 with multicast scouting off; they connect to one endpoint (a
`dbp zenoh router`, or rmw_zenoh's `rmw_zenohd`) and find each other by gossip, so samples go peer to
peer. Keep-last QoS is kept per subscription: when callbacks fall behind, the oldest samples are dropped
(and counted), never queued without bound.

Services are queryables under the same key layout (`<pkg>::srv::dds_::<Type>_`, with the service's own
RIHS01 hash on Jazzy); a request carries the client's attachment and the response echoes its sequence
number and gid, as rmw_zenoh correlates them.
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
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype

from dbp_control.core.channels import Channel, Qos, Service
from dbp_control.core.data.bags import service_message_fields, typestore
from dbp_control.middleware.port import (
    QOS_DEPTH,
    Executor,
    MessageCallback,
    Node,
    PortError,
    Publisher,
    ServiceClient,
    ServiceHandler,
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


def service_rihs01(srv_type: str, messages: Mapping[str, Any]) -> str:
    """REP-2011 hash of a service type: a structure of its request, response and event messages, the event
    holding a ServiceEventInfo and at most one request and one response. `messages`: the request and
    response field definitions (rosbags form), keyed `<srv_type>_Request` / `_Response`."""
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg("int32 sec\nuint32 nanosec", "builtin_interfaces/msg/Time"))
    # as rosidl describes it: rosbags' Jazzy store spells client_gid char[16], which hashes differently
    store.register(get_types_from_msg("uint8 event_type\nbuiltin_interfaces/Time stamp\nuint8[16] client_gid\n"
                                      "int64 sequence_number", "service_msgs/msg/ServiceEventInfo"))
    store.register(dict(messages))
    request, response, event = (f"{srv_type}{suffix}" for suffix in ("_Request", "_Response", "_Event"))
    store.register({
        event: ([], [("info", (Nodetype.NAME, "service_msgs/msg/ServiceEventInfo")),
                     ("request", (Nodetype.SEQUENCE, ((Nodetype.NAME, request), 1))),
                     ("response", (Nodetype.SEQUENCE, ((Nodetype.NAME, response), 1)))]),
        srv_type: ([], [("request_message", (Nodetype.NAME, request)), ("response_message", (Nodetype.NAME, response)),
                        ("event_message", (Nodetype.NAME, event))]),
    })
    return store.hash_rihs01(srv_type)


def service_key(name: str, srv_type: str, distro: str, domain_id: int = 0) -> str:
    hash_ = service_rihs01(srv_type, service_message_fields(srv_type)) if distro != "humble" else "TypeHashNotSupported"
    return f"{domain_id}/{name.lstrip('/')}/{dds_type_name(srv_type)}/{hash_}"


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


_open_sessions: list[zenoh.Session] = []  # zenoh sessions cannot be weakly referenced: closed ones are pruned
_open_sessions_lock = threading.Lock()


def open_session(config: zenoh.Config) -> zenoh.Session:
    """`zenoh.open`, the session closed at interpreter exit if its owner has not closed it."""
    session = zenoh.open(config)
    with _open_sessions_lock:
        _open_sessions[:] = [s for s in _open_sessions if not s.is_closed()]
        _open_sessions.append(session)
    return session


def _close_open_sessions() -> None:
    with _open_sessions_lock:
        sessions, _open_sessions[:] = list(_open_sessions), []
    for session in sessions:
        if not session.is_closed():
            session.close()


# zenoh calls back on non-daemon threads that end only when their session closes, and the interpreter joins
# non-daemon threads before `atexit` runs: one session left open (a failed teardown, a forgotten
# shutdown) hung the process for ever. This hook runs before that join (CPython 3.9+, as concurrent.futures uses it).
threading._register_atexit(_close_open_sessions)


def open_router(endpoint: str = DEFAULT_ENDPOINT) -> zenoh.Session:
    """A Zenoh router listening on `endpoint`: the rendezvous point of the peers."""
    try:
        return open_session(session_config("router", [], listen=endpoint))
    except zenoh.ZError as exc:
        raise PortError(f"cannot start a Zenoh router on {endpoint}: {exc}") from exc


class _Attachment:
    """rmw_zenoh's per-sample attachment: u64 sequence, u64 source time (ns), u8 gid length, gid."""

    def __init__(self) -> None:
        self.gid = uuid.uuid4().bytes
        self.sequence = itertools.count(1)

    def next(self, stamp_ns: int) -> bytes:
        return struct.pack("<QQB", next(self.sequence), stamp_ns, len(self.gid)) + self.gid

    @staticmethod
    def reply_to(request: bytes, stamp_ns: int) -> bytes:
        """A service response's attachment: the request's sequence number and gid, a new time stamp."""
        sequence, _, gid_length = struct.unpack_from("<QQB", request)
        gid = request[17 : 17 + gid_length]
        if len(gid) != gid_length:
            raise ValueError(f"attachment of {len(request)} bytes is too short for its {gid_length}-byte gid")
        return struct.pack("<QQB", sequence, stamp_ns, gid_length) + gid


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


class _ServiceServer:
    def __init__(self, node: ZenohNode, service: Service, handler: ServiceHandler) -> None:
        store = typestore(node.distro)
        request_type, response_type = f"{service.srv_type}_Request", f"{service.srv_type}_Response"
        self.key = service_key(service.name, service.srv_type, node.distro, node.domain_id)

        def answer(query: zenoh.Query, request: Any, attachment: bytes) -> None:
            try:
                response = handler(request)
                payload = store.serialize_cdr(response, response_type).tobytes()
            except Exception as exc:  # the caller hears of a failing handler; the node goes on
                node.logger.error("service %s failed: %s", service.name, exc)
                query.reply_err(f"{service.name}: {exc}")
            else:
                query.reply(self.key, payload, attachment=_Attachment.reply_to(attachment, node.now_ns()))
            query.drop()  # the query is final now, not when the executor lets go of this callback

        def on_query(query: zenoh.Query) -> None:
            try:
                attachment = query.attachment.to_bytes() if query.attachment is not None else b""
                _Attachment.reply_to(attachment, 0)  # rmw_zenoh requires one: without it no reply can match
                request = store.deserialize_cdr(query.payload.to_bytes() if query.payload is not None else b"",
                                                request_type)
            except Exception as exc:
                node.logger.warning("refused a malformed %s request on %s: %s", service.srv_type, service.name, exc)
                query.reply_err(f"malformed {service.srv_type} request: {exc}")
                query.drop()
                return
            node.executor.post(lambda: answer(query, request, attachment))

        # complete: it answers for its whole key, as rmw_zenoh's servers declare it and its clients require
        self._queryable = node.session.declare_queryable(self.key, on_query, complete=True)


class ZenohServiceClient(ServiceClient):
    def __init__(self, node: ZenohNode, service: Service) -> None:
        store = typestore(node.distro)
        self._serialize, self._deserialize = store.serialize_cdr, store.deserialize_cdr
        self.service = service
        self.key = service_key(service.name, service.srv_type, node.distro, node.domain_id)
        self._session, self._now_ns = node.session, node.now_ns
        self._attachment = _Attachment()

    def call(self, request: Any, timeout_s: float = 5.0) -> Any:
        srv_type = self.service.srv_type
        payload = self._serialize(request, f"{srv_type}_Request").tobytes()
        replies = self._session.get(self.key, payload=payload, attachment=self._attachment.next(self._now_ns()),
                                    timeout=timeout_s, consolidation=zenoh.ConsolidationMode.NONE,
                                    target=zenoh.QueryTarget.ALL_COMPLETE)
        for reply in replies:  # the first reply, as it arrives
            if reply.ok is None:
                raise PortError(f"service {self.service.name}: {reply.err.payload.to_string()}")
            return self._deserialize(reply.ok.payload.to_bytes(), f"{srv_type}_Response")
        raise PortError(f"service {self.service.name} ({srv_type}): no response within {timeout_s:g} s "
                        "(is its node running?)")


class ZenohNode(Node):
    def __init__(self, name: str, *, endpoint: str | None = None, distro: str = "humble",
                 parameters_files: Sequence[Path] = (), overrides: Mapping[str, Any] | None = None,
                 domain_id: int | None = None, connect_timeout_s: float = 30.0) -> None:
        super().__init__(name, distro)
        self.domain_id = int(os.environ.get("ROS_DOMAIN_ID", "0")) if domain_id is None else domain_id
        self.endpoint = endpoint or os.environ.get(ENDPOINT_ENV, DEFAULT_ENDPOINT)
        self._given = {**load_parameters(parameters_files, name), **(overrides or {})}
        try:
            self.session = open_session(session_config("peer", [self.endpoint], connect_timeout_s=connect_timeout_s))
        except zenoh.ZError as exc:
            raise PortError(f"node {name!r}: no Zenoh router reachable at {self.endpoint} within {connect_timeout_s:g} s "
                            "(start `dbp zenoh router`, rmw_zenoh's rmw_zenohd, or use `dbp launch`)") from exc
        self.executor = Executor()
        self.subscriptions: list[_Subscription] = []
        self.services: list[_ServiceServer] = []

    def publisher(self, channel: Channel) -> Publisher:
        return ZenohPublisher(self, channel)

    def subscribe(self, channel: Channel, callback: MessageCallback) -> None:
        self.subscriptions.append(_Subscription(self, channel, callback))

    def service(self, service: Service, handler: ServiceHandler) -> None:
        self.services.append(_ServiceServer(self, service, handler))

    def client(self, service: Service) -> ServiceClient:
        return ZenohServiceClient(self, service)

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
