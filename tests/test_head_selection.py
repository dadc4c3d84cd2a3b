"""The head stage keeps, per head, the EMA weights of its lowest held-out loss, and that choice
survives a resume."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import TINY
from uva import UVAConfig, UVAModel
from uva.checkpoint import load_checkpoint, save_checkpoint
from uva.cli import main as uva_main
from uva.data import read_replay_buffer
from uva.normalizer import MinMaxNormalizer
from uva.training.selection import BestHeldOut


def _set(module: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(value)


def _value(module: torch.nn.Module) -> float:
    return float(next(module.parameters()).detach().flatten()[0])


def test_best_held_out_keeps_each_heads_lowest_and_skips_non_finite():
    shared, inverse = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    # one module decoding both modes is one head judged on the mean of both losses
    one = BestHeldOut({"policy_model": shared, "inverse_model": shared})
    assert list(one.groups) == ["policy_model"] and one.groups["policy_model"][1] == [
        "policy_model", "inverse_model"]
    _set(shared, 1.0)
    assert one.update(10, {"policy_model": 0.2, "inverse_model": 0.4}) == ["policy_model"]
    _set(shared, 2.0)  # policy better, mean worse (0.1 + 0.6) / 2 = 0.35 > 0.3
    assert one.update(20, {"policy_model": 0.1, "inverse_model": 0.6}) == []
    _set(shared, 3.0)
    assert one.update(30, {"policy_model": float("nan"), "inverse_model": 0.0}) == []
    one.apply()
    assert _value(shared) == 1.0 and one.summary()["policy_model"]["step"] == 10
    assert one.summary()["policy_model"]["val_loss"] == pytest.approx(0.3)

    # separate heads are chosen independently
    two = BestHeldOut({"policy_model": shared, "inverse_model": inverse})
    for step, (value, p_loss, i_loss) in enumerate([(1.0, 0.5, 0.1), (2.0, 0.2, 0.3),
                                                    (3.0, 0.3, 0.2)]):
        _set(shared, value)
        _set(inverse, value)
        two.update(step, {"policy_model": p_loss, "inverse_model": i_loss})
    state = two.state_dict()
    _set(shared, 9.0)
    _set(inverse, 9.0)
    restored = BestHeldOut({"policy_model": shared, "inverse_model": inverse})
    restored.load_state_dict(state)
    restored.apply()
    assert (_value(shared), _value(inverse)) == (2.0, 1.0)
    assert {k: v["step"] for k, v in restored.summary().items()} == {"policy_model": 1,
                                                                    "inverse_model": 0}
    with pytest.raises(ValueError, match="names heads"):
        BestHeldOut({"policy_model": shared}).load_state_dict(state)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "pusht.zarr"
    assert uva_main(["collect", "--env", "pusht", "--episodes", "3", "--out", str(out)]) == 0
    return out


def _head(model) -> dict:
    return {k: v for k, v in model.state_dict().items() if k.startswith("action_head.")}


def test_head_stage_ends_with_the_weights_of_its_lowest_held_out_loss(tiny_data, tmp_path):
    """Every validation's EMA weights are kept as milestones (same steps): the final file's head
    is the milestone whose logged held-out loss is the lowest, named in its meta; a resume of
    the finished run carries the choice over instead of taking the last weights."""
    buf = read_replay_buffer(tiny_data)
    source = tmp_path / "source"
    torch.manual_seed(0)
    cfg = UVAConfig(**TINY)
    save_checkpoint(source, UVAModel(cfg), cfg, {"action": MinMaxNormalizer.fit(buf.action),
                                                 "proprio": MinMaxNormalizer.fit(buf.state)})
    run = tmp_path / "run"
    cmd = ["--threads", "2", "train", "--data", str(tiny_data), "--out", str(run), "--stage",
           "head", "--init", str(source), "--modes", "policy_model", "--head-steps", "40",
           "--batch-size", "8", "--lr", "3e-3", "--eval-every", "5", "--keep-every", "5",
           "--ckpt-every", "20"]
    assert uva_main(cmd) == 0
    rows = [json.loads(line) for line in (run / "head" / "log.jsonl").read_text().splitlines()]
    val = {r["step"]: r["val/policy_model"] for r in rows if "val/policy_model" in r}
    assert sorted(val) == list(range(5, 41, 5))
    best_step = min(val, key=val.get)
    model, _, _, meta = load_checkpoint(run / "head" / "final")
    assert meta["steps"] == 40 and meta["weights"].startswith("ema, lowest held-out")
    assert meta["selected"]["policy_model"]["step"] == best_step
    assert meta["selected"]["policy_model"]["val_loss"] == pytest.approx(val[best_step])
    kept, _, _, _ = load_checkpoint(run / "head" / "milestones" / f"step_{best_step:08d}")
    last, _, _, _ = load_checkpoint(run / "head" / "milestones" / "step_00000040")
    for name, tensor in _head(model).items():
        assert torch.equal(tensor, _head(kept)[name]), name
    # the rest of the model is the frozen source's
    src, _, _, _ = load_checkpoint(source)
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in model.state_dict().items()
               if not k.startswith("action_head."))

    # resume: the selection travels in the train state. A run killed after its last state save
    # but before `final` was written resumes there; plant a selection that names milestone 10
    # with a loss nothing beats: the resumed run must end with those weights, not step 40's
    shutil.rmtree(run / "head" / "final")
    state_path = run / "head" / "state" / "step_00000040" / "train_state.pt"
    ts = torch.load(state_path, weights_only=False)
    assert ts["selection"]["policy_model"]["step"] == best_step
    planted, _, _, _ = load_checkpoint(run / "head" / "milestones" / "step_00000010")
    ts["selection"]["policy_model"] = {
        "step": 10, "val_loss": -1.0,
        "weights": {k.removeprefix("action_head."): v for k, v in _head(planted).items()}}
    torch.save(ts, state_path)
    assert uva_main(cmd + ["--resume"]) == 0
    resumed, _, _, meta = load_checkpoint(run / "head" / "final")
    assert meta["selected"]["policy_model"] == {"modes": ["policy_model"], "step": 10,
                                                "val_loss": -1.0}
    differs = [not torch.equal(v, _head(last)[k]) for k, v in _head(planted).items()]
    assert any(differs)  # the planted weights are not the last ones, so the check can fail
    for name, tensor in _head(resumed).items():
        assert torch.equal(tensor, _head(planted)[name]), name
    assert np.isfinite(val[best_step])
