"""ROS-free control-time logic shared by the policy node and offline tools: stamped stream
buffers, timestamp alignment of the observation history, safety filtering and chunk scheduling.

Instead of message_filters (not installable here), each stream keeps a short stamped buffer and
the observation is assembled by timestamp on every control tick: a fixed-rate policy needs the
latest aligned history and to know how stale it is, which an approximate-time callback does not
give it.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np


class StampedBuffer:
    """Time-ordered (stamp, value) pairs; rejects stamps that go backwards."""

    def __init__(self, horizon_s: float = 5.0):
        self.horizon_s = horizon_s
        self.stamps: list[float] = []
        self.values: list = []

    def push(self, stamp: float, value) -> str | None:
        """Add a sample; returns a reason string if it is rejected."""
        if self.stamps and stamp < self.stamps[-1]:
            return f"timestamp went backwards ({stamp:.3f} < {self.stamps[-1]:.3f})"
        if self.stamps and stamp == self.stamps[-1]:
            self.values[-1] = value
            return None
        self.stamps.append(stamp)
        self.values.append(value)
        while self.stamps and self.stamps[0] < stamp - self.horizon_s:
            self.stamps.pop(0)
            self.values.pop(0)
        return None

    def clear(self) -> None:
        self.stamps.clear()
        self.values.clear()

    @property
    def latest_stamp(self) -> float | None:
        return self.stamps[-1] if self.stamps else None

    def newest_stamp_until(self, t: float) -> float | None:
        """Stamp of the newest sample at or before `t` (None if every sample is later)."""
        i = bisect.bisect_right(self.stamps, t) - 1
        return self.stamps[i] if i >= 0 else None

    def nearest(self, t: float) -> tuple[float, object] | None:
        if not self.stamps:
            return None
        i = bisect.bisect_left(self.stamps, t)
        best = min((j for j in (i - 1, i) if 0 <= j < len(self.stamps)),
                   key=lambda j: abs(self.stamps[j] - t))
        return self.stamps[best], self.values[best]


@dataclass
class AlignedObservation:
    images: list  # per history frame: list of per-camera frames
    states: np.ndarray  # (F, P)
    stamp: float  # stamp of the newest frame
    age_s: float


def align_history(image_buffers: list[StampedBuffer], state_buffer: StampedBuffer, now: float,
                  n_frames: int, frame_period_s: float, sync_slop_s: float,
                  max_age_s: float) -> tuple[AlignedObservation | None, str]:
    """Assemble F frames spaced `frame_period_s` apart, ending at the newest frame of camera 0
    whose partners can have arrived, each matched to the other cameras and joint states within
    `sync_slop_s`. Before the buffers reach back far enough the oldest available frame is
    repeated (episode-start padding, as in training). Returns (observation, "") or (None, reason).

    A camera frame newer than another stream's newest sample by more than the slop cannot be
    matched yet (its joint state may still be in flight), so the anchor is the newest frame that
    can; anchoring on the newest frame regardless would refuse a tick that has a good match one
    frame earlier. message_filters' ApproximateTime waits for complete sets the same way."""
    for k, buf in enumerate(image_buffers):
        if buf.latest_stamp is None:
            return None, "no image received yet" if k == 0 else f"camera {k}: no image received yet"
    if state_buffer.latest_stamp is None:
        return None, "no joint state received yet"
    partners_until = min(b.latest_stamp for b in (*image_buffers[1:], state_buffer)) + sync_slop_s
    anchor = image_buffers[0].newest_stamp_until(partners_until)
    if anchor is None:  # every frame is newer than its partners: the sync check below says so
        anchor = image_buffers[0].latest_stamp
    state_age = now - state_buffer.latest_stamp  # first: dead joints also hold the anchor back
    if state_age > max_age_s:
        return None, f"joint states are stale ({state_age:.2f}s old > max_obs_age_s {max_age_s:.2f})"
    age = now - anchor
    if age > max_age_s:
        return None, f"camera is stale ({age:.2f}s old > max_obs_age_s {max_age_s:.2f})"
    images, states = [], []
    for i in range(n_frames):
        t = anchor - (n_frames - 1 - i) * frame_period_s
        t0, first = image_buffers[0].nearest(t)
        cams = [first]
        for k, buf in enumerate(image_buffers[1:], start=1):
            hit = buf.nearest(t0)
            if hit is None or abs(hit[0] - t0) > sync_slop_s:
                return None, f"camera {k} not synchronised with camera 0 within {sync_slop_s}s"
            cams.append(hit[1])
        hit = state_buffer.nearest(t0)
        if hit is None or abs(hit[0] - t0) > sync_slop_s:
            return None, f"joint states not synchronised with the camera within {sync_slop_s}s"
        images.append(cams)
        states.append(hit[1])
    return AlignedObservation(images, np.stack(states), anchor, age), ""


class SafetyFilter:
    """Keeps commands finite, inside joint limits, and within a max change per step."""

    def __init__(self, lower, upper, max_step):
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.max_step = np.broadcast_to(np.asarray(max_step, dtype=np.float64), self.lower.shape)
        if np.any(self.lower > self.upper):
            raise ValueError("joint lower limits must not exceed upper limits")

    def apply(self, chunk: np.ndarray, current: np.ndarray) -> np.ndarray:
        """chunk (H, D) targets, current (D,) measured positions -> safe chunk.
        Raises ValueError for non-finite input (the caller holds instead)."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if not np.isfinite(chunk).all():
            raise ValueError("policy produced non-finite actions")
        if not np.isfinite(current).all():
            raise ValueError("current joint positions are non-finite")
        out = np.empty_like(chunk)
        prev = np.clip(current, self.lower, self.upper)
        for i, target in enumerate(chunk):
            step = np.clip(target - prev, -self.max_step, self.max_step)
            prev = np.clip(prev + step, self.lower, self.upper)
            out[i] = prev
        return out


def schedule_chunk(chunk: np.ndarray, obs_stamp: float, now: float, dt: float,
                   previous: np.ndarray | None, previous_start: float | None,
                   blend_steps: int) -> tuple[np.ndarray, int, float]:
    """Latency compensation + blending.

    Step i of `chunk` is meant for time obs_stamp + (i + 1) * dt. Steps whose time has already
    passed while inference ran are skipped; the first `blend_steps` kept steps are linearly
    blended from the still-running previous chunk into the new one, so joint targets don't jump.
    Returns (steps to execute, index of the first kept step, time of that step).
    """
    first = int(np.clip(np.floor((now - obs_stamp) / dt), 0, len(chunk) - 1))
    kept = np.array(chunk[first:], dtype=np.float64)
    start_time = obs_stamp + (first + 1) * dt
    if previous is not None and previous_start is not None and blend_steps > 0:
        for j in range(min(blend_steps, len(kept))):
            k = int(round((start_time + j * dt - previous_start) / dt))
            if 0 <= k < len(previous):
                w = (j + 1) / (blend_steps + 1)
                kept[j] = (1 - w) * previous[k] + w * kept[j]
    return kept, first, start_time
