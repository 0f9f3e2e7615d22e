"""Episode recording without ROS: start / stop / discard / mark success, one bag per episode, written by
a background thread so the caller (a subscription callback next to the control loop) never waits on the
disk. When the writer falls behind, messages are dropped and counted rather than queued without bound.
Bags are written under OUT/.recording/<name> and moved to OUT/<name> when the episode stops."""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbp_control.core.data.bags import STAGING_DIR, EpisodeBagWriter



class RecorderError(RuntimeError):
    """An episode command that does not fit the recorder's state (e.g. stop while idle)."""


@dataclass
class RecorderStats:
    episodes: int = 0  # started
    saved: int = 0  # closed and moved out of staging: complete on disk (a stopped episode counts a moment later)
    last_saved: str | None = None  # the bag folder's name
    discarded: int = 0
    written: int = 0
    dropped: int = 0  # the writer thread's queue was full
    errors: list[str] = field(default_factory=list)


class EpisodeRecorder:
    def __init__(self, out_dir: Path, topics: Mapping[str, str], *, storage: str = "mcap", distro: str = "humble",
                 compress: bool = False, queue_size: int = 2000) -> None:
        self.out_dir = Path(out_dir)
        self.topics, self.storage, self.distro, self.compress = dict(topics), storage, distro, compress
        self.stats = RecorderStats()
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._info: dict[str, Any] | None = None
        self._name: str | None = None
        self._thread = threading.Thread(target=self._run, name="episode-writer", daemon=True)
        self._thread.start()

    @property
    def recording(self) -> bool:
        return self._name is not None

    def start(self, info: Mapping[str, Any]) -> str:
        """Begin an episode described by `info` (task, operator, ...); returns its bag name."""
        with self._lock:
            if self._name is not None:
                raise RecorderError(f"already recording {self._name}; stop or discard it first")
            name = f"{info.get('task', 'episode')}_{time.strftime('%Y%m%d_%H%M%S')}_{self.stats.episodes:04d}"
            if (self.out_dir / name).exists():
                raise RecorderError(f"{self.out_dir / name} already exists")
            self._name, self._info = name, {**info, "success": None}
            self.stats.episodes += 1
        self._queue.put(("start", name))  # control messages wait for room: they must not be dropped
        return name

    def mark_success(self, success: bool) -> None:
        with self._lock:
            if self._info is None:
                raise RecorderError("no episode is being recorded")
            self._info["success"] = bool(success)

    def write(self, topic: str, stamp_ns: int, msg: Any) -> bool:
        if self._name is None or topic not in self.topics:
            return False
        try:
            self._queue.put_nowait(("write", topic, stamp_ns, msg))
        except queue.Full:
            self.stats.dropped += 1
            return False
        return True

    def stop(self) -> str:
        """Finish the episode: its bag is complete once the writer thread has caught up."""
        with self._lock:
            if self._name is None:
                raise RecorderError("no episode is being recorded")
            name, info, self._name, self._info = self._name, self._info, None, None
        self._queue.put(("stop", name, info))
        return name

    def discard(self) -> str:
        with self._lock:
            if self._name is None:
                raise RecorderError("no episode is being recorded")
            name, self._name, self._info = self._name, None, None
        self._queue.put(("discard", name))
        return name

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything queued so far is on disk."""
        done = threading.Event()
        self._queue.put(("flush", done))
        if not done.wait(timeout_s):
            raise TimeoutError(f"the episode writer did not catch up within {timeout_s} s")

    def _run(self) -> None:
        writer: EpisodeBagWriter | None = None
        while True:
            item = self._queue.get()
            kind = item[0]
            try:
                if kind == "start":
                    staging = self.out_dir / STAGING_DIR / item[1]
                    shutil.rmtree(staging, ignore_errors=True)
                    staging.parent.mkdir(parents=True, exist_ok=True)
                    writer = EpisodeBagWriter(staging, topics=self.topics, storage=self.storage, distro=self.distro,
                                              compress=self.compress)
                elif kind == "write" and writer is not None:
                    writer.write(item[1], item[2], item[3])
                    self.stats.written += 1
                elif kind == "stop" and writer is not None:
                    writer.close(item[2])
                    writer = None
                    (self.out_dir / STAGING_DIR / item[1]).rename(self.out_dir / item[1])
                    self.stats.saved, self.stats.last_saved = self.stats.saved + 1, item[1]
                elif kind == "discard" and writer is not None:
                    writer.close()
                    writer = None
                    shutil.rmtree(self.out_dir / STAGING_DIR / item[1], ignore_errors=True)
                    self.stats.discarded += 1
                elif kind == "flush":
                    item[1].set()
            except Exception as exc:  # a failing disk must not kill the thread: report and go on
                self.stats.errors.append(f"{kind}: {exc}")
                writer = None
