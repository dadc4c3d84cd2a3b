"""Shipping a trained checkpoint: an fp16 copy of its weights plus the metrics it reached.

`metrics.json` holds the full evaluation summary of the shipped file (`uva eval` JSON, per-episode
rows dropped) and a short closed-loop check on fixed seeds that tests re-run to prove the shipped
file still behaves as measured. Used by `uva train --recipe` (ship stages) and
scripts/ship_checkpoint.py.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .fsutil import atomic_write_json

CHECK_SEEDS = (100000, 100001, 100002)
DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
LOCAL_PATH_KEYS = ("head_of", "vae_from", "correction_policy")
"""config.json fields naming paths of the training machine: not shipped."""


def save_shipped(ckpt: str | Path, out: str | Path, n_action_steps: int | None = None,
                 dtype: str = "fp16", action_inference_steps: int | None = None) -> int:
    """Write `ckpt`'s model to `out` in `dtype` (fp16 fits the repository's file-size cap), with
    `n_action_steps` (actions executed per chunk; the policy node and `uva eval` default to it)
    and `action_inference_steps` (DDIM steps of the action head) stored in its config. Neither
    changes a weight. Returns the stored n_action_steps."""
    if dtype not in DTYPES:
        raise ValueError(f"ship dtype '{dtype}': choose from {sorted(DTYPES)}")
    model, cfg, normalizers, meta = load_checkpoint(ckpt)
    changes = {k: v for k, v in (("n_action_steps", n_action_steps),
                                 ("action_inference_steps", action_inference_steps)) if v}
    if changes:
        cfg = dataclasses.replace(cfg, **changes)  # re-runs the config's checks
    for key in LOCAL_PATH_KEYS:  # where it was trained means nothing on another machine
        meta.pop(key, None)
    Path(out).mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, cfg, normalizers, meta, dtype=DTYPES[dtype])
    return cfg.n_action_steps


def write_metrics(out: str | Path, env_name: str, summary: dict | None,
                  check_seeds=CHECK_SEEDS, extra: dict | None = None) -> dict:
    """metrics.json beside the shipped file in `out`: `summary` (the `uva eval` JSON of that
    file, which must have executed the stored n_action_steps) and a check on `check_seeds`."""
    from . import load_policy
    from .envs import make_env_for
    from .rollout import rollout

    policy = load_policy(out, precision="fp32")
    n_exec = policy.cfg.n_action_steps
    if summary and summary["n_action_steps"] != n_exec:
        raise ValueError(f"the evaluation executed {summary['n_action_steps']} actions per chunk, "
                         f"the shipped config {n_exec}: ship with that n_action_steps")
    k_eval, k_file = (summary or {}).get("action_inference_steps"), policy.cfg.action_inference_steps
    if k_eval is not None and k_eval != k_file:
        raise ValueError(f"the evaluation sampled actions in {k_eval} DDIM steps, the shipped "
                         f"config in {k_file}: ship with that action_inference_steps")
    if summary:
        summary = {k: v for k, v in summary.items() if k != "per_episode"}
    metrics = {"eval": summary}
    if check_seeds:  # none for a file that only feeds a later stage
        env = make_env_for(env_name, policy.cfg.cameras)
        try:
            scores = [rollout(policy, env, s, n_exec)[0]["score"] for s in check_seeds]
        finally:
            env.close()
        metrics["check_3_seeds"] = {"seeds": list(check_seeds), "scores": scores,
                                    "n_action_steps": n_exec}
        metrics["check_open_loop"] = _open_loop(out, policy, env_name)
    metrics.update(extra or {})
    atomic_write_json(Path(out) / "metrics.json", metrics)
    return metrics


def _open_loop(out: str | Path, policy, env_name: str) -> dict:
    """The open-loop check (uva.checks) of the file in `out`; its predicted frames go to
    check_video.png beside it."""
    from PIL import Image
    from .checks import frames_to_strip, open_loop_check
    from .envs import make_env_for
    env = make_env_for(env_name, policy.cfg.cameras)
    try:
        check = open_loop_check(policy, env)
    finally:
        env.close()
    Image.fromarray(frames_to_strip(check.pop("frames"))).save(Path(out) / "check_video.png")
    return check


def store_open_loop_check(out: str | Path, env_name: str) -> dict:
    """(Re)compute the open-loop check of an already shipped directory into its metrics.json."""
    import json
    from . import load_policy
    path = Path(out) / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["check_open_loop"] = _open_loop(out, load_policy(out, precision="fp32"), env_name)
    atomic_write_json(path, metrics)
    return metrics["check_open_loop"]
