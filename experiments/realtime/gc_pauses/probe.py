"""Are garbage-collection pauses the policy node's inference tail? Runs latency_probe's
scenarios with the policy node under gc_logging_node.py and reports, beside the latency
figures, each collection generation's count, total and worst pause.

    python experiments/realtime/gc_pauses/probe.py --scenarios policy graph --seconds 30 \
        --out experiments/realtime/gc_pauses/probe.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import rclpy

from uva.bench import machine_info
from uva_bringup import latency_probe

WRAPPER = Path(__file__).resolve().parent / "gc_logging_node.py"


class LoggedGraph(latency_probe.Graph):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, argv in self.cmds:
            if name == "policy_node":
                i = argv.index("uva_policy.policy_node")
                argv[i - 1:i + 1] = [str(WRAPPER)]


def pauses(path: Path) -> dict:
    rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    out = {}
    for gen in (0, 1, 2):
        ms = np.array([float(r[2]) for r in rows if int(r[1]) == gen])
        out[f"gen{gen}"] = {"count": int(len(ms)), "total_ms": float(ms.sum()),
                            "max_ms": float(ms.max()) if len(ms) else 0.0,
                            "p95_ms": float(np.percentile(ms, 95)) if len(ms) else 0.0}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="models/checkpoints/panda")
    ap.add_argument("--scenarios", nargs="+", default=["policy", "graph"])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--out", default="outputs/realtime/gc_probe.json")
    a = ap.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(101, 200)))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    latency_probe.Graph = LoggedGraph
    rclpy.init()
    result = {"machine": machine_info("cpu"), "checkpoint": a.checkpoint, "scenarios": {}}
    for name in a.scenarios:
        log = Path(tempfile.mkdtemp()) / "gc.log"
        os.environ["UVA_GC_LOG"] = str(log)
        r = latency_probe.run_scenario(name, a.checkpoint, a.seconds, 5.0)
        r["gc_pauses_in_policy_node"] = pauses(log)
        result["scenarios"][name] = r
        print(name, json.dumps(r), flush=True)
    rclpy.shutdown()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
