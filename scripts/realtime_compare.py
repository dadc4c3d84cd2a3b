"""Before vs after, side by side in one process: predict_action / predict_video latency and
paired closed-loop scores of the shipped checkpoints, today's fast path against the code of
commit 616c1d1 (the inference path before the fast path existed; `--before COMMIT` for another),
extracted from git into a temporary package `uva_before`, so "before" is that exact code, not a
re-implementation.

Latency calls alternate A B, B A, ... (a shared machine slows both alike; the ratio is what
carries over). Rollouts are paired: the same env seed and torch seed for both, so score
differences are the inference path's, not the seed draw's. A benchmark, not a test.

    python scripts/realtime_compare.py --ckpt models/checkpoints/pusht --env pusht \
        --ckpt models/checkpoints/panda --env panda --episodes 20 --out outputs/realtime/compare.json
"""
from __future__ import annotations

import argparse
import importlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "616c1d1"


def import_before(tmp: Path, commit: str = BEFORE):
    """models/uva at `commit` as the package `uva_before` (all its imports are relative)."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "models/uva"],
                         capture_output=True, check=True).stdout
    tarfile.open(fileobj=io.BytesIO(tar)).extractall(tmp)
    (tmp / "models/uva").rename(tmp / "uva_before")
    sys.path.insert(0, str(tmp))
    return importlib.import_module("uva_before")


def latency(before, after, repeats: int, seed: int = 0) -> dict:
    from uva.bench import interleaved
    cfg = after.cfg
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (cfg.n_frames + repeats + 4, cfg.image_size, cfg.image_size, 3),
                          dtype=np.uint8)
    state = after.proprio_norm.unnormalize(rng.uniform(-1, 1, (cfg.n_frames, cfg.proprio_dim)))
    obs = lambda i: {"image": frames[i:i + cfg.n_frames], "state": state}

    def step(policy):
        counter = iter(range(10**9))
        return lambda: policy.predict_action(obs(next(counter) % (repeats + 4)), seed=0)
    act = interleaved({"before": step(before), "after": step(after)}, repeats, "cpu")
    vid = interleaved({"before": lambda: before.predict_video(obs(0), seed=0),
                       "after": lambda: after.predict_video(obs(0), seed=0)},
                      max(repeats // 4, 4), "cpu")
    stats = lambda ms: {"p50": float(np.median(ms)), "p95": float(np.percentile(ms, 95))}
    out = {k: {"predict_action_ms": stats(act[k]), "predict_video_ms": stats(vid[k])}
           for k in ("before", "after")}
    for k in out:
        out[k]["video_over_action"] = (out[k]["predict_video_ms"]["p50"]
                                       / out[k]["predict_action_ms"]["p50"])
    out["after_over_before_p50"] = (out["after"]["predict_action_ms"]["p50"]
                                    / out["before"]["predict_action_ms"]["p50"])
    # paired ratio per call pair: robust to load drifting during the run
    out["after_over_before_paired_median"] = float(np.median(act["after"] / act["before"]))
    diffs = [np.abs(before.predict_action(obs(i), seed=i) - after.predict_action(obs(i), seed=i)
                    ).max() for i in range(4)]
    out["max_abs_action_diff_env_units"] = float(max(diffs))
    return out


class OneCameraConfig:
    """The config of a policy from before cameras existed, seen with the camera fields today's
    rollout loop reads (that code had one camera, named like today's default)."""

    def __init__(self, cfg):
        self._cfg = cfg

    def __getattr__(self, name):
        if name == "n_cameras":
            return 1
        if name == "cameras":
            return ["scene"]
        return getattr(self._cfg, name)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", action="append", required=True)
    ap.add_argument("--env", action="append", required=True, help="one per --ckpt")
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--episodes", type=int, default=0, help="paired rollouts per checkpoint")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--before", default=BEFORE, help="commit whose models/uva is 'before'")
    ap.add_argument("--out", default="outputs/realtime/compare.json")
    a = ap.parse_args()
    if len(a.ckpt) != len(a.env):
        ap.error("give one --env per --ckpt")
    torch.set_num_threads(a.threads)
    from uva import load_policy
    from uva.bench import machine_info
    from uva.evaluate import paired_rollouts
    result = {"machine": machine_info("cpu"), "before_commit": a.before, "checkpoints": {}}
    with tempfile.TemporaryDirectory() as tmp:
        uva_before = import_before(Path(tmp), a.before)
        for ckpt, env_name in zip(a.ckpt, a.env):
            before, after = uva_before.load_policy(ckpt), load_policy(ckpt)
            if not hasattr(before.cfg, "n_cameras"):
                before.cfg = OneCameraConfig(before.cfg)
            after.warm_up()
            before.predict_action({"image": np.zeros((before.cfg.n_frames, before.cfg.image_size,
                                                      before.cfg.image_size, 3), np.uint8),
                                   "state": np.zeros((before.cfg.n_frames,
                                                      before.cfg.proprio_dim))})
            entry = {"env": env_name, "latency": latency(before, after, a.repeats)}
            print(ckpt, json.dumps(entry["latency"], indent=1), flush=True)
            if a.episodes:
                entry["scores"] = paired_rollouts({"before": before, "after": after}, env_name,
                                                  a.episodes)
            result["checkpoints"][ckpt] = entry
    result["machine_end_load_avg_1m"] = machine_info("cpu")["load_avg_1m"]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
