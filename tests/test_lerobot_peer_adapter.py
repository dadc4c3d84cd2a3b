"""The LeRobot Diffusion Policy peer (experiments/lerobot_peer) sees what UVA sees.

In the main venv: the conversion from our evaluator's window and our replay buffer to LeRobot's
tensors (experiments/lerobot_peer/convert.py, no lerobot import): the newest frames and states
of the very window `uva.rollout` builds, in order; training samples with the same frames as
inference at the same step; LeRobot's delta indices and padding; stats from training episodes.
In the peer's venv (`make peer-setup`; skipped elsewhere) also LeRobot's side: the adapter's
chunk is the one LeRobot's own select_action loop would start, the random crop is a training
augmentation only, checkpoints round-trip through save_pretrained, and run.py's three verbs run.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from uva.data import ReplayBuffer
from uva.envs.base import Observation, StepResult
from uva.rollout import ObservationHistory, rollout

ROOT = Path(__file__).resolve().parents[1]
PEER_DIR = ROOT / "experiments" / "lerobot_peer"
sys.path.insert(0, str(PEER_DIR))
from convert import (ACTION, ACTION_IS_PAD, IMAGE, STATE, PeerEvalConfig, TrainWindows,  # noqa: E402
                     dataset_stats, frames_to_chw, window_to_observation)


def coded_frames(ids, size: int = 64) -> np.ndarray:
    """One uint8 frame per id, its pixels telling the id (and channel) apart."""
    ids = np.asarray(ids)
    f = np.zeros((len(ids), size, size, 3), np.uint8)
    f[..., 0] = (ids % 251)[:, None, None]
    f[..., 1] = (ids // 251 % 251)[:, None, None]
    f[..., 2] = np.arange(size, dtype=np.uint8)[None, None, :]
    return f


def frame_ids(chw: torch.Tensor) -> list[int]:
    """The ids coded_frames put into (..., 3, H, W) [0, 1] frames."""
    px = (chw[..., :, 0, 0] * 255).round().long().reshape(-1, 3)
    return (px[:, 0] + 251 * px[:, 1]).tolist()


def synthetic_buffer(lengths=(12, 30, 9), val_pixel: int | None = None) -> ReplayBuffer:
    n = sum(lengths)
    ids = np.arange(n)
    state = np.stack([ids, -2.0 * ids], 1).astype(np.float32)
    action = np.stack([ids + 0.5, 3.0 * ids], 1).astype(np.float32)
    img = coded_frames(ids)
    if val_pixel is not None:  # the buffer's held-out episode gets frames of its own colour
        _, val = ReplayBuffer(img=img, state=state, action=action,
                              episode_ends=np.cumsum(lengths)).train_val_episodes()
        for e in val:
            s = slice(int(np.sum(lengths[:e])), int(np.sum(lengths[:e + 1])))
            img[s] = val_pixel
    return ReplayBuffer(img=img, state=state, action=action, episode_ends=np.cumsum(lengths))


def test_window_to_observation_takes_the_newest_frames_in_order():
    window = {"image": coded_frames([7, 8, 9, 10]), "state": np.array([[7., 0], [8, 0], [9, 0], [10, 0]])}
    obs = window_to_observation(window, n_obs_steps=2)
    assert obs[IMAGE].shape == (1, 2, 3, 64, 64) and obs[IMAGE].dtype == torch.float32
    assert frame_ids(obs[IMAGE][0]) == [9, 10]  # newest two, oldest first
    assert 0.0 <= obs[IMAGE].min() and obs[IMAGE].max() <= 1.0
    assert torch.equal(obs[IMAGE][0, 1], torch.from_numpy(window["image"][3]).permute(2, 0, 1) / 255)
    assert obs[STATE].tolist() == [[[9.0, 0.0], [10.0, 0.0]]] and obs[STATE].dtype == torch.float32
    with pytest.raises(ValueError, match="needs 2"):
        window_to_observation({"image": window["image"][:1], "state": window["state"][:1]}, 2)
    with pytest.raises(ValueError, match="uint8"):
        frames_to_chw(window["image"].astype(np.float32))


class CountingEnv:
    """Frames and states that say which env step they are from."""
    max_steps = 30
    score = 0.0

    def _obs(self):
        return Observation(image=coded_frames([self.t])[0], state=np.array([self.t, 2.0 * self.t]))

    def reset(self, seed):
        self.t = 0
        return self._obs()

    def step(self, action):
        self.t += 1
        return StepResult(self._obs(), 0.0, False, False)


class RecordingPeer:
    """What the real adapter does with a window, recorded: the observation LeRobot would get."""
    cfg = PeerEvalConfig()

    def __init__(self):
        self.seen = []

    def reset(self):
        self.seen.clear()

    def predict_action(self, window):
        self.seen.append(window_to_observation(window, self.cfg.n_frames))
        return np.zeros((self.cfg.n_action_steps, 2))


def test_our_evaluator_feeds_the_peer_the_current_and_previous_step():
    """Through uva.rollout itself: at the step of each chunk (every 8), the peer gets the frames
    and states of that step and the one before (the first frame twice at the start, as LeRobot's
    queue is filled), never an older or reordered one."""
    peer = RecordingPeer()
    rollout(peer, CountingEnv(), seed=0, n_action_steps=peer.cfg.n_action_steps)
    steps = list(range(0, CountingEnv.max_steps, 8))
    assert len(peer.seen) == len(steps)
    for t, obs in zip(steps, peer.seen):
        want = [max(t - 1, 0), t]
        assert frame_ids(obs[IMAGE][0]) == want, f"step {t}"
        assert obs[STATE][0].tolist() == [[s, 2.0 * s] for s in want]


def test_training_samples_hold_the_frames_inference_sees_at_that_step():
    buf = synthetic_buffer()
    windows = TrainWindows(buf, episodes=[0, 1, 2], n_obs_steps=2, horizon=16, drop_n_last_frames=7)
    cfg = PeerEvalConfig()
    for ep in range(3):
        s, e = ([0] + buf.episode_ends.tolist())[ep], buf.episode_ends[ep]
        history = ObservationHistory(cfg.n_frames, cfg.actions_per_frame, cfg.image_size)
        for t in range(s, e):
            history.append(buf.img[t], buf.state[t])
            if t not in windows.frames:
                continue
            live = window_to_observation(history.window(), cfg.n_frames)
            sample = windows.batch([t])
            assert torch.equal(sample[IMAGE], live[IMAGE]), f"frame {t}"
            assert torch.equal(sample[STATE], live[STATE]), f"frame {t}"


def test_training_samples_use_lerobots_indices_and_padding():
    buf = synthetic_buffer()
    windows = TrainWindows(buf, episodes=[0, 1, 2], n_obs_steps=2, horizon=16, drop_n_last_frames=7)
    assert windows.obs_deltas.tolist() == [-1, 0]
    assert windows.action_deltas.tolist() == list(range(-1, 15))
    # anchors: every frame but each episode's last 7 (LeRobot's EpisodeAwareSampler for DP)
    assert windows.frames.tolist() == [*range(0, 5), *range(12, 35), *range(42, 44)]
    b = windows.batch([12, 30])  # episode 1 is frames 12..41
    ids = b[ACTION][..., 0] - 0.5
    assert ids[0].tolist() == [12] + list(range(12, 27))  # t-1 before the start: first, padded
    assert b[ACTION_IS_PAD][0].tolist() == [True] + [False] * 15
    assert ids[1].tolist() == list(range(29, 42)) + [41] * 3  # past the end: last, padded
    assert b[ACTION_IS_PAD][1].tolist() == [False] * 13 + [True] * 3
    assert frame_ids(b[IMAGE][0]) == [12, 12] and frame_ids(b[IMAGE][1]) == [29, 30]
    assert b["observation.image_is_pad"].tolist() == [[True, False], [False, False]]
    assert b[IMAGE].shape == (2, 2, 3, 64, 64) and b[ACTION].shape == (2, 16, 2)
    train, val = buf.train_val_episodes()
    only = TrainWindows(buf, train)
    assert not set(only.frames.tolist()) & set(buf.frame_indices(val).tolist())


def test_dataset_stats_come_from_the_training_episodes_only():
    buf = synthetic_buffer(lengths=(20, 20, 20, 20), val_pixel=255)
    train, val = buf.train_val_episodes()
    assert val and set(train).isdisjoint(val)
    stats = dataset_stats(buf, train, chunk=7)  # several chunks
    px = buf.img[buf.frame_indices(train)].reshape(-1, 3) / 255.0
    assert stats[IMAGE]["mean"].shape == (3, 1, 1)
    np.testing.assert_allclose(stats[IMAGE]["mean"].ravel(), px.mean(0), atol=1e-12)
    np.testing.assert_allclose(stats[IMAGE]["std"].ravel(), px.std(0), atol=1e-9)
    np.testing.assert_allclose(stats[IMAGE]["max"].ravel(), px.max(0))
    assert stats[IMAGE]["max"].ravel()[0] < 1.0  # the held-out episode's white frames left out
    idx = buf.frame_indices(train)
    np.testing.assert_allclose(stats[ACTION]["min"], buf.action[idx].min(0))
    np.testing.assert_allclose(stats[STATE]["max"], buf.state[idx].max(0))


def test_the_product_never_imports_the_peer():
    bad = []
    for path in sorted((ROOT / "models" / "uva").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bad += [f"{path.name}:{node.lineno} {n}" for n in names
                    if n.split(".")[0] in ("lerobot", "experiments", "lerobot_peer", "peer", "convert")]
    assert not bad, f"models/uva imports the peer or lerobot: {bad}"


# --- LeRobot's side: only in the peer's venv --------------------------------------------------
needs_lerobot = pytest.mark.skipif(importlib.util.find_spec("lerobot") is None,
                                   reason="LeRobot lives in the peer's venv (make peer-setup)")


def tiny_policy(buf: ReplayBuffer, seed: int = 0):
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from peer import make_config, stats_tensors
    cfg = make_config((64, 64), 2, 2, crop=56, down_dims=(16, 32), noise_scheduler="DDIM",
                      inference_steps=3)
    cfg.spatial_softmax_num_keypoints = 8
    torch.manual_seed(seed)
    return DiffusionPolicy(cfg, dataset_stats=stats_tensors(dataset_stats(buf, [0, 1, 2])))


def random_buffer(n: int = 40) -> ReplayBuffer:
    rng = np.random.default_rng(0)
    return ReplayBuffer(img=rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
                        state=rng.uniform(0, 512, (n, 2)).astype(np.float32),
                        action=rng.uniform(0, 512, (n, 2)).astype(np.float32),
                        episode_ends=np.array([10, 25, n]))


@needs_lerobot
def test_adapter_chunk_is_the_one_lerobots_select_action_starts():
    from peer import LeRobotPeer
    buf = random_buffer()
    policy = tiny_policy(buf).eval()
    peer = LeRobotPeer(policy)
    # LeRobot's own loop: select_action once per env step, a new chunk every n_action_steps
    policy.reset()
    own = []
    for t in range(16):
        if t % 8 == 0:
            torch.manual_seed(100 + t)
        own.append(policy.select_action({IMAGE: frames_to_chw(buf.img[t:t + 1]),
                                         STATE: torch.from_numpy(buf.state[t:t + 1])})[0].numpy())
    own = np.array(own)
    history = ObservationHistory(peer.cfg.n_frames, peer.cfg.actions_per_frame, peer.cfg.image_size)
    peer.reset()
    for t in range(9):
        history.append(buf.img[t], buf.state[t])
        if t % 8 == 0:
            torch.manual_seed(100 + t)
            chunk = peer.predict_action(history.window())
            assert chunk.shape == (8, 2)
            np.testing.assert_allclose(chunk, own[t:t + 8], rtol=0, atol=1e-4)
    # a stale window (one step older) gives another chunk: the check above can fail
    torch.manual_seed(108)
    stale = peer.predict_action({"image": buf.img[6:8], "state": buf.state[6:8]})
    assert np.abs(stale - own[8:16]).max() > 1e-3
    assert len(peer.chunk_latency_s) == 3


@needs_lerobot
def test_random_crop_is_a_training_augmentation_only():
    from peer import LeRobotPeer
    buf = random_buffer()
    policy = tiny_policy(buf)
    encoder = policy.diffusion.rgb_encoder
    x = frames_to_chw(buf.img[:4])
    assert encoder.center_crop.size == (56, 56) and encoder.maybe_random_crop is not encoder.center_crop
    policy.train()
    torch.manual_seed(0)
    a, b = encoder(x), encoder(x)
    assert not torch.allclose(a, b)  # a random crop per call in training
    peer = LeRobotPeer(policy)  # the adapter puts the policy in eval mode
    assert not policy.training
    assert torch.equal(encoder(x), encoder(x))  # the centre crop at inference
    policy.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        peer.predict_action({"image": buf.img[:2], "state": buf.state[:2]})


@needs_lerobot
def test_checkpoint_round_trips_through_save_pretrained(tmp_path):
    from peer import LeRobotPeer, load_peer
    buf = random_buffer()
    policy = tiny_policy(buf).eval()
    policy.save_pretrained(tmp_path / "pretrained_model")
    assert {p.name for p in (tmp_path / "pretrained_model").iterdir()} >= {"config.json",
                                                                           "model.safetensors"}
    loaded = load_peer(tmp_path)  # a run/checkpoint directory is resolved to pretrained_model
    window = {"image": buf.img[3:5], "state": buf.state[3:5]}
    torch.manual_seed(1)
    want = LeRobotPeer(policy).predict_action(window)
    torch.manual_seed(1)
    np.testing.assert_array_equal(loaded.predict_action(window), want)
    stats = loaded.policy.unnormalize_outputs.buffer_action
    np.testing.assert_allclose(stats["max"].numpy(), buf.action[:40].max(0))
    assert load_peer(tmp_path, inference_steps=5).policy.diffusion.num_inference_steps == 5


@needs_lerobot
def test_run_script_trains_resumes_evaluates_and_tables(tmp_path):
    from uva.collect import collect
    data = tmp_path / "demos.zarr"
    collect("pusht", 2, data, seed=0)
    run = [sys.executable, str(PEER_DIR / "run.py")]
    tiny = ["--down-dims", "16", "32", "--batch-size", "4", "--ckpt-every", "2"]
    subprocess.run(run + ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--steps", "2",
                          *tiny], check=True)
    subprocess.run(run + ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--steps", "3",
                          "--resume", *tiny], check=True)
    info = json.loads((tmp_path / "r/checkpoints/last/pretrained_model/train_info.json").read_text())
    assert info["steps"] == 3 and info["wall_s"] > 0
    out = tmp_path / "peer.json"
    subprocess.run(run + ["eval", "--ckpt", str(tmp_path / "r"), "--episodes", "1", "--out", str(out),
                          "--noise-scheduler", "DDIM", "--inference-steps", "2"], check=True)
    r = json.loads(out.read_text())
    assert r["first_seed"] == 200000 and len(r["per_episode"]) == 1 and r["training_steps"] == 3
    assert 0.0 <= r["score"] <= 1.0 and r["predict_action_ms_p95"] >= r["predict_action_ms_p50"] > 0
    table = subprocess.run(run + ["table", "--row", f"peer={out}"], check=True, capture_output=True,
                           text=True).stdout
    assert f"| peer | 200000–200000 | {r['score']:.3f} ± 0.000 |" in table and "| DDIM 2 |" in table
