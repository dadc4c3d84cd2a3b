"""Core model: shapes, masks per mode, overfitting, head isolation, checkpoints, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from uva import CheckpointError, TASK_MODES, UVAConfig, UVAModel, load_policy
from uva.masking import MODE_SPECS, MaskRatioLaw, mode_mask
from conftest import random_batch, random_obs


def test_config_roundtrip_and_validation(tiny_cfg):
    again = UVAConfig.from_dict(tiny_cfg.to_dict())
    assert again == tiny_cfg
    with pytest.raises(ValueError, match="unknown task modes"):
        UVAConfig(task_weights={"dance_model": 1.0})
    with pytest.raises(ValueError, match="divisible"):
        UVAConfig(image_size=60)


def test_flatten_readout_sees_where_mean_pooling_would_not():
    """The same feature at two interior grid positions: the action head's flatten readout gives
    them different conditions; averaging its conv features over the grid (a global pool) would
    give the same one (so it could not tell where the object is)."""
    from uva.heads import ActionDiffusionHead
    torch.manual_seed(0)
    grid, z_dim = 8, 6
    head = ActionDiffusionHead(z_dim, grid, 1, 4, 2, 5, 16, 1, 100, 2)
    z = torch.zeros(2, grid * grid, z_dim)
    z[0, 3 * grid + 3] = 1.0  # feature at (3, 3) ...
    z[1, 4 * grid + 4] = 1.0  # ... and at (4, 4); both away from the zero-padded border
    with torch.no_grad():
        flat_cond = head.condition(z)
        pooled = head.frame_conv(z.reshape(2, grid, grid, z_dim).permute(0, 3, 1, 2)).mean((2, 3))
    assert torch.allclose(pooled[0], pooled[1], atol=1e-5)
    assert (flat_cond[0] - flat_cond[1]).abs().max() > 1e-3


def test_removed_ablation_options_are_refused_with_one_line(tiny_cfg, tmp_path):
    """Options that lost in experiments are gone from UVAConfig: a file naming the behaviour
    that stayed still loads (every file written while they existed does); one asking for a
    removed variant is refused with a one-line reason, as is any --config override of them."""
    import json
    from uva.checkpoint import load_checkpoint, random_checkpoint
    from uva.config import REMOVED_FIELDS
    random_checkpoint(tmp_path / "ck", tiny_cfg)
    config = tmp_path / "ck" / "config.json"
    meta = json.loads(config.read_text())
    meta["uva_config"].update(REMOVED_FIELDS)
    config.write_text(json.dumps(meta))
    assert load_checkpoint(tmp_path / "ck")[1] == tiny_cfg
    for name, value in (("action_pooling", "attention"), ("action_pooling", "mean"),
                        ("action_denoiser", "unet"), ("action_proprio", True)):
        bad = json.loads(config.read_text())
        bad["uva_config"][name] = value
        (tmp_path / "bad").mkdir(exist_ok=True)
        for f in ("model.safetensors", "normalizer.json"):
            (tmp_path / "bad" / f).write_bytes((tmp_path / "ck" / f).read_bytes())
        (tmp_path / "bad" / "config.json").write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match=f"'{name}'.*ablation option was removed") as err:
            load_checkpoint(tmp_path / "bad")
        assert "\n" not in str(err.value)
        with pytest.raises(ValueError, match="ablation option was removed"):
            UVAConfig.check_partial({name: REMOVED_FIELDS[name]})
    assert not {"action_pooling", "action_denoiser", "action_proprio"} & set(tiny_cfg.to_dict())


def test_inverse_action_head_decodes_inverse_dynamics_alone(tiny_cfg):
    """With `inverse_action_head` the inverse mode's action loss trains that head and no other
    action head, the policy mode's trains the shared head alone; without it both use one head."""
    cfg = UVAConfig(**{**tiny_cfg.to_dict(), "inverse_action_head": True})
    torch.manual_seed(0)
    model = UVAModel(cfg)
    batch = random_batch(cfg, batch=2)
    for mode, trained, untouched in (("inverse_model", "inverse_action_head.", "action_head."),
                                     ("policy_model", "action_head.", "inverse_action_head.")):
        model.zero_grad(set_to_none=True)
        model(batch, mode, 0.8, torch.Generator().manual_seed(0))[0].backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        assert any(g is not None and g.abs().sum() > 0
                   for n, g in grads.items() if n.startswith(trained)), mode
        assert all(g is None for n, g in grads.items() if n.startswith(untouched)), mode
    shared = UVAModel(tiny_cfg)
    assert shared.inverse_action_head is None
    assert shared.head_for("inverse_model") is shared.head_for("policy_model")


def test_mask_ratio_law_is_truncated_normal():
    law = MaskRatioLaw(0.7, 0.25)
    rng = np.random.default_rng(0)
    r = np.array([law.sample(rng) for _ in range(2000)])
    assert r.min() >= 0.7 and r.max() <= 1.0
    assert 0.85 < r.mean() < 0.9  # half-normal mass piles up toward 1.0


@pytest.mark.parametrize("mode", TASK_MODES)
def test_masks_hide_what_each_mode_says(mode, tiny_cfg):
    S, F = tiny_cfg.tokens_per_frame, tiny_cfg.n_frames
    m = mode_mask(mode, 3, F, S, 0.75, torch.Generator().manual_seed(0))
    assert m.shape == (3, F * S)
    spec = MODE_SPECS[mode]
    if spec.future_masking == "all":
        assert m.sum() == m.numel()
    elif spec.future_masking == "none":
        assert m.sum() == 0
    else:
        per_frame = m.reshape(3, F, S)
        assert torch.equal(per_frame[:, 0], per_frame[:, 1])  # same spatial mask every frame
        assert (per_frame[:, 0].sum(1) == int(np.ceil(S * 0.75))).all()


@pytest.mark.parametrize("mode", TASK_MODES)
def test_mode_shapes_and_losses(mode, tiny_cfg):
    model = UVAModel(tiny_cfg)
    batch = random_batch(tiny_cfg)
    loss, parts = model(batch, mode, 0.8, torch.Generator().manual_seed(0))
    assert loss.dtype == torch.float32 and loss.ndim == 0 and torch.isfinite(loss)
    spec = MODE_SPECS[mode]
    assert ("video" in parts) == spec.video_loss
    assert ("action" in parts) == spec.action_loss
    mask = mode_mask(mode, 4, tiny_cfg.n_frames, tiny_cfg.tokens_per_frame, 0.8)
    z = model.mode_inputs(mode, batch, mask)
    assert z.shape == (4, tiny_cfg.n_frames * tiny_cfg.tokens_per_frame, tiny_cfg.width)


def test_hidden_inputs_do_not_leak(tiny_cfg):
    """What a mode hides must not influence its output: policy mode ignores future frames,
    inverse mode ignores history frames and proprio, video mode ignores actions."""
    model = UVAModel(tiny_cfg).eval()
    a, b = random_batch(tiny_cfg, seed=0), random_batch(tiny_cfg, seed=1)
    S, F = tiny_cfg.tokens_per_frame, tiny_cfg.n_frames
    cases = {"policy_model": ["future_latents"], "inverse_model": ["history_latents", "proprio"],
             "video_model": ["actions"]}
    for mode, hidden in cases.items():
        mask = mode_mask(mode, 4, F, S, 0.8, torch.Generator().manual_seed(0))
        mixed = {**a, **{k: b[k] for k in hidden}}
        with torch.no_grad():
            assert torch.allclose(model.mode_inputs(mode, a, mask), model.mode_inputs(mode, mixed, mask))
    # and what a mode uses does matter
    mask = mode_mask("dynamic_model", 4, F, S, 0.8, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(model.mode_inputs("dynamic_model", a, mask),
                                  model.mode_inputs("dynamic_model", {**a, "actions": b["actions"]}, mask))


def _assert_overfits(cfg: UVAConfig, mode: str) -> None:
    """`mode` drives its loss down >= 10x on a fixed batch within 600 steps."""
    torch.manual_seed(0)
    model = UVAModel(cfg)
    batch = random_batch(cfg, batch=4)
    params = [p for n, p in model.named_parameters() if not n.startswith("vae.")]
    opt = torch.optim.Adam(params, lr=2e-3)
    eval_gen = lambda: torch.Generator().manual_seed(123)  # same noise/mask at every check
    with torch.no_grad():
        first, _ = model(batch, mode, 0.8, eval_gen())
    for step in range(600):
        loss, _ = model(batch, mode, 0.8, eval_gen())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 49:
            with torch.no_grad():
                now, _ = model(batch, mode, 0.8, eval_gen())
            if now < first / 10:
                break
    assert now < first / 10, f"{mode}: {first.item():.4f} -> {now.item():.4f}"


@pytest.mark.parametrize("mode", TASK_MODES)
def test_each_mode_overfits_a_tiny_batch(mode, tiny_cfg):
    _assert_overfits(tiny_cfg, mode)


@pytest.mark.parametrize("fast", [True, False])
def test_predict_action_never_runs_video_head(tiny_ckpt, fast):
    policy = load_policy(tiny_ckpt, fast=fast)
    calls = {"video": 0, "action": 0}
    policy.model.video_head.denoiser.register_forward_hook(lambda *a: calls.__setitem__("video", calls["video"] + 1))
    policy.model.action_head.denoiser.register_forward_hook(lambda *a: calls.__setitem__("action", calls["action"] + 1))
    chunk = policy.predict_action(random_obs(policy.cfg))
    assert chunk.shape == (policy.cfg.horizon, policy.cfg.action_dim)
    assert np.isfinite(chunk).all()
    # the fast path runs the action head as one traced graph (uva.fastpath.ActionSampler),
    # which module hooks do not see; the reference path calls the denoiser once per step
    assert calls["video"] == 0
    assert calls["action"] == (0 if policy.action_sampler.traced is not None
                               else policy.cfg.action_inference_steps)
    policy.predict_video(random_obs(policy.cfg))
    assert calls["video"] > 0  # the hook does observe the video head when it runs


def test_action_temperature_zero_makes_chunks_seed_independent(tiny_ckpt):
    """At temperature 0 DDIM starts every chunk from zero noise, so the seed no longer matters
    (the chunk is the head's mode estimate); at the trained 1.0 different seeds differ."""
    policy = load_policy(tiny_ckpt)
    obs = random_obs(policy.cfg)
    a, b = (policy.predict_action(obs, seed=s) for s in (0, 1))
    assert not np.allclose(a, b)
    policy.cfg.action_temperature = 0.0
    a, b = (policy.predict_action(obs, seed=s) for s in (0, 1))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="action_temperature"):
        UVAConfig(action_temperature=-0.5)


def test_forward_dynamics_depends_on_actions(tiny_cfg, tmp_path):
    from uva.checkpoint import random_checkpoint
    random_checkpoint(tmp_path / "c", tiny_cfg, seed=3)
    policy = load_policy(tmp_path / "c")
    # AdaLN gates start at zero (the head ignores its condition until trained): give them
    # values so the test checks the action -> transformer -> head wiring
    with torch.no_grad():
        for p in policy.model.video_head.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    obs = random_obs(policy.cfg)
    a0 = np.zeros((policy.cfg.horizon, policy.cfg.action_dim))
    a1 = np.ones((policy.cfg.horizon, policy.cfg.action_dim))
    f0 = policy.predict_video(obs, actions=a0, seed=0)
    f0_again = policy.predict_video(obs, actions=a0, seed=0)
    f1 = policy.predict_video(obs, actions=a1, seed=0)
    assert f0.shape == (policy.cfg.n_frames, policy.cfg.image_size, policy.cfg.image_size, 3)
    assert f0.dtype == np.uint8
    assert np.array_equal(f0, f0_again)
    assert np.abs(f0.astype(int) - f1.astype(int)).mean() > 0.5


def test_sample_video_unmasks_every_future_token_on_the_model(tiny_cfg):
    """MAR sampling lives on the model: one window in, future latents in the same layout out
    (the video head samples once per unmasking pass), reproducible from the generator;
    predict_video decodes exactly what it samples."""
    from uva.policy import UVAPolicy
    from uva.normalizer import MinMaxNormalizer
    torch.manual_seed(0)
    model = UVAModel(tiny_cfg).eval()
    cfg = tiny_cfg
    hist = torch.randn(1, cfg.n_frames, cfg.vae_latent_channels, cfg.latent_size, cfg.latent_size)
    proprio = torch.rand(1, cfg.n_frames, cfg.proprio_dim)
    steps = []
    model.video_head.denoiser.register_forward_hook(lambda *a: steps.append(1))
    out = model.sample_video(hist, None, proprio, torch.Generator().manual_seed(3), 1.0)
    assert out.shape == hist.shape and torch.isfinite(out).all()
    assert len(steps) == cfg.video_unmask_iterations * cfg.video_inference_steps
    again = model.sample_video(hist, None, proprio, torch.Generator().manual_seed(3), 1.0)
    assert torch.equal(out, again)
    other = model.sample_video(hist, None, proprio, torch.Generator().manual_seed(4), 1.0)
    assert not torch.equal(out, other)
    with pytest.raises(ValueError, match="one window"):
        model.sample_video(hist.repeat(2, 1, 1, 1, 1), None, proprio.repeat(2, 1, 1))
    norms = {k: MinMaxNormalizer(np.zeros(2), np.ones(2)) for k in ("action", "proprio")}
    policy = UVAPolicy(model, cfg, norms)
    obs = random_obs(cfg)
    raw = policy.predict_video(obs, seed=5, anchored=False)
    from uva.vae import decode_latents
    latents = model.sample_video(policy.encode(obs["image"]), None,
                                 policy._proprio(obs["state"]), torch.Generator().manual_seed(5))
    assert np.array_equal(raw, decode_latents(model.vae, latents[0], cfg.latent_scale).numpy())


def test_anchored_video_shows_a_no_change_prediction_exactly_as_observed(tiny_ckpt, monkeypatch):
    policy = load_policy(tiny_ckpt)
    cfg = policy.cfg
    obs = random_obs(cfg)
    newest = policy.encode(obs["image"])[:, -1:]
    # make the model predict "nothing changes": every future latent = the newest observed one
    monkeypatch.setattr(policy.model, "untokenize", lambda tokens: newest.repeat(1, cfg.n_frames, 1, 1, 1))
    anchored = policy.predict_video(obs, seed=0)
    raw = policy.predict_video(obs, seed=0, anchored=False)
    observed = np.repeat(obs["image"][-1:], cfg.n_frames, 0)
    assert np.array_equal(anchored, observed)
    assert np.abs(raw.astype(int) - observed).mean() > 5  # the VAE error anchoring cancels
    recon = np.repeat(policy.reconstruct(obs["image"][-1:]), cfg.n_frames, 0)
    assert np.abs(raw.astype(int) - recon).max() <= 1  # batch-size rounding only


def test_latent_cache_encodes_only_new_frames(tiny_ckpt):
    policy = load_policy(tiny_ckpt)
    cfg = policy.cfg
    frames = np.random.default_rng(0).integers(0, 255, (6, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    state = np.zeros((cfg.n_frames, cfg.proprio_dim))
    policy.predict_action({"image": frames[0:2], "state": state})
    assert policy.frames_encoded == 2
    policy.predict_action({"image": frames[1:3], "state": state})
    assert policy.frames_encoded == 3  # only the newest frame was encoded
    padded = np.repeat(frames[5:6], cfg.n_frames, 0)  # episode start: the first frame repeated
    policy.predict_action({"image": padded, "state": state})
    assert policy.frames_encoded == 4  # encoded once


def test_checkpoint_roundtrip_identical_outputs(tiny_ckpt, tmp_path):
    from uva.checkpoint import load_checkpoint, save_checkpoint
    model, cfg, norms, _ = load_checkpoint(tiny_ckpt)
    save_checkpoint(tmp_path / "copy", model, cfg, norms)
    obs = random_obs(cfg)
    a = load_policy(tiny_ckpt).predict_action(obs, seed=7)
    b = load_policy(tmp_path / "copy").predict_action(obs, seed=7)
    c = load_policy(tmp_path / "copy").predict_action(obs, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not list((tmp_path / "copy").glob("*.tmp"))  # atomic writes leave no temp files


def test_corrupt_checkpoints_give_clear_errors(tiny_ckpt, tmp_path):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(tiny_ckpt, bad)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors.*(corrupt|sha256)"):
        load_policy(bad)
    shutil.rmtree(bad)
    shutil.copytree(tiny_ckpt, bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json.*not valid JSON"):
        load_policy(bad)
    shutil.rmtree(bad)
    shutil.copytree(tiny_ckpt, bad)
    import json
    meta = json.loads((bad / "config.json").read_text())
    meta["uva_config"]["width"] = 96
    (bad / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match"):
        load_policy(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_policy(tmp_path / "nowhere")


def test_bad_observations_raise_clear_errors(tiny_ckpt):
    policy = load_policy(tiny_ckpt)
    cfg = policy.cfg
    good = random_obs(cfg)
    with pytest.raises(ValueError, match="expected shape"):
        policy.predict_action({**good, "image": good["image"][:, :32, :32]})
    with pytest.raises(ValueError, match="expected shape"):
        policy.predict_action({**good, "image": np.concatenate([good["image"], good["image"][..., :1]], -1)})
    with pytest.raises(ValueError, match="uint8"):
        policy.predict_action({**good, "image": good["image"].astype(np.float32)})
    nan_state = good["state"].copy()
    nan_state[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        policy.predict_action({**good, "state": nan_state})
    with pytest.raises(ValueError, match="actions: expected shape"):
        policy.predict_video(good, actions=np.zeros((3, 2)))
