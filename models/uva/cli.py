"""`uva` command line: collect, train, eval, bench, replay-eval, viz. Each verb writes JSON."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .checkpoint import CheckpointError, atomic_write_json
from .data import DatasetError


def _threads(n: int | None) -> None:
    import torch
    if n:
        torch.set_num_threads(n)


def cmd_collect(a) -> dict:
    if not a.bag and not a.out:
        raise ValueError("collect needs --out (zarr) or --bag (rosbag2)")
    if a.bag:
        from .replay import write_expert_bag
        if a.env != "panda":
            raise ValueError("--bag recording is implemented for the panda env")
        return write_expert_bag(a.bag, a.episodes, a.seed if a.seed else 200000)
    if a.corrections_from:
        from .data import collect_corrections
        if not a.base:
            raise ValueError("--corrections-from needs --base (the demonstrations to extend)")
        summary = collect_corrections(a.env, a.corrections_from, a.episodes, a.out, a.base,
                                      seed=a.seed or 300000)
    else:
        from .data import collect
        summary = collect(a.env, a.episodes, a.out, image_size=a.image_size,
                          keep_failures=a.keep_failures, seed=a.seed, base=a.base,
                          workers=a.workers)
    atomic_write_json(Path(str(a.out) + ".json"), summary)
    return summary


def cmd_train(a) -> dict:
    from .train import TrainArgs, train
    overrides = json.loads(a.config) if a.config else {}
    steps = {"vae": a.vae_steps, "video": a.video_steps, "joint": a.joint_steps,
             "head": a.head_steps}
    args = TrainArgs(data=a.data, out=a.out, stage=a.stage, steps=steps, batch_size=a.batch_size,
                     lr=a.lr, ckpt_every=a.ckpt_every, eval_every=a.eval_every, seed=a.seed,
                     resume=a.resume, device=a.device, bf16=a.bf16, init=a.init,
                     vae_from=a.vae_from,
                     modes=a.modes.split(",") if a.modes else None, config_overrides=overrides,
                     max_minutes=a.max_minutes, keep_every=a.keep_every)
    return {"stages": train(args)}


def cmd_eval(a) -> dict:
    from .evaluate import evaluate, expert_success
    if a.expert or a.random:
        return {k: v for k, v in expert_success(a.env, a.episodes, a.out, a.seed, a.random).items()
                if k != "per_episode"}
    if not a.ckpt:
        raise ValueError("eval needs --ckpt (or --expert)")
    return evaluate(a.ckpt, a.env, a.episodes, a.out, seed=a.seed, device=a.device,
                    n_gifs=a.gifs, data=a.data, n_action_steps=a.action_steps,
                    action_temperature=a.action_temperature)


def cmd_bench(a) -> dict:
    from .bench import bench
    return bench(a.ckpt, a.out, device=a.device, repeats=a.repeats, cameras=a.cameras)


def cmd_viz(a) -> dict:
    from .viz import viz
    return viz(a.bag, a.out)


def cmd_replay_eval(a) -> dict:
    from .replay import replay_eval
    return replay_eval(a.bag, a.ckpt, a.out, mode=a.mode, topic_map=a.topics)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uva", description="Unified Video Action model tools")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    sub = p.add_subparsers(dest="verb", required=True)

    c = sub.add_parser("collect", help="roll out the scripted expert into a zarr replay buffer")
    c.add_argument("--env", required=True)
    c.add_argument("--episodes", type=int, required=True)
    c.add_argument("--out", default=None)
    c.add_argument("--image-size", type=int, default=64)
    c.add_argument("--keep-failures", action="store_true")
    c.add_argument("--seed", type=int, default=0, help="first episode seed")
    c.add_argument("--workers", type=int, default=1,
                   help="expert rollouts in this many processes (same buffer as one process)")
    c.add_argument("--bag", default=None,
                   help="instead of zarr, record the expert as a rosbag2 (mcap) at this path")
    c.add_argument("--corrections-from", default=None, metavar="CKPT",
                   help="DAgger: roll out this policy and label its states with the expert; "
                        "--out gets --base's demos plus these episodes")
    c.add_argument("--base", default=None,
                   help="a replay buffer that --out extends: --out gets its episodes followed by "
                        "the new expert demos (or --corrections-from episodes)")
    c.set_defaults(fn=cmd_collect)

    t = sub.add_parser("train", help="train VAE -> video -> joint (all five modes)")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--stage", default="all", choices=["vae", "video", "joint", "all", "head"],
                   help="'head' (only when named) refits the action head of --init on its frozen "
                        "policy/inverse-mode latents; --config may change action-head fields "
                        "(inverse_action_head: true splits off an inverse-dynamics head)")
    t.add_argument("--vae-steps", type=int, default=1500)
    t.add_argument("--video-steps", type=int, default=1000)
    t.add_argument("--joint-steps", type=int, default=4000)
    t.add_argument("--head-steps", type=int, default=5000)
    t.add_argument("--batch-size", type=int, default=32, help="global batch (split over ranks)")
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--ckpt-every", type=int, default=250)
    t.add_argument("--eval-every", type=int, default=250)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--device", default="cpu")
    t.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    t.add_argument("--init", default=None, help="checkpoint to start the stage from")
    t.add_argument("--vae-from", default=None, metavar="CKPT",
                   help="skip the vae stage: reuse CKPT's trained VAE under a fresh transformer "
                        "(--config may change transformer fields, e.g. patch_size)")
    t.add_argument("--modes", default=None,
                   help="comma-separated task modes for the joint stage (e.g. policy_model for "
                        "the UVA-action baseline), or for the head stage (policy_model, "
                        "inverse_model; default both)")
    t.add_argument("--config", default=None, help="JSON overrides of UVAConfig fields")
    t.add_argument("--max-minutes", type=float, default=None)
    t.add_argument("--keep-every", type=int, default=None,
                   help="also keep an EMA checkpoint every N steps (for score-vs-steps curves)")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="closed-loop rollouts + dynamics metrics")
    e.add_argument("--ckpt", default=None)
    e.add_argument("--expert", action="store_true", help="evaluate the scripted expert instead")
    e.add_argument("--random", action="store_true", help="evaluate a random policy instead")
    e.add_argument("--env", required=True)
    e.add_argument("--episodes", type=int, default=50,
                   help="closed-loop episodes; 0 with --data measures the dynamics metrics only")
    e.add_argument("--out", required=True)
    e.add_argument("--seed", type=int, default=100000, help="first evaluation seed")
    e.add_argument("--device", default="cpu")
    e.add_argument("--gifs", type=int, default=3)
    e.add_argument("--data", default=None, help="held-out demos for dynamics metrics")
    e.add_argument("--action-steps", type=int, default=None)
    e.add_argument("--action-temperature", type=float, default=None,
                   help="action head's starting-noise scale (default: the checkpoint's)")
    e.set_defaults(fn=cmd_eval)

    b = sub.add_parser("bench", help="latency breakdown of predict_action / predict_video, "
                       "fast vs reference path, with the machine it ran on")
    b.add_argument("--ckpt", default=None, help="default: a randomly initialised small model")
    b.add_argument("--cameras", type=int, default=1,
                   help="cameras of the random-init model (not with --ckpt)")
    b.add_argument("--out", default="outputs/bench.json")
    b.add_argument("--device", default="cpu")
    b.add_argument("--repeats", type=int, default=30)
    b.set_defaults(fn=cmd_bench)

    r = sub.add_parser("replay-eval", help="evaluate a checkpoint on a rosbag2 recording")
    r.add_argument("--bag", required=True)
    r.add_argument("--ckpt", required=True)
    r.add_argument("--out", default="outputs/replay")
    r.add_argument("--mode", default="offline", choices=["offline", "realtime"])
    r.add_argument("--topics", default=None, help="YAML/JSON file mapping topics to inputs")
    r.set_defaults(fn=cmd_replay_eval)
    v = sub.add_parser("viz", help="Foxglove-ready mcap + GIF (real vs predicted + action plot)")
    v.add_argument("--bag", required=True)
    v.add_argument("--out", default="outputs/viz")
    v.set_defaults(fn=cmd_viz)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _threads(args.threads)
    try:
        result = args.fn(args)
    except (DatasetError, CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"uva {args.verb}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
