"""`uva train`: check the request, then run the asked stage(s) in order under the run lock."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

from ..checkpoint import CheckpointError
from ..config import TASK_MODES
from ..data import read_replay_buffer
from ..fsutil import atomic_write_json
from ..normalizer import MinMaxNormalizer
from ..rundir import RunLock, check_run, clear_stages
from .args import HEAD_STAGE, STAGES, TrainArgs
from .checks import ACTION_HEAD_FIELDS, check_overrides_fit, fresh_config
from .distributed import DistInfo, init_distributed
from .head_refit import HEAD_MODES, train_head
from .stages import train_transformer, train_vae, vae_stage_from


def train(args: TrainArgs) -> dict:
    """Run the requested stage(s); returns {stage: final checkpoint path}."""
    if args.stage not in STAGES + ("all", HEAD_STAGE):
        raise ValueError(f"unknown stage '{args.stage}'; choose from "
                         f"{STAGES + ('all', HEAD_STAGE)}")
    if args.modes:
        bad = set(args.modes) - set(TASK_MODES)
        if bad:
            raise ValueError(f"unknown task modes {sorted(bad)}; valid: {TASK_MODES}")
    buf = read_replay_buffer(args.data)
    info = init_distributed(args.device)
    if info.world > 1 and args.device == "cuda":  # one GPU per rank (torchrun/accelerate set it)
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        args.device = f"cuda:{local}"
    torch.manual_seed(args.seed)  # identical initial weights on every rank and every rerun
    root = Path(args.out)
    stages = STAGES if args.stage == "all" else (args.stage,)
    init = Path(args.init) if args.init else None
    if args.stage == HEAD_STAGE:
        bad = sorted(set(args.config_overrides) - set(ACTION_HEAD_FIELDS))
        if bad:
            raise ValueError(f"--stage head changes only action-head fields "
                             f"{ACTION_HEAD_FIELDS}; cannot override {bad}")
        if args.modes and not set(args.modes) & set(HEAD_MODES):
            raise ValueError(f"--stage head fits the action head in {HEAD_MODES}; "
                             f"--modes {args.modes} names neither")
        if init is None:
            init = root / "joint" / "final"
            if not init.is_dir():
                raise CheckpointError(f"--stage head refits a trained model's action head: "
                                      f"pass --init CKPT (or train {init} first)")
    if args.stage in ("video", "joint") and not args.vae_from:
        # the weights it continues: --init, else this run's previous stage
        start = init or root / STAGES[STAGES.index(args.stage) - 1] / "final"
        if init is not None or start.is_dir():
            check_overrides_fit(start, args.config_overrides)
    if args.vae_from and (args.stage in ("vae", HEAD_STAGE) or args.init):
        raise ValueError("--vae-from replaces the vae stage and picks the starting weights: "
                         "use it with --stage video, joint or all, and without --init")
    if "vae" in stages and not args.vae_from:
        fresh_config(buf, args)  # a dataset the model cannot take is refused before any write
    written = tuple(dict.fromkeys(stages + (("vae",) if args.vae_from else ())))
    inputs = (args.data, args.init, args.vae_from)
    lock = RunLock(root) if info.is_main else None
    if lock is not None:  # one training per run directory; nothing finished is replaced
        check_run(root, written, args.resume, args.overwrite, inputs)
        with lock:
            check_run(root, written, args.resume, args.overwrite, inputs)  # now under the lock
            if args.overwrite and not args.resume:
                clear_stages(root, written)
            return _run_stages(args, buf, info, root, stages, init)
    return _run_stages(args, buf, info, root, stages, init)


def _run_stages(args: TrainArgs, buf, info: DistInfo, root: Path, stages: tuple, init) -> dict:
    """train()'s stages, in order, once its checks passed (and, on rank 0, under the run lock)."""
    finals: dict[str, str] = {}
    if info.world > 1:
        dist.barrier()  # rank 0 checked (and cleared) the run directory first
    if args.vae_from:
        stages = tuple(s for s in stages if s != "vae")
        init = root / "vae" / "final"
        if info.is_main:
            vae_stage_from(Path(args.vae_from), args.config_overrides, init, buf, args.data)
        if info.world > 1:
            dist.barrier()
    for stage in stages:
        out = root / stage
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
        if args.resume and (out / "final" / "config.json").is_file() and \
                json.loads((out / "final" / "config.json").read_text()).get("steps") == args.steps[stage]:
            finals[stage] = str(out / "final")  # finished before the interruption
            init = out / "final"
            continue
        if stage == "vae":
            cfg = fresh_config(buf, args)
            normalizers = {"action": MinMaxNormalizer.fit(buf.action),
                           "proprio": MinMaxNormalizer.fit(buf.state)}
            final = train_vae(buf, cfg, normalizers, args, out, info)
        elif stage == HEAD_STAGE:
            final = train_head(buf, init, args, out, info)
        else:
            if init is None:
                prev = root / STAGES[STAGES.index(stage) - 1] / "final"
                if not prev.is_dir():
                    raise CheckpointError(f"stage '{stage}' needs --init or {prev}")
                init = prev
            final = train_transformer(stage, buf, init, args, out, info)
        finals[stage] = str(final)
        init = final
    if info.is_main:
        atomic_write_json(root / "train_summary.json", {"stages": finals, "data": args.data,
                                                        "world_size": info.world})
    return finals
