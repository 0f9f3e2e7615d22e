"""The observation node's handling of camera frames, in-process: a stub middleware node and a stub engine, so the
order of arrivals and of the frame worker's turns is the test's, not the machine's."""

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from dbp_control.core.channels import CHANNELS
from dbp_control.core.data.bags import image_msg
from dbp_control.core.layout import CAMERAS
from dbp_control.middleware.port import Node, Publisher
from dbp_control.nodes.policy import ObservationNode


class RecordingPublisher(Publisher):
    def __init__(self) -> None:
        self.messages: list[Any] = []

    def publish(self, msg: Any) -> None:
        self.messages.append(msg)


class StubNode(Node):
    """Keeps the subscriptions so the test delivers messages itself; timers never fire."""

    def __init__(self) -> None:
        super().__init__("observation_test", "humble")
        self.callbacks: dict[str, Callable[[Any], None]] = {}

    def publisher(self, channel: Any) -> Publisher:
        return RecordingPublisher()

    def subscribe(self, channel: Any, callback: Callable[[Any], None]) -> None:
        self.callbacks[channel.topic] = callback

    def service(self, service: Any, handler: Any) -> None:
        raise NotImplementedError

    def client(self, service: Any) -> Any:
        raise NotImplementedError

    def timer(self, period_s: float, callback: Callable[[], None]) -> None:
        pass

    def parameters(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        return dict(defaults)

    def spin(self, until: Callable[[], bool] | None = None) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        self._run_shutdown_callbacks()


class StubEngine:
    """The engine's camera side: each encoded frame's first pixel, recorded."""

    cameras = CAMERAS

    def __init__(self) -> None:
        self.encoded: list[tuple[str, int]] = []

    def image_size(self, camera: str) -> tuple[int, int]:
        return (48, 64)

    def encode(self, camera: str, frame: np.ndarray) -> np.ndarray:
        self.encoded.append((camera, int(frame[0, 0, 0])))
        return np.zeros(4, np.float32)


def frame(value: int, stamp_ns: int) -> Any:
    return image_msg("humble", stamp_ns, CHANNELS["head_image"].frame_id, np.full((48, 64, 3), value, np.uint8))


def encode_waiting_frames(observation: ObservationNode, node: StubNode, engine: StubEngine) -> None:
    """Start the frame worker, wait until it has encoded something, and stop it."""
    observation.start()
    try:
        deadline = time.monotonic() + 10
        while not engine.encoded and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        node.shutdown()


def test_bad_frames_are_rejected_on_arrival_and_never_displace_a_waiting_good_one():
    node, engine = StubNode(), StubEngine()
    observation = ObservationNode(node, engine)  # type: ignore[arg-type]
    deliver = node.callbacks[CHANNELS["head_image"].topic]
    wrong_encoding, truncated = frame(1, 1), frame(2, 2)
    wrong_encoding.encoding = "16UC1"
    truncated.data = truncated.data[:100]

    deliver(frame(7, 3))  # the worker has not started: this good frame waits
    deliver(wrong_encoding)
    deliver(truncated)
    status = observation.status()
    assert (status["rejected_images"], status["dropped_frames"]) == (2, 0), status

    encode_waiting_frames(observation, node, engine)
    assert engine.encoded == [("head", 7)]
    assert observation.assembler.stats.inputs["head"].received == 1, observation.status()["inputs"]


def test_a_newer_good_frame_replaces_one_the_worker_has_not_taken():
    node, engine = StubNode(), StubEngine()
    observation = ObservationNode(node, engine)  # type: ignore[arg-type]
    deliver = node.callbacks[CHANNELS["head_image"].topic]
    deliver(frame(7, 1))
    deliver(frame(9, 2))
    assert observation.status()["dropped_frames"] == 1
    encode_waiting_frames(observation, node, engine)
    assert engine.encoded == [("head", 9)]
