"""The control loop has priority: how a background model user (the video node) yields to it.

Three measures, each cheap and independent of the policy node's implementation:

* `demote_process`: the process runs at a lower OS priority (nice, default +10: a CFS weight
  ~1/10 of the policy node's, so on a contended core the control loop gets ~90 %) and torch uses
  one thread, so the background work never occupies both cores of a small machine. On Linux
  nice is per thread: every existing thread is demoted, and threads created later inherit it.
* `InferenceClock` (ROS-free): predicts when the policy node infers from the arrival times of
  its action chunks (it publishes one per inference, every `n_action_steps` ticks) and the
  inference latency it reports, and answers whether a background job may start now: not while
  the policy is expected to be inferring, and not above a duty cycle (share of wall time spent
  in background jobs) — a job that ran long makes the next ones wait.
* `ControlPriority`: the ROS glue a node holds (subscriptions + parameters): `may_start()` in
  the node's timer, `with job():` around the background work.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from contextlib import contextmanager

import numpy as np


def demote_process(nice: int = 10, torch_threads: int | None = 1) -> dict:
    """Lower every thread of this process to `nice` (never raises it) and cap torch's threads.
    Returns what was applied, for the node's log."""
    applied = {"nice": None, "torch_threads": None}
    if hasattr(os, "setpriority"):
        tids = [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir(
            "/proc/self/task") else [0]
        for tid in tids:
            demote_thread(nice, tid)
        applied["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    if torch_threads is not None:
        import torch
        torch.set_num_threads(max(int(torch_threads), 1))
        applied["torch_threads"] = torch.get_num_threads()
    return applied


def demote_thread(nice: int, tid: int | None = None) -> None:
    """Set thread `tid` (default: the calling one) to at least `nice`; a thread already lower is
    left alone, and a platform that refuses is not an error (priority is best effort)."""
    tid = threading.get_native_id() if tid is None else tid
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except (OSError, AttributeError):
        pass  # thread gone, or setpriority not permitted/available


class InferenceClock:
    """When is the policy inferring? Estimated from chunk arrivals (ROS-free, times in s).

    guard_s: margin on both sides of the predicted inference window; max_duty: the largest
    share of wall time background jobs may take over `duty_window_s`; a policy that published no
    chunk for `stale_periods` periods is taken as idle (it holds, or is not running)."""

    def __init__(self, guard_s: float = 0.02, max_duty: float = 0.5, duty_window_s: float = 5.0,
                 stale_periods: float = 3.0, default_latency_s: float = 0.05):
        if not 0 < max_duty <= 1:
            raise ValueError(f"max_duty must be in (0, 1], got {max_duty}")
        self.guard, self.max_duty, self.window = guard_s, max_duty, duty_window_s
        self.stale_periods = stale_periods
        self.latency = default_latency_s
        self._arrivals: deque[float] = deque(maxlen=16)
        self._jobs: deque[tuple[float, float]] = deque()
        self.skipped = 0

    def on_chunk(self, now: float) -> None:
        self._arrivals.append(now)

    def on_latency(self, seconds: float) -> None:
        if np.isfinite(seconds) and seconds > 0:
            self.latency = float(seconds)

    def period(self) -> float | None:
        """Median interval between chunks (None until two arrived)."""
        if len(self._arrivals) < 2:
            return None
        return float(np.median(np.diff(np.asarray(self._arrivals))))

    def policy_busy(self, now: float) -> bool:
        """True inside the predicted window [next start - guard, next end + guard], where the
        next inference starts one period after the last one started (arrival - latency). False
        when the windows would cover more than half the period (waiting for a gap would starve
        the background work for nothing)."""
        period = self.period()
        if period is None or period <= 0:
            return False
        last = self._arrivals[-1]
        if now - last > self.stale_periods * period:
            return False
        if self.latency + 2 * self.guard > 0.5 * period:
            return False  # no usable gap between inferences: the OS priority alone protects it
        start = last - self.latency + period
        phase = (now - start) % period  # time since the latest predicted start
        return phase <= self.latency + self.guard or phase >= period - self.guard

    def duty(self, now: float) -> float:
        while self._jobs and self._jobs[0][1] < now - self.window:
            self._jobs.popleft()
        busy = sum(end - max(start, now - self.window) for start, end in self._jobs)
        return busy / self.window

    def may_start(self, now: float) -> bool:
        ok = not self.policy_busy(now) and self.duty(now) < self.max_duty
        self.skipped += not ok
        return ok

    def on_job(self, start: float, end: float) -> None:
        self._jobs.append((start, end))


class ControlPriority:
    """A node's handle on the measures above. Parameters (declared here): `background_nice`
    (int, default 10), `background_max_duty` (default 0.5), `policy_status_topic` (default
    /policy_node/status, for the reported inference latency)."""

    def __init__(self, node, torch_threads: int | None = 1):
        from rclpy.qos import qos_profile_sensor_data
        from uva_msgs.msg import ActionChunk, PolicyStatus
        get = lambda name, default: (node.get_parameter(name).value if node.has_parameter(name)
                                     else node.declare_parameter(name, default).value)
        self.nice = int(get("background_nice", 10))
        self.clock = InferenceClock(max_duty=float(get("background_max_duty", 0.5)))
        self.applied = demote_process(self.nice, torch_threads)
        node.get_logger().info(f"background priority: {self.applied}")
        node.create_subscription(ActionChunk, "/uva/action_chunk",
                                 lambda _msg: self.clock.on_chunk(time.monotonic()), 10)
        node.create_subscription(PolicyStatus, str(get("policy_status_topic", "/policy_node/status")),
                                 lambda msg: self.clock.on_latency(msg.inference_latency_s),
                                 qos_profile_sensor_data)

    def may_start(self) -> bool:
        return self.clock.may_start(time.monotonic())

    @contextmanager
    def job(self):
        """Around background work, on the thread that does it (demoted again: best effort)."""
        demote_thread(self.nice)
        start = time.monotonic()
        try:
            yield
        finally:
            self.clock.on_job(start, time.monotonic())
