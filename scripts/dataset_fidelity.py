"""How faithfully does "record over ROS -> uva dataset import" reproduce `uva collect`?

Records N Panda expert episodes through the ROS graph (uva_sim arm over real DDS, the expert as a
teleoperator publishing JointTrajectory commands, demo_recorder writing one bag per episode),
imports them with config/record_demos.topics.yaml, collects the same seeds with `uva collect`
(in-process env, no ROS), and compares episode counts, lengths, per-step joint states, action
labels and frame PSNR. Writes the numbers to --out (JSON).

    python scripts/dataset_fidelity.py --episodes 20 --out outputs/dataset_fidelity.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def first_runs(imported, bags: list[Path]) -> list[slice]:
    """Each bag's first imported episode, the one that starts at the simulator's reset. A bag
    the import cut (a refused tick: a message late or lost in the recording) gives more than
    one; the later runs start mid-task and have no collected counterpart to compare with."""
    sources = imported.attrs["episode_sources"]
    slices = imported.episode_slices()
    first = {}
    for src, sl in zip(sources, slices):
        first.setdefault(src["bag"], sl)
    return [first[str(b)] for b in bags if str(b) in first]


def compare(imported, collected, late: list[int], bags: list[Path]) -> dict:
    per_episode = []
    firsts = first_runs(imported, bags)
    for i, (si, sc) in enumerate(zip(firsts, collected.episode_slices())):
        n = min(si.stop - si.start, sc.stop - sc.start)
        a, b = slice(si.start, si.start + n), slice(sc.start, sc.start + n)
        dq = np.abs(imported.state[a] - collected.state[b])
        da = np.abs(imported.action[a] - collected.action[b])
        frames = [psnr(x, y) for x, y in zip(imported.img[a], collected.img[b])]
        finite = [f for f in frames if np.isfinite(f)]
        per_episode.append({
            "seed": collected.attrs["seeds"][i], "imported_steps": si.stop - si.start,
            "collected_steps": sc.stop - sc.start,
            "state_abs_err_max": float(dq.max()), "state_abs_err_mean": float(dq.mean()),
            "arm_state_abs_err_max_rad": float(dq[:, :7].max()),
            "action_abs_err_max": float(da.max()), "action_abs_err_mean": float(da.mean()),
            "frames_identical": float(np.mean([not np.isfinite(f) for f in frames])),
            "frame_psnr_db_min": float(min(finite)) if finite else None,
            "frame_psnr_db_mean_of_differing": float(np.mean(finite)) if finite else None,
            "late_commands": late[i],
            "first_state_abs_err_max": float(dq[0].max()),
            "first_frame_psnr_db": frames[0],
        })
    timely = [e for e in per_episode if e["late_commands"] == 0]
    pe = per_episode
    return {
        "episodes_imported": imported.n_episodes, "episodes_collected": collected.n_episodes,
        "bags_with_an_episode": len(firsts),
        "length_equal": sum(e["imported_steps"] == e["collected_steps"] for e in pe),
        "length_diff": [e["imported_steps"] - e["collected_steps"] for e in pe],
        "state_abs_err_max": max(e["state_abs_err_max"] for e in pe),
        "state_abs_err_mean": float(np.mean([e["state_abs_err_mean"] for e in pe])),
        "action_abs_err_max": max(e["action_abs_err_max"] for e in pe),
        "action_abs_err_mean": float(np.mean([e["action_abs_err_mean"] for e in pe])),
        "frames_identical_fraction": float(np.mean([e["frames_identical"] for e in pe])),
        "frame_psnr_db_min": min((e["frame_psnr_db_min"] for e in pe
                                  if e["frame_psnr_db_min"] is not None), default=None),
        # episodes where every command reached the arm before its next step: what is left is
        # the teleop expert computing from measured joints instead of the simulator's own state
        "timely_episodes": {
            "count": len(timely),
            "length_diff": [e["imported_steps"] - e["collected_steps"] for e in timely],
            "state_abs_err_max": max((e["state_abs_err_max"] for e in timely), default=None),
            "state_abs_err_mean": float(np.mean([e["state_abs_err_mean"] for e in timely])) if timely else None,
            "action_abs_err_mean": float(np.mean([e["action_abs_err_mean"] for e in timely])) if timely else None,
            "frame_psnr_db_min": min((e["frame_psnr_db_min"] for e in timely
                                      if e["frame_psnr_db_min"] is not None), default=None)},
        "per_episode": pe,
    }


def frame_periods(bags: list[Path]) -> dict:
    """How steady the simulator's camera ran: intervals between consecutive frame stamps."""
    from uva.dataset.bag_import import read_bag
    from uva.topic_map import load_topic_map
    from uva_bringup.record_demos import TOPIC_MAP
    tm = load_topic_map(TOPIC_MAP)
    gaps, late, latency = [], [], []
    for b in bags:
        s = read_bag(b, tm)
        frames = np.array([t for t, _ in s.frames["scene"]])
        gaps.append(np.diff(frames))
        cmds = np.array([t for t, _ in s.commands])
        # each command answers the newest frame before it; late if the next frame came first
        idx = np.searchsorted(frames, cmds, side="right") - 1
        ok = idx >= 0
        latency.append(cmds[ok] - frames[idx[ok]])
        late.append(int(np.sum(np.bincount(idx[ok], minlength=len(frames))[:-1] == 0)))
    gaps, latency = np.concatenate(gaps), np.concatenate(latency)
    n_frames = len(gaps) + len(bags)
    return {"frame_period_mean_s": float(gaps.mean()), "frame_period_p05_s": float(np.percentile(gaps, 5)),
            "frame_period_p95_s": float(np.percentile(gaps, 95)), "frame_period_max_s": float(gaps.max()),
            "frame_periods_off_by_over_half": float(np.mean(np.abs(gaps - 0.1) > 0.05)),
            "command_latency_p50_s": float(np.median(latency)),
            "command_latency_p95_s": float(np.percentile(latency, 95)),
            "frames_without_a_command_before_the_next": int(sum(late)), "frames": n_frames,
            "late_commands_per_episode": late}


def run(episodes: int, work: Path, first_seed: int = 100000) -> dict:
    """Record (or reuse work/bags; uva_bringup.record_demos.record_seeds), collect the same seeds (or reuse), import with both sampling
    modes and compare each with the collected demos."""
    from dataclasses import replace
    from uva.collect import collect
    from uva.data import read_replay_buffer
    from uva.dataset.bag_import import import_bags
    from uva.topic_map import load_topic_map
    from uva_bringup.record_demos import TOPIC_MAP, bag_seeds, record_seeds
    bags, seeds = record_seeds(work / "bags", episodes, first_seed=first_seed)
    if not (work / "collected.zarr").exists():
        collect("panda", len(seeds), work / "collected.zarr", image_size=96, keep_failures=True,
                seed=seeds[0])
    collected = read_replay_buffer(work / "collected.zarr")
    report = {"recorded_seeds": seeds, "seeds_in_bags": [sorted(set(bag_seeds(b))) for b in bags],
              "timing": frame_periods(bags)}
    late = report["timing"]["late_commands_per_episode"]
    for mode in ("clock", "camera"):
        tm = replace(load_topic_map(TOPIC_MAP), sample_on=mode)
        out = work / f"imported_{mode}.zarr"
        summary = import_bags(bags, tm, out, min_steps=1, overwrite=True)
        report[f"sample_on_{mode}"] = {
            "import": {k: summary[k] for k in ("episodes", "steps", "episode_cuts",
                                               "skipped_short_episodes")},
            **compare(read_replay_buffer(out), collected, late, bags)}
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--out", default="outputs/dataset_fidelity.json")
    ap.add_argument("--work", default=None, help="keep bags and buffers here (default: a temp dir)")
    a = ap.parse_args(argv)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    work = Path(a.work or tempfile.mkdtemp(prefix="uva_fidelity_"))
    try:
        report = run(a.episodes, work)
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "per_episode"}
                          if isinstance(v, dict) else v) for k, v in report.items()}, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "ros2_ws" / "src" / "uva_bringup"))
    main()
