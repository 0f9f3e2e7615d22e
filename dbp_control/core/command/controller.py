"""The command node's logic, without ROS: timestamped action chunks in, one safe joint command per tick out.

Chunk step k is due at the chunk's stamp (the observation it answers) + k step periods; between steps
the target is interpolated. A chunk is followed for `commit_steps` of its steps (the receding horizon
the policy was trained and evaluated with) before the first chunk that arrives after that takes over,
blending from the older one over `blend_s`; `commit_steps=0` switches to every newer chunk at once. Replanning at the
control rate from the measured state would otherwise only ever command a few milliseconds ahead of
where a lagging arm is, and the arm would crawl.
The arms hold position — the measured position when holding began, inside the limits — after an emergency stop
(latched until re-enabled) and whenever the watchdog finds observations or actions older than its
timeout, or the current chunk exhausted. While disabled (or before the first joint state) no command is
sent at all: the drivers keep their last one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dbp_control.core.command.safety import SafetyFilter
from dbp_control.core.latency import LatencyWindow

NS = 1_000_000_000


@dataclass
class TimedChunk:
    actions: np.ndarray  # [T, D]
    stamp_ns: int  # the observation this chunk answers: step 0 is due then
    step_ns: int
    received_ns: int

    def at(self, now_ns: int) -> np.ndarray | None:
        """The interpolated target at `now_ns`, or None once the last step is past."""
        position = (now_ns - self.stamp_ns) / self.step_ns
        last = len(self.actions) - 1
        if position > last:
            return None
        position = max(position, 0.0)
        k = int(position)
        if k >= last:
            return self.actions[last].copy()
        w = position - k
        return (1 - w) * self.actions[k] + w * self.actions[k + 1]


@dataclass
class ControllerStatus:
    holding: bool = True
    reason: str = "no joint state yet"
    chunks_accepted: int = 0
    chunks_rejected: int = 0
    chunks_duplicate: int = 0  # the same observation's chunk again: ignored
    chunks_before_enable: int = 0  # answering an observation from before the last enable: ignored
    last_rejection: str = ""
    holds: dict[str, int] = field(default_factory=dict)  # ticks held, per reason


class CommandController:
    def __init__(self, safety: SafetyFilter, *, rate_hz: float, watchdog_s: float = 0.2, blend_s: float = 0.1,
                 commit_steps: int = 0, enabled: bool = False, latency_window_s: float = 10.0) -> None:
        if not watchdog_s > 0 or blend_s < 0:
            raise ValueError(f"watchdog_s must be positive and blend_s non-negative, got {watchdog_s}, {blend_s}")
        self.safety, self.rate_hz = safety, rate_hz
        self.watchdog_ns, self.blend_ns = int(watchdog_s * NS), int(blend_s * NS)
        self.commit_steps = commit_steps
        self.dim = len(safety.limits.names)
        self.enabled, self.estopped = enabled, False
        self.status = ControllerStatus()
        self._chunk: TimedChunk | None = None  # being followed
        self._previous_chunk: TimedChunk | None = None  # blended out
        self._newest: TimedChunk | None = None  # the latest received, waiting for the commitment to end
        self._followed_since = 0
        window_ns = int(latency_window_s * NS)
        self.switch_latency = LatencyWindow(window_ns)  # per chunk taken over: that tick - its observation stamp
        self.arrival_latency = LatencyWindow(window_ns)  # per chunk accepted: arrival - its observation stamp
        self._joints: np.ndarray | None = None
        self._joints_ns = 0
        self._command: np.ndarray | None = None  # the last command sent
        self._hold: np.ndarray | None = None
        self._last_tick_ns: int | None = None
        self._enabled_at_ns = -(2**62)  # chunks answering older observations are ignored

    # -- inputs ------------------------------------------------------------------------------------
    def on_joint_state(self, positions: np.ndarray, now_ns: int) -> None:
        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape == (self.dim,) and np.isfinite(positions).all():
            self._joints, self._joints_ns = positions, now_ns

    def on_chunk(self, actions: np.ndarray, stamp_ns: int, step_s: float, now_ns: int) -> str | None:
        """Accept a chunk, or return why it was rejected (and keep the current one)."""
        actions = np.asarray(actions, dtype=np.float64)
        reason = None
        if actions.ndim != 2 or actions.shape[1] != self.dim or len(actions) < 2:
            reason = f"chunk has shape {actions.shape}, expected [T >= 2, {self.dim}]"
        elif not np.isfinite(actions).all():
            reason = "chunk contains NaN or inf"
        elif not step_s > 0:
            reason = f"chunk step must be positive, got {step_s}"
        elif self._newest is not None and stamp_ns == self._newest.stamp_ns:
            self.status.chunks_duplicate += 1
            return None
        elif self._newest is not None and stamp_ns < self._newest.stamp_ns:
            reason = "chunk is older than the current one (out of order)"
        elif stamp_ns < self._enabled_at_ns:
            self.status.chunks_before_enable += 1  # planned before enabling: expected, not an error
            return None
        if reason is not None:
            self.status.chunks_rejected += 1
            self.status.last_rejection = reason
            return reason
        self._newest = TimedChunk(actions, int(stamp_ns), int(step_s * NS), now_ns)
        self.arrival_latency.add(now_ns, now_ns - int(stamp_ns))
        self.status.chunks_accepted += 1
        return None

    def _should_switch(self, now_ns: int) -> bool:
        """Take over the newest chunk when there is nothing else to follow, or when the commitment has run
        out and the newest chunk arrived after that (an older one would be a staler plan than the one the
        next tick brings: the current chunk still covers the wait, its horizon being longer than its commitment)."""
        current, newest = self._chunk, self._newest
        if newest is None or newest is current:
            return False
        if current is None or current.at(now_ns) is None:
            return True
        expiry = self._followed_since + self.commit_steps * current.step_ns
        return now_ns >= expiry and (self.commit_steps == 0 or newest.received_ns >= expiry)

    def _follow_newest(self, now_ns: int) -> None:
        if self._should_switch(now_ns):
            self._previous_chunk, self._chunk, self._followed_since = self._chunk, self._newest, now_ns
            self.switch_latency.add(now_ns, now_ns - self._newest.stamp_ns)  # type: ignore[union-attr]

    def wants_newest(self, now_ns: int) -> bool:
        """Whether a tick now would take over the newest chunk (so the caller can tick at once)."""
        return self._should_switch(now_ns)

    def set_enabled(self, enabled: bool, now_ns: int | None = None) -> None:
        """Enabling also clears an emergency stop; the arms then follow only chunks that arrive afterwards
        and (given `now_ns`) answer observations made at or after it: a plan from before (a simulation reset,
        an arm moved by hand) is not followed."""
        if enabled and not self.enabled:
            self._chunk = self._previous_chunk = self._newest = None
            self._command = self._hold = None  # start again from the measured position, wherever the arm is now
            self.estopped = False
            self._enabled_at_ns = now_ns if now_ns is not None else -(2**62)
        self.enabled = enabled

    def emergency_stop(self) -> None:
        self.estopped = True
        self.enabled = False

    # -- output ------------------------------------------------------------------------------------
    def _target(self, now_ns: int) -> tuple[np.ndarray | None, str]:
        if self._joints is None:
            return None, "no joint state yet"
        if self.estopped:
            return None, "emergency stop"
        if not self.enabled:
            return None, "disabled"
        if now_ns - self._joints_ns > self.watchdog_ns:
            return None, "joint states stale"
        if self._newest is None:
            return None, "no action chunk yet"
        if now_ns - self._newest.received_ns > self.watchdog_ns:
            return None, "actions stale"
        self._follow_newest(now_ns)
        target = self._chunk.at(now_ns)  # type: ignore[union-attr]
        if target is None:
            return None, "action chunk exhausted"
        old = self._previous_chunk.at(now_ns) if self._previous_chunk is not None else None
        blend_w = 1.0 if self.blend_ns == 0 else min(1.0, (now_ns - self._followed_since) / self.blend_ns)
        if old is not None and blend_w < 1.0:
            target = (1 - blend_w) * old + blend_w * target
        return target, ""

    def tick(self, now_ns: int) -> np.ndarray | None:
        """The command for this tick (None only before the first joint state: nothing to hold). Ticks may
        come between the regular ones (a chunk due at once); velocity limits use the time since the last."""
        dt_s = None if self._last_tick_ns is None else (now_ns - self._last_tick_ns) / NS
        self._last_tick_ns = now_ns
        target, reason = self._target(now_ns)
        if target is None:
            self.status.holding, self.status.reason = True, reason
            self.status.holds[reason] = self.status.holds.get(reason, 0) + 1
            if self._joints is None or reason == "disabled":
                # disabled: send nothing, so the drivers keep their last command and whoever enabled
                # manual control (a teach pendant, a simulator reset) is not fought
                self._hold = None
                return None
            if self._hold is None:
                self._hold = self.safety.clamp(self._joints)
            self._command = self._hold.copy()
            return self._command.copy()
        self._hold = None
        previous = self._command if self._command is not None else self._joints
        self._command, rejection = self.safety.apply(target, previous, dt_s)
        self.status.holding, self.status.reason = rejection is not None, rejection or ""
        return self._command.copy()
