"""A real peer for UVA: LeRobot's Diffusion Policy trained on exactly our demos (same replay
buffer, same train/validation episodes) and scored by our evaluator (`uva.rollout.rollout`, the
same seeds, latency measured in the same run). Runs in the peer's venv (`make peer-setup`):

    .venv-lerobot/bin/python experiments/lerobot_peer/run.py train --data data/pusht.zarr \\
        --out runs/lerobot_dp --minutes 40 --steps 20000
    .venv-lerobot/bin/python experiments/lerobot_peer/run.py eval \\
        --ckpt runs/lerobot_dp --episodes 100 --first-seed 200000 --out outputs/peer_eval.json
    uva eval --env pusht --ckpt models/checkpoints/pusht --episodes 100 --seed 200000 \\
        --action-steps 4 --out outputs/uva_fresh
    .venv-lerobot/bin/python experiments/lerobot_peer/run.py table \\
        --row UVA=outputs/uva_fresh/eval.json --row "LeRobot DP=outputs/peer_eval.json"

The same on the Panda: `train --data` a Panda buffer (`uva collect --env panda`); `eval` plays the
env the demos came from (its train_info.json), or --env.

`train` stops at --steps or when the run's training wall time (summed over --resume
continuations) reaches --minutes; it checkpoints every --ckpt-every steps in LeRobot's layout
(checkpoints/<step>/pretrained_model: save_pretrained's config.json + model.safetensors;
training_state/: optimiser, scheduler, RNG; checkpoints/last -> the newest).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert import TrainWindows, dataset_stats  # noqa: E402

TRAIN_INFO = "train_info.json"
CLIP_GRAD_NORM = 10.0  # LeRobot's TrainPipelineConfig default


def versions() -> dict:
    import importlib.metadata as md
    return {p: md.version(p) for p in ("lerobot", "torch", "torchvision", "diffusers")}


def validation_loss(policy, windows: TrainWindows, batch_size: int, device, batches: int = 4) -> float:
    """Mean diffusion loss on held-out episodes (centre crop), RNG forked so that training's
    random stream is the same with or without it."""
    was_training = policy.training
    policy.eval()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        losses = [policy.forward({k: v.to(device) for k, v in windows.batch(
            rng.choice(windows.frames, min(batch_size, len(windows)), replace=False)).items()})[0].item()
            for _ in range(batches)]
    policy.train(was_training)
    return float(np.mean(losses))


def train(args) -> dict:
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from lerobot.utils.train_utils import (get_step_checkpoint_dir, load_training_state,
                                           save_training_state, update_last_checkpoint)
    from peer import make_config, stats_tensors
    from uva.bench import machine_info
    from uva.data import read_replay_buffer
    from uva.fsutil import atomic_write_json

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    last = out / "checkpoints" / "last"
    if out.exists() and not args.resume and not args.overwrite:
        raise SystemExit(f"{out} exists: --resume it or --overwrite")
    if out.exists() and args.overwrite and not args.resume:
        shutil.rmtree(out)
    buf = read_replay_buffer(args.data)
    train_eps, val_eps = buf.train_val_episodes()
    info = {"data": str(args.data), "env": buf.attrs.get("env", "pusht"),
            "train_episodes": train_eps, "val_episodes": val_eps,
            "steps": 0, "wall_s": 0.0, "device": args.device, "batch_size": args.batch_size,
            "threads": args.threads, "max_steps": args.steps, "max_minutes": args.minutes}
    if args.resume and last.exists():
        info = json.loads((last / "pretrained_model" / TRAIN_INFO).read_text())
        if info["data"] != str(args.data) or info["batch_size"] != args.batch_size:
            raise SystemExit(f"--resume with other data/batch size than {last}'s")
        info.update({"max_steps": args.steps, "max_minutes": args.minutes, "threads": args.threads})
        config = PreTrainedConfig.from_pretrained(str(last / "pretrained_model"))
        config.device = args.device
        policy = DiffusionPolicy.from_pretrained(str(last / "pretrained_model"), config=config,
                                                 strict=True)
    else:
        config = make_config(buf.img.shape[1:3], buf.state.shape[1], buf.action.shape[1],
                             crop=args.crop, down_dims=args.down_dims,
                             noise_scheduler=args.noise_scheduler,
                             inference_steps=args.inference_steps, device=args.device)
        torch.manual_seed(args.seed)
        policy = DiffusionPolicy(config, dataset_stats=stats_tensors(dataset_stats(buf, train_eps)))
    policy.to(args.device).train()
    windows = TrainWindows(buf, train_eps, config.n_obs_steps, config.horizon, config.drop_n_last_frames)
    val_windows = TrainWindows(buf, val_eps, config.n_obs_steps, config.horizon, config.drop_n_last_frames)
    # the sample layout LeRobot's dataset would build for this config
    assert windows.obs_deltas.tolist() == config.observation_delta_indices
    assert windows.action_deltas.tolist() == config.action_delta_indices
    optimizer = config.get_optimizer_preset().build(policy.get_optim_params())
    scheduler = config.get_scheduler_preset().build(optimizer, args.steps)
    step = 0
    if args.resume and last.exists():
        step, optimizer, scheduler = load_training_state(last, optimizer, scheduler)
    n_params = sum(p.numel() for p in policy.parameters())
    print(f"LeRobot DiffusionPolicy {n_params / 1e6:.1f}M params, {len(windows)} training samples "
          f"({len(train_eps)} episodes, {len(val_eps)} held out), step {step}/{args.steps}, "
          f"budget {args.minutes} min ({info['wall_s'] / 60:.1f} used)", flush=True)
    budget_s, wall0, start_step = args.minutes * 60, info["wall_s"], step
    t0 = time.perf_counter()

    def save(step: int) -> None:
        ckpt = get_step_checkpoint_dir(out, args.steps, step)
        policy.save_pretrained(ckpt / "pretrained_model")
        save_training_state(ckpt, step, optimizer, scheduler)
        run_s = time.perf_counter() - t0
        info.update({"steps": step, "wall_s": wall0 + run_s, "device": args.device,
                     "step_time_s": run_s / max(step - start_step, 1), "versions": versions(),
                     "n_params": n_params, "machine": machine_info(args.device),
                     "val_loss": validation_loss(policy, val_windows, args.batch_size, args.device)})
        atomic_write_json(ckpt / "pretrained_model" / TRAIN_INFO, info)
        update_last_checkpoint(ckpt)

    bar = tqdm(total=args.steps, initial=step, desc="train LeRobot DP", unit="step")
    while step < args.steps and wall0 + time.perf_counter() - t0 < budget_s:
        idx = windows.frames[torch.randint(len(windows), (args.batch_size,)).numpy()]
        batch = {k: v.to(args.device, non_blocking=True) for k, v in windows.batch(idx).items()}
        loss, _ = policy.forward(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), CLIP_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
        if step % args.ckpt_every == 0:
            save(step)
    bar.close()
    if step > start_step and step % args.ckpt_every:
        save(step)
    print(json.dumps({k: info[k] for k in ("steps", "wall_s", "step_time_s", "val_loss")
                      if k in info}), flush=True)
    return info


def stderr(values) -> float:
    values = np.asarray(values, np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def evaluate(args) -> dict:
    from peer import load_peer
    from uva.bench import machine_info
    from uva.envs import make_env
    from uva.fsutil import atomic_write_json
    from uva.rollout import rollout

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise SystemExit(f"{out} exists (--overwrite to replace it)")
    peer = load_peer(args.ckpt, args.device, noise_scheduler=args.noise_scheduler,
                     inference_steps=args.inference_steps)
    ckpt = peer.path
    n_exec = args.action_steps or peer.cfg.n_action_steps
    train_info_file = ckpt / TRAIN_INFO
    trained = json.loads(train_info_file.read_text()) if train_info_file.is_file() else {}
    env_name = args.env or trained.get("env", "pusht")  # the env its demos came from
    env = make_env(env_name)
    rows = []
    for seed in tqdm(range(args.first_seed, args.first_seed + args.episodes), desc="eval LeRobot DP",
                     unit="ep"):
        res, _ = rollout(peer, env, seed, n_exec)
        rows.append(res)
    env.close()
    lat = np.concatenate([r.pop("latency_s") for r in rows]) * 1000
    chunk = np.asarray(peer.chunk_latency_s) * 1000
    pc = peer.policy.config
    summary = {
        "policy": "LeRobot DiffusionPolicy", "ckpt": str(ckpt), "env": env_name,
        "episodes": args.episodes, "first_seed": args.first_seed, "n_action_steps": n_exec,
        "score": float(np.mean([r["score"] for r in rows])),
        "score_se": stderr([r["score"] for r in rows]),
        "success_rate": float(np.mean([r["success"] for r in rows])),
        "predict_action_ms_p50": float(np.percentile(lat, 50)),
        "predict_action_ms_p95": float(np.percentile(lat, 95)),
        "predict_action_chunk_ms_p50": float(np.percentile(chunk, 50)),
        "predict_action_chunk_ms_p95": float(np.percentile(chunk, 95)),
        "inference": {"noise_scheduler": pc.noise_scheduler_type,
                      "denoising_steps": peer.policy.diffusion.num_inference_steps,
                      "crop": list(pc.crop_shape), "down_dims": list(pc.down_dims)},
        "training": {k: trained.get(k) for k in ("steps", "wall_s", "device", "batch_size",
                                                 "threads", "data", "val_loss", "n_params")},
        "training_steps": trained.get("steps"),
        "machine": machine_info(args.device), "versions": versions(), "per_episode": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, summary)
    print(json.dumps({k: summary[k] for k in ("score", "score_se", "success_rate",
                                              "predict_action_ms_p50", "predict_action_ms_p95")}))
    return summary


def table_rows(named: list[str]) -> str:
    """A markdown table of evaluation JSONs (`uva eval`'s eval.json or this script's eval)."""
    lines = ["| policy | seeds | score ± s.e. | success | predict_action p50 / p95 (ms) | "
             "actions run per chunk | sampler | training | machine |",
             "|---|---|---|---|---|---|---|---|---|"]
    for item in named:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"--row wants NAME=PATH, got {item!r}")
        r = json.loads(Path(path).read_text())
        scores = [e["score"] for e in r["per_episode"]]
        se = r.get("score_se", stderr(scores))
        t = r.get("training") or {}
        trained = f"{r.get('training_steps') or '?'} steps"
        if t.get("wall_s"):
            trained += f", {t['wall_s'] / 60:.0f} min on {t.get('device', '?')}"
        m = r.get("machine") or {}
        inf = r.get("inference") or {}
        sampler = f"{inf['noise_scheduler']} {inf['denoising_steps']}" if inf else "—"
        lines.append(f"| {name} | {r['first_seed']}–{r['first_seed'] + r['episodes'] - 1} | "
                     f"{np.mean(scores):.3f} ± {se:.3f} | {r['success_rate']:.0%} | "
                     f"{r['predict_action_ms_p50']:.0f} / {r['predict_action_ms_p95']:.0f} | "
                     f"{r['n_action_steps']} | {sampler} | {trained} | {m.get('cpu', '?')}, {m.get('torch_threads', '?')} threads |")
    return "\n".join(lines)


def paired(args) -> dict:
    """Two policies on the seeds both played, paired seed by seed (uva.evaluate.paired_scores):
    each side may be several evaluation JSONs (e.g. two 50-seed blocks), read as one."""
    from uva.evaluate import paired_scores
    from uva.fsutil import atomic_write_json

    def side(item: str):
        name, _, paths = item.partition("=")
        if not paths:
            raise SystemExit(f"want NAME=EVAL_JSON[,EVAL_JSON...], got {item!r}")
        runs = [json.loads(Path(p).read_text()) for p in paths.split(",")]
        return name, [row for r in runs for row in r["per_episode"]], runs

    (ref_name, ref_rows, ref_runs), (oth_name, oth_rows, oth_runs) = side(args.reference), side(args.other)
    result = {"names": {"reference": ref_name, "other": oth_name},
              "difference_of": f"{oth_name} - {ref_name}", **paired_scores(ref_rows, oth_rows),
              "predict_action_ms_p50": {ref_name: [r.get("predict_action_ms_p50") for r in ref_runs],
                                        oth_name: [r.get("predict_action_ms_p50") for r in oth_runs]}}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(args.out), result)
    print(json.dumps(result, indent=1))
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train LeRobot's Diffusion Policy on a uva replay buffer")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, default=40.0, help="training wall-time budget")
    t.add_argument("--steps", type=int, default=20000, help="steps (also the cosine schedule's length)")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--device", default="cpu")
    t.add_argument("--ckpt-every", type=int, default=1000)
    t.add_argument("--resume", action="store_true", help="continue from checkpoints/last")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--crop", type=int, default=56, help="random crop in training, centre at inference")
    t.add_argument("--down-dims", type=int, nargs="+", default=[512, 1024, 2048],
                   help="U-Net widths; LeRobot's default (263M params, ~14 s/step on one CPU "
                        "thread); on a CPU use 64 128 256 (16M, ~0.9 s/step)")
    t.add_argument("--noise-scheduler", choices=["DDPM", "DDIM"], default="DDPM")
    t.add_argument("--inference-steps", type=int, default=None,
                   help="denoising steps at inference (default: all 100 training timesteps)")
    e = sub.add_parser("eval", help="our closed-loop evaluator on fixed seeds")
    e.add_argument("--ckpt", required=True, help="run dir, checkpoint dir or pretrained_model dir")
    e.add_argument("--env", default=None,
                   help="pusht or panda (default: the env of the demos it was trained on)")
    e.add_argument("--episodes", type=int, default=100)
    e.add_argument("--first-seed", type=int, default=200000)
    e.add_argument("--action-steps", type=int, default=None, help="default: the policy's 8")
    e.add_argument("--out", required=True, help="JSON file")
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--device", default="cpu")
    e.add_argument("--overwrite", action="store_true")
    e.add_argument("--noise-scheduler", choices=["DDPM", "DDIM"], default=None,
                   help="sample with another scheduler than the checkpoint's config names")
    e.add_argument("--inference-steps", type=int, default=None,
                   help="denoising steps (default: the checkpoint's; LeRobot's PushT: all 100)")
    tb = sub.add_parser("table", help="markdown table of evaluation JSONs")
    tb.add_argument("--row", action="append", required=True, metavar="NAME=EVAL_JSON")
    pr = sub.add_parser("paired", help="two policies' scores paired seed by seed")
    pr.add_argument("--reference", required=True, metavar="NAME=EVAL_JSON[,EVAL_JSON...]")
    pr.add_argument("--other", required=True, metavar="NAME=EVAL_JSON[,EVAL_JSON...]")
    pr.add_argument("--out", default=None, help="write the result here (JSON)")
    args = p.parse_args(argv)
    if args.cmd == "train":
        train(args)
    elif args.cmd == "eval":
        evaluate(args)
    elif args.cmd == "paired":
        paired(args)
    else:
        print(table_rows(args.row))


if __name__ == "__main__":
    main()
