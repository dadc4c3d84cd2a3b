"""The shipped checkpoints load, and reproduce the 3-seed check stored beside them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from uva import load_policy
from uva.evaluate import rollout

ROOT = Path(__file__).resolve().parents[1] / "models" / "checkpoints"


@pytest.mark.parametrize("env_name", ["pusht", "panda"])
def test_shipped_checkpoint_reproduces_its_stored_check(env_name):
    from uva.envs import make_env
    path = ROOT / env_name
    metrics = json.loads((path / "metrics.json").read_text())
    check = metrics["check_3_seeds"]
    assert (path / "model.safetensors").stat().st_size < 25 * 2**20
    torch.set_num_threads(1)  # the stored check was computed with one thread
    policy = load_policy(path)
    env = make_env(env_name)
    scores = [rollout(policy, env, s, check["n_action_steps"])[0]["score"] for s in check["seeds"]]
    env.close()
    torch.set_num_threads(2)
    assert scores == pytest.approx(check["scores"], abs=1e-6)
    assert metrics["eval"]["episodes"] >= 50
