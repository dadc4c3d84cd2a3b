"""The policy node before vs after encoding history frames ahead (and freezing the heap), in
the sim graph, alternated round by round on one machine: `uva_bringup.latency_probe` run once
per variant and round, the "before" variant from a git worktree of the earlier commit put first
on PYTHONPATH (the nodes it starts inherit it). A benchmark, not a test.

    git worktree add /tmp/wt-before 2f65152
    python experiments/realtime/encode_ahead/ab.py --before /tmp/wt-before --rounds 2 \
        --out experiments/realtime/encode_ahead
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def probe(tree: str | None, scenarios: list[str], seconds: float, out: Path) -> dict:
    env = os.environ.copy()
    if tree:
        paths = [f"{tree}/models", f"{tree}/ros2_ws/src/uva_policy", f"{tree}/ros2_ws/src/uva_bringup",
                 f"{tree}/ros2_ws/src/uva_sim"]
        env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-m", "uva_bringup.latency_probe", "--scenarios", *scenarios,
                    "--seconds", str(seconds), "--out", str(out)], env=env, check=True)
    return json.loads(out.read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="worktree of the earlier commit")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--scenarios", nargs="+", default=["policy", "graph"])
    ap.add_argument("--out", default="outputs/realtime/encode_ahead")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in range(1, a.rounds + 1):
        order = [("before", a.before), ("after", None)]
        for name, tree in (order if r % 2 else order[::-1]):
            res = probe(tree, a.scenarios, a.seconds, out / f"{name}_round{r}.json")
            for sc, v in res["scenarios"].items():
                rows.append((r, sc, name, v["latency_ms"], v["inference_ms"], v["tick_rate_hz"],
                             res["load_avg_1m_end"]))
    print("round scenario variant | stamp->chunk p50/p95 ms | inference p50/p95 ms | tick Hz | load")
    for r, sc, name, lat, inf, hz, load in sorted(rows):
        print(f"{r} {sc:7s} {name:6s} | {lat['p50']:.0f} / {lat['p95']:.0f} | "
              f"{inf['p50']:.1f} / {inf['p95']:.1f} | {hz:.3f} | {load:.2f}")


if __name__ == "__main__":
    main()
