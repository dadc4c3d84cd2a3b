"""Real time: the fast inference path computes what the reference path computes, `uva bench`
reports a breakdown with its machine, and the video node's back-off logic yields to the policy."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from uva import UVAConfig, UVAModel
from uva.fastpath import BF16_TOLERANCE, FAST_TOLERANCE, FrameEncoder, resolve_precision
from uva.heads import AdaLNDenoiser, DiffusionSampler
from uva.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
PUSHT = ROOT / "models/checkpoints/pusht"


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Random weights everywhere: a fresh head zero-initialises its modulations and output, so
    fast and reference would agree trivially."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize("steps", [10, 7, 1])
def test_ddim_coefficients_equal_scheduler_step(steps):
    sampler = DiffusionSampler(1000, steps)
    sch = sampler.sample_scheduler
    g = torch.Generator().manual_seed(steps)
    for (a, b), t in zip(sampler.ddim_coefficients(), sch.timesteps):
        x, eps = torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g)
        want = sch.step(eps, t, x, eta=0.0).prev_sample
        torch.testing.assert_close(a * x + b * eps, want, atol=1e-5, rtol=1e-5)
    # the last step lands on the data estimate: a = 1/sqrt(alpha_bar_t), as DDIM's x0 formula
    t_last = int(sch.timesteps[-1])
    a_last = sampler.ddim_coefficients()[-1][0]
    assert a_last == pytest.approx(sch.alphas_cumprod[t_last].item() ** -0.5, rel=1e-6)


@pytest.mark.parametrize("batch", [1, 5])
def test_fast_sampling_equals_reference(batch):
    torch.manual_seed(0)
    den = AdaLNDenoiser(16, 48, 64, 3)
    _randomise(den)
    sampler = DiffusionSampler(1000, 10)
    cond = torch.randn(batch, 48)
    for seed in range(3):
        ref = sampler.sample(den, cond, 16, torch.Generator().manual_seed(seed), 0.8, fast=False)
        fast = sampler.sample(den, cond, 16, torch.Generator().manual_seed(seed), 0.8, fast=True)
        assert (fast - ref).abs().max().item() < 2e-6 * (1 + ref.abs().max().item())  # relative
        assert ref.abs().max().item() > 0.1  # the denoiser moved the sample: not a trivial match
    # and a broken fast path would be seen: a different seed is far away
    other = sampler.sample(den, cond, 16, torch.Generator().manual_seed(99), 0.8, fast=True)
    assert (other - ref).abs().max().item() > 0.1


def test_traced_action_sampler_equals_the_eager_loop(tiny_cfg):
    """One traced graph for the whole head gives the fast loop's chunk (same noise) on a head
    with random weights, follows in-place weight changes, and steps aside when the DDIM step
    count changes or the batch is not 1."""
    from uva.fastpath import ActionSampler
    torch.manual_seed(0)
    head = UVAModel(tiny_cfg).eval().action_head
    _randomise(head, 3)
    sampler = ActionSampler(head, "cpu")
    assert sampler.traced is not None, sampler.reason
    z = torch.randn(1, tiny_cfg.n_tokens, tiny_cfg.width)
    g = lambda s: torch.Generator().manual_seed(s)
    with torch.inference_mode():
        for seed in range(3):
            want = head.sample(z, g(seed), 0.8, fast=True)
            got = sampler.sample(z, g(seed), 0.8)
            assert got.shape == want.shape == (1, tiny_cfg.horizon, tiny_cfg.action_dim)
            assert (got - want).abs().max().item() < FAST_TOLERANCE * (1 + want.abs().max().item())
            assert want.abs().max().item() > 0.1
        before = sampler.sample(z, g(0), 0.8)
        next(head.denoiser.parameters()).mul_(1.5)  # the graph reads the head's parameters
        changed = sampler.sample(z, g(0), 0.8)
        assert (changed - before).abs().max().item() > 1e-3
        assert torch.allclose(changed, head.sample(z, g(0), 0.8, fast=True), atol=1e-4)
        head.diffusion.sample_scheduler.set_timesteps(4)  # another step count: the eager loop
        assert torch.equal(sampler.sample(z, g(1), 0.8), head.sample(z, g(1), 0.8, fast=True))
        z2 = torch.randn(2, tiny_cfg.n_tokens, tiny_cfg.width)
        assert torch.equal(sampler.sample(z2, g(1), 0.8), head.sample(z2, g(1), 0.8, fast=True))


def test_frame_encoder_traced_equals_eager_and_falls_back(tiny_cfg, monkeypatch):
    torch.manual_seed(0)
    model = UVAModel(tiny_cfg).eval()
    frames = torch.randint(0, 256, (3, tiny_cfg.image_size, tiny_cfg.image_size, 3),
                           dtype=torch.uint8)
    enc = FrameEncoder(model.vae, tiny_cfg.image_size, tiny_cfg.latent_scale, "cpu")
    assert enc.fast, enc.reason
    with torch.inference_mode():
        ref = enc(frames, fast=False)
        got = enc(frames)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() < FAST_TOLERANCE
    assert ref.abs().max().item() > 1e-3

    def broken(*a, **k):
        raise RuntimeError("no TorchScript here")
    monkeypatch.setattr(torch.jit, "trace", broken)
    eager = FrameEncoder(model.vae, tiny_cfg.image_size, tiny_cfg.latent_scale, "cpu")
    assert not eager.fast and "no TorchScript here" in eager.reason
    with torch.inference_mode():
        assert torch.equal(eager(frames), ref)


def _action_span(policy) -> np.ndarray:
    """Environment units of the normalised range [-1, 1], per action dimension."""
    dim = policy.cfg.action_dim
    return policy.action_norm.unnormalize(np.ones(dim)) - policy.action_norm.unnormalize(-np.ones(dim))


@pytest.mark.parametrize("precision, tolerance", [("fp32", FAST_TOLERANCE),
                                                  ("bf16", BF16_TOLERANCE)])
def test_shipped_pusht_fast_path_matches_reference(precision, tolerance):
    """Same seed -> same chunk from the fast and the reference path of the shipped file, over a
    stream of control steps (cached history frames), within the precision's tolerance
    (normalised units); bf16 must also stay well inside what another noise seed moves."""
    fast, ref = load_policy(PUSHT, precision=precision), load_policy(PUSHT, fast=False)
    assert fast.fast and fast.frame_encoder.fast and not ref.fast
    assert fast.precision == precision and ref.precision == "fp32"
    cfg = fast.cfg
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (cfg.n_frames + 4, cfg.image_size, cfg.image_size, 3),
                          dtype=np.uint8)
    span = _action_span(fast)
    worst, spread = 0.0, 0.0
    for i in range(4):
        state = fast.proprio_norm.unnormalize(rng.uniform(-1, 1, (cfg.n_frames, cfg.proprio_dim)))
        obs = {"image": frames[i:i + cfg.n_frames], "state": state}
        a, b = fast.predict_action(obs, seed=i), ref.predict_action(obs, seed=i)
        worst = max(worst, float(np.abs((a - b) / span * 2).max()))  # in [-1, 1] units
        spread = max(spread, float(np.abs((a - ref.predict_action(obs, seed=i + 100))
                                          / span * 2).max()))
    assert worst < tolerance, worst
    assert spread > 1e-2  # seeds matter, so agreeing at equal seeds means something
    if precision == "bf16":
        assert worst > 1e-6  # it really ran in bf16
        assert worst < spread / 5, (worst, spread)
    assert fast.frames_encoded == ref.frames_encoded  # the latent cache works the same


def test_precision_resolution(monkeypatch):
    import uva.fastpath as fp
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")
    assert resolve_precision("bf16", "cpu", fast=False)[0] == "fp32"  # the reference is fp32
    assert resolve_precision("bf16", "cpu")[0] == "bf16"
    assert resolve_precision("fp32", "cpu")[0] == "fp32"
    monkeypatch.setattr(fp, "native_bf16", lambda device: True)
    assert resolve_precision("auto", "cpu") == ("bf16", "auto: cpu computes bf16 natively")
    monkeypatch.setattr(fp, "native_bf16", lambda device: False)
    assert resolve_precision("auto", "cpu")[0] == "fp32"


def test_bf16_policy_copies_only_the_backbone(tiny_ckpt):
    """The bf16 copy holds the fusion + transformer in bf16 (no VAE or heads: they stay fp32 and
    shared); switching fast off forgets the latents the bf16 encoder made."""
    policy = load_policy(tiny_ckpt, precision="bf16")
    backbone = policy.backbone.model
    assert backbone.vae is None and backbone.action_head is None and backbone.video_head is None
    assert {p.dtype for p in backbone.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in policy.model.parameters()} == {torch.float32}
    assert policy.frame_encoder.fast and policy.frame_encoder.dtype == torch.bfloat16
    assert load_policy(tiny_ckpt, precision="fp32").backbone is None
    cfg = policy.cfg
    obs = {"image": np.full((cfg.n_frames, cfg.image_size, cfg.image_size, 3), 9, np.uint8),
           "state": np.zeros((cfg.n_frames, cfg.proprio_dim))}
    policy.predict_action(obs, seed=0)
    assert len(policy._latent_cache) == 1
    policy.fast = False
    assert len(policy._latent_cache) == 0
    ref = load_policy(tiny_ckpt, fast=False).predict_action(obs, seed=0)
    np.testing.assert_allclose(policy.predict_action(obs, seed=0), ref, atol=1e-6)


def test_bf16_frame_encoder_within_tolerance(tiny_cfg):
    torch.manual_seed(0)
    model = UVAModel(tiny_cfg).eval()
    _randomise(model.vae, 1)
    frames = torch.randint(0, 256, (3, tiny_cfg.image_size, tiny_cfg.image_size, 3),
                           dtype=torch.uint8)
    enc = FrameEncoder(model.vae, tiny_cfg.image_size, tiny_cfg.latent_scale, "cpu",
                       dtype=torch.bfloat16)
    assert enc.fast, enc.reason
    with torch.inference_mode():
        ref, got = enc(frames, fast=False), enc(frames)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    err = (got - ref).abs().max().item()
    assert 0 < err < BF16_TOLERANCE * max(1.0, ref.abs().max().item()), err


def test_warm_up_keeps_the_cache(tiny_ckpt):
    policy = load_policy(tiny_ckpt)
    cfg = policy.cfg
    obs = {"image": np.full((cfg.n_frames, cfg.image_size, cfg.image_size, 3), 7, np.uint8),
           "state": np.zeros((cfg.n_frames, cfg.proprio_dim))}
    before = policy.predict_action(obs, seed=1)
    encoded = policy.frames_encoded
    policy.warm_up()
    assert policy.frames_encoded == encoded
    np.testing.assert_allclose(policy.predict_action(obs, seed=1), before, atol=1e-6)
    assert policy.frames_encoded == encoded  # the cached frame is still cached


@pytest.mark.parametrize("precision, tolerance", [("fp32", FAST_TOLERANCE),
                                                  ("bf16", BF16_TOLERANCE)])
def test_precached_history_frames_leave_one_encode_and_the_same_action(precision, tolerance):
    """A history frame encoded ahead (as the policy node does between chunks) is not encoded
    again, and the action is the one computed without it, within the fast path's tolerance."""
    cold, warm = load_policy(PUSHT, precision=precision), load_policy(PUSHT, precision=precision)
    cfg = cold.cfg
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 255, (cfg.n_frames, cfg.image_size, cfg.image_size, 3), np.uint8)
    obs = {"image": frames, "state": np.tile([250.0, 250.0], (cfg.n_frames, 1))}
    assert warm.precache(frames[:-1]) == cfg.n_frames - 1
    assert warm.precache(frames[:-1]) == 0  # already cached
    n0, n1 = cold.frames_encoded, warm.frames_encoded
    a, b = cold.predict_action(obs, seed=5), warm.predict_action(obs, seed=5)
    assert cold.frames_encoded - n0 == cfg.n_frames and warm.frames_encoded - n1 == 1
    scale = cold.action_norm.unnormalize(np.ones(cfg.action_dim)) - cold.action_norm.unnormalize(
        np.zeros(cfg.action_dim))
    assert np.abs((a - b) / scale).max() < tolerance


def test_bench_reports_breakdown_and_machine(tmp_path, tiny_ckpt):
    from uva.bench import bench
    out = tmp_path / "bench.json"
    r = bench(str(tiny_ckpt), str(out), repeats=2, precision="bf16")
    saved = json.loads(out.read_text())
    assert saved["precision"] == "bf16" and saved["fast_fp32_predict_action_ms"]["median"] > 0
    assert saved["machine"]["cpu"] and saved["machine"]["torch"] == torch.__version__
    assert saved["machine"]["torch_threads"] == torch.get_num_threads()
    for path in ("fast", "reference"):
        part = saved[path]
        for key in ("predict_action_ms", "predict_video_ms", "vae_encode_ms_per_frame",
                    "transformer_ms", "action_head_ms"):
            assert part[key]["median"] > 0 and part[key]["p95"] >= part[key]["min"]
        assert part["action_head_ms_per_step"] == pytest.approx(
            part["action_head_ms"]["median"] / saved["action_inference_steps"])
    assert r["fast_over_reference_predict_action"] > 0


def test_bench_cameras():
    from uva.bench import camera_config
    import dataclasses
    with pytest.raises(ValueError, match=">= 1"):
        camera_config(0)
    assert camera_config(1) == UVAConfig()
    if "cameras" in {f.name for f in dataclasses.fields(UVAConfig)}:
        assert camera_config(3).cameras == ["cam0", "cam1", "cam2"]
    else:
        with pytest.raises(ValueError, match="UVAConfig.cameras"):
            camera_config(2)


# ---------------------------------------------------------------- back-off (ROS-free)
def test_inference_clock_predicts_the_policy_window():
    from uva_policy.scheduling import InferenceClock
    clock = InferenceClock(guard_s=0.02, max_duty=1.0)
    assert not clock.policy_busy(0.0)  # nothing known yet: no reason to wait
    latency, period = 0.05, 0.4
    for k in range(5):  # inference k runs [k*period, k*period + latency], chunk at its end
        clock.on_chunk(k * period + latency)
    clock.on_latency(latency)
    assert clock.period() == pytest.approx(period)
    t0 = 5 * period  # the next inference starts here
    assert clock.policy_busy(t0 + 0.01) and clock.policy_busy(t0 + latency)
    assert clock.policy_busy(t0 - 0.01)  # inside the guard before the start
    assert not clock.policy_busy(t0 + latency + 0.05)
    assert not clock.policy_busy(t0 + period / 2)
    assert clock.policy_busy(t0 + period + 0.01)  # and the one after
    assert not clock.policy_busy(t0 + 10 * period)  # stale: the policy stopped publishing
    clock.on_latency(float("nan"))
    assert clock.latency == latency
    # chunks faster than the inference windows allow a gap: never wait (priority protects)
    fast = InferenceClock(guard_s=0.02)
    for k in range(5):
        fast.on_chunk(k * 0.05)
    assert not any(fast.policy_busy(0.2 + i * 0.01) for i in range(5))


def test_inference_clock_duty_cycle_backs_off():
    from uva_policy.scheduling import InferenceClock
    clock = InferenceClock(max_duty=0.3, duty_window_s=10.0)
    assert clock.may_start(0.0)
    clock.on_job(0.0, 2.0)
    assert clock.duty(2.0) == pytest.approx(0.2) and clock.may_start(2.0)
    clock.on_job(2.5, 4.0)  # 3.5 s of 10 s: above 30 %
    assert not clock.may_start(4.0) and clock.skipped == 1
    assert clock.may_start(12.5)  # the first job left the window
    with pytest.raises(ValueError):
        InferenceClock(max_duty=0.0)


def test_demote_thread_lowers_only():
    from uva_policy.scheduling import demote_thread
    result = {}

    def worker():  # a thread of its own: the test process keeps its priority
        demote_thread(5)
        result["after"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        demote_thread(1)  # never raises priority back
        result["again"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert result["after"] == max(5, before) and result["again"] == result["after"]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_demote_process_applies_to_every_thread():
    import subprocess
    import sys
    code = ("import os, threading, json\n"
            "t = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True); t.start()\n"
            "from uva_policy.scheduling import demote_process\n"
            "applied = demote_process(7, 1)\n"
            "nices = [os.getpriority(os.PRIO_PROCESS, int(i)) for i in os.listdir('/proc/self/task')]\n"
            "print(json.dumps({'applied': applied, 'nices': nices}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert r["applied"] == {"nice": max(7, os.nice(0)), "torch_threads": 1}
    assert len(r["nices"]) >= 2 and all(n >= 7 for n in r["nices"])


def test_freeze_heap_keeps_the_configured_heap_out_of_later_collections():
    """After freeze_heap a full collection skips everything alive at configure time, and a
    second configure collects what the first froze (a reconfigured node's old checkpoint)."""
    import gc
    import weakref
    from uva_policy.runtime import freeze_heap

    class Node:  # an object in a reference cycle: only the collector can free it
        pass

    try:
        old = Node()  # alive at configure time, e.g. the loaded checkpoint
        old.self = old
        gone = weakref.ref(old)
        freeze_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # torch, numpy and this test session's objects
        del old  # dropped later (a cleanup): a full collection does not even look at it
        gc.collect()
        assert gone() is not None and gc.get_freeze_count() == frozen
        freeze_heap()  # the next configure: unfrozen, collected, the living refrozen
        assert gone() is None
    finally:
        gc.unfreeze()


def test_reproducibility_checks_refuse_a_bf16_policy(tiny_ckpt):
    """The stored open-loop checks are fp32; a bf16 policy would fail them on its rounding."""
    from uva.checks import open_loop_check
    with pytest.raises(ValueError, match="precision='fp32'"):
        open_loop_check(load_policy(tiny_ckpt, precision="bf16"), env=None)


def test_paired_rollouts_pair_seeds_across_policies(tiny_ckpt):
    """The A/B helper behind the paired score tables: two loads of one policy play the same
    episodes (difference exactly 0, every episode identical), seed by seed."""
    from uva.evaluate import paired_rollouts
    out = paired_rollouts({"a": load_policy(tiny_ckpt), "b": load_policy(tiny_ckpt)}, "pusht",
                          episodes=2, first_seed=7, log=lambda _: None)
    assert out["reference"] == "a" and [r["seed"] for r in out["per_episode"]] == [7, 8]
    assert out["variants"]["b"]["identical_episodes"] == 2
    assert out["variants"]["b"]["paired_diff_vs_reference"] == 0.0
    for row in out["per_episode"]:
        assert row["a"] == row["b"] and 0.0 <= row["a"]["score"] <= 1.0


def test_paired_scores_pair_two_evaluations_on_their_common_seeds():
    from uva.evaluate import paired_scores
    ref = [{"seed": s, "score": v, "success": v > 0.9} for s, v in zip((1, 2, 3, 4), (0.2, 0.4, 1.0, 0.5))]
    other = [{"seed": s, "score": v, "success": v > 0.9} for s, v in zip((5, 4, 3, 2), (0.0, 0.7, 1.0, 0.6))]
    p = paired_scores(ref, other)  # seeds 2, 3, 4 in common; rows in any order
    assert p["episodes"] == 3 and p["seeds"] == [2, 4]
    assert p["reference"]["score"] == pytest.approx((0.4 + 1.0 + 0.5) / 3)
    assert p["paired_diff"] == pytest.approx((0.2 + 0.0 + 0.2) / 3)
    assert p["paired_diff_se"] == pytest.approx(np.std([0.2, 0.0, 0.2], ddof=1) / np.sqrt(3))
    assert p["identical_episodes"] == 1 and p["other"]["successes"] == 1
    with pytest.raises(ValueError, match="no seed"):
        paired_scores(ref, [{"seed": 9, "score": 0.0, "success": False}])
