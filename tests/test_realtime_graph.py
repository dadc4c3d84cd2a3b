"""Slow, over real DDS: a saturated video node does not change the control tick rate.

The sim graph (sim + policy node + video node, from sim.yaml) runs twice with the shipped Panda
checkpoint: once without a video node, once with the video node asked for 20 predictions/s
(`uva_bringup.latency_probe`'s `stress` scenario: a starved background process that would take
every free cycle). The policy node stamps its status every tick; the bound is on those stamps.
Bounds are loose on purpose, since other
jobs on a shared 2-core machine move tick timing too: the tick rate within 5 %, tick jitter p95
at most half a period above the run without a video node, chunk latency p95 at most one period
above it. docs/realtime.md has the measured numbers of every scenario."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from ros_helpers import isolate_dds

isolate_dds()
CKPT = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "panda"
RATE_HZ = 10.0  # sim.yaml


@pytest.mark.slow
def test_a_saturated_video_node_does_not_change_the_tick_rate(ros):
    from uva_bringup.latency_probe import run_scenario
    alone = run_scenario("policy", str(CKPT), seconds=20, warmup_s=5, control_rate_hz=RATE_HZ)
    stressed = run_scenario("stress", str(CKPT), seconds=20, warmup_s=5,
                            control_rate_hz=RATE_HZ)
    for r in (alone, stressed):
        assert all(r["nodes_alive_at_end"].values()), r
        assert r["tick_interval_ms"]["n"] >= 0.8 * 20 * RATE_HZ, r  # it ticked the whole time
    assert stressed["predicted_strips"] > 0, stressed  # the video node did run
    # the rate holds: the mean tick interval stays within 5 % of the control period
    assert abs(stressed["tick_rate_hz"] - RATE_HZ) <= 0.05 * RATE_HZ, stressed
    # jitter: no worse than alone plus half a period at the 95th percentile
    assert (stressed["tick_jitter_ms"]["p95"]
            <= alone["tick_jitter_ms"]["p95"] + 500 / RATE_HZ), (alone, stressed)
    # and every chunk still leaves within a control period of its observation (p95)
    assert stressed["latency_ms"]["p95"] <= alone["latency_ms"]["p95"] + 1000 / RATE_HZ, \
        (alone, stressed)
