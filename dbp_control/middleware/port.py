"""The port every node is written against: publish, subscribe, services, timers, parameters, clock, logging.

Messages are `rosbags` message objects (the same classes the bag tools use) in both backends; on the
wire they are ROS 2 CDR bytes. Callbacks never run concurrently: subscriptions and timers of one
process are dispatched one at a time by the backend's executor, like rclpy's single-threaded executor;
service handlers too. Service requests and responses are `rosbags` objects of `<srv_type>_Request` and
`<srv_type>_Response`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dbp_control.core.channels import Channel, Qos, Service

MessageCallback = Callable[[Any], None]
ServiceHandler = Callable[[Any], Any]  # request -> response


class PortError(RuntimeError):
    """Misuse of the port or a backend that cannot start (bad parameters file, unknown type, no peer)."""


class Publisher(ABC):
    @abstractmethod
    def publish(self, msg: Any) -> None: ...


class ServiceClient(ABC):
    @abstractmethod
    def call(self, request: Any, timeout_s: float = 5.0) -> Any:
        """Send `request` and wait for the response; PortError when no server answers within `timeout_s`.
        Not from inside a callback of the same node: its executor would wait on itself."""


@dataclass(frozen=True)
class Timer:
    period_s: float
    callback: Callable[[], None]


def load_parameters(paths: Sequence[Path], node_name: str) -> dict[str, Any]:
    """The `ros__parameters` of `node_name` from ROS 2 parameters YAML files, later files winning (as
    `ros2 launch` merges a list of parameter files); in each, the `/**` wildcard section first, the node's
    own section over it. A missing file or a malformed section is a clear error."""
    merged: dict[str, Any] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise PortError(f"parameters file {path} does not exist")
        try:
            content = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise PortError(f"parameters file {path} is not valid YAML: {exc}") from exc
        if not isinstance(content, dict):
            raise PortError(f"parameters file {path} must map node names to {{ros__parameters: ...}}")
        for section in ("/**", node_name, f"/{node_name}"):
            if section in content:
                params = (content[section] or {}).get("ros__parameters")
                if not isinstance(params, dict):
                    raise PortError(f"parameters file {path}: section {section!r} has no ros__parameters mapping")
                merged.update(params)
    return merged


def resolve_parameters(defaults: Mapping[str, Any], given: Mapping[str, Any], node_name: str) -> dict[str, Any]:
    """Declared defaults overridden by `given`; an undeclared name or a value of another type is an error
    (as rclpy reports for declared parameters)."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise PortError(f"node {node_name!r} has no parameter(s) {unknown}; declared: {sorted(defaults)}")
    values = dict(defaults)
    for name, value in given.items():
        expected = type(defaults[name])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif expected is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # a serial number such as 123456 given on the command line is still a string
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise PortError(f"node {node_name!r}: parameter {name!r} must be {expected.__name__}, got {value!r}")
        values[name] = value
    return values


class Node(ABC):
    """One node's handle on the middleware. Create with a backend's `create_node`."""

    def __init__(self, name: str, distro: str) -> None:
        self.name = name
        self.distro = distro  # the ROS 2 distro whose message definitions go on the wire
        self.logger = logging.getLogger(f"dbp.{name}")
        self._shutdown_callbacks: list[Callable[[], None]] = []

    def on_shutdown(self, callback: Callable[[], None]) -> None:
        """Run `callback` when the node shuts down, before the middleware closes (stop worker threads here)."""
        self._shutdown_callbacks.append(callback)

    def _run_shutdown_callbacks(self) -> None:
        callbacks, self._shutdown_callbacks = self._shutdown_callbacks, []
        for callback in reversed(callbacks):
            callback()

    @abstractmethod
    def publisher(self, channel: Channel) -> Publisher: ...

    @abstractmethod
    def subscribe(self, channel: Channel, callback: MessageCallback) -> None: ...

    @abstractmethod
    def service(self, service: Service, handler: ServiceHandler) -> None:
        """Serve `service`: `handler(request)` returns the response; it runs on the executor like any callback."""

    @abstractmethod
    def client(self, service: Service) -> ServiceClient: ...

    @abstractmethod
    def timer(self, period_s: float, callback: Callable[[], None]) -> None: ...

    @abstractmethod
    def parameters(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """Declare parameters with their defaults (which fix their types) and return their values."""

    def now_ns(self) -> int:
        """Wall-clock time in nanoseconds, the stamp of everything the node publishes."""
        return time.time_ns()

    @abstractmethod
    def spin(self, until: Callable[[], bool] | None = None) -> None:
        """Dispatch callbacks until shut down (or until `until()` is true)."""

    @abstractmethod
    def shutdown(self) -> None:
        """Stop spinning, run the `on_shutdown` callbacks, close the middleware."""


def spin_together(nodes: Sequence[Node], stop: threading.Event) -> None:
    """Spin the nodes of one process, the first on this thread and each other on its own, until `stop` is
    set. A node whose spin raises sets `stop` (one failing node stops the process, as a lone node's
    failure would), and its exception is raised here once every node has stopped."""
    failures: list[BaseException] = []

    def spin(node: Node) -> None:
        try:
            node.spin(until=stop.is_set)
        except BaseException as exc:  # KeyboardInterrupt included: it too must stop the other nodes
            failures.append(exc)
            stop.set()

    first, *others = nodes
    threads = [threading.Thread(target=spin, args=(node,), name=f"executor-{node.name}", daemon=True)
               for node in others]
    for thread in threads:
        thread.start()
    try:
        spin(first)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5.0)
    if failures:
        raise failures[0]


class Executor:
    """Single-threaded dispatch: callbacks posted from middleware threads, and timers on a monotonic
    schedule that skips missed periods instead of bursting to catch up."""

    def __init__(self) -> None:
        # not SimpleQueue: in CPython 3.11 a signal handled inside its timed get, past the deadline, turns the next
        # wait into one without end (a node parked for good on SIGTERM); Queue waits through threading's lock,
        # which reads a deadline passed in a handler as a timeout
        self._posted: queue.Queue[Callable[[], None]] = queue.Queue()
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._stopped = threading.Event()

    def post(self, callback: Callable[[], None]) -> None:
        self._posted.put(callback)

    def add_timer(self, period_s: float, callback: Callable[[], None]) -> None:
        if not period_s > 0:
            raise PortError(f"timer period must be positive, got {period_s}")
        heapq.heappush(self._timers, (time.monotonic() + period_s, next(self._order), Timer(period_s, callback)))

    def stop(self) -> None:
        self._stopped.set()
        self._posted.put(lambda: None)  # wake the loop

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def spin(self, until: Callable[[], bool] | None = None) -> None:
        while not self._stopped.is_set() and not (until is not None and until()):
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                due, order, timer = heapq.heappop(self._timers)
                missed = int((now - due) // timer.period_s)  # periods lost to a slow callback are skipped
                heapq.heappush(self._timers, (due + (missed + 1) * timer.period_s, order, timer))
                timer.callback()
                now = time.monotonic()
            wait = max(0.0, self._timers[0][0] - now) if self._timers else 0.1
            try:
                callback = self._posted.get(timeout=min(wait, 0.1))
            except queue.Empty:
                continue
            callback()
            for _ in range(self._posted.qsize()):  # what arrived meanwhile, then the timers again
                self._posted.get_nowait()()


QOS_DEPTH = {Qos.SENSOR_DATA: 5, Qos.RELIABLE: 10}
