"""Nothing lost, nothing unsafe on the file side: --out guards, the training run lock, checkpoint
validation (config fields, normaliser stats, weights hash, shapes), one-line CLI errors, and a
bounded fuzz of corrupted checkpoint and replay-buffer files."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from conftest import TINY
from uva.checkpoint import (CheckpointError, UnverifiedCheckpointWarning, file_sha256,
                            load_checkpoint, save_checkpoint)
from uva.cli import main as uva_main
from uva.data import DatasetError, read_replay_buffer, write_replay_buffer
from uva.fsutil import atomic_output, atomic_write_json

TINY_JSON = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()})
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def snapshot(root) -> dict:
    """{relative path: (size, mtime_ns, mode, sha256 of files)} of everything under `root`."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = file_sha256(p) if os.path.isfile(p) else None
            state[os.path.relpath(p, root)] = (st.st_size if digest else 0,
                                               st.st_mtime_ns if digest else 0, st.st_mode, digest)
    return state


def outside(snap: dict, out: str) -> dict:
    return {k: v for k, v in snap.items() if k != out and not k.startswith(out + os.sep)}


def tiny_buffer(path, n_episodes=3, steps=24, size=64, seed=0, **arrays) -> None:
    rng = np.random.default_rng(seed)
    eps = [{"img": rng.integers(0, 255, (steps, size, size, 3), dtype=np.uint8),
            "state": rng.uniform(0, 100, (steps, 2)).astype(np.float32),
            "action": rng.uniform(0, 100, (steps, 2)).astype(np.float32), **arrays}
           for _ in range(n_episodes)]
    write_replay_buffer(path, eps, {"env": "pusht", "image_size": size})


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("uva ") and "error:" in last, err
    return last


# ---------------------------------------------------------------------------- --out guards
def test_collect_out_refused_unless_overwrite_and_touches_nothing_else(tmp_path, capsys):
    out = tmp_path / "data.zarr"
    out.mkdir()
    (out / "my_notes.txt").write_text("precious")
    (tmp_path / "keep.txt").write_text("beside")
    before = snapshot(tmp_path)
    assert uva_main(["collect", "--env", "pusht", "--episodes", "1", "--out", str(out)]) == 2
    assert "already exists" in one_line_error(capsys) and snapshot(tmp_path) == before
    # a same-named summary file is refused too, before any rollout
    shutil.rmtree(out)
    (tmp_path / "data.zarr.json").write_text("user's file")
    before = snapshot(tmp_path)
    assert uva_main(["collect", "--env", "pusht", "--episodes", "1", "--out", str(out)]) == 2
    assert "data.zarr.json" in one_line_error(capsys) and snapshot(tmp_path) == before
    # with --overwrite: the buffer and its summary are replaced, nothing else changes
    out.mkdir()
    (out / "my_notes.txt").write_text("old output")
    before = outside(snapshot(tmp_path), "data.zarr")
    assert uva_main(["collect", "--env", "pusht", "--episodes", "1", "--out", str(out),
                     "--overwrite"]) == 0
    assert read_replay_buffer(out).n_episodes == 1 and not (out / "my_notes.txt").exists()
    after = outside(snapshot(tmp_path), "data.zarr")
    assert {k: v for k, v in after.items() if k != "data.zarr.json"} == \
        {k: v for k, v in before.items() if k != "data.zarr.json"}
    assert json.loads((tmp_path / "data.zarr.json").read_text())["episodes"] == 1
    assert not list(tmp_path.glob(".*partial*"))  # no staging directory left behind


def test_collect_out_holding_its_base_is_refused_even_with_overwrite(tmp_path, capsys):
    base = tmp_path / "base.zarr"
    tiny_buffer(base)
    before = snapshot(tmp_path)
    for extra in ([], ["--overwrite"]):
        assert uva_main(["collect", "--env", "pusht", "--episodes", "1", "--out", str(base),
                         "--base", str(base), "--seed", "9000", *extra]) == 2
        assert "holds the input" in one_line_error(capsys)
    assert snapshot(tmp_path) == before


def test_collect_bag_on_an_existing_path(tmp_path, capsys):
    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "keep").write_text("x")
    before = snapshot(tmp_path)
    assert uva_main(["collect", "--env", "panda", "--episodes", "1", "--bag", str(bag)]) == 2
    assert "--bag" in one_line_error(capsys) and snapshot(tmp_path) == before


def test_replay_eval_never_deletes_the_bag_inside_its_out(tmp_path, tiny_ckpt, capsys):
    out = tmp_path / "work"
    bag = out / "recording"
    bag.mkdir(parents=True)
    (bag / "recording_0.mcap").write_bytes(b"pretend bag")
    before = snapshot(tmp_path)
    for extra in ([], ["--overwrite"]):  # old code: rmtree(out), the bag with it
        assert uva_main(["replay-eval", "--bag", str(bag), "--ckpt", str(tiny_ckpt),
                         "--out", str(out), *extra]) == 2
        assert "holds the input" in one_line_error(capsys)
    assert snapshot(tmp_path) == before
    report = tmp_path / "report"
    report.mkdir()
    assert uva_main(["replay-eval", "--bag", str(bag), "--ckpt", str(tiny_ckpt),
                     "--out", str(report)]) == 2
    assert "already exists" in one_line_error(capsys)


def test_eval_and_bench_refuse_an_existing_out(tmp_path, tiny_ckpt, capsys):
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "eval.json").write_text("{}")
    (tmp_path / "bench.json").write_text("{}")
    before = snapshot(tmp_path)
    assert uva_main(["eval", "--ckpt", str(tiny_ckpt), "--env", "pusht", "--episodes", "1",
                     "--out", str(tmp_path / "ev")]) == 2
    assert "already exists" in one_line_error(capsys)
    # an eval --out holding its checkpoint: refused even with --overwrite
    assert uva_main(["eval", "--ckpt", str(tiny_ckpt), "--env", "pusht", "--episodes", "1",
                     "--out", str(tmp_path), "--overwrite"]) == 2
    assert "holds the input" in one_line_error(capsys)
    assert uva_main(["bench", "--ckpt", str(tiny_ckpt), "--out", str(tmp_path / "bench.json"),
                     "--repeats", "1"]) == 2
    assert "already exists" in one_line_error(capsys)
    assert snapshot(tmp_path) == before
    assert uva_main(["--threads", "1", "bench", "--ckpt", str(tiny_ckpt), "--out",
                     str(tmp_path / "bench.json"), "--repeats", "1", "--overwrite"]) == 0
    assert "predict_action_ms" in json.loads((tmp_path / "bench.json").read_text())["fast"]
    assert outside(snapshot(tmp_path), "bench.json") == outside(before, "bench.json")


def test_atomic_output_failure_leaves_the_old_output_and_files_get_the_umask(tmp_path):
    out = tmp_path / "result"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(out, overwrite=True) as tmp:
            tmp.mkdir()
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]
    assert (out / "old.txt").read_text() == "old"
    old = os.umask(0o002)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        save_checkpoint(tmp_path / "ck", *_tiny_model_parts())
    finally:
        os.umask(old)
    # mkstemp alone would leave 0600: the robot account could not read the checkpoint
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o664
    for f in ("model.safetensors", "config.json", "normalizer.json"):
        assert (tmp_path / "ck" / f).stat().st_mode & 0o777 == 0o664, f


# ---------------------------------------------------------------------------- training runs
def _train(data, out, *extra, steps="2"):
    return ["--threads", "1", "train", "--data", str(data), "--out", str(out), "--stage", "vae",
            "--vae-steps", steps, "--batch-size", "2", "--eval-every", "1000", "--config",
            TINY_JSON, *extra]


def test_train_refuses_a_finished_run_and_resume_without_a_run(tmp_path, capsys):
    data = tmp_path / "d.zarr"
    tiny_buffer(data, n_episodes=2, steps=12)
    run = tmp_path / "run"
    assert uva_main(_train(data, run, "--resume")) == 2  # old code: silently started afresh
    assert "no run to resume" in one_line_error(capsys) and not run.exists()
    assert uva_main(_train(data, run)) == 0
    capsys.readouterr()
    (run / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    assert uva_main(_train(data, run)) == 2  # old code: replaced the finished model
    assert "already holds stage vae" in one_line_error(capsys) and snapshot(tmp_path) == before
    # --overwrite replaces that stage, and only it
    assert uva_main(_train(data, run, "--overwrite", steps="1")) == 0
    assert json.loads((run / "vae" / "final" / "config.json").read_text())["steps"] == 1
    assert (run / "notes.txt").read_text() == "mine"
    assert snapshot(tmp_path)["d.zarr"] == before["d.zarr"]
    # never by deleting an input that lives in the stage being replaced
    before = snapshot(tmp_path)
    assert uva_main(["train", "--data", str(data), "--out", str(run), "--stage", "video",
                     "--init", str(run / "vae" / "final"), "--video-steps", "1",
                     "--batch-size", "2", "--eval-every", "1000"]) == 0
    capsys.readouterr()
    assert uva_main(["train", "--data", str(data), "--out", str(run), "--stage", "video",
                     "--init", str(run / "video" / "final"), "--overwrite"]) == 2
    assert "holds the input" in one_line_error(capsys)
    assert (run / "video" / "final" / "model.safetensors").is_file()


def test_one_training_per_run_directory_and_stale_locks_are_taken_over(tmp_path, capsys):
    data = tmp_path / "d.zarr"
    tiny_buffer(data, n_episodes=2, steps=12)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen([sys.executable, "-m", "uva.cli", *_train(data, run, steps="100000")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                             start_new_session=True)
    lock = run / "train.lock"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (lock.is_file() and lock.read_text()):
            assert first.poll() is None, "the first training exited early"
            time.sleep(0.1)
        assert json.loads(lock.read_text())["pid"] == first.pid
        before = snapshot(run)
        assert uva_main(_train(data, run, "--overwrite")) == 2  # not replaced under its feet
        msg = one_line_error(capsys)
        assert "in use by a training" in msg and str(first.pid) in msg
        assert set(snapshot(run)) >= set(before)  # nothing of the running one was removed
        assert first.poll() is None
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # killed: the lock names a dead process; the next training takes it over and says so
    assert json.loads(lock.read_text())["pid"] == first.pid
    resumable = (run / "vae" / "state" / "latest.json").is_file()
    assert uva_main(_train(data, run, "--resume" if resumable else "--overwrite")) == 0
    assert f"stale lock of process {first.pid}" in capsys.readouterr().out
    assert lock.read_text() == ""  # a clean exit leaves no owner


# ---------------------------------------------------------------------------- checkpoints
def _tiny_model_parts():
    import torch
    from uva import UVAConfig, UVAModel
    from uva.normalizer import MinMaxNormalizer
    torch.manual_seed(0)
    cfg = UVAConfig(**TINY)
    return (UVAModel(cfg), cfg, {"action": MinMaxNormalizer(np.zeros(2), np.ones(2)),
                                 "proprio": MinMaxNormalizer(np.zeros(2), np.ones(2))})


def _edit_json(path, fn):
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def _set_cfg(key, value):
    return lambda d: d["uva_config"].__setitem__(key, value)


CONFIG_DEFECTS = {
    "nan_latent_scale": (_set_cfg("latent_scale", float("nan")), "latent_scale.*finite"),
    "negative_steps": (_set_cfg("action_inference_steps", -3), "action_inference_steps.*>= 1"),
    "negative_train_steps": (_set_cfg("train_diffusion_steps", -1), "train_diffusion_steps"),
    "float_for_int": (_set_cfg("width", 64.0), "width.*integer"),
    "string_for_int": (_set_cfg("width", "64"), "width.*integer"),
    "bool_for_int": (_set_cfg("num_heads", True), "num_heads.*integer"),
    "int_for_bool": (_set_cfg("inverse_action_head", 1), "inverse_action_head.*true or false"),
    "string_for_float": (_set_cfg("dropout", "0.1"), "dropout.*number"),
    "dropout_out_of_range": (_set_cfg("dropout", 3.0), "dropout.*<= 1"),
    "weights_not_numbers": (_set_cfg("task_weights", {"policy_model": "lots"}), "task_weights"),
    "channels_not_list": (_set_cfg("vae_block_channels", 16), "vae_block_channels.*list"),
    "negative_meta_steps": (lambda d: d.__setitem__("total_steps", -5), "total_steps"),
    "bad_hash_field": (lambda d: d.__setitem__("weights_sha256", 42), "weights_sha256"),
}


@pytest.mark.parametrize("name", sorted(CONFIG_DEFECTS))
def test_config_defects_are_clear_checkpoint_errors(name, tiny_ckpt):
    edit, pattern = CONFIG_DEFECTS[name]
    _edit_json(tiny_ckpt / "config.json", edit)
    with pytest.raises(CheckpointError, match=f"config.json.*{pattern}"):
        load_checkpoint(tiny_ckpt)


def _set_norm(key, side, value):
    return lambda d: d[key].__setitem__(side, value)


NORM_DEFECTS = {
    "nan_low": (_set_norm("action", "low", [float("nan"), 0.0]), "NaN or infinity"),
    "inf_high": (_set_norm("proprio", "high", [1.0, float("inf")]), "NaN or infinity"),
    "swapped": (lambda d: d["action"].update(low=[1.0, 1.0], high=[0.0, 0.0]), "low > high"),
    "wrong_dim": (_set_norm("action", "low", [0.0, 0.0, 0.0]), "3 values, the config needs 2"),
    "nested": (_set_norm("action", "low", [[0.0], [0.0]]), "list of 2 numbers"),
    "strings": (_set_norm("action", "high", ["1", "1"]), "list of 2 numbers"),
    "missing": (lambda d: d.pop("proprio"), "'proprio' stats missing"),
}


@pytest.mark.parametrize("name", sorted(NORM_DEFECTS))
def test_normalizer_defects_are_clear_checkpoint_errors(name, tiny_ckpt):
    edit, pattern = NORM_DEFECTS[name]
    _edit_json(tiny_ckpt / "normalizer.json", edit)
    with pytest.raises(CheckpointError, match=f"normalizer.json.*{pattern}"):
        load_checkpoint(tiny_ckpt)


def test_weights_hash_catches_a_bit_flip_and_shapes_are_checked(tiny_ckpt, tmp_path):
    meta = json.loads((tiny_ckpt / "config.json").read_text())
    assert meta["weights_sha256"] == file_sha256(tiny_ckpt / "model.safetensors")
    data = bytearray((tiny_ckpt / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x10  # one bit in the middle of a tensor: loads fine without a hash
    flipped = tmp_path / "flipped"
    shutil.copytree(tiny_ckpt, flipped)
    (flipped / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors.*sha256"):
        load_checkpoint(flipped)
    # a checkpoint from before the hash still loads, with a warning that says so
    _edit_json(tiny_ckpt / "config.json", lambda d: d.pop("weights_sha256"))
    with pytest.warns(UnverifiedCheckpointWarning, match="integrity"):
        load_checkpoint(tiny_ckpt)
    # a tensor whose shape does not fit the config (the hash matches: it was saved that way)
    import torch
    model, cfg, norms = _tiny_model_parts()
    state = model.state_dict()
    name = next(k for k, v in state.items() if v.ndim == 2)
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])

    class Weights:  # what save_checkpoint reads of a model
        def state_dict(self):
            return state
    save_checkpoint(tmp_path / "wrong", Weights(), cfg, norms)
    with pytest.raises(CheckpointError, match=f"wrong shape.*{name}"):
        load_checkpoint(tmp_path / "wrong")


def test_shipped_checkpoints_carry_their_hash_and_no_local_paths():
    for name in ("pusht", "panda"):
        path = os.path.join(REPO, "models", "checkpoints", name)
        meta = json.loads(open(os.path.join(path, "config.json")).read())
        assert meta["weights_sha256"] == file_sha256(os.path.join(path, "model.safetensors"))
        assert not {"head_of", "vae_from", "correction_policy"} & set(meta), name
        with warnings.catch_warnings():
            warnings.simplefilter("error", UnverifiedCheckpointWarning)
            load_checkpoint(path)


# ---------------------------------------------------------------------------- CLI input errors
def test_cli_inputs_fail_on_one_line_with_exit_2(tmp_path, capsys):
    data = tmp_path / "d.zarr"
    tiny_buffer(data, n_episodes=2, steps=12)
    base = ["train", "--data", str(data), "--out", str(tmp_path / "r")]
    cases = [
        (base + ["--config", "{width: 1"], "argument --config: not valid JSON"),
        (base + ["--config", "[1, 2]"], "argument --config: must be a JSON object"),
        (base + ["--config", '{"width": "256"}'], "--config: field 'width' must be an integer"),
        (base + ["--config", '{"widht": 256}'], "--config: unknown config fields"),
        (base + ["--batch-size", "0"], "argument --batch-size: expected an integer >= 1"),
        (base + ["--ckpt-every", "0"], "argument --ckpt-every: expected an integer >= 1"),
        (base + ["--lr", "nan"], "argument --lr: expected a number > 0"),
        (["collect", "--env", "pusht", "--episodes", "-2", "--out", str(tmp_path / "c")],
         "argument --episodes: expected an integer >= 1"),
        (["collect", "--env", "pusht", "--episodes", "1", "--workers", "0", "--out",
          str(tmp_path / "c")], "argument --workers: expected an integer >= 1"),
        (["eval", "--env", "pusht", "--episodes", "-1", "--out", str(tmp_path / "e")],
         "argument --episodes: expected an integer >= 0"),
    ]
    nonsquare = tmp_path / "nonsquare.zarr"
    rng = np.random.default_rng(0)
    write_replay_buffer(nonsquare, [{"img": rng.integers(0, 255, (12, 64, 48, 3), dtype=np.uint8),
                                     "state": np.zeros((12, 2), np.float32),
                                     "action": np.zeros((12, 2), np.float32)}], {})
    flat = tmp_path / "flat_action.zarr"
    write_replay_buffer(flat, [{"img": rng.integers(0, 255, (12, 64, 64, 3), dtype=np.uint8),
                                "state": np.zeros((12, 2), np.float32),
                                "action": np.zeros(12, np.float32)}], {})
    for buf, pattern in ((nonsquare, r"frames are \(64, 48\).*--image-size"), (flat, "action must be a 2-D")):
        cases.append((["train", "--data", str(buf), "--out", str(tmp_path / "r2"), "--config",
                       TINY_JSON, "--vae-steps", "1"], f"{buf.name}: .*{pattern}"))
    import re
    for argv, pattern in cases:
        assert uva_main(argv) == 2, argv
        line = one_line_error(capsys)
        assert re.search(pattern, line), (argv, line)
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()


def test_internal_errors_are_reported_as_such(monkeypatch, capsys, tmp_path):
    from uva import bench
    monkeypatch.setattr(bench, "bench", lambda *a, **k: {}["boom"])
    assert uva_main(["bench", "--out", str(tmp_path / "b.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("uva bench: internal error: KeyError") and "please report" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_console_errors_carry_no_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "uva.cli", "train", "--data",
                          str(tmp_path / "none.zarr"), "--out", str(tmp_path / "r"),
                          "--config", "{oops"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "--config" in res.stderr


# ---------------------------------------------------------------------------- file fuzz
def _corrupt(rng, root, files) -> str:
    """Damage one file of `files` under `root` at random; returns what was done."""
    f = files[rng.integers(len(files))]
    data = bytearray(f.read_bytes())
    kind = rng.choice(["truncate", "bitflip", "json"] if f.suffix == ".json" else
                      ["truncate", "bitflip", "bitflip"])
    if kind == "truncate":
        f.write_bytes(bytes(data[: rng.integers(0, max(len(data), 1))]))
    elif kind == "bitflip" and data:
        for _ in range(rng.integers(1, 4)):
            data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
        f.write_bytes(bytes(data))
    else:
        try:
            obj = json.loads(data)
        except ValueError:  # damaged by an earlier corruption of this case: truncate instead
            f.write_bytes(bytes(data[: len(data) // 2]))
            return f"truncate {f.relative_to(root)}"
        values = [None, -1, 0, 3.5, float("nan"), float("inf"), "x", True, [], {}, [1.0, 0.0],
                  10**30]

        def edit(node, depth=0):
            if isinstance(node, dict) and node:
                key = list(node)[rng.integers(len(node))]
                if depth < 3 and isinstance(node[key], (dict, list)) and rng.random() < 0.6:
                    return edit(node[key], depth + 1)
                if rng.random() < 0.2:
                    del node[key]
                else:
                    node[key] = values[rng.integers(len(values))]
            elif isinstance(node, list) and node:
                i = rng.integers(len(node))
                if depth < 3 and isinstance(node[i], (dict, list)) and rng.random() < 0.6:
                    return edit(node[i], depth + 1)
                node[i] = values[rng.integers(len(values))]
        edit(obj)
        f.write_text(json.dumps(obj))
    return f"{kind} {f.relative_to(root)}"


def _valid_checkpoint(loaded) -> None:
    import torch
    model, cfg, norms, _ = loaded
    for n in norms.values():
        assert np.isfinite(n.low).all() and np.isfinite(n.high).all() and (n.low <= n.high).all()
    assert norms["action"].low.shape == (cfg.action_dim,)
    assert all(torch.isfinite(p).all() for p in model.state_dict().values()
               if p.is_floating_point())


def _valid_buffer(buf) -> None:
    n = len(buf.action)
    assert buf.img.ndim == 4 and buf.img.shape[-1] == 3 and len(buf.img) == n
    if "image_size" in buf.attrs:  # resized on import / collection: the size it says
        assert buf.img.shape[1:3] == (buf.attrs["image_size"],) * 2
    assert buf.state.ndim == 2 and buf.action.ndim == 2 and len(buf.state) == n
    assert buf.episode_ends[-1] == n and (np.diff(buf.episode_ends) > 0).all()
    assert np.isfinite(buf.action).all() and np.isfinite(buf.state).all()


def test_frames_that_contradict_the_buffers_image_size_are_refused(tmp_path):
    """A damaged array header can leave 64x1 frames under image_size 64 (found by the fuzzer)."""
    path = tmp_path / "buf.zarr"
    rng = np.random.default_rng(0)
    eps = [{"img": rng.integers(0, 255, (8, 64, 1, 3), dtype=np.uint8),
            "state": np.zeros((8, 2), np.float32), "action": np.zeros((8, 2), np.float32)}]
    write_replay_buffer(path, eps, {"env": "pusht", "image_size": 64})
    with pytest.raises(DatasetError, match="64x1, its attrs say image_size 64"):
        read_replay_buffer(path)
    write_replay_buffer(tmp_path / "native.zarr", eps, {"env": "pusht"})  # no size promised
    assert read_replay_buffer(tmp_path / "native.zarr").img.shape == (8, 64, 1, 3)


def test_fuzzed_checkpoints_and_buffers_load_valid_or_fail_clearly(tmp_path, tiny_ckpt, capsys):
    rng = np.random.default_rng(int(os.environ.get("UVA_FUZZ_SEED", "18")))  # to reproduce
    good_buf = tmp_path / "good.zarr"
    tiny_buffer(good_buf, n_episodes=2, steps=8)
    outcomes = {"ckpt_ok": 0, "ckpt_err": 0, "buf_ok": 0, "buf_err": 0, "cli": 0}
    t_end = time.time() + 20
    i = 0
    while time.time() < t_end or i < 24:  # a bounded time, and enough cases on a slow machine
        i += 1
        work = tmp_path / f"case{i}"
        work.mkdir()
        if i % 2:
            ck = work / "ckpt"
            shutil.copytree(tiny_ckpt, ck)
            files = sorted(p for p in ck.iterdir() if p.is_file())
            what = [_corrupt(rng, ck, files) for _ in range(rng.integers(1, 3))]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UnverifiedCheckpointWarning)
                    loaded = load_checkpoint(ck)
            except CheckpointError:
                outcomes["ckpt_err"] += 1
            except Exception as e:  # pragma: no cover - the failure this test exists to catch
                pytest.fail(f"{what}: {type(e).__name__}: {e}")
            else:
                _valid_checkpoint(loaded)
                outcomes["ckpt_ok"] += 1
            if i % 7 == 1:  # the CLI on the damaged file: exit 0 or 2, nothing outside --out
                before = snapshot(tmp_path)
                rc = uva_main(["--threads", "1", "bench", "--ckpt", str(ck), "--repeats", "1",
                               "--out", str(work / "bench.json")])
                capsys.readouterr()
                assert rc in (0, 2), what
                assert outside(snapshot(tmp_path), f"case{i}{os.sep}bench.json") == before
                outcomes["cli"] += 1
        else:
            buf = work / "buf.zarr"
            shutil.copytree(good_buf, buf)
            files = sorted(p for p in buf.rglob("*") if p.is_file())
            what = [_corrupt(rng, buf, files) for _ in range(rng.integers(1, 3))]
            try:
                loaded = read_replay_buffer(buf)
            except DatasetError:
                outcomes["buf_err"] += 1
            except Exception as e:  # pragma: no cover
                pytest.fail(f"{what}: {type(e).__name__}: {e}")
            else:
                _valid_buffer(loaded)
                outcomes["buf_ok"] += 1
        shutil.rmtree(work)
    print(outcomes)
    assert outcomes["ckpt_err"] >= 5 and outcomes["buf_err"] >= 5 and outcomes["cli"] >= 1, \
        outcomes
