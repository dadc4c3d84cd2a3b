"""Random-shift augmentation of the transformer stages (uva.training.augment): what it shifts,
that training draws shifted windows and validation never does, and that inference ignores it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import TINY, random_obs
from uva.cli import main as uva_main
from uva.data import read_replay_buffer, write_replay_buffer
from uva.training.augment import episode_offsets, shift_frames, shifted_images

AUG = {"augment_shift_px": 4, "augment_shift_copies": 2}


def test_shift_moves_the_content_and_replicates_the_edge():
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    frames[:, 8, 5] = 200  # one bright pixel at row 8, column 5
    frames[:, :, 0] = 50  # the left edge column
    out = shift_frames(frames, dx=3, dy=-2, pad=4)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert np.argwhere(out[0, :, :, 0] == 200).tolist() == [[10, 2]]  # moved by (-dx, -dy)
    moved_right = shift_frames(frames, dx=-2, dy=0, pad=4)
    assert (moved_right[:, :, :3, 0] == 50).all()  # the edge column replicated into the gap
    assert np.array_equal(shift_frames(frames, 0, 0, 4), frames)
    with pytest.raises(ValueError, match="exceeds"):
        shift_frames(frames, 5, 0, 4)


def test_offsets_are_fixed_per_copy_bounded_and_differ_between_copies():
    a, b = episode_offsets(1, 50, 2, 4), episode_offsets(2, 50, 2, 4)
    assert a.shape == (50, 2, 2) and np.abs(a).max() <= 4 and np.abs(a).max() > 0
    assert np.array_equal(a, episode_offsets(1, 50, 2, 4))  # same for every stage and resume
    assert not np.array_equal(a, b)


@pytest.fixture(scope="module")
def small_buffer(tmp_path_factory):
    rng = np.random.default_rng(0)
    episodes = [{"img": rng.integers(0, 255, (24, 64, 64, 3), dtype=np.uint8),
                 "state": rng.normal(size=(24, 2)), "action": rng.normal(size=(24, 2))}
                for _ in range(20)]
    path = tmp_path_factory.mktemp("aug") / "buf.zarr"
    write_replay_buffer(path, episodes, {"env": "pusht", "image_size": 64})
    return path


def test_only_training_episodes_are_shifted(small_buffer):
    buf = read_replay_buffer(small_buffer)
    train, val = buf.train_val_episodes()
    assert val  # the split holds episodes out
    shifted = shifted_images(buf, buf.cameras, 1, 4, train)["scene"]
    offsets = episode_offsets(1, buf.n_episodes, 1, 4)
    for e, s in enumerate(buf.episode_slices()):
        same = np.array_equal(shifted[s], buf.img[s])
        assert same == (e in val or not offsets[e, 0].any()), e
    # read by range, never materialised whole: any range (across episode ends) is the same
    # frames as the whole array read at once
    whole = shifted[:]
    assert whole.shape == buf.img.shape and whole.dtype == np.uint8
    for a, b in ((0, 1), (5, 61), (23, 25), (100, len(whole))):
        assert np.array_equal(shifted[a:b], whole[a:b]), (a, b)


def test_joint_stage_trains_on_shifted_copies_and_validates_on_the_original(small_buffer,
                                                                           tmp_path, monkeypatch):
    """A from-scratch run with augmentation encodes the copies beside the original latents
    (cached, reused on resume) and records its setting in the checkpoint; a policy loaded from it
    acts exactly as the same weights without the setting (inference never shifts)."""
    from uva.policy import load_policy
    from uva.checkpoint import load_checkpoint, read_config, save_checkpoint
    from uva.training import caches
    from uva.training import stages
    from uva.training.args import TrainArgs
    drawn = []
    real_draw = stages.draw_versions
    monkeypatch.setattr(stages, "draw_versions",
                        lambda *a: drawn.append(real_draw(*a)) or drawn[-1])
    out = tmp_path / "run"
    assert uva_main(["--threads", "2", "train", "--data", str(small_buffer), "--out", str(out),
                     "--vae-steps", "2", "--video-steps", "2", "--joint-steps", "3",
                     "--batch-size", "4", "--config", json.dumps({**TINY, **AUG})]) == 0
    drawn = np.concatenate(drawn)  # every video and joint step drew the batch's versions
    assert len(drawn) == 4 * (2 + 3) and set(drawn) <= {0, 1, 2} and (drawn > 0).any()
    copies = sorted(p.name for p in out.glob("*latents.pt"))
    assert copies == ["latents.pt", "shift4px_copy1_latents.pt", "shift4px_copy2_latents.pt"]
    saved = read_config(out / "joint" / "final")[0]
    assert saved.augment_shift_px == 4 and saved.augment_shift_copies == 2

    model, cfg, normalizers, _ = load_checkpoint(out / "joint" / "final", "cpu")
    buf = read_replay_buffer(small_buffer)
    args = TrainArgs(data=str(small_buffer), out=str(out))
    from uva.training.distributed import DistInfo
    info = DistInfo()
    latents, *_ , train_idx, val_idx, val_eps = caches.training_windows(
        model, buf, normalizers, args, out / "joint", info, augment=True)
    assert latents.shape[0] == 3  # original + 2 copies
    plain = caches.training_windows(model, buf, normalizers, args, out / "joint", info)[0]
    assert torch.equal(latents[0], plain)
    val_frames = buf.frame_indices(val_eps)
    train_frames = buf.frame_indices(buf.train_val_episodes()[0])
    assert torch.equal(latents[1][val_frames], plain[val_frames])  # held-out episodes: unshifted
    assert not torch.equal(latents[1][train_frames], plain[train_frames])

    # inference: the same weights with augmentation off act identically
    off = tmp_path / "off"
    save_checkpoint(off, model, type(cfg).from_dict({**cfg.to_dict(), "augment_shift_px": 0,
                                                     "augment_shift_copies": 0}), normalizers,
                    {"stage": "joint"})
    obs = random_obs(cfg, seed=3)
    a = load_policy(out / "joint" / "final", precision="fp32").predict_action(obs, seed=0)
    b = load_policy(off, precision="fp32").predict_action(obs, seed=0)
    assert np.array_equal(a, b)


def test_augmentation_may_be_set_on_a_stage_continuing_init_but_not_out_of_range(small_buffer,
                                                                                 tmp_path):
    from uva.training.checks import check_overrides_fit
    out = tmp_path / "run"
    assert uva_main(["--threads", "2", "train", "--data", str(small_buffer), "--out", str(out),
                     "--stage", "vae", "--vae-steps", "1", "--batch-size", "4",
                     "--config", json.dumps(TINY)]) == 0
    check_overrides_fit(out / "vae" / "final", AUG)  # a training setting: allowed
    with pytest.raises(ValueError, match="augment_shift_px"):
        check_overrides_fit(out / "vae" / "final", {"augment_shift_px": -1})
    with pytest.raises(ValueError, match="fixes the model"):
        check_overrides_fit(out / "vae" / "final", {"width": 32})
