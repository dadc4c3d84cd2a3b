"""rosbag2 (mcap or sqlite3) -> replay buffer: `uva dataset import --bag DIR ... --topics MAP`.

How a bag becomes training steps (docs/datasets.md says the same for users):
- Stamps: a message's header stamp; a message without a header, or stamped exactly zero (a
  JointTrajectory meant "now"), takes the bag's receive time. Per topic the stamps must not go
  backwards (the bag is read in receive order).
- Episodes: each bag is one episode, cut further at every message on `episode_topic` and at every
  silence longer than `episode_gap_s` on the joint states or the first camera.
- Sampling: a control clock at `control_rate_hz` runs half a period behind the first camera frame
  of the episode (so each tick sees that period's frame even with dt/2 of jitter). On every tick
  the streams seen so far are aligned with `uva.control.align_history`, the policy node's own code
  (same StampedBuffer, same sync slop and staleness limit), giving one step: each camera's frame
  and the joint positions (by name). A tick the node would refuse (stale or unsynchronised input)
  ends the current episode; the next valid tick starts a new one, so no step ever spans a hole.
  Each such cut is logged with the node's reason and listed in the summary (`episode_cuts`).
  A clock that finds nothing new jumps to the next message, so a message stamped far off (e.g.
  near zero among ROS-time stamps) costs nothing. With `sample_on: camera` the ticks are instead
  the first camera's frames (each at its stamp + sync_slop_s, still through align_history): one
  step per frame, for recordings whose camera runs at the control rate but not on a steady
  clock (a simulator that slows down under load).
- Action labels: with `action_topic`, the command in force when the next step's frame was taken
  (the last command stamped before it: controllers hold their last target; steps before the first
  command are dropped, the arm was at rest); JointTrajectory's first point or JointState
  positions, by name; joints the command does not carry (e.g. a gripper commanded through an
  action server) take the next measured position. Without `action_topic`, the label is the next
  step's measured joint positions. The last step of an episode has no next step and is dropped.
- Episodes shorter than `min_steps` (default 16, one default training window) are skipped with a
  warning, and listed in the summary; none left is an error.
"""
from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..control import StampedBuffer, align_history
from ..data import DatasetError, write_replay_buffer
from ..images import ImageDecodeError, image_size, message_to_rgb, to_training_size
from ..rosbag import typestore
from ..topic_map import TopicMap

log = logging.getLogger(__name__)
MIN_STEPS = 16
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
ACTION_TYPES = ("trajectory_msgs/msg/JointTrajectory", "sensor_msgs/msg/JointState")


@dataclass
class BagStreams:
    """What pass 1 keeps of one bag: stamps and small values; frames are only referenced."""
    bag: Path
    frames: dict  # camera -> list of (stamp, ordinal of the message on its topic)
    joints: list = field(default_factory=list)  # (stamp, q by joint_names)
    commands: list = field(default_factory=list)  # (stamp, q by joint_names, NaN = not carried)
    markers: list = field(default_factory=list)  # stamps of episode markers
    msgtypes: dict = field(default_factory=dict)  # topic -> message type
    counts: dict = field(default_factory=dict)


def _stamp(msg, log_ns: int) -> float:
    header = getattr(msg, "header", None)
    if header is not None and (header.stamp.sec or header.stamp.nanosec):
        return header.stamp.sec + header.stamp.nanosec * 1e-9
    return log_ns * 1e-9


def _by_name(where: str, names, values, wanted: list[str], partial: bool) -> np.ndarray:
    names, values = list(names), np.asarray(values, dtype=np.float64)
    if len(values) != len(names):
        raise DatasetError(f"{where}: {len(names)} joint names but {len(values)} positions")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in wanted if n not in index]
    if missing and (not partial or len(missing) == len(wanted)):
        raise DatasetError(f"{where}: lacks joints {missing} (has {names}); set joint_names "
                           f"in the topic map")
    q = np.array([values[index[n]] if n in index else np.nan for n in wanted])
    if not np.isfinite(q[[n in index for n in wanted]]).all():
        raise DatasetError(f"{where}: non-finite joint positions {q.tolist()}")
    return q


def _open(bag: Path):
    from rosbags.highlevel import AnyReader
    return AnyReader([bag], default_typestore=typestore())


def read_bag(bag: str | Path, tm: TopicMap) -> BagStreams:
    """Pass 1: every stamp and joint/command value of the mapped topics, checked."""
    bag = Path(bag)
    if not bag.exists():
        raise DatasetError(f"{bag}: bag not found")
    camera_of = {topic: name for name, topic in tm.cameras.items()}
    s = BagStreams(bag, {name: [] for name in tm.cameras})
    last: dict[str, float] = {}
    try:
        with _open(bag) as reader:
            conns = {c.topic: c for c in reader.connections}
            required = [*tm.cameras.values(), tm.joint_states_topic]
            optional = [t for t in (tm.action_topic, tm.episode_topic) if t]
            missing = [t for t in required + ([tm.action_topic] if tm.action_topic else [])
                       if t not in conns]
            if missing:
                raise DatasetError(f"{bag}: mapped topics {missing} are not in the bag "
                                   f"(it has {sorted(conns)})")
            s.msgtypes = {t: conns[t].msgtype for t in required + optional if t in conns}
            for t in tm.cameras.values():
                if s.msgtypes[t] not in IMAGE_TYPES:
                    raise DatasetError(f"{bag}: camera topic {t} carries {s.msgtypes[t]}, not "
                                       f"an Image or CompressedImage")
            if s.msgtypes[tm.joint_states_topic] != "sensor_msgs/msg/JointState":
                raise DatasetError(f"{bag}: {tm.joint_states_topic} carries "
                                   f"{s.msgtypes[tm.joint_states_topic]}, not a JointState")
            if tm.action_topic and s.msgtypes[tm.action_topic] not in ACTION_TYPES:
                raise DatasetError(f"{bag}: action_topic {tm.action_topic} carries "
                                   f"{s.msgtypes[tm.action_topic]}, not one of {ACTION_TYPES}")
            sizes: dict[str, tuple] = {}
            for conn, log_ns, raw in reader.messages(connections=[conns[t] for t in s.msgtypes]):
                topic = conn.topic
                n = s.counts.get(topic, 0)
                s.counts[topic] = n + 1
                where = f"{bag}: {topic} message {n}"
                msg = reader.deserialize(raw, conn.msgtype)
                t = _stamp(msg, log_ns)
                if topic == tm.episode_topic:
                    s.markers.append(t)
                    continue
                if topic in last and t < last[topic]:
                    raise DatasetError(f"{where}: timestamp goes backwards ({t:.6f} s after "
                                       f"{last[topic]:.6f} s)")
                last[topic] = t
                if topic in camera_of:
                    hw = image_size(msg, conn.msgtype)
                    if hw is not None:
                        if min(hw) <= 0:
                            raise DatasetError(f"{where}: zero-size image {hw[1]}x{hw[0]}")
                        if sizes.setdefault(topic, hw) != hw:
                            raise DatasetError(f"{where}: image is {hw[1]}x{hw[0]} but the camera's "
                                               f"earlier frames are {sizes[topic][1]}x{sizes[topic][0]}")
                    s.frames[camera_of[topic]].append((t, n))
                elif topic == tm.joint_states_topic:
                    s.joints.append((t, _by_name(where, msg.name, msg.position, tm.joint_names, False)))
                else:
                    if conn.msgtype.endswith("JointTrajectory"):
                        if not len(msg.points):
                            continue  # an empty trajectory stops nothing and commands nothing
                        names, values = msg.joint_names, msg.points[0].positions
                    else:
                        names, values = msg.name, msg.position
                    s.commands.append((t, _by_name(where, names, values, tm.joint_names, True)))
    except DatasetError:
        raise
    except Exception as e:  # rosbags raises many types on truncated or damaged files
        raise DatasetError(f"{bag}: cannot read bag ({type(e).__name__}: {e})") from e
    for topic in [*tm.cameras.values(), tm.joint_states_topic]:
        if not s.counts.get(topic):
            raise DatasetError(f"{bag}: mapped topic {topic} has no messages")
    if tm.action_topic and not s.commands:
        raise DatasetError(f"{bag}: action_topic {tm.action_topic} has no usable commands")
    return s


def _cut_times(s: BagStreams, tm: TopicMap) -> list[float]:
    """Stamps at which a new episode starts inside this bag."""
    cuts = list(s.markers)
    if tm.episode_gap_s:
        first_camera = next(iter(s.frames))
        for stream in ([t for t, _ in s.joints], [t for t, _ in s.frames[first_camera]]):
            ts = np.asarray(stream)
            gaps = np.nonzero(np.diff(ts) > tm.episode_gap_s)[0]
            cuts += ts[gaps + 1].tolist()
    return sorted(set(cuts))


@dataclass
class Step:
    stamp: float
    frames: dict  # camera -> message ordinal
    state: np.ndarray


def sample_steps(s: BagStreams, tm: TopicMap,
                 breaks: list[dict] | None = None) -> list[list[Step]]:
    """Control-rate steps, split into runs of consecutive valid ticks (see the module doc).
    `breaks`, if given, receives {"stamp", "reason"} for every refused tick that ended a run."""
    dt = 1.0 / tm.control_rate_hz
    cams = list(s.frames)
    cuts = _cut_times(s, tm)
    # every event in stamp order: (stamp, stream, value)
    events = sorted([(t, c, n) for c in cams for t, n in s.frames[c]] +
                    [(t, "", q) for t, q in s.joints], key=lambda e: e[0])
    runs: list[list[Step]] = []
    bounds = [-math.inf, *cuts, math.inf]
    i = 0
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        buffers = {c: StampedBuffer(horizon_s=max(2.0, 4 * tm.max_obs_age_s)) for c in cams}
        joints = StampedBuffer(horizon_s=max(2.0, 4 * tm.max_obs_age_s))
        while i < len(events) and events[i][0] < lo:
            i += 1
        seg = [e for e in events[i:] if e[0] < hi]
        first = next((e[0] for e in seg if e[1] == cams[0]), None)
        if first is None:
            continue
        origin, j, run, k = first + 0.5 * dt, 0, [], 0
        frame_ticks = [e[0] + tm.sync_slop_s for e in seg if e[1] == cams[0]]
        while j < len(seg):
            if tm.sample_on == "camera":
                if k >= len(frame_ticks):
                    break
                now = frame_ticks[k]
            else:
                now = origin + k * dt
            while j < len(seg) and seg[j][0] <= now + 1e-9:
                t, stream, value = seg[j]
                (buffers[stream] if stream else joints).push(t, value)
                j += 1
            obs, why = align_history([buffers[c] for c in cams], joints, now, 1, dt,
                                     tm.sync_slop_s, tm.max_obs_age_s, camera_names=cams)
            if obs is not None:  # a frame repeats if the camera is slower than the clock, as live
                run.append(Step(obs.stamp, dict(zip(cams, obs.images[0])), obs.states[0]))
            else:
                if run:
                    runs.append(run)
                    run = []
                    if breaks is not None:
                        breaks.append({"stamp": round(now, 6), "reason": why})
                if tm.sample_on == "clock" and j < len(seg) and seg[j][0] > now + dt:  # jump ahead
                    k = max(k + 1, int(math.ceil((seg[j][0] - origin) / dt)))
                    continue
            k += 1
        # the stream has ended; ticks past the last message would all be stale
        if run:
            runs.append(run)
    return runs


def label_steps(run: list[Step], s: BagStreams, tm: TopicMap) -> tuple[list[Step], np.ndarray]:
    """(steps kept, action labels): see the module doc."""
    states = np.stack([st.state for st in run])
    if not tm.action_topic:
        return run[:-1], states[1:]
    cmd_t = np.array([t for t, _ in s.commands])
    cmd_q = np.stack([q for _, q in s.commands])
    kept, labels = [], []
    for i, st in enumerate(run[:-1]):
        nxt = run[i + 1].stamp
        c = int(np.searchsorted(cmd_t, nxt, side="left")) - 1  # last command before next frame
        if c < 0:
            continue  # nothing commanded yet: the arm is at rest before the first command
        q = cmd_q[c].copy()
        gap = np.isnan(q)
        q[gap] = states[i + 1][gap]
        kept.append(st)
        labels.append(q)
    return kept, (np.stack(labels) if labels else np.zeros((0, len(tm.joint_names))))


def decode_frames(s: BagStreams, tm: TopicMap, wanted: dict, image_size_px: int | None,
                  sizes: dict) -> dict:
    """Pass 2: decode only the frames some step uses. wanted: camera -> set of ordinals.
    Returns camera -> {ordinal: rgb}. `sizes` (camera -> (h, w)) is shared across bags."""
    out = {c: {} for c in wanted}
    topics = {tm.cameras[c]: c for c in wanted}
    try:
        with _open(s.bag) as reader:
            conns = [c for c in reader.connections if c.topic in topics]
            counters = {t: -1 for t in topics}
            for conn, _, raw in reader.messages(connections=conns):
                cam = topics[conn.topic]
                counters[conn.topic] += 1
                n = counters[conn.topic]
                if n not in wanted[cam]:
                    continue
                where = f"{s.bag}: {conn.topic} message {n}"
                try:
                    rgb = message_to_rgb(reader.deserialize(raw, conn.msgtype), conn.msgtype)
                except ImageDecodeError as e:
                    raise DatasetError(f"{where}: {e}") from e
                if sizes.setdefault(cam, rgb.shape[:2]) != rgb.shape[:2]:
                    raise DatasetError(f"{where}: image is {rgb.shape[1]}x{rgb.shape[0]} but camera "
                                       f"'{cam}' was {sizes[cam][1]}x{sizes[cam][0]} before")
                out[cam][n] = to_training_size(rgb, image_size_px) if image_size_px else rgb
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError(f"{s.bag}: cannot read bag ({type(e).__name__}: {e})") from e
    return out


def import_bags(bags: list[str | Path], tm: TopicMap, out: str | Path,
                image_size_px: int | None = None, min_steps: int = MIN_STEPS,
                overwrite: bool = False) -> dict:
    """Import rosbag2 directories into a replay buffer at `out`; returns a summary."""
    out = Path(out)
    if not bags:
        raise DatasetError("no bags given (--bag DIR)")
    if out.exists() and not overwrite:
        raise DatasetError(f"{out} exists; pass --overwrite to replace it")
    if image_size_px is not None and image_size_px <= 0:
        raise DatasetError(f"--image-size must be positive, got {image_size_px}")
    episodes, sources, skipped, sizes = [], [], [], {}
    counts, breaks = {}, []
    for bag in bags:
        s = read_bag(bag, tm)
        counts[str(bag)] = s.counts
        bag_breaks = []
        runs = sample_steps(s, tm, bag_breaks)
        breaks += [{"bag": str(bag), **b} for b in bag_breaks]
        for b in bag_breaks:
            log.warning("%s: episode cut at %.3f: %s", bag, b["stamp"], b["reason"])
        labelled = [label_steps(run, s, tm) for run in runs]
        wanted = {c: {st.frames[c] for steps, _ in labelled for st in steps} for c in tm.cameras}
        frames = decode_frames(s, tm, wanted, image_size_px, sizes)
        for r, (steps, labels) in enumerate(labelled):
            name = f"{bag} episode {r}"
            if len(steps) < min_steps:
                log.warning("%s: %d steps < min_steps %d, skipped", name, len(steps), min_steps)
                skipped.append({"bag": str(bag), "episode": r, "steps": len(steps)})
                continue
            episodes.append({
                "images": {c: np.stack([frames[c][st.frames[c]] for st in steps]) for c in tm.cameras},
                "state": np.stack([st.state for st in steps]).astype(np.float32),
                "action": labels.astype(np.float32)})
            sources.append({"bag": str(bag), "episode": r, "steps": len(steps),
                            "start_stamp": steps[0].stamp, "end_stamp": steps[-1].stamp})
    if not episodes:
        raise DatasetError(f"no episode of at least {min_steps} steps in {[str(b) for b in bags]} "
                           f"(skipped: {skipped})")
    attrs = {"source": "rosbag2", "bags": [str(b) for b in bags], "topic_map": tm.to_dict(),
             "joint_names": list(tm.joint_names), "cameras": list(tm.cameras),
             "control_hz": tm.control_rate_hz, "fps": tm.control_rate_hz,
             "action_labels": "commanded" if tm.action_topic else "next_measured_position",
             "episode_sources": sources, "episode_cuts": breaks}
    if image_size_px:
        attrs["image_size"] = image_size_px
    write_replay_buffer(out, episodes, attrs, overwrite=overwrite, inputs=tuple(bags))
    return {"out": str(out), "episodes": len(episodes), "steps": int(sum(len(e["action"]) for e in episodes)),
            "skipped_short_episodes": skipped, "episode_cuts": breaks, "cameras": {c: list(episodes[0]["images"][c].shape[1:3])
                                                           for c in tm.cameras},
            "message_counts": counts, "action_labels": attrs["action_labels"]}


def remove_partial(out: str | Path) -> None:
    shutil.rmtree(Path(str(out) + ".partial"), ignore_errors=True)
