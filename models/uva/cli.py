"""`uva` command line: collect, train, eval, bench, replay-eval, viz. Each verb writes JSON.

Structure: `build_parser()` (one sub-parser per verb, each with its `fn`) and `main()`, the one
place errors are turned into exit codes: a user error (bad argument, file, dataset, checkpoint,
an existing --out) is one line `uva VERB: error: ...` naming what to fix, exit 2; anything else
is `uva VERB: internal error: ...`, exit 1 (UVA_DEBUG=1 shows the traceback). Argument ranges
are argparse types (`positive_int`, ...), so a bad value never reaches the code behind it.
Every verb writing --out refuses an existing one unless --overwrite (uva.fsutil), and its
result appears whole or not at all.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from .checkpoint import CheckpointError
from .data import DatasetError
from .fsutil import atomic_output, atomic_write_json, check_out


class UsageError(ValueError):
    """A command line that cannot work as given (exit 2)."""


USER_ERRORS = (DatasetError, CheckpointError, ValueError, OSError)
"""Errors about the user's input or environment: one line, exit 2 (ValueError covers
UsageError, OutPathError, BagError, JSON errors)."""


# ---------------------------------------------------------------------------- argument types
def _number(kind, test, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value
    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
nonneg_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0, "a number > 0")
nonneg_float = _number(float, lambda v: v >= 0, "a number >= 0")


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({e.msg} at column {e.colno}); pass an object such as "
            f"'{{\"width\": 128}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {type(value).__name__}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `uva VERB: error: argument --x: ... (see uva VERB -h)`."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _add_out(p: argparse.ArgumentParser, required: bool = False, default=None,
             help: str = "output path") -> None:
    p.add_argument("--out", required=required, default=default, help=help)
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out (only it; inputs are never touched)")


def _relocated(obj, staging: Path, final: str):
    """`obj` (a result) with mentions of the staging path replaced by the final one."""
    if isinstance(obj, str):
        return obj.replace(str(staging), final)
    if isinstance(obj, dict):
        return {k: _relocated(v, staging, final) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relocated(v, staging, final) for v in obj]
    return obj


def _threads(n: int | None) -> None:
    import torch
    if n:
        torch.set_num_threads(n)


def cmd_collect(a) -> dict:
    if not a.bag and not a.out:
        raise UsageError("collect needs --out (zarr) or --bag (rosbag2)")
    if a.bag:
        from .replay import write_expert_bag
        if a.env != "panda":
            raise UsageError("--bag recording is implemented for the panda env")
        with atomic_output(a.bag, a.overwrite, what="--bag") as staging:
            summary = write_expert_bag(str(staging), a.episodes, a.seed if a.seed else 200000)
        return _relocated(summary, staging, str(a.bag))
    inputs = (a.base, a.corrections_from)
    summary_path = Path(str(a.out) + ".json")  # part of collect's output, guarded with it
    check_out(a.out, a.overwrite, inputs)
    check_out(summary_path, a.overwrite, inputs, what="--out's summary")
    if a.corrections_from:
        from .collect import collect_corrections
        if not a.base:
            raise UsageError("--corrections-from needs --base (the demonstrations to extend)")
        summary = collect_corrections(a.env, a.corrections_from, a.episodes, a.out, a.base,
                                      seed=a.seed or 300000, overwrite=a.overwrite)
    else:
        from .collect import collect
        summary = collect(a.env, a.episodes, a.out, image_size=a.image_size,
                          keep_failures=a.keep_failures, seed=a.seed, base=a.base,
                          workers=a.workers, overwrite=a.overwrite,
                          cameras=a.cameras.split(",") if a.cameras else None)
    atomic_write_json(summary_path, summary)
    return summary


def cmd_train(a) -> dict:
    from .config import UVAConfig
    if a.recipe:
        from .recipe_run import run_recipe
        return run_recipe(a.recipe, a.out, device=a.device, budget=a.budget, dry_run=a.plan,
                          overwrite=getattr(a, "overwrite", False))
    if not a.data or not a.out:
        raise UsageError("train needs --data and --out (or --recipe FILE)")
    from .training import TrainArgs, train
    if a.resume and a.overwrite:
        raise UsageError("--resume continues the run in --out, --overwrite replaces it: pass one")
    overrides = a.config or {}
    try:
        UVAConfig.check_partial(overrides)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--config: {e}") from e
    steps = {"vae": a.vae_steps, "video": a.video_steps, "joint": a.joint_steps,
             "head": a.head_steps}
    args = TrainArgs(data=a.data, out=a.out, stage=a.stage, steps=steps, batch_size=a.batch_size,
                     lr=a.lr, ckpt_every=a.ckpt_every, eval_every=a.eval_every, seed=a.seed,
                     resume=a.resume, device=a.device, bf16=a.bf16, init=a.init,
                     vae_from=a.vae_from,
                     modes=a.modes.split(",") if a.modes else None, config_overrides=overrides,
                     max_minutes=a.max_minutes, keep_every=a.keep_every,
                     overwrite=a.overwrite)
    return {"stages": train(args)}


def cmd_eval(a) -> dict:
    from .evaluate import evaluate, expert_success
    if not (a.expert or a.random or a.ckpt):
        raise UsageError("eval needs --ckpt (or --expert / --random)")
    with atomic_output(a.out, a.overwrite, (a.ckpt, a.data)) as staging:
        if a.expert or a.random:
            result = {k: v for k, v in
                      expert_success(a.env, a.episodes, str(staging), a.seed, a.random).items()
                      if k != "per_episode"}
        else:
            result = evaluate(a.ckpt, a.env, a.episodes, str(staging), seed=a.seed,
                              device=a.device, n_gifs=a.gifs, data=a.data,
                              n_action_steps=a.action_steps,
                              action_temperature=a.action_temperature, precision=a.precision)
    return _relocated(result, staging, str(a.out))


def cmd_bench(a) -> dict:
    from .bench import bench
    with atomic_output(a.out, a.overwrite, (a.ckpt,)) as staging:
        result = bench(a.ckpt, str(staging), device=a.device, repeats=a.repeats,
                       cameras=a.cameras, precision=a.precision)
    return _relocated(result, staging, str(a.out))


def cmd_viz(a) -> dict:
    from .viz import viz
    with atomic_output(a.out, a.overwrite, (a.bag,)) as staging:
        result = viz(a.bag, str(staging))
    return _relocated(result, staging, str(a.out))


def cmd_replay_eval(a) -> dict:
    from .replay import replay_eval
    return replay_eval(a.bag, a.ckpt, a.out, mode=a.mode, topic_map=a.topics,
                       overwrite=a.overwrite)


def _add_precision(parser) -> None:
    from .fastpath import PRECISIONS
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="fast path's VAE encoder + policy transformer: auto = bf16 where "
                        "the CPU/GPU computes it natively, else fp32")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="uva", description="Unified Video Action model tools")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    sub = p.add_subparsers(dest="verb", required=True)

    c = sub.add_parser("collect", help="roll out the scripted expert into a zarr replay buffer")
    c.add_argument("--env", required=True)
    c.add_argument("--episodes", type=positive_int, required=True)
    _add_out(c, help="replay buffer (zarr) to write; its summary goes to OUT.json")
    c.add_argument("--image-size", type=positive_int, default=64)
    c.add_argument("--keep-failures", action="store_true")
    c.add_argument("--seed", type=nonneg_int, default=0, help="first episode seed")
    c.add_argument("--workers", type=positive_int, default=1,
                   help="expert rollouts in this many processes (same buffer as one process)")
    c.add_argument("--cameras", default=None, metavar="NAMES",
                   help="comma-separated cameras recorded as separate streams (panda: "
                        "scene,wrist); default the env's one scene camera")
    c.add_argument("--bag", default=None,
                   help="instead of zarr, record the expert as a rosbag2 (mcap) at this path "
                        "(--overwrite replaces an existing one)")
    c.add_argument("--corrections-from", default=None, metavar="CKPT",
                   help="DAgger: roll out this policy and label its states with the expert; "
                        "--out gets --base's demos plus these episodes")
    c.add_argument("--base", default=None,
                   help="a replay buffer that --out extends: --out gets its episodes followed by "
                        "the new expert demos (or --corrections-from episodes)")
    c.set_defaults(fn=cmd_collect)

    t = sub.add_parser("train", help="train VAE -> video -> joint (all five modes)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the stages --out already holds (only those directories)")
    t.add_argument("--recipe", default=None, metavar="FILE",
                   help="run a recipe's whole chain (configs/*.yaml: collect, train stages, eval, "
                        "ship) into --out (default runs/<recipe>), resuming where it stopped")
    t.add_argument("--budget", default=None,
                   help="with --recipe: a reduced budget the recipe defines (e.g. tiny)")
    t.add_argument("--plan", action="store_true",
                   help="with --recipe: print each stage and its status, run nothing")
    t.add_argument("--data", default=None, help="replay buffer (zarr); required without --recipe")
    t.add_argument("--out", default=None, help="run directory (one subdirectory per stage)")
    t.add_argument("--stage", default="all", choices=["vae", "video", "joint", "all", "head"],
                   help="'head' (only when named) refits the action head of --init on its frozen "
                        "policy/inverse-mode latents; --config may change action-head fields "
                        "(inverse_action_head: true splits off an inverse-dynamics head)")
    t.add_argument("--vae-steps", type=nonneg_int, default=1500)
    t.add_argument("--video-steps", type=nonneg_int, default=1000)
    t.add_argument("--joint-steps", type=nonneg_int, default=4000)
    t.add_argument("--head-steps", type=nonneg_int, default=5000)
    t.add_argument("--batch-size", type=positive_int, default=32,
                   help="global batch (split over ranks)")
    t.add_argument("--lr", type=positive_float, default=1e-4)
    t.add_argument("--ckpt-every", type=positive_int, default=250)
    t.add_argument("--eval-every", type=positive_int, default=250)
    t.add_argument("--seed", type=nonneg_int, default=0)
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out (an error if there is none)")
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
    t.add_argument("--config", type=json_object, default=None,
                   help="JSON object of UVAConfig field overrides")
    t.add_argument("--max-minutes", type=positive_float, default=None)
    t.add_argument("--keep-every", type=positive_int, default=None,
                   help="also keep an EMA checkpoint every N steps (for score-vs-steps curves)")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="closed-loop rollouts + dynamics metrics")
    e.add_argument("--ckpt", default=None)
    e.add_argument("--expert", action="store_true", help="evaluate the scripted expert instead")
    e.add_argument("--random", action="store_true", help="evaluate a random policy instead")
    e.add_argument("--env", required=True)
    e.add_argument("--episodes", type=nonneg_int, default=50,
                   help="closed-loop episodes; 0 with --data measures the dynamics metrics only")
    _add_out(e, required=True, help="directory for eval.json and GIFs")
    e.add_argument("--seed", type=nonneg_int, default=100000, help="first evaluation seed")
    e.add_argument("--device", default="cpu")
    e.add_argument("--gifs", type=nonneg_int, default=3)
    e.add_argument("--data", default=None, help="held-out demos for dynamics metrics")
    e.add_argument("--action-steps", type=positive_int, default=None)
    e.add_argument("--action-temperature", type=nonneg_float, default=None,
                   help="action head's starting-noise scale (default: the checkpoint's)")
    _add_precision(e)
    e.set_defaults(fn=cmd_eval)

    b = sub.add_parser("bench", help="latency breakdown of predict_action / predict_video, "
                       "fast vs reference path, with the machine it ran on")
    b.add_argument("--ckpt", default=None, help="default: a randomly initialised small model")
    b.add_argument("--cameras", type=positive_int, default=1,
                   help="cameras of the random-init model (not with --ckpt)")
    _add_out(b, default="outputs/bench.json", help="JSON file to write")
    b.add_argument("--device", default="cpu")
    b.add_argument("--repeats", type=positive_int, default=30)
    _add_precision(b)
    b.set_defaults(fn=cmd_bench)

    r = sub.add_parser("replay-eval", help="evaluate a checkpoint on a rosbag2 recording")
    r.add_argument("--bag", required=True)
    r.add_argument("--ckpt", required=True)
    _add_out(r, default="outputs/replay", help="report directory")
    r.add_argument("--mode", default="offline", choices=["offline", "realtime"])
    r.add_argument("--topics", default=None, help="YAML/JSON file mapping topics to inputs")
    r.set_defaults(fn=cmd_replay_eval)
    v = sub.add_parser("viz", help="Foxglove-ready mcap + GIF (real vs predicted + action plot)")
    v.add_argument("--bag", required=True)
    _add_out(v, default="outputs/viz", help="directory for the mcap and GIF")
    v.set_defaults(fn=cmd_viz)
    from .dataset.cli import add_parser as add_dataset_parser
    add_dataset_parser(sub)
    return p


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error, already printed on one line (2)
        return e.code if isinstance(e.code, int) else 2
    try:
        _threads(args.threads)
        result = args.fn(args)
    except KeyboardInterrupt:
        print(f"uva {args.verb}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if os.environ.get("UVA_DEBUG"):
            raise
        print(f"uva {args.verb}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if os.environ.get("UVA_DEBUG"):
            raise
        print(f"uva {args.verb}: internal error: {type(e).__name__}: {_one_line(e)} (please "
              f"report it with the command line; UVA_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
