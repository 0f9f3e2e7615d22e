"""A worker thread beside a node's executor for work too slow for it (rendering, image encoding): the executor
hands it items by key, and it handles each key's newest. An item replaced before the worker took it is
dropped and counted, so a worker that falls behind skips to the present instead of queueing the past."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class NewestWorker(Generic[Item]):
    def __init__(self, name: str, handle: Callable[[str, Item], None], *, niceness: int,
                 setup: Callable[[], None] | None = None) -> None:
        """`handle(key, item)` runs on the worker; `setup` runs there first (e.g. pinning it to CPUs). The
        thread's niceness is raised by `niceness`, so the executor that feeds it wins the CPU."""
        self._handle, self._niceness, self._setup = handle, niceness, setup
        self._pending: dict[str, Item] = {}
        self._ready = threading.Condition()
        self._stopping = False
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread (before the process's threads get real-time scheduling: it inherits its creator's,
        and stays out by being started first and excluded by its `thread.native_id`)."""
        self.thread.start()

    def put(self, key: str, item: Item) -> None:
        with self._ready:
            self.dropped += key in self._pending
            self._pending[key] = item
            self._ready.notify()

    def stop(self) -> None:
        """Let the worker finish its item and end (a thread left inside native code at exit can abort it)."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if self.thread.is_alive():
            self.thread.join(timeout=5.0)

    def _run(self) -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._niceness)  # this thread only, on Linux
        if self._setup is not None:
            self._setup()
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._pending) or self._stopping)
                if self._stopping:
                    return
                items, self._pending = self._pending, {}
            for key, item in items.items():
                self._handle(key, item)
