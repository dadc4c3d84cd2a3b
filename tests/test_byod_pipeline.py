"""Slow end to end: record bags through the ROS graph -> import -> head refit -> replay-eval on a
held-out bag -> closed loop in the sim graph (scripts/byod_panda.py at a tiny size)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_recorded_bags_train_and_deploy(tmp_path):
    pytest.importorskip("rclpy")
    from ros_helpers import isolate_dds
    isolate_dds()
    work, out = tmp_path / "work", tmp_path / "byod.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "byod_panda.py"), "--episodes", "3",
           "--held-out", "1", "--closed-loop", "1", "--control", "--no-shipped",
           "--head-steps", "2", "--batch-size", "4", "--threads", "2", "--work", str(work),
           "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=1500)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    r = json.loads(out.read_text())

    rec = r["record"]
    assert rec["episodes"] == 3 and len(rec["frames"]) == 3 and min(rec["frames"]) > 20
    assert rec["held_out_seeds"] == [400003] and rec["train_seeds"] == [400001, 400002]
    assert len(list((work / "bags").glob("episode_*[0-9]"))) == 3
    info = r["import"]["info"]
    assert (work / "bags.zarr").is_dir() and info["episodes"] >= 2 and info["steps"] > 30
    assert info["cameras"] == {"scene": [64, 64]} and info["action_dim"] == 8
    assert r["collect"]["info"]["episodes"] == 2

    for name in ("bags", "collect"):
        t = r["train"][name]
        assert t["steps"] == 2 and (Path(t["checkpoint"]) / "model.safetensors").exists()
        meta = json.loads((Path(t["checkpoint"]) / "config.json").read_text())
        assert meta["stage"] == "head"
        rp = r["replay_eval"][name]
        assert rp["bags"] == 1 and rp["ticks_evaluated"] > 0
        for k in ("mae", "hold_last_mae", "arm_mae_rad", "hold_last_arm_mae_rad"):
            assert math.isfinite(rp[k]) and rp[k] > 0, (k, rp)
        assert (work / "replay" / name / "episode_0002" / "report.md").exists()
        cl = r["closed_loop"][name]
        assert cl["episodes"] == 1 and cl["successes"] in (0, 1)
        assert cl["seeds"] == [300000] and cl["episode_steps"][0] > 10
    # the bag-trained checkpoint remembers the recorded cameras and joints
    meta = json.loads((Path(r["train"]["bags"]["checkpoint"]) / "config.json").read_text())
    assert meta["dataset"]["cameras"] == ["scene"] and len(meta["dataset"]["joint_names"]) == 8
    assert all(math.isfinite(v) and v >= 0 for v in r["wall_s_stages"].values())
    # a rerun finds every stage done and does nothing again
    res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert res.returncode == 0 and "$ uva" not in res.stdout, res.stdout[-2000:]
