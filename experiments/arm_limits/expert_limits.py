"""How fast does the scripted Panda expert ask the arm to move? Its joint targets come every
0.1 s; the policy node sends such targets to the arm controller as points with monotone cubic
velocities (uva.trajectory.chunk_velocities). This measures that path, episode by episode,
against the Panda's velocity limits and libfranka's acceleration and jerk limits (jerk as the
arm samples its command at 1 kHz), and the joint steps themselves.

    python experiments/arm_limits/expert_limits.py --episodes 20 --out experiments/arm_limits/expert_limits.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from uva import franka
from uva.envs.panda import PandaEnv
from uva.trajectory import chunk_velocities, cycle_rates, peak_acceleration, peak_velocity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=100000)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("expert_limits.json"))
    args = ap.parse_args()
    env = PandaEnv(render_size=32)
    dt = 0.1
    vel, acc, jerk = (np.asarray(x) for x in (franka.PANDA_VELOCITY_LIMITS,
                                              franka.ACCELERATION_LIMITS, franka.JERK_LIMITS))
    rows = []
    for seed in tqdm(range(args.first_seed, args.first_seed + args.episodes), desc="episodes"):
        env.reset(seed)
        q = [env.joint_state()[:7]]
        for _ in range(env.max_steps):
            a = env.expert_action()
            q.append(np.asarray(a[:7], dtype=np.float64))
            if env.step(a).done:
                break
        q = np.array(q)
        t = dt * np.arange(len(q))
        v = chunk_velocities(t, q)
        v[0] = 0.0  # the episode starts at rest
        path = (t, q, v)
        rows.append({"seed": seed, "steps": len(q) - 1,
                     "max_step_rad": float(np.abs(np.diff(q, axis=0)).max()),
                     "velocity": (peak_velocity(*path) / vel).max(),
                     "acceleration": (peak_acceleration(*path) / acc).max(),
                     "jerk": (cycle_rates(path, 0.0, franka.CONTROL_CYCLE_S)["jerk"] / jerk).max()})
    env.close()
    summary = {"episodes": len(rows), "first_seed": args.first_seed, "control_period_s": dt}
    for key in ("max_step_rad", "velocity", "acceleration", "jerk"):
        x = np.array([float(r[key]) for r in rows])
        summary[key] = {"median": float(np.median(x)), "max": float(x.max()),
                        "episodes_over_limit": int((x > 1.0).sum()) if key != "max_step_rad" else None}
    summary["episodes_detail"] = [{k: float(v) if k != "seed" else v for k, v in r.items()} for r in rows]
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "episodes_detail"}, indent=2))


if __name__ == "__main__":
    main()
