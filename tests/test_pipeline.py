"""Data -> training -> evaluation pipeline: experts, zarr, resume after a real kill, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import TINY
from uva.cli import main as uva_main
from uva.data import DatasetError, read_replay_buffer, write_replay_buffer

TINY_JSON = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()})


def _score(env, policy_fn, seed, steps):
    env.reset(seed)
    for _ in range(steps):
        if env.step(policy_fn()).done:
            break
    return env.score


def test_pusht_expert_beats_random_by_a_wide_margin():
    from uva.envs import make_env
    env = make_env("pusht")
    rng = np.random.default_rng(0)
    seeds = [0, 1, 3]
    expert = np.mean([_score(env, env.expert_action, s, 300) for s in seeds])
    rand = np.mean([_score(env, lambda: env.random_action(rng), s, 300) for s in seeds])
    env.close()
    assert expert > 0.7 and expert > rand + 0.4, (expert, rand)


def test_panda_expert_places_the_cube_and_random_does_not():
    from uva.envs import make_env
    env = make_env("panda")
    rng = np.random.default_rng(0)
    expert = [_score(env, env.expert_action, s, env.max_steps) for s in (0, 1)]
    rand = [_score(env, lambda: env.random_action(rng), s, 40) for s in (0, 1)]
    env.close()
    assert expert == [1.0, 1.0] and rand == [0.0, 0.0]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "pusht.zarr"
    assert uva_main(["collect", "--env", "pusht", "--episodes", "3", "--out", str(out)]) == 0
    return out


def test_collect_writes_a_well_formed_replay_buffer(tiny_data):
    buf = read_replay_buffer(tiny_data)
    summary = json.loads(open(str(tiny_data) + ".json").read())
    assert buf.n_episodes == 3 == summary["episodes"]
    assert buf.img.shape[1:] == (64, 64, 3) and buf.img.dtype == np.uint8
    assert buf.action.shape[1] == 2 and buf.state.shape[1] == 2
    assert len(summary["seeds"]) == 3 and buf.attrs["seeds"] == summary["seeds"]
    assert buf.episode_ends[-1] == len(buf.action) == summary["steps"]


def test_collect_train_eval_end_to_end(tiny_data, tmp_path):
    run = tmp_path / "run"
    rc = uva_main(["--threads", "2", "train", "--data", str(tiny_data), "--out", str(run),
                   "--vae-steps", "6", "--video-steps", "4", "--joint-steps", "6",
                   "--batch-size", "4", "--ckpt-every", "3", "--eval-every", "3",
                   "--keep-every", "3", "--config", TINY_JSON])
    assert rc == 0
    for stage in ("vae", "video", "joint"):
        assert (run / stage / "final" / "model.safetensors").is_file()
        assert (run / stage / "loss_curves.png").stat().st_size > 1000
        rows = [json.loads(l) for l in (run / stage / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))
    joint_rows = [json.loads(l) for l in (run / "joint" / "log.jsonl").read_text().splitlines()]
    assert any("val/inverse_model" in r for r in joint_rows)
    meta = lambda p: json.loads((p / "config.json").read_text())
    milestones = sorted((run / "joint" / "milestones").iterdir())
    assert [meta(m)["total_steps"] for m in milestones] == [3, 6]
    # a continued run (another seed) counts the whole history and keeps the same held-out split
    more = tmp_path / "more"
    assert uva_main(["--threads", "2", "train", "--data", str(tiny_data), "--out", str(more),
                     "--stage", "joint", "--init", str(run / "joint" / "final"), "--seed", "3",
                     "--joint-steps", "2", "--batch-size", "4", "--eval-every", "2"]) == 0
    assert meta(more / "joint" / "final")["total_steps"] == 8
    assert meta(more / "joint" / "final")["val_episodes"] == meta(run / "joint" / "final")["val_episodes"]
    out = tmp_path / "eval"
    rc = uva_main(["eval", "--ckpt", str(run / "joint" / "final"), "--env", "pusht",
                   "--episodes", "2", "--out", str(out), "--gifs", "1", "--data", str(tiny_data)])
    assert rc == 0
    result = json.loads((out / "eval.json").read_text())
    assert 0.0 <= result["score"] <= 1.0 and len(result["per_episode"]) == 2
    dyn = result["dynamics"]
    assert dyn["episodes"] == 1  # the held-out split of 3 episodes: never trained on
    for key in ("forward_dynamics_psnr_db", "forward_dynamics_raw_psnr_db",
                "copy_last_frame_psnr_db", "vae_reconstruction_psnr_db",
                "policy_open_loop_mae_normalized", "hold_state_mae_normalized"):
        assert np.isfinite(dyn[key]), key
    from PIL import Image
    gif = Image.open(next(out.glob("*.gif")))
    assert gif.n_frames == result["per_episode"][0]["steps"]


def test_collect_with_worker_processes_writes_the_same_buffer(tiny_data, tmp_path):
    """Rollouts spread over processes come back in seed order: the same demos, seeds and attempt
    count as the one-process collection (tiny_data), not whichever worker finished first."""
    out = tmp_path / "workers.zarr"
    assert uva_main(["collect", "--env", "pusht", "--episodes", "3", "--out", str(out),
                     "--workers", "2"]) == 0
    one, two = read_replay_buffer(tiny_data), read_replay_buffer(out)
    for name in ("img", "state", "action", "episode_ends"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert one.attrs["seeds"] == two.attrs["seeds"]
    summaries = [json.loads(open(str(p) + ".json").read()) for p in (tiny_data, out)]
    assert summaries[0]["attempts"] == summaries[1]["attempts"]


def test_collect_with_base_appends_new_expert_demos_and_refuses_reused_seeds(tiny_data, tmp_path,
                                                                           capsys):
    """More demonstrations for the same task: the base episodes come first unchanged, the new
    ones follow on new seeds, and a seed range the base already used is refused (no episode twice)."""
    base = read_replay_buffer(tiny_data)
    out = tmp_path / "more.zarr"
    first_new = max(base.attrs["seeds"]) + 1
    assert uva_main(["collect", "--env", "pusht", "--episodes", "1", "--out", str(out),
                     "--base", str(tiny_data), "--seed", str(first_new)]) == 0
    buf = read_replay_buffer(out)
    n = len(base.action)
    assert buf.n_episodes == base.n_episodes + 1
    assert np.array_equal(buf.img[:n], base.img) and np.array_equal(buf.state[:n], base.state)
    assert buf.attrs["seeds"][:-1] == base.attrs["seeds"] and buf.attrs["seeds"][-1] >= first_new
    assert json.loads(open(str(out) + ".json").read())["base_episodes"] == base.n_episodes
    # each collection splits on its own: what was held out of the base stays held out
    assert buf.attrs["segments"] == [base.n_episodes, 1]
    base_train, base_val = base.train_val_episodes()
    train, val = buf.train_val_episodes()
    assert val[:len(base_val)] == base_val and train[:len(base_train)] == base_train
    assert val[-1] == base.n_episodes  # the one new episode is its segment's validation episode
    rc = uva_main(["collect", "--env", "pusht", "--episodes", "1", "--out", str(tmp_path / "x.zarr"),
                   "--base", str(tiny_data), "--seed", str(base.attrs["seeds"][0])])
    assert rc == 2 and "already holds seeds" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()


def test_joint_stage_from_init_takes_task_weights_and_refuses_shape_changes(tiny_data, tiny_ckpt,
                                                                           tmp_path, capsys):
    """--config task_weights tilt a continued joint stage's mode sampling (here: policy only, the
    rest weighted 0); a field the --init weights fix is refused, not silently ignored. Continuing
    a head refit, the joint steps count on from its backbone's."""
    from uva.checkpoint import load_checkpoint, save_checkpoint
    model, cfg, norms, _ = load_checkpoint(tiny_ckpt)
    head_file = tmp_path / "head_refit"
    save_checkpoint(head_file, model, cfg, norms,
                    {"stage": "head", "total_steps": 50, "backbone_total_steps": 40})
    run = tmp_path / "tilted"
    weights = {m: 0.0 for m in ("video_model", "dynamic_model", "inverse_model", "full_dynamic_model")}
    assert uva_main(["--threads", "2", "train", "--data", str(tiny_data), "--out", str(run),
                     "--stage", "joint", "--init", str(head_file), "--joint-steps", "6",
                     "--batch-size", "4", "--eval-every", "6", "--config",
                     json.dumps({"task_weights": {**weights, "policy_model": 2.0}})]) == 0
    rows = [json.loads(l) for l in (run / "joint" / "log.jsonl").read_text().splitlines()]
    trained = {k.split("/")[1] for r in rows for k in r if k.startswith("train/")}
    assert trained == {"policy_model"}
    saved = json.loads((run / "joint" / "final" / "config.json").read_text())
    assert saved["uva_config"]["task_weights"]["policy_model"] == 2.0
    assert saved["total_steps"] == 40 + 6
    bad = tmp_path / "bad"
    assert uva_main(["train", "--data", str(tiny_data), "--out", str(bad), "--stage", "joint",
                     "--init", str(tiny_ckpt), "--config", '{"width": 32}']) == 2
    assert "not ['width']" in capsys.readouterr().err and not bad.exists()


def test_latent_cache_reencodes_only_the_frames_an_extended_dataset_adds(tiny_data, tmp_path,
                                                                          monkeypatch):
    """The frozen-VAE latent cache knows frames by content: the base's cache copied beside a run
    on the extended data encodes only the new chunks, and reuses the rest unchanged."""
    import dataclasses
    import torch
    from uva import UVAConfig, UVAModel
    from uva.training import caches
    monkeypatch.setattr(caches, "ENCODE_CHUNK", 64)
    encoded = []
    real_encode = caches.encode_frames
    monkeypatch.setattr(caches, "encode_frames",
                        lambda vae, x, scale: encoded.append(len(x)) or real_encode(vae, x, scale))
    torch.manual_seed(0)
    cfg = UVAConfig(**TINY)
    model = UVAModel(cfg).eval()
    base = read_replay_buffer(tiny_data)
    cache = tmp_path / "latents.pt"
    first = caches.encode_dataset(model, base, cfg, "cpu", cache)
    assert sum(encoded) == len(base.img)
    extra = base.img[:100]  # 100 more frames after the base's
    extended = dataclasses.replace(base, img=np.concatenate([base.img, extra]))
    encoded.clear()
    second = caches.encode_dataset(model, extended, cfg, "cpu", cache)
    reused = (len(base.img) // 64) * 64  # whole chunks of base frames; the partial one re-encodes
    assert sum(encoded) == len(extended.img) - reused
    assert torch.equal(second[:reused], first[:reused]) and len(second) == len(extended.img)
    encoded.clear()
    assert torch.equal(caches.encode_dataset(model, extended, cfg, "cpu", cache), second)
    assert encoded == []  # everything known: nothing encoded
    cache.write_bytes(cache.read_bytes()[:1000])  # truncated: rebuilt, not fatal
    assert torch.equal(caches.encode_dataset(model, extended, cfg, "cpu", cache), second)
    assert sum(encoded) == len(extended.img)


def test_head_latent_cache_computes_only_episodes_it_has_not_seen(tiny_data, tmp_path,
                                                                 monkeypatch):
    """The head stage's frozen-backbone latents are cached per episode by content: a repeat
    computes nothing, more episodes compute only theirs, and other backbone weights recompute."""
    import torch
    from uva import UVAConfig, UVAModel
    from uva.training import caches
    from uva.data import WindowIndex
    computed = []
    real = caches.head_latents
    monkeypatch.setattr(caches, "head_latents", lambda model, mode, lat, pro, index, device,
                        **kw: computed.append(len(index)) or real(model, mode, lat, pro, index,
                                                                  device, **kw))
    torch.manual_seed(0)
    cfg = UVAConfig(**TINY)
    model = UVAModel(cfg).eval()
    buf = read_replay_buffer(tiny_data)
    latents = caches.encode_dataset(model, buf, cfg, "cpu", tmp_path / "latents.pt")
    proprio = torch.as_tensor(buf.state, dtype=torch.float32)
    cache = tmp_path / "policy_latents.pt"
    lengths = np.diff(np.concatenate([[0], buf.episode_ends]))

    def cached(episodes):
        return caches.cached_head_latents(model, "policy_model", latents, proprio, buf,
                                             episodes, "cpu", cache, write=True)

    first = cached([0, 1])
    assert computed == [lengths[0] + lengths[1]] and first.dtype == torch.float16
    exact = real(model, "policy_model", latents, proprio,
                 WindowIndex(buf.episode_ends, cfg.n_frames, cfg.actions_per_frame, [0, 1]), "cpu")
    assert torch.allclose(first.float(), exact, rtol=2e-3, atol=2e-3)
    computed.clear()
    second = cached([0, 1, 2])
    assert computed == [lengths[2]] and torch.equal(second[:len(first)], first)
    computed.clear()
    reordered = cached([2, 0])
    assert computed == []
    assert torch.equal(reordered, torch.cat([second[len(first):], second[:lengths[0]]]))
    cache.write_bytes(b"not a torch file")  # a corrupt cache is rebuilt, not fatal
    computed.clear()
    assert torch.equal(cached([0, 1]), first) and computed == [lengths[0] + lengths[1]]
    weight = next(p for n, p in model.named_parameters()
                  if not n.startswith(caches.HEAD_PREFIXES + ("vae.",)))
    with torch.no_grad():
        weight.add_(0.1)
    computed.clear()
    cached([0])
    assert computed == [lengths[0]]  # a different backbone: nothing reused


def test_corrections_extend_the_demos_with_expert_labels_on_policy_states(tiny_data, tiny_ckpt,
                                                                          tmp_path, capsys):
    """DAgger collection: the untrained policy wanders, every state it visits is labelled with the
    scripted expert's action (at most 25 px from the agent), and the demos come first unchanged."""
    out = tmp_path / "dagger.zarr"
    assert uva_main(["collect", "--env", "pusht", "--episodes", "1", "--out", str(out),
                     "--corrections-from", str(tiny_ckpt), "--base", str(tiny_data),
                     "--seed", "300000"]) == 0
    demos, buf = read_replay_buffer(tiny_data), read_replay_buffer(out)
    assert buf.n_episodes == demos.n_episodes + 1
    n = len(demos.action)
    assert np.array_equal(buf.img[:n], demos.img) and np.array_equal(buf.action[:n], demos.action)
    new = buf.episode_slices()[-1]
    step = np.linalg.norm(buf.action[new] - buf.state[new], axis=1)  # label target - agent position
    assert new.stop - new.start == 300  # an untrained policy never finishes: the full episode kept
    assert step.max() <= 25.0 + 1e-3 and step.mean() > 1.0  # the expert's bounded, non-trivial moves
    assert buf.attrs["seeds"][-1] == 300000 and buf.attrs["correction_episodes"] == 1
    rc = uva_main(["collect", "--env", "pusht", "--episodes", "1", "--out", str(tmp_path / "x.zarr"),
                   "--corrections-from", str(tiny_ckpt)])  # corrections need demos to extend
    assert rc == 2 and "needs --base" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()


def _train_cmd(data, out, steps):
    return [sys.executable, "-m", "uva.cli", "--threads", "1", "train", "--data", str(data),
            "--out", str(out), "--stage", "vae", "--vae-steps", str(steps), "--batch-size", "4",
            "--ckpt-every", "4", "--eval-every", "1000", "--config", TINY_JSON]


def test_resume_after_kill_matches_uninterrupted_run(tiny_data, tmp_path):
    from safetensors.torch import load_file
    steps = 24
    full = tmp_path / "full"
    subprocess.run(_train_cmd(tiny_data, full, steps), check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(tiny_data, killed, steps), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    pointer = killed / "vae" / "state" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if pointer.is_file() and json.loads(pointer.read_text())["step"] >= 8:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = json.loads(pointer.read_text())["step"]
    assert 8 <= stopped_at < steps
    assert not (killed / "vae" / "final").exists()
    subprocess.run(_train_cmd(tiny_data, killed, steps) + ["--resume"], check=True, capture_output=True)
    rows = [json.loads(l)["step"] for l in (killed / "vae" / "log.jsonl").read_text().splitlines()]
    # every step logged once up to the kill point's checkpoint, then each later step exactly once
    assert rows[-1] == steps and sorted(set(rows)) == list(range(1, steps + 1))
    a = load_file(str(full / "vae" / "state" / f"step_{steps:08d}" / "model.safetensors"))
    b = load_file(str(killed / "vae" / "state" / f"step_{steps:08d}" / "model.safetensors"))
    assert all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-6) for k in a)


def test_bad_datasets_give_clear_errors(tmp_path, tiny_data, capsys):
    with pytest.raises(DatasetError, match="not found"):
        read_replay_buffer(tmp_path / "missing.zarr")
    (tmp_path / "junk.zarr").mkdir()
    (tmp_path / "junk.zarr" / "zarr.json").write_text("{broken")
    with pytest.raises(DatasetError, match="junk.zarr"):
        read_replay_buffer(tmp_path / "junk.zarr")
    with pytest.raises(DatasetError, match="no episodes"):
        write_replay_buffer(tmp_path / "empty.zarr", [], {})
    assert not (tmp_path / "empty.zarr").exists() and not (tmp_path / "empty.zarr.partial").exists()
    # a dataset whose action dimension differs from the checkpoint's
    ep = {"img": np.zeros((10, 64, 64, 3), np.uint8), "state": np.zeros((10, 8), np.float32),
          "action": np.random.rand(10, 8).astype(np.float32)}
    write_replay_buffer(tmp_path / "panda_like.zarr", [ep], {})
    write_replay_buffer(tmp_path / "segments.zarr", [ep], {"segments": [1, 2]})
    with pytest.raises(DatasetError, match="do not add up to its 1 episodes"):
        read_replay_buffer(tmp_path / "segments.zarr")
    from uva.checkpoint import random_checkpoint
    from uva import UVAConfig
    random_checkpoint(tmp_path / "ck", UVAConfig(**TINY))
    rc = uva_main(["train", "--data", str(tmp_path / "panda_like.zarr"), "--out", str(tmp_path / "r"),
                   "--stage", "joint", "--init", str(tmp_path / "ck")])
    assert rc == 2 and "action dim 8" in capsys.readouterr().err
    rc = uva_main(["collect", "--env", "mujoco_ant", "--episodes", "1", "--out", str(tmp_path / "x.zarr")])
    assert rc == 2 and "unknown env 'mujoco_ant'" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()


def test_vae_from_trains_a_new_transformer_on_the_same_frozen_vae(tiny_data, tmp_path, capsys):
    import torch
    from uva import UVAConfig
    from uva.checkpoint import random_checkpoint
    from uva.checkpoint import CheckpointError, load_checkpoint, load_vae, save_vae
    source = tmp_path / "source"
    random_checkpoint(source, UVAConfig(**TINY))
    # a VAE-only file (what experiments/gpu_recipe.sh extract-vaes ships to a GPU machine) serves too
    vae_only = tmp_path / "vae_only"
    src_cfg, src_norms, _, src_vae = load_vae(source)
    save_vae(vae_only, src_vae, src_cfg, src_norms)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(vae_only)  # not a whole model
    run = tmp_path / "run"
    assert uva_main(["--threads", "2", "train", "--data", str(tiny_data), "--out", str(run),
                     "--stage", "joint", "--vae-from", str(vae_only),
                     "--config", '{"patch_size": 1}', "--joint-steps", "2", "--batch-size", "4",
                     "--eval-every", "2"]) == 0
    model, cfg, _, meta = load_checkpoint(run / "joint" / "final")
    assert cfg.patch_size == 1 and cfg.tokens_per_frame == 4 * src_cfg.tokens_per_frame
    assert cfg.latent_scale == src_cfg.latent_scale and meta["total_steps"] == 2
    assert all(torch.equal(v, src_vae[k]) for k, v in model.vae.state_dict().items())
    assert json.loads((run / "vae" / "final" / "config.json").read_text())["vae_from"] == str(vae_only)
    # overriding what the reused VAE fixes, or asking for the vae stage, is refused up front
    bad = tmp_path / "bad"
    assert uva_main(["train", "--data", str(tiny_data), "--out", str(bad), "--stage", "joint",
                     "--vae-from", str(source), "--config", '{"vae_latent_channels": 8}']) == 2
    assert "cannot override ['vae_latent_channels']" in capsys.readouterr().err
    assert uva_main(["train", "--data", str(tiny_data), "--out", str(bad), "--stage", "vae",
                     "--vae-from", str(source)]) == 2
    assert "replaces the vae stage" in capsys.readouterr().err
    assert not bad.exists()


def test_head_stage_refits_only_the_action_head(tiny_data, tmp_path, capsys):
    """`--stage head` swaps in an action head of another shape (a wider one) and trains it on the
    frozen backbone's policy and inverse-dynamics latents: every other tensor stays the source's,
    the head's loss falls in both modes, and the file is a working policy and inverse-dynamics
    model."""
    import torch
    from uva import UVAConfig, UVAModel
    from uva.checkpoint import load_checkpoint, save_checkpoint
    from uva.normalizer import MinMaxNormalizer
    from uva.policy import UVAPolicy
    buf = read_replay_buffer(tiny_data)
    source = tmp_path / "source"
    torch.manual_seed(0)
    save_checkpoint(source, UVAModel(UVAConfig(**TINY)), UVAConfig(**TINY),
                    {"action": MinMaxNormalizer.fit(buf.action),
                     "proprio": MinMaxNormalizer.fit(buf.state)})
    run = tmp_path / "run"
    assert uva_main(["--threads", "2", "train", "--data", str(tiny_data), "--out", str(run),
                     "--stage", "head", "--init", str(source), "--config",
                     '{"action_head_width": 96, "n_action_steps": 4}',
                     "--head-steps", "60", "--batch-size", "16", "--lr", "1e-3",
                     "--eval-every", "30"]) == 0
    before, _, _, _ = load_checkpoint(source)
    model, cfg, norms, meta = load_checkpoint(run / "head" / "final")
    assert model.action_head.denoiser.width == 96 != before.action_head.denoiser.width
    assert cfg.n_action_steps == 4 and meta["fresh_head"] and meta["total_steps"] == 60
    old = before.state_dict()
    for name, tensor in model.state_dict().items():
        if not name.startswith("action_head."):
            assert torch.equal(tensor, old[name]), name
    rows = [json.loads(line) for line in (run / "head" / "log.jsonl").read_text().splitlines()]
    for mode in ("policy_model", "inverse_model"):  # the head's two uses, both refitted
        losses = [r[f"train/{mode}/action"] for r in rows if f"train/{mode}/action" in r]
        assert len(losses) > 15 and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3]), losses
        assert f"val/{mode}" in rows[-1]
    policy = UVAPolicy(model, cfg, norms)
    obs = {"image": buf.img[:cfg.n_frames], "state": buf.state[:cfg.n_frames]}
    assert policy.predict_action(obs, seed=0).shape == (cfg.horizon, cfg.action_dim)
    assert policy.inverse_dynamics(obs["image"], seed=0).shape == (cfg.horizon, cfg.action_dim)
    # --modes picks the head's uses (the shipped PushT refit fitted the policy alone)
    only = tmp_path / "policy_only"
    assert uva_main(["--threads", "2", "train", "--data", str(tiny_data), "--out", str(only),
                     "--stage", "head", "--init", str(source), "--modes", "policy_model",
                     "--head-steps", "4", "--batch-size", "8", "--eval-every", "4"]) == 0
    logged = {k for line in (only / "head" / "log.jsonl").read_text().splitlines()
              for k in json.loads(line)}
    assert "val/policy_model" in logged and not any("inverse" in k for k in logged)
    # the head stage keeps the backbone: other fields are refused before anything is written
    bad = tmp_path / "bad"
    assert uva_main(["train", "--data", str(tiny_data), "--out", str(bad), "--stage", "head",
                     "--init", str(source), "--config", '{"width": 32}']) == 2
    assert "cannot override ['width']" in capsys.readouterr().err
    assert uva_main(["train", "--data", str(tiny_data), "--out", str(bad), "--stage", "head",
                     "--init", str(source), "--modes", "video_model"]) == 2
    assert "names neither" in capsys.readouterr().err
    assert not bad.exists()


def test_a_stage_continuing_its_runs_previous_stage_refuses_shape_overrides(tiny_data, tmp_path,
                                                                           capsys):
    """`--stage joint --out RUN` continues RUN's video stage: a --config field that would change
    the model is refused up front there too, as with --init (not silently ignored)."""
    import torch
    from uva import UVAConfig, UVAModel
    from uva.checkpoint import save_checkpoint
    from uva.normalizer import MinMaxNormalizer
    buf = read_replay_buffer(tiny_data)
    run = tmp_path / "run"
    torch.manual_seed(0)
    save_checkpoint(run / "video" / "final", UVAModel(UVAConfig(**TINY)), UVAConfig(**TINY),
                    {"action": MinMaxNormalizer.fit(buf.action),
                     "proprio": MinMaxNormalizer.fit(buf.state)}, {"stage": "video"})
    assert uva_main(["train", "--data", str(tiny_data), "--out", str(run), "--stage", "joint",
                     "--config", '{"width": 32}']) == 2
    assert "fixes the model" in capsys.readouterr().err and not (run / "joint").exists()


def test_head_stage_splits_off_an_inverse_head(tiny_data, tmp_path, capsys):
    """`inverse_action_head: true` with `--modes inverse_model` gives inverse dynamics its own
    head, started from the shared one and refitted on inverse latents, while the policy's head
    and every other tensor stay the source's bit for bit (the policy acts exactly as before)."""
    import torch
    from uva import UVAConfig, UVAModel
    from uva.checkpoint import load_checkpoint, save_checkpoint
    from uva.normalizer import MinMaxNormalizer
    from uva.policy import UVAPolicy
    buf = read_replay_buffer(tiny_data)
    source = tmp_path / "source"
    torch.manual_seed(0)
    norms = {"action": MinMaxNormalizer.fit(buf.action), "proprio": MinMaxNormalizer.fit(buf.state)}
    save_checkpoint(source, UVAModel(UVAConfig(**TINY)), UVAConfig(**TINY), norms)
    run = tmp_path / "run"
    assert uva_main(["--threads", "2", "train", "--data", str(tiny_data), "--out", str(run),
                     "--stage", "head", "--init", str(source), "--modes", "inverse_model",
                     "--config", '{"inverse_action_head": true}', "--head-steps", "40",
                     "--batch-size", "16", "--lr", "1e-3", "--eval-every", "20"]) == 0
    before, _, _, _ = load_checkpoint(source)
    model, cfg, norms, meta = load_checkpoint(run / "head" / "final")
    assert cfg.inverse_action_head and not meta["fresh_head"]
    old = before.state_dict()
    for name, tensor in model.state_dict().items():
        if name.startswith("inverse_action_head."):  # trained from the shared head's weights
            assert not torch.equal(tensor, old[name.removeprefix("inverse_")]), name
        else:
            assert torch.equal(tensor, old[name]), name
    rows = [json.loads(line) for line in (run / "head" / "log.jsonl").read_text().splitlines()]
    losses = [r["train/inverse_model/action"] for r in rows]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    assert not any("policy_model" in k for r in rows for k in r)
    obs = {"image": buf.img[:cfg.n_frames], "state": buf.state[:cfg.n_frames]}
    was, now = UVAPolicy(before, cfg, norms), UVAPolicy(model, cfg, norms)
    assert np.array_equal(was.predict_action(obs, seed=0), now.predict_action(obs, seed=0))
    assert not np.allclose(was.inverse_dynamics(obs["image"], seed=0),
                           now.inverse_dynamics(obs["image"], seed=0))
    # a new head shape would replace the split-off inverse head too: refused unless it is fitted
    assert uva_main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "again"),
                     "--stage", "head", "--init", str(run / "head" / "final"), "--modes",
                     "policy_model", "--config", '{"action_head_depth": 1}']) == 2
    assert "replaces the inverse-dynamics head too" in capsys.readouterr().err
