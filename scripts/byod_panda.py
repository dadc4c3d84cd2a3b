"""Bring your own demonstrations, end to end in simulation: record -> import -> train -> score.

What a lab does with its own arm, with the scripted Panda expert as the teleoperator:
1. record N episodes through the ROS graph (uva_sim arm over DDS, the expert commanding it, the
   demo recorder writing one rosbag2 per episode; uva_bringup.record_demos.record_seeds);
2. hold the last K bags out; `uva dataset import` the others with the shipped topic map
   (ros2_ws/src/uva_bringup/config/record_demos.topics.yaml);
3. fine-tune: refit the policy head of the shipped backbone (models/checkpoints/panda) on the
   imported bags with `uva train --stage head --init ...` (unchanged CLI), a stated CPU budget;
4. optionally (--control) the same refit on `uva collect` demos of the same seeds, so bag vs
   collect is measured with everything else equal;
5. `uva replay-eval` every checkpoint (the shipped one too) on each held-out bag: open-loop action
   error against the hold-last baseline;
6. closed loop in the sim graph (policy node driving uva_sim, scripts/sim_episodes.py) on M seeds.

Every stage's output stays in --work and a rerun skips what is done (a killed training resumes),
so the command can be repeated after an interruption. One JSON with every number and the budget
(episodes, steps, wall times, threads, load) goes to --out.

    python scripts/byod_panda.py --episodes 40 --held-out 4 --closed-loop 20 --control \\
        --head-steps 3000 --batch-size 256 --max-minutes 30 --threads 1 --work outputs/byod_cmd \\
        --out experiments/byod_panda.json        # what experiments/byod_panda.json ran
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "checkpoints" / "panda"


def uva(threads: int, *args: str, log: Path | None = None, times: dict | None = None) -> float:
    """Run one `uva` CLI command (the user's command, unchanged); returns its wall time and adds
    wall and CPU seconds (user + system of the command's process) to `times`."""
    cmd = [sys.executable, "-m", "uva.cli", "--threads", str(threads), *args]
    print(f"$ uva --threads {threads} " + " ".join(args), flush=True)
    t, cpu = time.time(), child_cpu_s()
    try:
        with open(log, "a") if log else open(os.devnull, "w") as f:
            res = subprocess.run(cmd, stdout=f if log else None,
                                 stderr=subprocess.STDOUT if log else None)
    finally:
        if times is not None:
            times["wall_s"] = times.get("wall_s", 0.0) + time.time() - t
            times["cpu_s"] = times.get("cpu_s", 0.0) + child_cpu_s() - cpu
    if res.returncode != 0:
        raise RuntimeError(f"uva {' '.join(args[:2])} failed (exit {res.returncode})"
                           + (f"; see {log}" if log else ""))
    return time.time() - t


def child_cpu_s() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def save_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def stage_record(work: Path, episodes: int, first_seed: int) -> dict:
    from uva_bringup.record_demos import record_seeds
    done = load_json(work / "record.json")
    if done and done["episodes"] == episodes and done["first_seed"] == first_seed:
        return done
    t = time.time()
    bags, seeds = record_seeds(work / "bags", episodes, first_seed=first_seed,
                               timeout_s=120 + 60 * episodes, log_dir=work)
    done = {"episodes": episodes, "first_seed": first_seed, "seeds": seeds,
            "bags": [str(b) for b in bags], "wall_s": time.time() - t,
            "load_avg_1m_at_end": os.getloadavg()[0]}
    save_json(work / "record.json", done)
    return done


def bag_stats(bags: list[str]) -> dict:
    """Per bag: frames and the episode's wall length (the sim resets on success or at 120 steps)."""
    from uva.dataset.bag_import import read_bag
    from uva.topic_map import load_topic_map
    from uva_bringup.record_demos import TOPIC_MAP
    from dataclasses import replace
    tm = replace(load_topic_map(TOPIC_MAP), action_topic=None)  # frames only
    frames = [len(read_bag(b, tm).frames["scene"]) for b in bags]
    return {"frames": frames, "frames_total": int(sum(frames)),
            "ran_to_step_limit": int(sum(f > 115 for f in frames))}


def stage_import(work: Path, bags: list[str], threads: int) -> dict:
    from uva_bringup.record_demos import TOPIC_MAP
    out = work / "bags.zarr"
    done = load_json(work / "import.json")
    if done and out.exists():
        return done
    args = ["dataset", "import", *sum((["--bag", b] for b in bags), []), "--topics", str(TOPIC_MAP),
            "--image-size", "64", "--out", str(out), "--overwrite"]
    wall = uva(threads, *args, log=work / "import.log")
    info = dataset_info(out, threads, work)
    done = {"command": "uva dataset import --bag ... (%d bags) --topics %s --image-size 64 --out %s"
                       % (len(bags), TOPIC_MAP.relative_to(ROOT), out),
            "wall_s": wall, "info": info}
    save_json(work / "import.json", done)
    return done


def dataset_info(data: Path, threads: int, work: Path) -> dict:
    cmd = [sys.executable, "-m", "uva.cli", "--threads", str(threads), "dataset", "info", str(data),
           "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    info = json.loads(res.stdout[res.stdout.index("{"):])
    return {k: info[k] for k in ("episodes", "steps", "fps", "cameras", "state_dim", "action_dim",
                                 "episode_length") if k in info}


def stage_collect(work: Path, seeds: list[int], threads: int) -> dict:
    out = work / "collect.zarr"
    done = load_json(work / "collect.json")
    if done and out.exists():
        return done
    wall = uva(threads, "collect", "--env", "panda", "--episodes", str(len(seeds)), "--seed",
               str(seeds[0]), "--keep-failures", "--out", str(out), "--overwrite",
               log=work / "collect.log")
    done = {"command": f"uva collect --env panda --episodes {len(seeds)} --seed {seeds[0]} "
                       f"--keep-failures --out {out}",
            "wall_s": wall, "info": dataset_info(out, threads, work)}
    save_json(work / "collect.json", done)
    return done


def stage_train(work: Path, name: str, data: Path, a) -> dict:
    """`uva train --stage head --init SHIPPED` (policy head refit on the frozen backbone)."""
    run = work / f"run_{name}"
    final = run / "head" / "final"
    done = load_json(work / f"train_{name}.json")
    if done and final.is_dir():
        return done
    args = ["train", "--stage", "head", "--init", str(a.init), "--data", str(data), "--out",
            str(run), "--modes", "policy_model", "--head-steps", str(a.head_steps),
            "--batch-size", str(a.batch_size), "--lr", str(a.lr), "--ckpt-every", "250",
            "--eval-every", "250", "--seed", str(a.seed)]
    if a.max_minutes:
        args += ["--max-minutes", str(a.max_minutes)]
    resume = (run / "head").is_dir()
    times = load_json(work / f"train_{name}.partial.json") or {}  # over resumed attempts
    try:
        uva(a.threads, *args, *(["--resume"] if resume else []), log=work / f"train_{name}.log",
            times=times)
    finally:
        save_json(work / f"train_{name}.partial.json", times)
    meta = json.loads((final / "config.json").read_text())
    done = {"command": "uva --threads %d %s" % (a.threads, " ".join(args)),
            "wall_s": times["wall_s"], "cpu_s": times["cpu_s"], "steps": meta.get("steps"),
            "total_steps": meta.get("total_steps"), "val_episodes": meta.get("val_episodes"),
            "checkpoint": str(final), "final_val_loss": last_val(run / "head")}
    save_json(work / f"train_{name}.json", done)
    return done


def last_val(stage_dir: Path):
    """The last validation entry of the stage's log, if it wrote one."""
    for log in (stage_dir / "log.jsonl", stage_dir / "train_log.jsonl"):
        if log.exists():
            rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
            vals = [r for r in rows if any(k.startswith("val") for k in r)]
            return vals[-1] if vals else None
    return None


REPLAY_KEYS = ("evaluated", "skipped_unaligned", "mae", "hold_last_mae", "per_joint_mae",
               "hold_last_per_joint_mae", "mae_vs_horizon_step", "hold_last_mae_vs_horizon_step",
               "gripper_accuracy", "forward_dynamics_psnr_db", "copy_last_frame_psnr_db",
               "inverse_dynamics_mae")


def stage_replay(work: Path, name: str, ckpt: str, held: list[str], threads: int) -> dict:
    from uva_bringup.record_demos import TOPIC_MAP
    done = load_json(work / f"replay_{name}.json")
    if done:
        return done
    per_bag, wall = [], 0.0
    for bag in held:
        out = work / "replay" / name / Path(bag).name
        if not (out / "report.json").exists():
            wall += uva(threads, "replay-eval", "--bag", bag, "--ckpt", str(ckpt), "--topics",
                        str(TOPIC_MAP), "--out", str(out), "--overwrite",
                        log=work / f"replay_{name}.log")
        r = json.loads((out / "report.json").read_text())
        per_bag.append({"bag": bag, **{k: r.get(k) for k in REPLAY_KEYS}})
    n = np.array([r["evaluated"] for r in per_bag], dtype=float)
    mean = lambda k: float(np.sum([r[k] * w for r, w in zip(per_bag, n)]) / n.sum())
    arm = [f"fr3_joint{i}" for i in range(1, 8)]
    arm_mean = lambda k: float(np.sum([np.mean([r[k][j] for j in arm]) * w
                                       for r, w in zip(per_bag, n)]) / n.sum())
    done = {"checkpoint": str(ckpt), "bags": len(per_bag), "ticks_evaluated": int(n.sum()),
            # weighted by evaluated ticks: the mean over every held-out control tick
            "mae": mean("mae"), "hold_last_mae": mean("hold_last_mae"),
            "arm_mae_rad": arm_mean("per_joint_mae"),
            "hold_last_arm_mae_rad": arm_mean("hold_last_per_joint_mae"),
            "finger_mae_m": mean_key(per_bag, n, "per_joint_mae", "fr3_finger_joint1"),
            "hold_last_finger_mae_m": mean_key(per_bag, n, "hold_last_per_joint_mae",
                                               "fr3_finger_joint1"),
            "gripper_accuracy": mean("gripper_accuracy"),
            "forward_dynamics_psnr_db": mean("forward_dynamics_psnr_db"),
            "copy_last_frame_psnr_db": mean("copy_last_frame_psnr_db"),
            "wall_s": wall, "per_bag": per_bag}
    save_json(work / f"replay_{name}.json", done)
    return done


def mean_key(per_bag, n, key, joint):
    return float(np.sum([r[key][joint] * w for r, w in zip(per_bag, n)]) / n.sum())


def stage_closed_loop(work: Path, name: str, ckpt: str, episodes: int, first_seed: int) -> dict:
    done = load_json(work / f"closed_{name}.json")
    if done and done["episodes_requested"] == episodes and done["first_seed"] == first_seed:
        return done
    sys.path.insert(0, str(ROOT / "scripts"))
    from sim_episodes import record
    log_dir = work / f"closed_{name}_logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    t = time.time()
    res = record(episodes, str(ckpt), first_seed, log_dir, 60.0 * (episodes + 2))
    done = {"checkpoint": str(ckpt), "episodes_requested": episodes, "first_seed": first_seed,
            "episodes": len(res["seeds"]), "successes": int(sum(res["success"])),
            "seeds": res["seeds"], "success": res["success"],
            "episode_steps": [len(res["joints"][s]) for s in res["seeds"]],
            "wall_s": time.time() - t, "load_avg_1m_at_end": os.getloadavg()[0]}
    save_json(work / f"closed_{name}.json", done)
    return done


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=40, help="recorded episodes N")
    ap.add_argument("--held-out", type=int, default=4, help="the last K bags are not trained on")
    ap.add_argument("--first-seed", type=int, default=400000,
                    help="the simulator's first seed; recorded episodes are seeds +1..+N")
    ap.add_argument("--closed-loop", type=int, default=20, help="closed-loop episodes M (0: none)")
    ap.add_argument("--closed-loop-seed", type=int, default=300000)
    ap.add_argument("--control", action="store_true",
                    help="also refit on `uva collect` demos of the training seeds")
    ap.add_argument("--no-shipped", action="store_true",
                    help="do not score the shipped checkpoint itself (replay and closed loop)")
    ap.add_argument("--init", default=os.path.relpath(SHIPPED), help="backbone to fine-tune")
    ap.add_argument("--head-steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="cap each training's wall time (a checkpoint is kept where it stopped)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of every uva command")
    ap.add_argument("--work", default="outputs/byod")
    ap.add_argument("--out", default="outputs/byod/byod_panda.json")
    a = ap.parse_args(argv)
    if not 0 < a.held_out < a.episodes:
        ap.error("--held-out must be between 1 and --episodes - 1")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    report = {"what": "record -> import -> head refit -> replay-eval + closed loop (scripts/byod_panda.py)",
              "budget": {"threads": a.threads, "cpus": os.cpu_count(), "machine": platform.processor()
                         or platform.machine(), "recorded_episodes": a.episodes,
                         "held_out": a.held_out, "head_steps": a.head_steps,
                         "batch_size": a.batch_size, "lr": a.lr, "max_minutes": a.max_minutes,
                         "init": str(Path(a.init).resolve().relative_to(ROOT))
                         if Path(a.init).resolve().is_relative_to(ROOT) else a.init}}
    rec = stage_record(work, a.episodes, a.first_seed)
    bags, seeds = rec["bags"], rec["seeds"]
    train_bags, held = bags[:-a.held_out], bags[-a.held_out:]
    report["record"] = {**{k: rec[k] for k in ("episodes", "wall_s", "load_avg_1m_at_end")},
                        "train_seeds": [seeds[0], seeds[-a.held_out - 1]],
                        "held_out_seeds": seeds[-a.held_out:], **bag_stats(bags)}
    report["import"] = stage_import(work, train_bags, a.threads)
    datasets = {"bags": work / "bags.zarr"}
    if a.control:
        report["collect"] = stage_collect(work, seeds[:-a.held_out], a.threads)
        datasets["collect"] = work / "collect.zarr"
    report["train"] = {n: stage_train(work, n, d, a) for n, d in datasets.items()}
    ckpts = {n: report["train"][n]["checkpoint"] for n in datasets}
    if not a.no_shipped:
        ckpts = {"shipped": str(a.init), **ckpts}
    report["replay_eval"] = {n: stage_replay(work, n, c, held, a.threads) for n, c in ckpts.items()}
    if a.closed_loop:
        report["closed_loop"] = {n: stage_closed_loop(work, n, c, a.closed_loop, a.closed_loop_seed)
                                 for n, c in ckpts.items()}
    report["wall_s_this_run"] = time.time() - t_all
    report["wall_s_stages"] = {
        "record": rec["wall_s"], "import": report["import"]["wall_s"],
        **({"collect": report["collect"]["wall_s"]} if a.control else {}),
        **{f"train_{n}": t["wall_s"] for n, t in report["train"].items()},
        **{f"replay_{n}": r["wall_s"] for n, r in report["replay_eval"].items()},
        **{f"closed_loop_{n}": c["wall_s"] for n, c in report.get("closed_loop", {}).items()}}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    save_json(Path(a.out), report)
    summary = {n: {"replay_mae": r["mae"], "hold_last_mae": r["hold_last_mae"],
                   **({"closed_loop": f"{report['closed_loop'][n]['successes']}/"
                                      f"{report['closed_loop'][n]['episodes']}"}
                      if "closed_loop" in report else {})}
               for n, r in report["replay_eval"].items()}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    for p in ("models", "ros2_ws/src/uva_bringup", "ros2_ws/src/uva_policy", "ros2_ws/src/uva_sim"):
        if str(ROOT / p) not in sys.path:
            sys.path.insert(0, str(ROOT / p))
    main()
