"""`uva bench`: where the time of a control step goes, on which machine.

Measures, for the fast inference path and the eager reference path of the same checkpoint,
interleaved call by call (A B A B ...) so that a shared or throttled machine slows both alike:
predict_action (a real control step: one new frame, the others cached), its parts — VAE encode of
one frame, the transformer (policy-mode encoder + decoder), the action head (total and per DDIM
step) — and predict_video. Where the fast path runs in bf16 (uva.fastpath: auto on a CPU with
native bf16), predict_action is also timed with the fast path in fp32. It records the machine
(CPU model, cores, load, torch version and threads, device) and the precision beside the
numbers, so figures from different machines are not confused.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

from .checkpoint import random_checkpoint
from .config import UVAConfig
from .fsutil import atomic_write_json
from .policy import load_policy


def camera_config(n: int) -> UVAConfig:
    """The small default model with `n` cameras named cam0..cam{n-1} (n = 1: the default)."""
    if n < 1:
        raise ValueError(f"--cameras must be >= 1, got {n}")
    if n == 1:
        return UVAConfig()
    if "cameras" not in {f.name for f in dataclasses.fields(UVAConfig)}:
        raise ValueError("--cameras > 1 needs multi-camera models (UVAConfig.cameras), which "
                         "this version of uva does not have")
    return UVAConfig(cameras=[f"cam{i}" for i in range(n)])


def machine_info(device: str) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "device": device}
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def interleaved(fns: dict, repeats: int, device: str) -> dict[str, np.ndarray]:
    """Milliseconds per call of each fn, calls alternated A B, B A, ... after one warm-up each."""
    sync = (lambda: torch.cuda.synchronize(device)) if torch.device(device).type == "cuda" else (
        lambda: None)
    for fn in fns.values():
        fn()
    names, out = list(fns), {k: [] for k in fns}
    for r in range(repeats):
        for k in (names if r % 2 == 0 else names[::-1]):
            sync()
            t0 = time.perf_counter()
            fns[k]()
            sync()
            out[k].append((time.perf_counter() - t0) * 1000)
    return {k: np.array(v) for k, v in out.items()}


class _Stream:
    """Observations of a control-step stream: frames slide by one per step (the older ones are
    in the latent cache), random pixels and a fixed random state in the policy's ranges."""

    def __init__(self, policy, repeats: int, seed: int = 0):
        cfg = policy.cfg
        self.names, self.n, self.period = list(cfg.cameras), cfg.n_frames, repeats + 4
        rng = np.random.default_rng(seed)
        self.frames = {c: rng.integers(0, 255, (cfg.n_frames + self.period, cfg.image_size,
                                                cfg.image_size, 3), dtype=np.uint8)
                       for c in self.names}
        self.state = np.stack([policy.proprio_norm.unnormalize(rng.uniform(-1, 1, cfg.proprio_dim))
                               for _ in range(cfg.n_frames)])

    def __call__(self, i: int) -> dict:
        window = {c: f[i % self.period:i % self.period + self.n] for c, f in self.frames.items()}
        if len(self.names) == 1:
            return {"image": window[self.names[0]], "state": self.state}
        return {"images": window, "state": self.state}


def control_steps(policy, repeats: int):
    """(obs_at, control_step): obs_at(i) is the i-th observation of a control-step stream (one
    new frame per step); control_step(p) a zero-argument call of p.predict_action on the next
    one, for `interleaved`."""
    obs_at = _Stream(policy, repeats)

    def control_step(p):
        counter = iter(range(10**9))
        return lambda: p.predict_action(obs_at(next(counter)), seed=0)
    return obs_at, control_step


def compare_predict_action(policies: dict, repeats: int, device: str = "cpu") -> dict:
    """predict_action p50 / p95 ms of several policies of one architecture on the same
    control-step stream, calls alternated (A/B of an inference change on one machine)."""
    _, control_step = control_steps(next(iter(policies.values())), repeats)
    ms = interleaved({k: control_step(p) for k, p in policies.items()}, repeats, device)
    return {str(k): {"p50": float(np.median(v)), "p95": float(np.percentile(v, 95))}
            for k, v in ms.items()}


def _stats(ms: np.ndarray) -> dict:
    return {"median": float(np.median(ms)), "p95": float(np.percentile(ms, 95)),
            "min": float(ms.min())}


def bench(ckpt: str | None, out: str, device: str = "cpu", repeats: int = 30,
          cameras: int = 1, precision: str = "auto") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        if ckpt is None:
            random_checkpoint(tmp, camera_config(cameras))
            ckpt_used = f"random-init small model, {cameras} camera(s)"
        elif cameras != 1:
            raise ValueError("--cameras builds a random-init model; do not combine it with --ckpt")
        path = tmp if ckpt is None else ckpt
        policies = {"fast": load_policy(path, device, precision=precision),
                    "reference": load_policy(path, device, fast=False)}
        if policies["fast"].precision != "fp32":  # what the lower precision itself buys
            policies["fast_fp32"] = load_policy(path, device, precision="fp32")
        ckpt_used = ckpt if ckpt is not None else ckpt_used
    cfg, m = policies["fast"].cfg, policies["fast"].model
    names = list(getattr(cfg, "cameras", ["scene"]))
    obs_at, control_step = control_steps(policies["fast"], repeats)

    result = {"checkpoint": ckpt_used, "cameras": len(names), "machine": machine_info(device),
              "precision": policies["fast"].precision,
              "precision_reason": policies["fast"].precision_reason,
              "action_inference_steps": cfg.action_inference_steps,
              "video_inference_steps": cfg.video_inference_steps,
              "video_unmask_iterations": cfg.video_unmask_iterations}
    action = interleaved({k: control_step(p) for k, p in policies.items()}, repeats, device)

    fast = policies["fast"]
    with torch.inference_mode():
        proprio = fast._proprio(obs_at.state)
        latents = fast.encode(obs_at(0).get("images", obs_at(0).get("image")))
        z = m.policy_latent(latents, proprio)
        one = torch.from_numpy(obs_at.frames[names[0]][:1]).to(device)
        gen = lambda: torch.Generator().manual_seed(0)
        parts = {}
        for path_name, flag in (("fast", True), ("reference", False)):
            parts[f"vae_encode_{path_name}"] = lambda f=flag: fast.frame_encoder(one, f)
            parts[f"action_head_{path_name}"] = lambda f=flag: fast.action_sampler.sample(
                z, gen(), cfg.action_temperature, fast=f)
        backbone = fast.backbone or m
        parts["transformer_fast"] = lambda: backbone.policy_latent(latents, proprio)
        parts["transformer_reference"] = lambda: m.policy_latent(latents, proprio)
        part_ms = interleaved(parts, repeats, device)
    video = interleaved({k: (lambda p=p: p.predict_video(obs_at(0), seed=0))
                         for k, p in policies.items()}, max(repeats // 3, 1), device)

    for path_name in ("fast", "reference"):
        act = _stats(action[path_name])
        vid = _stats(video[path_name])
        head_ms = _stats(part_ms[f"action_head_{path_name}"])
        result[path_name] = {
            "predict_action_ms": act, "predict_video_ms": vid,
            "vae_encode_ms_per_frame": _stats(part_ms[f"vae_encode_{path_name}"]),
            "transformer_ms": _stats(part_ms[f"transformer_{path_name}"]),
            "action_head_ms": head_ms,
            "action_head_ms_per_step": head_ms["median"] / cfg.action_inference_steps,
            "video_over_action_ratio": vid["median"] / act["median"],
            "chunks_per_s": 1000.0 / act["median"]}
    result["fast"]["vae_encoder"] = "traced" if fast.frame_encoder.fast else (
        fast.frame_encoder.reason)
    result["fast"]["action_sampler"] = ("traced" if fast.action_sampler.traced is not None
                                        else fast.action_sampler.reason)
    result["fast_over_reference_predict_action"] = (
        result["fast"]["predict_action_ms"]["median"]
        / result["reference"]["predict_action_ms"]["median"])
    if "fast_fp32" in action:
        result["fast_fp32_predict_action_ms"] = _stats(action["fast_fp32"])
    count = lambda mod: 0 if mod is None else int(sum(p.numel() for p in mod.parameters()))
    heads = {"vae": count(m.vae), "video_head": count(m.video_head),
             "action_head": count(m.action_head),
             "inverse_action_head": count(m.inverse_action_head)}
    result["params"] = {"total": count(m), "transformer": count(m) - sum(heads.values()), **heads}
    atomic_write_json(out, result)
    print(summary(result), file=sys.stderr)  # stdout carries the JSON (cli)
    return result


def summary(r: dict) -> str:
    """A few lines for people: the machine, then fast vs reference per part (medians, ms)."""
    mi = r["machine"]
    lines = [f"{r['checkpoint']} on {mi['cpu']} ({mi['cpus_usable']} usable CPUs, load "
             f"{mi['load_avg_1m']:.1f}), torch {mi['torch']} x{mi['torch_threads']} threads, "
             f"{mi['device']}; fast path in {r.get('precision', 'fp32')}",
             f"{'median ms':<26}{'fast':>9}{'reference':>11}"]
    for key, label in [("predict_action_ms", "predict_action"), ("vae_encode_ms_per_frame",
                       "  VAE encode / frame"), ("transformer_ms", "  transformer"),
                       ("action_head_ms", "  action head"), ("predict_video_ms",
                       "predict_video")]:
        f, ref = r["fast"][key]["median"], r["reference"][key]["median"]
        lines.append(f"{label:<26}{f:>9.2f}{ref:>11.2f}")
    lines.append(f"predict_action p95          {r['fast']['predict_action_ms']['p95']:>9.2f}"
                 f"{r['reference']['predict_action_ms']['p95']:>11.2f}")
    if "fast_fp32_predict_action_ms" in r:
        lines.append(f"predict_action, fast path in fp32: "
                     f"{r['fast_fp32_predict_action_ms']['median']:.2f}")
    lines.append(f"fast / reference {r['fast_over_reference_predict_action']:.2f}; video / action "
                 f"{r['fast']['video_over_action_ratio']:.1f}x")
    return "\n".join(lines)
