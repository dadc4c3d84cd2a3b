"""Zarr replay buffer (episodes concatenated + `episode_ends`, as in Diffusion Policy): the
on-disk format (one or several cameras), its validation, reading and writing; the dataset's own
train/validation split; and the windowed sample index used for training on cached VAE latents.
Demonstrations are collected into it by uva.collect."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from .fsutil import atomic_output

REQUIRED_ARRAYS = ("state", "action", "episode_ends")
DEFAULT_CAMERA = "scene"
_CAMERA_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_CHUNK_BYTES = 16 << 20  # frames per zarr chunk: up to 256, at most ~16 MB of pixels


class DatasetError(ValueError):
    """A replay buffer is missing, empty, corrupt or does not fit the model."""


def check_camera_name(name) -> str:
    """A camera name becomes part of an array name on disk (`img_<name>`): letters, digits,
    `_` and `-` only."""
    if not isinstance(name, str) or not _CAMERA_NAME.match(name):
        raise DatasetError(f"camera name {name!r}: use letters, digits, '_' or '-' only")
    return name


@dataclass(init=False)
class ReplayBuffer:
    """Episodes concatenated along the first axis. `images` maps camera name -> (N, H, W, 3)
    uint8 frames, cameras in order (frames need not be square; each camera has one size).
    `img` is the first camera, for code that knows only one."""
    images: dict  # camera name -> (N, H, W, 3) uint8
    state: np.ndarray  # (N, P)
    action: np.ndarray  # (N, A)
    episode_ends: np.ndarray  # (E,) exclusive end index of each episode
    attrs: dict

    def __init__(self, img: np.ndarray | None = None, state: np.ndarray | None = None,
                 action: np.ndarray | None = None, episode_ends: np.ndarray | None = None,
                 attrs: dict | None = None, *, images: dict | None = None):
        if img is None and not images:
            raise DatasetError("a replay buffer needs frames: img or images")
        images = dict(images or {})
        if img is not None:  # one-camera form; with `images` too it replaces the first camera
            first = next(iter(images), None) or ((attrs or {}).get("cameras") or [DEFAULT_CAMERA])[0]
            images = {first: img, **{k: v for k, v in images.items() if k != first}}
        self.images, self.state, self.action = images, state, action
        self.episode_ends, self.attrs = episode_ends, dict(attrs or {})

    @property
    def img(self) -> np.ndarray:
        """Frames of the first camera."""
        return next(iter(self.images.values()))

    @property
    def cameras(self) -> list[str]:
        return list(self.images)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_ends)

    def episode_slices(self) -> list[slice]:
        starts = np.concatenate([[0], self.episode_ends[:-1]])
        return [slice(int(s), int(e)) for s, e in zip(starts, self.episode_ends)]

    def train_val_episodes(self, val_fraction: float = 0.05) -> tuple[list[int], list[int]]:
        """(train, validation) episodes. A buffer extended by `collect --base` splits each
        collection (`segments`, episode counts in order) on its own, so its base episodes keep
        the split a model trained on the base saw: its held-out episodes stay held out."""
        train, val, start = [], [], 0
        for count in self.attrs.get("segments") or [self.n_episodes]:
            t, v = split_episodes(count, val_fraction)
            train += [start + e for e in t]
            val += [start + e for e in v]
            start += count
        return train, val

    def frame_indices(self, episodes: list[int]) -> np.ndarray:
        """Indices of every frame of the given episodes, in order."""
        slices = self.episode_slices()
        return np.concatenate([np.arange(slices[e].start, slices[e].stop) for e in episodes])


def episode_images(ep: dict, attrs: dict | None = None) -> dict:
    """Camera name -> frames of one episode dict (`images`, or the one-camera `img`)."""
    if "images" in ep:
        if "img" in ep:
            raise DatasetError("an episode has either 'img' (one camera) or 'images', not both")
        return dict(ep["images"])
    if "img" not in ep:
        raise DatasetError("an episode needs 'img' (one camera) or 'images' (name -> frames)")
    return {((attrs or {}).get("cameras") or [DEFAULT_CAMERA])[0]: ep["img"]}


def _check_frames(where: str, name: str, frames, n: int) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 \
            or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", None)
        raise DatasetError(f"{where}: camera '{name}' frames must be (N, H, W, 3) uint8, got "
                           f"{shape} {getattr(frames, 'dtype', type(frames).__name__)}")
    if frames.shape[1] == 0 or frames.shape[2] == 0:
        raise DatasetError(f"{where}: camera '{name}' has zero-size frames {frames.shape[1:3]}")
    if len(frames) != n:
        raise DatasetError(f"{where}: camera '{name}' has {len(frames)} frames for {n} steps")


def _array(root, key: str, data: np.ndarray) -> None:
    frame_bytes = max(1, int(np.prod(data.shape[1:])) * data.itemsize)
    chunks = (max(1, min(len(data), 256, _CHUNK_BYTES // frame_bytes)),) + data.shape[1:]
    root.create_array(key, shape=data.shape, dtype=data.dtype, chunks=chunks)[:] = data


def write_replay_buffer(path: str | Path, episodes: list[dict], attrs: dict,
                        overwrite: bool = False, inputs=()) -> None:
    """Write episodes to a zarr group, via a temp directory renamed into place, so an
    interrupted write never leaves a half-written dataset (uva.fsutil.atomic_output: an
    existing `path` is refused unless `overwrite`, and one holding an `inputs` path always). Each episode dict holds `state`,
    `action` and either `img` (one camera, named by attrs `cameras` or "scene") or `images`
    (camera name -> (T, H, W, 3) uint8). One camera is stored as the array `img`; several as
    `img_<name>` each; attrs `cameras` lists them in order."""
    if not episodes:
        raise DatasetError("no episodes to write")
    per_episode = [episode_images(ep, attrs) for ep in episodes]
    cameras = [check_camera_name(c) for c in per_episode[0]]
    if not cameras:
        raise DatasetError("episode 0 has no camera frames")
    for i, (ep, imgs) in enumerate(zip(episodes, per_episode)):
        if list(imgs) != cameras:
            raise DatasetError(f"episode {i}: cameras {list(imgs)} differ from episode 0's {cameras}")
        for name, frames in imgs.items():
            _check_frames(f"episode {i}", name, frames, len(ep["action"]))
            if frames.shape[1:] != per_episode[0][name].shape[1:]:
                raise DatasetError(f"episode {i}: camera '{name}' frames are "
                                   f"{frames.shape[1:3]}, episode 0's {per_episode[0][name].shape[1:3]}")
    with atomic_output(path, overwrite, inputs) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        for key in ("state", "action"):
            _array(root, key, np.concatenate([ep[key] for ep in episodes]))
        for name in cameras:
            _array(root, "img" if len(cameras) == 1 else f"img_{name}",
                   np.concatenate([imgs[name] for imgs in per_episode]))
        ends = np.cumsum([len(ep["action"]) for ep in episodes]).astype(np.int64)
        root.create_array("episode_ends", shape=ends.shape, dtype=ends.dtype)[:] = ends
        root.attrs.update({**attrs, "cameras": cameras})


def _read_images(root, attrs: dict, where: Path) -> dict:
    if "img" in root:
        cameras = attrs.get("cameras") or [DEFAULT_CAMERA]
        if len(cameras) != 1:
            raise DatasetError(f"{where}: one array 'img' but attrs name cameras {cameras}")
        return {cameras[0]: np.asarray(root["img"][:])}
    cameras = attrs.get("cameras")
    if not cameras:
        raise DatasetError(f"{where}: not a UVA replay buffer, no 'img' array and no attrs 'cameras'")
    missing = [f"img_{c}" for c in cameras if f"img_{c}" not in root]
    if missing:
        raise DatasetError(f"{where}: attrs name cameras {cameras} but arrays {missing} are missing")
    return {c: np.asarray(root[f"img_{c}"][:]) for c in cameras}


def read_replay_buffer(path: str | Path) -> ReplayBuffer:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: dataset not found")
    try:
        root = zarr.open_group(str(path), mode="r")
        missing = [k for k in REQUIRED_ARRAYS if k not in root]
        if missing:
            raise DatasetError(f"{path}: not a UVA replay buffer, missing arrays {missing}")
        attrs = dict(root.attrs)
        buf = ReplayBuffer(state=np.asarray(root["state"][:]), action=np.asarray(root["action"][:]),
                           episode_ends=np.asarray(root["episode_ends"][:]), attrs=attrs,
                           images=_read_images(root, attrs, path))
    except DatasetError:
        raise
    except Exception as e:  # zarr raises many types for damaged stores
        raise DatasetError(f"{path}: cannot read zarr replay buffer ({type(e).__name__}: {e})") from e
    if buf.episode_ends.ndim != 1 or not np.issubdtype(buf.episode_ends.dtype, np.integer):
        raise DatasetError(f"{path}: episode_ends must be a 1-D integer array, got "
                           f"{buf.episode_ends.shape} {buf.episode_ends.dtype}")
    if buf.img.ndim != 4 or buf.img.shape[-1] != 3 or buf.img.dtype != np.uint8:
        raise DatasetError(f"{path}: img must be (N, H, W, 3) uint8, got {buf.img.shape} {buf.img.dtype}")
    for key in ("state", "action"):
        arr = getattr(buf, key)
        if arr.ndim != 2 or arr.shape[1] == 0 or not np.issubdtype(arr.dtype, np.number) \
                or np.issubdtype(arr.dtype, np.complexfloating):
            raise DatasetError(f"{path}: {key} must be a 2-D (steps, dims) real array, got "
                               f"shape {arr.shape} {arr.dtype}")
    n = len(buf.action)
    if n == 0 or buf.n_episodes == 0:
        raise DatasetError(f"{path}: dataset is empty")
    if len(buf.state) != n or buf.episode_ends[-1] != n:
        raise DatasetError(f"{path}: inconsistent lengths (state {len(buf.state)}, action {n}, "
                           f"episode_ends[-1] {buf.episode_ends[-1]})")
    size = buf.attrs.get("image_size")
    for name, frames in buf.images.items():
        _check_frames(str(path), name, frames, n)
        if size is not None and tuple(frames.shape[1:3]) != (size, size):
            raise DatasetError(f"{path}: camera '{name}' frames are {frames.shape[1]}x"
                               f"{frames.shape[2]}, its attrs say image_size {size}")
    segments = buf.attrs.get("segments")
    if segments is not None and (
            not isinstance(segments, list) or not segments
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in segments)
            or sum(segments) != buf.n_episodes or min(segments) < 1):
        raise DatasetError(f"{path}: attrs 'segments' {segments} do not add up to its "
                           f"{buf.n_episodes} episodes")
    if buf.episode_ends[0] <= 0 or np.any(np.diff(buf.episode_ends) <= 0):
        raise DatasetError(f"{path}: episode_ends must be positive and strictly increasing")
    if not (np.isfinite(buf.state).all() and np.isfinite(buf.action).all()):
        raise DatasetError(f"{path}: state/action contain NaN or inf")
    return buf


SPLIT_SEED = 0


def split_episodes(n_episodes: int, val_fraction: float = 0.05) -> tuple[list[int], list[int]]:
    """(train, validation) episodes of one collection (see ReplayBuffer.train_val_episodes).
    The split belongs to the dataset, not to a run: a run continued with another --seed, and
    the held-out dynamics metrics, see the same episodes."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n_episodes)
    n_val = max(1, int(round(n_episodes * val_fraction))) if n_episodes > 1 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist()) or sorted(order.tolist())


class WindowIndex:
    """Index arrays of every training window: history frames, future frames and actions.

    Window at step t of an episode [s, e): history frames t-(F-1)k..t (k = actions_per_frame),
    future frames t+k..t+Fk, actions t..t+Fk-1; indices are clamped to the episode (edge padding,
    as Diffusion Policy pads).
    """

    def __init__(self, episode_ends: np.ndarray, n_frames: int, actions_per_frame: int,
                 episodes: list[int] | None = None):
        starts = np.concatenate([[0], episode_ends[:-1]])
        chosen = range(len(episode_ends)) if episodes is None else episodes
        k, F = actions_per_frame, n_frames
        hist, fut, act = [], [], []
        for ep in chosen:
            s, e = int(starts[ep]), int(episode_ends[ep])
            t = np.arange(s, e)[:, None]
            hist.append(np.clip(t + np.arange(-(F - 1), 1)[None] * k, s, e - 1))
            fut.append(np.clip(t + np.arange(1, F + 1)[None] * k, s, e - 1))
            act.append(np.clip(t + np.arange(F * k)[None], s, e - 1))
        self.history = np.concatenate(hist)
        self.future = np.concatenate(fut)
        self.actions = np.concatenate(act)

    def __len__(self) -> int:
        return len(self.history)


def dataset_facts(path: str | Path) -> dict:
    """What a checkpoint trained on `path` should remember of it (read from attrs and array
    shapes, no frames loaded): cameras and their sizes, joint names, rate and source, so a node
    can refuse a mismatched robot with a clear reason instead of guessing."""
    root = zarr.open_group(str(path), mode="r")
    attrs = dict(root.attrs)
    cameras = attrs.get("cameras") or [DEFAULT_CAMERA]
    arrays = {c: root["img"] if "img" in root else root[f"img_{c}"] for c in cameras}
    return {"dataset": {"path": str(path), "cameras": list(cameras),
                        "camera_sizes": {c: list(a.shape[1:3]) for c, a in arrays.items()},
                        "joint_names": attrs.get("joint_names"),
                        "fps": attrs.get("fps", attrs.get("control_hz")),
                        "source": attrs.get("source", attrs.get("env"))}}
