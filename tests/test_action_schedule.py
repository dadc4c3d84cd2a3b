"""The action head's own DDPM training schedule (`action_train_diffusion_steps`): apart from the
video head's, inherited by files written before it existed, honoured by training and sampling,
and changed only where a head starts fresh."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import TINY
from uva import UVAConfig, UVAModel
from uva.checkpoint import load_checkpoint, save_checkpoint
from uva.cli import main as uva_main
from uva.data import read_replay_buffer
from uva.normalizer import MinMaxNormalizer


def _schedules(model: UVAModel) -> tuple[int, int]:
    return (model.video_head.diffusion.train_scheduler.config.num_train_timesteps,
            model.action_head.diffusion.train_scheduler.config.num_train_timesteps)


def test_the_action_head_trains_and_samples_on_its_own_schedule():
    same = UVAModel(UVAConfig(**TINY))
    assert _schedules(same) == (1000, 1000)  # None: one schedule for both heads, as before
    cfg = UVAConfig(**TINY, action_train_diffusion_steps=100, inverse_action_head=True)
    model = UVAModel(cfg)
    assert _schedules(model) == (1000, 100) and cfg.action_diffusion_steps == 100
    assert model.inverse_action_head.diffusion.train_scheduler.config.num_train_timesteps == 100
    # training draws its noise levels from that schedule, sampling walks it with DDIM
    t, _ = model.action_head.diffusion.draw((2, 4096, 3), torch.Generator().manual_seed(0), "cpu")
    assert int(t.max()) < 100 and int(t.max()) > 90
    timesteps = model.action_head.diffusion.sample_scheduler.timesteps
    assert len(timesteps) == cfg.action_inference_steps and int(timesteps.max()) < 100
    assert int(model.video_head.diffusion.sample_scheduler.timesteps.max()) > 100


def test_files_written_before_the_field_keep_their_single_schedule(tmp_path):
    cfg = UVAConfig(**TINY, train_diffusion_steps=500)
    saved = cfg.to_dict()
    del saved["action_train_diffusion_steps"]  # a config.json from before the field
    old = UVAConfig.from_dict(saved)
    assert old.action_train_diffusion_steps is None and old.action_diffusion_steps == 500
    path = tmp_path / "ckpt"
    save_checkpoint(path, UVAModel(old), old, {"action": MinMaxNormalizer.fit(np.eye(2)),
                                               "proprio": MinMaxNormalizer.fit(np.eye(2))})
    meta = json.loads((path / "config.json").read_text())
    meta["uva_config"].pop("action_train_diffusion_steps")
    (path / "config.json").write_text(json.dumps(meta))
    model, loaded, _, _ = load_checkpoint(path)
    assert _schedules(model) == (500, 500) and loaded.action_diffusion_steps == 500


@pytest.mark.parametrize("bad, match", [
    ({"action_train_diffusion_steps": 0}, "must be >= 1"),
    ({"action_train_diffusion_steps": 5}, "action_inference_steps \\(10\\) cannot exceed"),
    ({"train_diffusion_steps": 8}, "video_inference_steps \\(10\\) cannot exceed"),
    ({"action_train_diffusion_steps": True}, "must be an integer"),
])
def test_impossible_schedules_are_refused_when_the_config_is_built(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        UVAConfig(**TINY, **bad)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "pusht.zarr"
    assert uva_main(["collect", "--env", "pusht", "--episodes", "3", "--out", str(out)]) == 0
    return out


def _source(path, buf, stage: str):
    torch.manual_seed(0)
    cfg = UVAConfig(**TINY)
    save_checkpoint(path, UVAModel(cfg), cfg, {"action": MinMaxNormalizer.fit(buf.action),
                                               "proprio": MinMaxNormalizer.fit(buf.state)},
                    {"stage": stage})
    return path


def test_a_head_refit_on_a_new_schedule_starts_a_fresh_head(tiny_data, tmp_path):
    """`--stage head --config {"action_train_diffusion_steps": N}` trains new heads on N steps
    (the old head's weights meant something on the old schedule) and keeps the backbone and the
    video head, whose schedule is unchanged."""
    buf = read_replay_buffer(tiny_data)
    source = _source(tmp_path / "source", buf, "joint")
    run = tmp_path / "run"
    assert uva_main(["--threads", "2", "train", "--data", str(tiny_data), "--out", str(run),
                     "--stage", "head", "--init", str(source), "--config",
                     '{"action_train_diffusion_steps": 50}', "--head-steps", "40",
                     "--batch-size", "16", "--lr", "1e-3", "--eval-every", "20"]) == 0
    before = load_checkpoint(source)[0]
    model, cfg, _, meta = load_checkpoint(run / "head" / "final")
    assert meta["fresh_head"] and cfg.action_train_diffusion_steps == 50
    assert _schedules(model) == (1000, 50)
    old = before.state_dict()
    for name, tensor in model.state_dict().items():
        if not name.startswith("action_head."):
            assert torch.equal(tensor, old[name]), name
    rows = [json.loads(line) for line in (run / "head" / "log.jsonl").read_text().splitlines()]
    losses = [r["train/policy_model/action"] for r in rows if "train/policy_model/action" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:3]), losses


def test_a_stage_may_set_the_schedule_only_before_the_action_head_trained(tiny_data, tmp_path):
    """A joint stage continuing the video stage (whose action head never trained) may set the
    schedule; continuing a joint or head stage on another schedule is refused up front, naming
    the head refit that does it."""
    from uva.training.checks import check_overrides_fit
    buf = read_replay_buffer(tiny_data)
    change = {"action_train_diffusion_steps": 100}
    check_overrides_fit(_source(tmp_path / "video", buf, "video"), change)
    for stage in ("joint", "head"):
        trained = _source(tmp_path / stage, buf, stage)
        check_overrides_fit(trained, {"action_train_diffusion_steps": 1000})  # unchanged: fine
        with pytest.raises(ValueError, match="needs a fresh head: refit one with --stage head"):
            check_overrides_fit(trained, change)


def test_a_joint_stage_from_the_video_stage_trains_the_head_on_the_new_schedule(tiny_data,
                                                                               tmp_path):
    """`--stage joint --init <video stage> --config {"action_train_diffusion_steps": 100}`: the
    setting reaches the model that trains (two runs alike but for it end with different action
    heads) and the file it writes, so the head refits and the policy after it inherit it."""
    buf = read_replay_buffer(tiny_data)
    video = _source(tmp_path / "video", buf, "video")
    heads = {}
    for name, config in (("plain", "{}"), ("short", '{"action_train_diffusion_steps": 100}')):
        run = tmp_path / name
        assert uva_main(["--threads", "2", "train", "--data", str(tiny_data), "--out", str(run),
                         "--stage", "joint", "--init", str(video), "--config", config,
                         "--modes", "policy_model", "--joint-steps", "3", "--batch-size", "4",
                         "--eval-every", "3"]) == 0
        model, cfg, _, _ = load_checkpoint(run / "joint" / "final")
        heads[name] = (model.action_head.state_dict(), _schedules(model), cfg)
    assert heads["plain"][1] == (1000, 1000) and heads["short"][1] == (1000, 100)
    assert heads["short"][2].action_train_diffusion_steps == 100
    assert any(not torch.equal(heads["plain"][0][k], heads["short"][0][k]) for k in heads["plain"][0])
