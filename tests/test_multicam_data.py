"""Several cameras from the simulator to training: the Panda wrist camera, collecting each camera
as its own stream, per-camera latents in training, and a two-camera run end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import TINY
from uva import UVAConfig, UVAModel, load_policy
from uva.cli import main as uva_main
from uva.data import (DatasetError, ReplayBuffer, WindowIndex, read_replay_buffer,
                      write_replay_buffer)

TINY_JSON = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()})
TWO = ["scene", "wrist"]


def red_fraction(img: np.ndarray) -> float:
    """Share of pixels of the red cube (the env colours it (0.9, 0.15, 0.1))."""
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return float(np.mean((r > 120) & (g < 70) & (b < 70)))


def test_panda_wrist_camera_moves_with_the_hand():
    from uva.envs.panda import HAND_LINK, PandaEnv
    import pybullet as pb
    env = PandaEnv(cameras=("scene", "wrist"))
    try:
        obs = env.reset(0)
        assert list(obs.images) == TWO and obs.image is obs.images["scene"]
        assert obs.images["wrist"].shape == obs.images["scene"].shape == (96, 96, 3)
        hand = lambda: np.array(pb.getLinkState(env.robot, HAND_LINK,
                                                physicsClientId=env.client)[4])
        hand0, eye0, wrist0 = hand(), env.wrist_pose()[0], obs.images["wrist"]
        for _ in range(25):  # the expert lowers the open gripper onto the cube
            obs = env.step(env.expert_action()).obs
        moved = hand() - hand0
        assert np.linalg.norm(moved) > 0.1
        # the camera is carried by the hand: its eye moved with the hand (orientation held down)
        assert np.allclose(env.wrist_pose()[0] - eye0, moved, atol=0.02)
        assert np.abs(obs.images["wrist"].astype(int) - wrist0).mean() > 10
        # at the grasp the wrist camera sees the cube close up, the scene camera from afar
        assert red_fraction(obs.images["wrist"]) > 0.05
        assert red_fraction(obs.images["wrist"]) > 5 * red_fraction(obs.images["scene"])
    finally:
        env.close()
    single = PandaEnv()
    try:
        assert single.reset(0).images is None  # one camera: the observation as before
    finally:
        single.close()
    with pytest.raises(ValueError, match="wrist"):
        PandaEnv(cameras=("scene", "top"))


def test_collect_records_each_camera_as_its_own_stream(tmp_path, capsys):
    from uva.envs.panda import PandaEnv
    from uva.images import resize
    out = tmp_path / "panda.zarr"
    assert uva_main(["collect", "--env", "panda", "--episodes", "1", "--cameras", "scene,wrist",
                     "--out", str(out)]) == 0
    buf = read_replay_buffer(out)
    assert buf.cameras == TWO and buf.images["wrist"].shape == buf.images["scene"].shape
    assert json.loads(open(str(out) + ".json").read())["cameras"] == TWO
    env = PandaEnv(cameras=("scene", "wrist"))  # the first frames are the seed's renders
    try:
        first = env.reset(buf.attrs["seeds"][0]).images
    finally:
        env.close()
    for c in TWO:
        assert np.array_equal(buf.images[c][0], resize(first[c], 64))
    assert not np.array_equal(buf.images["scene"], buf.images["wrist"])
    assert uva_main(["collect", "--env", "pusht", "--episodes", "1", "--cameras", "scene,wrist",
                     "--out", str(tmp_path / "p.zarr")]) == 2
    assert "renders cameras ['scene']" in capsys.readouterr().err


@pytest.fixture(scope="module")
def two_camera_data(tmp_path_factory):
    """Three short episodes whose two cameras show different pictures (smooth per camera)."""
    rng = np.random.default_rng(0)
    eps = []
    for e in range(3):
        t = 24
        base = {c: rng.integers(0, 256, (1, 8, 8, 3)) for c in TWO}
        eps.append({"images": {c: np.clip(np.kron(base[c], np.ones((1, 8, 8, 1)))
                                          + np.arange(t)[:, None, None, None] * (3 + 5 * k),
                                          0, 255).astype(np.uint8)
                               for k, c in enumerate(TWO)},
                    "state": rng.uniform(-1, 1, (t, 2)).astype(np.float32),
                    "action": rng.uniform(-1, 1, (t, 2)).astype(np.float32)})
    out = tmp_path_factory.mktemp("data") / "two.zarr"
    write_replay_buffer(out, eps, {"env": "panda"})
    return out


def test_training_latents_keep_cameras_apart(two_camera_data, tmp_path):
    from uva.training import caches, checks
    buf = read_replay_buffer(two_camera_data)
    torch.manual_seed(0)
    cfg = UVAConfig(cameras=TWO, **TINY)
    model = UVAModel(cfg).eval()
    latents = caches.encode_dataset(model, buf, cfg, "cpu", tmp_path / "latents.pt")
    assert latents.shape == (len(buf.action), 2, cfg.vae_latent_channels, cfg.latent_size,
                             cfg.latent_size)
    # each camera's latents are its own frames' (what a one-camera model of it would encode)
    one = UVAConfig(**TINY)
    for k, c in enumerate(TWO):
        alone = caches.encode_dataset(model, ReplayBuffer(
            img=buf.images[c], state=buf.state, action=buf.action,
            episode_ends=buf.episode_ends, attrs={}), one, "cpu", tmp_path / f"{c}.pt")
        assert torch.allclose(latents[:, k], alone, atol=1e-5)
    assert not torch.allclose(latents[:, 0], latents[:, 1])
    # cached: a second call reads the same tensor back
    assert torch.equal(caches.encode_dataset(model, buf, cfg, "cpu", tmp_path / "latents.pt"),
                       latents)
    # a window's latents come out in the model's (B, F, K, C, h, w) layout
    index = WindowIndex(buf.episode_ends, cfg.n_frames, cfg.actions_per_frame)
    batch = {"history_latents": latents[index.history[:3]], "future_latents":
             latents[index.future[:3]], "actions": torch.zeros(3, cfg.horizon, 2),
             "proprio": torch.zeros(3, cfg.n_frames, 2)}
    assert torch.isfinite(model(batch, "full_dynamic_model", 0.8,
                                torch.Generator().manual_seed(0))[0])
    # the config's cameras must be the buffer's
    for wrong in (["scene"], ["wrist", "scene"]):
        with pytest.raises(DatasetError, match="holds cameras"):
            checks.check_dataset_fits(buf, UVAConfig(cameras=wrong, **TINY), "two.zarr", "x")


def test_two_camera_training_run_end_to_end(two_camera_data, tmp_path):
    run = tmp_path / "run"
    assert uva_main(["--threads", "1", "train", "--data", str(two_camera_data), "--out", str(run),
                     "--vae-steps", "2", "--video-steps", "2", "--joint-steps", "2",
                     "--batch-size", "2", "--ckpt-every", "2", "--eval-every", "2",
                     "--config", TINY_JSON]) == 0
    policy = load_policy(run / "joint" / "final")
    assert policy.cfg.cameras == TWO
    buf = read_replay_buffer(two_camera_data)
    obs = {"images": {c: buf.images[c][:2] for c in TWO}, "state": buf.state[:2]}
    assert np.isfinite(policy.predict_action(obs, seed=0)).all()
    assert set(policy.predict_video(obs, seed=0)) == set(TWO)
    # a run on these cameras refuses a config naming others
    bad = tmp_path / "bad"
    assert uva_main(["train", "--data", str(two_camera_data), "--out", str(bad), "--stage",
                     "vae", "--vae-steps", "1", "--config",
                     json.dumps({**json.loads(TINY_JSON), "cameras": ["scene"]})]) == 2
