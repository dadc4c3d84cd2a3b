"""The topic map: which rosbag2 / live topics feed a UVA model, shared by `uva dataset import`
and `uva replay-eval --topics` (one YAML or JSON format, unknown keys refused).

    cameras:                      # camera name -> image topic, in the model's camera order
      front: /camera/color/image_raw            # sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8)
      wrist: /wrist_camera/color/image_raw/compressed   # or sensor_msgs/CompressedImage
    joint_states_topic: /joint_states           # sensor_msgs/JointState (matched by name)
    joint_names: [fr3_joint1, ..., fr3_finger_joint1]
    action_topic: /fr3_arm_controller/joint_trajectory   # optional: JointTrajectory or JointState
    episode_topic: /uva/reset                   # optional: each message starts a new episode
    episode_gap_s: 2.0                          # optional: a silence longer than this cuts an episode
    control_rate_hz: 10.0
    sample_on: clock                            # or camera: one step per first-camera frame
    max_obs_age_s: 0.5                          # as the policy node's parameters
    sync_slop_s: 0.05

The old one-camera key `image_topic: TOPIC` is accepted and means `cameras: {scene: TOPIC}`.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import franka
from .data import DEFAULT_CAMERA, DatasetError, check_camera_name


class TopicMapError(DatasetError):
    """A topic map that cannot be used: unknown keys, wrong types, impossible values."""


def _default_cameras() -> dict:
    return {DEFAULT_CAMERA: "/camera/color/image_raw"}


@dataclass
class TopicMap:
    cameras: dict = field(default_factory=_default_cameras)
    joint_states_topic: str = "/joint_states"
    joint_names: list = field(default_factory=lambda: list(franka.MODEL_JOINTS))
    action_topic: str | None = None
    episode_topic: str | None = None
    episode_gap_s: float | None = None
    control_rate_hz: float = 10.0
    sample_on: str = "clock"
    max_obs_age_s: float = 0.5
    sync_slop_s: float = 0.05

    @property
    def image_topic(self) -> str:
        """The first camera's topic (one-camera tools)."""
        return next(iter(self.cameras.values()))

    @property
    def camera_names(self) -> list[str]:
        return list(self.cameras)

    def to_dict(self) -> dict:
        return asdict(self)


KEYS = tuple(TopicMap.__dataclass_fields__) + ("image_topic",)


def _topic(where: str, key: str, value) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value) < 2:
        raise TopicMapError(f"{where}: {key} must be a topic name starting with '/', got {value!r}")
    return value


def _positive(where: str, key: str, value, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise TopicMapError(f"{where}: {key} must be a positive number, got {value!r}")
    return float(value)


def topic_map_from_dict(raw: dict, where: str = "topic map") -> TopicMap:
    """Validate a parsed map; every problem names the key."""
    if not isinstance(raw, dict):
        raise TopicMapError(f"{where}: must be a mapping of keys, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise TopicMapError(f"{where}: unknown keys {unknown}; valid: {sorted(KEYS)}")
    raw = dict(raw)
    if "image_topic" in raw:
        if "cameras" in raw:
            raise TopicMapError(f"{where}: give either cameras or the one-camera image_topic, not both")
        raw["cameras"] = {DEFAULT_CAMERA: raw.pop("image_topic")}
    tm = TopicMap(**raw)
    if not isinstance(tm.cameras, dict) or not tm.cameras:
        raise TopicMapError(f"{where}: cameras must map camera names to image topics")
    for name, topic in tm.cameras.items():
        try:
            check_camera_name(name)
        except DatasetError as e:
            raise TopicMapError(f"{where}: cameras: {e}") from None
        _topic(where, f"cameras.{name}", topic)
    if len(set(tm.cameras.values())) != len(tm.cameras):
        raise TopicMapError(f"{where}: two cameras name the same topic")
    tm.cameras = dict(tm.cameras)
    _topic(where, "joint_states_topic", tm.joint_states_topic)
    for key in ("action_topic", "episode_topic"):
        if getattr(tm, key) is not None:
            _topic(where, key, getattr(tm, key))
    names = tm.joint_names
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise TopicMapError(f"{where}: joint_names must be a non-empty list of joint names")
    if len(set(names)) != len(names):
        raise TopicMapError(f"{where}: joint_names has duplicates {names}")
    tm.joint_names = list(names)
    tm.control_rate_hz = _positive(where, "control_rate_hz", tm.control_rate_hz)
    if tm.sample_on not in ("clock", "camera"):
        raise TopicMapError(f"{where}: sample_on must be 'clock' or 'camera', got {tm.sample_on!r}")
    tm.max_obs_age_s = _positive(where, "max_obs_age_s", tm.max_obs_age_s)
    tm.sync_slop_s = _positive(where, "sync_slop_s", tm.sync_slop_s)
    tm.episode_gap_s = _positive(where, "episode_gap_s", tm.episode_gap_s, optional=True)
    return tm


def load_topic_map(path: str | Path | None) -> TopicMap:
    """Read a topic map file (YAML, or JSON, which YAML reads too); None gives the defaults."""
    if path is None:
        return TopicMap()
    path = Path(path)
    if not path.is_file():
        raise TopicMapError(f"{path}: topic map not found")
    try:
        import yaml
        raw = yaml.safe_load(path.read_text())
    except Exception as e:  # yaml raises several error types on malformed text
        raise TopicMapError(f"{path}: cannot parse topic map ({type(e).__name__}: {e})") from e
    return topic_map_from_dict({} if raw is None else raw, str(path))


def dump_topic_map(tm: TopicMap) -> str:
    return json.dumps(tm.to_dict(), indent=2)
