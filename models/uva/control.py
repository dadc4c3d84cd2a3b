"""ROS-free control-time logic shared by the policy node and offline tools: stamped stream
buffers, consistency checks of observations (joint names, future stamps, camera sets),
timestamp alignment of the observation history, safety filtering and chunk scheduling.

Instead of message_filters (not installable here), each stream keeps a short stamped buffer and
the observation is assembled by timestamp on every control tick: a fixed-rate policy needs the
latest aligned history and to know how stale it is, which an approximate-time callback does not
give it.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

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
    images: list  # per history frame: list of per-camera frames (in `cameras` order)
    states: np.ndarray  # (F, P)
    stamp: float  # stamp of the newest frame
    age_s: float
    cameras: list[str] = field(default_factory=lambda: ["scene"])


def future_skew_reason(stamp: float, now: float, max_future_skew_s: float | None) -> str:
    """"" if `stamp` is at most `max_future_skew_s` ahead of `now`, else why it is refused (a clock
    that jumped, a publisher stamping in another time base): a future stamp would look fresh
    and put trajectory points years ahead."""
    if not np.isfinite(stamp):
        return "stamp is not finite"
    if max_future_skew_s is not None and stamp - now > max_future_skew_s:
        return (f"stamped {stamp - now:.3f}s in the future "
                f"(> max_future_skew_s {max_future_skew_s:.3f}; check the clocks)")
    return ""


def select_joints(names, positions, wanted: list[str]) -> np.ndarray:
    """Positions of `wanted` from a joint-state reading (names in any order, extra joints
    ignored). Raises ValueError when the reading is inconsistent: lengths differ, a joint is
    named twice (which reading is the real one?), a wanted joint is missing or non-finite."""
    names = list(names)
    if len(positions) != len(names):
        raise ValueError(f"{len(names)} names but {len(positions)} positions")
    seen, repeated = set(), []
    for n in names:
        if n in seen and n not in repeated:
            repeated.append(n)
        seen.add(n)
    if repeated:
        raise ValueError(f"joint names repeated {repeated}")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in wanted if n not in index]
    if missing:
        raise ValueError(f"missing joints {missing} (got {names})")
    q = np.array([positions[index[n]] for n in wanted], dtype=np.float64)
    if not np.isfinite(q).all():
        bad = [n for n, v in zip(wanted, q) if not np.isfinite(v)]
        raise ValueError(f"non-finite positions for {bad}")
    return q


def camera_set_reason(node_cameras: list[str], checkpoint_cameras: list[str]) -> str:
    """"" if the node's cameras are the checkpoint's (by name, any order), else why not."""
    if len(set(node_cameras)) != len(node_cameras):
        return f"camera_names {list(node_cameras)} name a camera twice"
    if set(node_cameras) != set(checkpoint_cameras):
        missing = [c for c in checkpoint_cameras if c not in node_cameras]
        extra = [c for c in node_cameras if c not in checkpoint_cameras]
        parts = ([f"missing {missing}"] if missing else []) + ([f"unknown {extra}"] if extra else [])
        return (f"cameras {list(node_cameras)} do not match the checkpoint's "
                f"{list(checkpoint_cameras)} ({', '.join(parts)})")
    return ""


def align_history(image_buffers: list[StampedBuffer], state_buffer: StampedBuffer, now: float,
                  n_frames: int, frame_period_s: float, sync_slop_s: float,
                  max_age_s: float, camera_names: list[str] | None = None,
                  max_future_skew_s: float | None = None
                  ) -> tuple[AlignedObservation | None, str]:
    """Assemble F frames spaced `frame_period_s` apart, ending at the newest frame of the first
    camera whose partners can have arrived, each matched to the other cameras and joint states
    within `sync_slop_s`. Before the buffers reach back far enough the oldest available frame is
    repeated (episode-start padding, as in training). Returns (observation, "") or (None, reason);
    a reason names the camera (`camera_names`, default "0", "1", ...).

    A camera frame newer than another stream's newest sample by more than the slop cannot be
    matched yet (its joint state may still be in flight), so the anchor is the newest frame that
    can; anchoring on the newest frame regardless would refuse a tick that has a good match one
    frame earlier. message_filters' ApproximateTime waits for complete sets the same way.
    A stream whose newest sample is stamped more than `max_future_skew_s` after `now` holds."""
    names = list(camera_names) if camera_names is not None else \
        [str(k) for k in range(len(image_buffers))]
    if len(names) != len(image_buffers):
        raise ValueError(f"{len(names)} camera names for {len(image_buffers)} image buffers")
    for name, buf in zip(names, image_buffers):
        if buf.latest_stamp is None:
            return None, f"camera {name}: no image received yet"
    if state_buffer.latest_stamp is None:
        return None, "no joint state received yet"
    for source, buf in [*((f"camera {n}", b) for n, b in zip(names, image_buffers)),
                        ("joint states", state_buffer)]:
        skew = future_skew_reason(buf.latest_stamp, now, max_future_skew_s)
        if skew:
            return None, f"{source}: {skew}"
    partners_until = min(b.latest_stamp for b in (*image_buffers[1:], state_buffer)) + sync_slop_s
    anchor = image_buffers[0].newest_stamp_until(partners_until)
    if anchor is None:  # every frame is newer than its partners: the sync check below says so
        anchor = image_buffers[0].latest_stamp
    state_age = now - state_buffer.latest_stamp  # first: dead joints also hold the anchor back
    if state_age > max_age_s:
        return None, f"joint states are stale ({state_age:.2f}s old > max_obs_age_s {max_age_s:.2f})"
    for name, buf in zip(names[1:], image_buffers[1:]):
        age = now - buf.latest_stamp
        if age > max_age_s:
            return None, f"camera {name} is stale ({age:.2f}s old > max_obs_age_s {max_age_s:.2f})"
    age = now - anchor
    if age > max_age_s:
        return None, f"camera {names[0]} is stale ({age:.2f}s old > max_obs_age_s {max_age_s:.2f})"
    images, states = [], []
    for i in range(n_frames):
        t = anchor - (n_frames - 1 - i) * frame_period_s
        t0, first = image_buffers[0].nearest(t)
        cams = [first]
        for name, buf in zip(names[1:], image_buffers[1:]):
            hit = buf.nearest(t0)
            if hit is None or abs(hit[0] - t0) > sync_slop_s:
                return None, (f"camera {name} not synchronised with camera {names[0]} "
                              f"within {sync_slop_s}s")
            cams.append(hit[1])
        hit = state_buffer.nearest(t0)
        if hit is None or abs(hit[0] - t0) > sync_slop_s:
            return None, (f"joint states not synchronised with camera {names[0]} "
                          f"within {sync_slop_s}s")
        images.append(cams)
        states.append(hit[1])
    return AlignedObservation(images, np.stack(states), anchor, age, names), ""


class SafetyViolation(ValueError):
    """A command that must not be published (the caller holds and reports the reason)."""


class SafetyFilter:
    """Keeps commands finite, inside joint limits, and within a max change per step.

    Refuses to exist with settings that could not keep that promise (non-finite, zero or
    negative steps, lower > upper, shapes that disagree), and checks its own output before it
    is returned: a filter bug or a corrupted setting raises SafetyViolation, never a command."""

    def __init__(self, lower, upper, max_step, n_joints: int | None = None):
        try:
            self.lower = np.asarray(lower, dtype=np.float64)
            self.upper = np.asarray(upper, dtype=np.float64)
            step = np.asarray(max_step, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"joint limits and max_joint_step must be numbers: {e}") from e
        if self.lower.ndim != 1 or self.upper.ndim != 1 or len(self.lower) == 0:
            raise ValueError("joint limits must be non-empty lists")
        if len(self.lower) != len(self.upper):
            raise ValueError(f"{len(self.lower)} lower limits but {len(self.upper)} upper limits")
        if n_joints is not None and len(self.lower) != n_joints:
            raise ValueError(f"{len(self.lower)} joint limits for {n_joints} joints")
        if step.ndim > 1 or (step.ndim == 1 and len(step) not in (1, len(self.lower))):
            raise ValueError(f"max_joint_step must be one value or one per joint (got {step.shape})")
        if not (np.isfinite(self.lower).all() and np.isfinite(self.upper).all()):
            raise ValueError("joint limits must be finite")
        if not np.isfinite(step).all() or (step <= 0).any():
            raise ValueError(f"max_joint_step must be finite and > 0 (got {max_step})")
        bad = np.flatnonzero(self.lower > self.upper)
        if len(bad):
            raise ValueError(f"joint lower limits exceed upper limits at joints {bad.tolist()}")
        self.max_step = np.broadcast_to(step, self.lower.shape).copy()

    def apply(self, chunk: np.ndarray, current: np.ndarray) -> np.ndarray:
        """chunk (H, D) targets, current (D,) measured positions -> safe chunk.
        Raises ValueError for unusable input (the caller holds instead)."""
        chunk = np.asarray(chunk, dtype=np.float64)
        current = np.asarray(current, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[1] != len(self.lower) or len(chunk) == 0:
            raise ValueError(f"action chunk of shape {chunk.shape} for {len(self.lower)} joints")
        if current.shape != self.lower.shape:
            raise ValueError(f"current joint positions of shape {current.shape} "
                             f"for {len(self.lower)} joints")
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
        self.check(out, current)
        return out

    def check(self, steps: np.ndarray, current: np.ndarray, tol: float = 1e-9) -> None:
        """Raise SafetyViolation unless `steps` (H, D) are finite, inside the limits and each
        within max_step of the one before (the first of the measured `current`, clipped into
        the limits: a joint measured outside them is brought back at most max_step a step)."""
        steps = np.asarray(steps, dtype=np.float64)
        if steps.ndim != 2 or steps.shape[1] != len(self.lower):
            raise SafetyViolation(f"command of shape {steps.shape} for {len(self.lower)} joints")
        if not np.isfinite(steps).all():
            raise SafetyViolation("command is not finite")
        low = np.flatnonzero((steps < self.lower - tol).any(0) | (steps > self.upper + tol).any(0))
        if len(low):
            raise SafetyViolation(f"command outside the joint limits at joints {low.tolist()}")
        start = np.clip(np.asarray(current, dtype=np.float64), self.lower, self.upper)
        jumps = np.abs(np.diff(np.vstack([start, steps]), axis=0))
        over = np.flatnonzero((jumps > self.max_step + tol).any(0))
        if len(over):
            raise SafetyViolation(f"command steps exceed max_joint_step at joints {over.tolist()}")


def plan_due(frame_stamp: float, last_plan_stamp: float | None, n_exec: int, dt: float,
             frame_period_s: float) -> bool:
    """Is the frame stamped `frame_stamp` the one to plan the next chunk from?

    A chunk is planned every `n_exec` control periods, from the frame nearest that time: due
    once the frame is at least n_exec * dt minus half a frame period after the frame the last
    chunk was planned from (a camera faster than the control rate plans from its nearest
    frame, one slower from the first frame after). `last_plan_stamp` None: nothing planned
    since a reset or a hold of the plan, so any frame is due."""
    if last_plan_stamp is None:
        return True
    half = min(max(float(frame_period_s), 0.0), n_exec * dt) / 2
    return frame_stamp - last_plan_stamp >= n_exec * dt - half - 1e-9


def encode_ahead(frame_stamp: float, last_plan_stamp: float | None, n_exec: int, dt: float,
                 n_frames: int, spacing_s: float, frame_period_s: float) -> bool:
    """Will the frame stamped `frame_stamp` be an older frame of the next chunk's history?

    The next chunk is planned about n_exec * dt after the last one, from a history reaching
    back (n_frames - 1) * spacing_s; the history frames newer than the last plan's frame have
    never been encoded. A node encodes such a frame on arrival, between chunks, so the
    inference then encodes only its newest frame (one VAE call instead of two when the chunk
    spans two history spacings, as the Panda checkpoint's 8 executed steps over 4 per frame).
    The next plan's frame comes within half a frame period of n_exec * dt after the last
    (`plan_due`), and its history takes the frame nearest each of its targets: the frames within
    one frame period of a target (two, three when the camera jitters) are encoded."""
    if last_plan_stamp is None or n_frames < 2:
        return False
    period = max(float(frame_period_s), 1e-6)
    nxt = last_plan_stamp + n_exec * dt
    for j in range(1, n_frames):
        target = nxt - j * spacing_s
        if target > last_plan_stamp + period / 2 and abs(frame_stamp - target) <= period + 1e-9:
            return True
    return False


def schedule_chunk(chunk: np.ndarray, obs_stamp: float, now: float, dt: float,
                   previous: np.ndarray | None, previous_start: float | None,
                   blend_steps: int) -> tuple[np.ndarray, int, float]:
    """Latency compensation + blending.

    Step i of `chunk` is meant for time obs_stamp + (i + 1) * dt. Steps due less than one
    control period from `now` are skipped (those that passed while inference ran, and the one
    due before the arm could reach it): the first kept step is due one to two periods ahead, so
    a step of max_joint_step from where the arm is has at least a period to be reached. The
    first `blend_steps` kept steps are linearly blended from the still-running previous chunk
    into the new one, so joint targets don't jump.
    Returns (steps to execute, index of the first kept step, time of that step).
    """
    first = int(np.clip(np.ceil((now - obs_stamp) / dt - 1e-9), 0, len(chunk) - 1))
    kept = np.array(chunk[first:], dtype=np.float64)
    start_time = obs_stamp + (first + 1) * dt
    if previous is not None and previous_start is not None and blend_steps > 0:
        for j in range(min(blend_steps, len(kept))):
            k = int(round((start_time + j * dt - previous_start) / dt))
            if 0 <= k < len(previous):
                w = (j + 1) / (blend_steps + 1)
                kept[j] = (1 - w) * previous[k] + w * kept[j]
    return kept, first, start_time
