"""Several cameras as model inputs: per-camera tokens, masks, heads and the policy API, and the
one-camera model unchanged (the shipped checkpoints act as they did before cameras existed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY, random_batch
from uva import UVAConfig, UVAModel, load_policy
from uva.checkpoint import random_checkpoint
from uva.config import TASK_MODES
from uva.masking import mode_mask

CKPTS = Path(__file__).resolve().parents[1] / "models" / "checkpoints"
TWO = ["scene", "wrist"]

# Outputs of the shipped checkpoints (seed 3 on the observation built by shipped_obs): PushT's
# computed with the code before cameras existed, Panda's from its head-refitted file through the
# one-camera path; a one-camera model must still produce them
SHIPPED_REFERENCE = {
    # the PushT file as shipped, sampling 20 DDIM steps (its config)
    "pusht": {"action": [[258.924797, 319.114822], [261.170837, 325.119647], [263.950855, 333.949179], [263.693323, 341.774012], [250.821352, 346.907750], [238.622316, 347.768617], [231.795468, 345.847412], [220.907168, 347.209722]],
              "inverse": [[335.684298, 184.061511], [340.425765, 184.509900], [345.045948, 187.058574], [349.562898, 191.810887], [354.861479, 197.474815], [361.709165, 203.369698], [368.640908, 208.775860], [372.647204, 217.905098]],
              "video_mean": 128.3385},
    "panda": {"action": [[0.001120, 0.338665, -0.003537, -2.286243, 0.004888, 2.620890, 0.793969, 0.034924], [-0.003317, 0.344764, -0.004788, -2.300467, 0.007194, 2.647700, 0.780395, 0.036051], [-0.002282, 0.367700, -0.006968, -2.309225, 0.006996, 2.665915, 0.771941, 0.036290], [-0.001187, 0.392441, 0.000227, -2.299564, 0.008053, 2.682182, 0.798102, 0.035663], [-0.002305, 0.410841, -0.002974, -2.287573, 0.005509, 2.694600, 0.779976, 0.035096], [-0.001544, 0.428483, -0.002689, -2.274520, 0.000582, 2.715676, 0.784462, 0.035340], [-0.002255, 0.461948, -0.002677, -2.276251, 0.004645, 2.717996, 0.782877, 0.035823], [0.004437, 0.469096, -0.002804, -2.271617, 0.002253, 2.751088, 0.787290, 0.036128]],
              "inverse": [[0.003439, 0.449046, 0.014800, -2.220177, -0.022011, 2.728383, 0.855784, 0.022984], [-0.000927, 0.489017, 0.025770, -2.246281, -0.017270, 2.744431, 0.850831, 0.019686], [-0.009358, 0.489195, 0.012623, -2.241444, -0.016647, 2.745364, 0.794999, 0.010906], [-0.013518, 0.520644, 0.033373, -2.244661, -0.007478, 2.730562, 0.858879, 0.008713], [-0.002618, 0.500297, 0.020350, -2.226615, -0.015361, 2.702430, 0.814627, 0.011446], [-0.013775, 0.511985, 0.028791, -2.221249, -0.029903, 2.742211, 0.849898, 0.008813], [-0.010928, 0.577105, 0.020500, -2.230823, -0.019302, 2.697455, 0.843036, 0.009437], [0.002695, 0.462639, 0.026852, -2.206624, -0.040899, 2.669660, 0.881172, 0.012849]],
              "video_mean": 127.6042},
}


def shipped_obs(policy) -> dict:
    cfg = policy.cfg
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (cfg.n_frames, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    state = policy.proprio_norm.unnormalize(rng.uniform(-0.5, 0.5, (cfg.n_frames, cfg.proprio_dim)))
    return {"image": img, "state": state}


def two_camera_cfg(**kw) -> UVAConfig:
    return UVAConfig(cameras=TWO, **{**TINY, **kw})


def multi_batch(cfg: UVAConfig, batch: int = 4, seed: int = 0) -> dict:
    """random_batch with a camera axis: latents (B, F, K, C, h, w)."""
    g = torch.Generator().manual_seed(seed)
    lat = (batch, cfg.n_frames, cfg.n_cameras, cfg.vae_latent_channels, cfg.latent_size,
           cfg.latent_size)
    return {"history_latents": torch.randn(lat, generator=g),
            "future_latents": torch.randn(lat, generator=g),
            "actions": torch.rand(batch, cfg.horizon, cfg.action_dim, generator=g) * 2 - 1,
            "proprio": torch.rand(batch, cfg.n_frames, cfg.proprio_dim, generator=g) * 2 - 1}


def camera_obs(cfg: UVAConfig, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    shape = (cfg.n_frames, cfg.image_size, cfg.image_size, 3)
    return {"images": {c: rng.integers(0, 255, shape, dtype=np.uint8) for c in cfg.cameras},
            "state": rng.uniform(0, 1, (cfg.n_frames, cfg.proprio_dim))}


# ---------------------------------------------------------------------------- config
def test_cameras_config_default_validation_and_old_checkpoints():
    assert UVAConfig().cameras == ["scene"] and UVAConfig().n_cameras == 1
    old = UVAConfig().to_dict()
    del old["cameras"]  # a checkpoint written before cameras existed
    assert UVAConfig.from_dict(old).cameras == ["scene"]
    cfg = UVAConfig.from_dict(two_camera_cfg().to_dict())
    assert cfg.cameras == TWO and cfg.n_tokens == 2 * cfg.n_frames * cfg.tokens_per_frame
    for bad, words in [([], "at least one"), (["scene", "scene"], "repeated"),
                       (["scene", ""], "non-empty"), ("scene", "list"), ([3], "non-empty|string")]:
        with pytest.raises((TypeError, ValueError), match=words):
            UVAConfig(cameras=bad)


# ---------------------------------------------------------------------------- one camera
def test_one_camera_model_has_no_camera_tensors():
    one_sd = UVAModel(UVAConfig(**TINY)).state_dict()
    one = set(one_sd)
    two = UVAModel(two_camera_cfg()).state_dict()
    assert not any("camera" in k for k in one)
    assert set(two) - one == {"camera_pos", "decoder_camera_pos"}
    # the action head reads both cameras: its per-frame map takes twice the features
    assert two["action_head.frame_fc.weight"].shape[1] == \
        2 * one_sd["action_head.frame_fc.weight"].shape[1]


@pytest.mark.parametrize("name", ["pusht", "panda"])
def test_shipped_one_camera_checkpoints_act_as_before(name):
    policy = load_policy(CKPTS / name, precision="fp32")  # references were stored in fp32
    assert policy.cfg.cameras == ["scene"]
    obs, ref = shipped_obs(policy), SHIPPED_REFERENCE[name]
    span = policy.action_norm.high - policy.action_norm.low
    tol = 1e-4 * span + 1e-5
    action = policy.predict_action(obs, seed=3)
    assert np.all(np.abs(action - np.array(ref["action"])) <= tol)
    # the same through the several-camera form of the observation
    named = {"images": {"scene": obs["image"]}, "state": obs["state"]}
    assert np.all(np.abs(policy.predict_action(named, seed=3) - action) <= tol)
    inverse = policy.inverse_dynamics(obs["image"], seed=3)
    assert np.all(np.abs(inverse - np.array(ref["inverse"])) <= tol)
    video = policy.predict_video(obs, seed=3)
    assert isinstance(video, np.ndarray) and video.shape == obs["image"].shape
    assert abs(video.mean() - ref["video_mean"]) < 0.05


def test_one_camera_training_losses_as_before():
    """Masks, fusion and losses of a one-camera model draw the same numbers as before cameras
    existed (losses of a seeded random model, computed with the old code)."""
    want = {"video_model": 0.9520286, "dynamic_model": 0.9520286, "policy_model": 1.2141705,
            "inverse_model": 1.2141705, "full_dynamic_model": 2.0906515}
    torch.manual_seed(0)
    cfg = UVAConfig(**TINY)
    model = UVAModel(cfg)
    g = torch.Generator().manual_seed(1)
    lat = (3, cfg.n_frames, cfg.vae_latent_channels, cfg.latent_size, cfg.latent_size)
    batch = {"history_latents": torch.randn(lat, generator=g),
             "future_latents": torch.randn(lat, generator=g),
             "actions": torch.rand(3, cfg.horizon, cfg.action_dim, generator=g) * 2 - 1,
             "proprio": torch.rand(3, cfg.n_frames, cfg.proprio_dim, generator=g) * 2 - 1}
    for mode in TASK_MODES:
        loss, _ = model(batch, mode, 0.8, torch.Generator().manual_seed(5))
        assert loss.item() == pytest.approx(want[mode], rel=1e-4)


# ---------------------------------------------------------------------------- tokens and masks
def test_tokens_are_cameras_by_frames_by_space():
    cfg = two_camera_cfg()
    model = UVAModel(cfg)
    lat = multi_batch(cfg)["history_latents"]
    tokens = model.tokenize(lat)
    T = cfg.tokens_per_camera
    assert tokens.shape == (4, cfg.n_tokens, cfg.token_dim)
    assert torch.equal(model.untokenize(tokens), lat)
    # each camera's block of tokens is exactly what a one-camera model makes of that camera
    single = UVAModel(UVAConfig(**TINY))
    for k in range(cfg.n_cameras):
        assert torch.equal(tokens[:, k * T:(k + 1) * T], single.tokenize(lat[:, :, k]))
    with pytest.raises(ValueError, match="2-camera"):
        model.tokenize(lat[:, :, 0])


@pytest.mark.parametrize("mode", TASK_MODES)
def test_one_spatial_mask_per_camera(mode):
    S, F, K = 16, 2, 3
    m = mode_mask(mode, 5, F, S, 0.75, torch.Generator().manual_seed(0), n_cameras=K)
    assert m.shape == (5, K * F * S)
    grid = m.reshape(5, K, F, S)
    if mode in ("policy_model", "inverse_model"):
        assert torch.all(grid == (1.0 if mode == "policy_model" else 0.0))
        return
    assert torch.equal(grid[:, :, 0], grid[:, :, 1])  # same mask on a camera's future frames
    assert (grid[:, :, 0].sum(-1) == int(np.ceil(S * 0.75))).all()  # same count per camera
    assert not torch.equal(grid[:, 0, 0], grid[:, 1, 0])  # cameras drawn apart
    # one camera draws what it always drew
    assert torch.equal(mode_mask(mode, 5, F, S, 0.75, torch.Generator().manual_seed(0)),
                       mode_mask(mode, 5, F, S, 0.75, torch.Generator().manual_seed(0),
                                 n_cameras=1))


def test_changing_one_camera_changes_only_its_tokens_inputs(tmp_path):
    """The fused per-token inputs of the transformer: new wrist pixels change wrist tokens only."""
    cfg = two_camera_cfg()
    random_checkpoint(tmp_path / "ckpt", cfg)
    policy = load_policy(tmp_path / "ckpt", precision="fp32")  # hooks sit on the fp32 model
    inputs, latents = [], []
    policy.model.fuse.register_forward_hook(lambda mod, i, out: inputs.append(out.clone()))
    policy.model.decoder.register_forward_hook(lambda mod, i, out: latents.append(out.clone()))
    obs = camera_obs(cfg)
    policy.predict_action(obs, seed=0)
    changed = {**obs, "images": {**obs["images"],
                                 "wrist": 255 - obs["images"]["wrist"]}}
    policy.predict_action(changed, seed=0)
    T = cfg.tokens_per_camera
    before, after = inputs
    assert torch.equal(before[:, :T], after[:, :T])  # scene tokens' inputs untouched
    wrist_changed = (before[:, T:] - after[:, T:]).abs().amax(-1) > 1e-6
    assert wrist_changed.all()  # every wrist token sees the new pixels
    # the transformer attends across cameras: the scene tokens' joint latent sees the wrist
    assert (latents[0][:, :T] - latents[1][:, :T]).abs().amax() > 1e-4


def test_camera_embedding_tells_cameras_apart():
    """The same frames on both cameras still give the two cameras different token inputs."""
    cfg = two_camera_cfg()
    model = UVAModel(cfg).eval()
    batch = multi_batch(cfg)
    same = batch["history_latents"][:, :, :1].expand(-1, -1, 2, -1, -1, -1)
    T = cfg.tokens_per_camera
    seen = []
    model.encoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    with torch.no_grad():
        model.policy_latent(same, batch["proprio"])
    assert not torch.allclose(seen[0][:, :T], seen[0][:, T:])


# ---------------------------------------------------------------------------- learning
def test_two_camera_model_overfits_a_tiny_batch_in_every_mode():
    torch.manual_seed(0)
    cfg = two_camera_cfg()
    model = UVAModel(cfg)
    batch = multi_batch(cfg, batch=2)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)

    def losses():
        model.eval()
        with torch.no_grad():
            out = {m: model(batch, m, 0.8, torch.Generator().manual_seed(9))[0].item()
                   for m in TASK_MODES}
        model.train()
        return out

    start = losses()
    for step in range(150):
        mode = TASK_MODES[step % len(TASK_MODES)]
        loss, _ = model(batch, mode, model.mask_law.sample(np.random.default_rng(step)),
                        torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = losses()
    for mode in TASK_MODES:
        # the video losses level off near 0.45 of the start (noise on random latents)
        assert end[mode] < 0.6 * start[mode], (mode, start[mode], end[mode])


# ---------------------------------------------------------------------------- policy API
def test_two_camera_checkpoint_saves_loads_and_predicts(tmp_path):
    cfg = two_camera_cfg()
    random_checkpoint(tmp_path / "ckpt", cfg)
    policy = load_policy(tmp_path / "ckpt")
    assert policy.cfg.cameras == TWO
    obs = camera_obs(cfg)
    action = policy.predict_action(obs, seed=1)
    assert action.shape == (cfg.horizon, cfg.action_dim) and np.isfinite(action).all()
    # the same weights in memory give the same chunk: nothing was lost on the way to disk
    torch.manual_seed(0)
    fresh = UVAModel(cfg)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                 policy.model.state_dict().values()))
    video = policy.predict_video(obs, seed=1)
    assert set(video) == set(TWO)
    assert all(v.shape == obs["images"]["scene"].shape and v.dtype == np.uint8
               for v in video.values())
    raw, anchored = policy.predict_video_variants(obs, seed=1)
    assert set(raw) == set(anchored) == set(TWO)
    # with the model predicting no change, each camera's anchored frames are its own newest
    assert not np.array_equal(anchored["scene"], anchored["wrist"])
    inverse = policy.inverse_dynamics(obs["images"], seed=1)
    assert inverse.shape == (cfg.horizon, cfg.action_dim)
    assert np.array_equal(load_policy(tmp_path / "ckpt").predict_action(obs, seed=1), action)


def test_camera_names_must_match_the_checkpoint(tmp_path):
    cfg = two_camera_cfg()
    random_checkpoint(tmp_path / "ckpt", cfg)
    policy = load_policy(tmp_path / "ckpt")
    obs = camera_obs(cfg)
    with pytest.raises(ValueError, match=r"missing \['wrist'\]"):
        policy.predict_action({**obs, "images": {"scene": obs["images"]["scene"]}})
    with pytest.raises(ValueError, match=r"unexpected \['top'\]"):
        policy.predict_action({**obs, "images": {**obs["images"], "top": obs["images"]["scene"]}})
    with pytest.raises(ValueError, match="cameras"):
        policy.predict_action({"image": obs["images"]["scene"], "state": obs["state"]})
    with pytest.raises(ValueError, match=r"\['wrist'\]: expected shape"):
        policy.predict_action({**obs, "images": {**obs["images"],
                                                 "wrist": obs["images"]["wrist"][:, :32]}})
    with pytest.raises(ValueError, match="missing"):
        policy.inverse_dynamics({"scene": obs["images"]["scene"]})
    with pytest.raises(ValueError, match="either"):
        policy.predict_action({**obs, "image": obs["images"]["scene"]})


def test_latent_cache_keys_frames_by_camera(tmp_path):
    cfg = two_camera_cfg()
    random_checkpoint(tmp_path / "ckpt", cfg)
    policy = load_policy(tmp_path / "ckpt")
    obs = camera_obs(cfg)
    frames = obs["images"]["scene"]
    same = {**obs, "images": {"scene": frames, "wrist": frames}}  # identical pixels
    policy.predict_action(same)
    assert policy.frames_encoded == 4  # each camera's frames are its own
    latents = policy.encode(same["images"], for_policy=True)  # what predict_action cached
    assert latents.shape == (1, cfg.n_frames, 2, cfg.vae_latent_channels, cfg.latent_size,
                             cfg.latent_size)
    assert policy.frames_encoded == 4  # all cached
    new = np.roll(frames, 1, axis=0)
    new[-1] = 255 - frames[-1]
    policy.predict_action({**obs, "images": {"scene": new, "wrist": new}})
    assert policy.frames_encoded == 6  # the newest frame of each camera only
