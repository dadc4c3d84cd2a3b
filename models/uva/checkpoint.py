"""Checkpoints: a directory with `model.safetensors`, `config.json` and `normalizer.json`.

Every file is written to a temp file in the same directory and renamed into place, so a crash
never leaves a half-written file under the final name. Loading checks every file and names the
file and the problem when something is wrong.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import UVAConfig
from .normalizer import MinMaxNormalizer

WEIGHTS, CONFIG, NORMALIZER = "model.safetensors", "config.json", "normalizer.json"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt or does not match its config."""


def atomic_write(path: Path, write_fn) -> None:
    """Call write_fn(tmp_path) then atomically rename tmp_path to path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
    atomic_write(path, write)


def total_steps(meta: dict) -> int | None:
    """Training steps of a checkpoint's stage over its whole chain of --init continuations
    (checkpoints written before `total_steps` existed: their own run's steps)."""
    return meta.get("total_steps", meta.get("steps"))


def save_checkpoint(path: str | Path, model: torch.nn.Module, cfg: UVAConfig,
                    normalizers: dict[str, MinMaxNormalizer], extra: dict | None = None,
                    dtype: torch.dtype | None = None) -> None:
    """`dtype` (e.g. torch.float16) stores floating weights smaller, for shipping; loading
    always restores the model's own dtype."""
    _write(Path(path), model.state_dict(), cfg, normalizers, extra, dtype)


def save_vae(path: str | Path, vae_state: dict[str, torch.Tensor], cfg: UVAConfig,
             normalizers: dict[str, MinMaxNormalizer], extra: dict | None = None,
             dtype: torch.dtype | None = None) -> None:
    """The frame VAE's tensors alone (as `vae.*`, what `load_vae` reads) with the config and
    normalizers: a 2 MB file that carries a trained VAE to another run (`uva train --vae-from`)."""
    _write(Path(path), {f"vae.{k}": v for k, v in vae_state.items()}, cfg, normalizers, extra,
           dtype)


def _write(path: Path, state: dict[str, torch.Tensor], cfg: UVAConfig,
           normalizers: dict[str, MinMaxNormalizer], extra: dict | None, dtype) -> None:
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
               .detach().cpu().contiguous() for k, v in state.items()}
    atomic_write(path / WEIGHTS, lambda tmp: save_file(tensors, tmp))
    atomic_write_json(path / NORMALIZER, {k: n.to_dict() for k, n in normalizers.items()})
    atomic_write_json(path / CONFIG, {"uva_config": cfg.to_dict(), **(extra or {})})


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e


def read_config(path: Path) -> tuple[UVAConfig, dict[str, MinMaxNormalizer], dict]:
    """(cfg, normalizers, the rest of config.json) of a checkpoint directory, each checked."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    meta = _read_json(path / CONFIG)
    try:
        cfg = UVAConfig.from_dict(meta.pop("uva_config"))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path / CONFIG}: invalid UVA config ({e})") from e
    norm_raw = _read_json(path / NORMALIZER)
    try:
        normalizers = {k: MinMaxNormalizer.from_dict(v) for k, v in norm_raw.items()}
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path / NORMALIZER}: invalid normalizer ({e})") from e
    for key, dim in (("action", cfg.action_dim), ("proprio", cfg.proprio_dim)):
        if key not in normalizers or normalizers[key].low.shape != (dim,):
            raise CheckpointError(f"{path / NORMALIZER}: '{key}' stats missing or not {dim}-dim")
    return cfg, normalizers, meta


def _read_weights(path: Path, expected: dict[str, torch.Tensor], prefix: str = "") -> dict:
    """The tensors of `path`/model.safetensors whose names start with `prefix` (prefix removed),
    checked against `expected` (names and shapes) and for non-finite values."""
    weights = path / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: corrupt safetensors file ({e})") from e
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or bad_shape:
        raise CheckpointError(
            f"{weights}: does not match {path / CONFIG}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shape {bad_shape[:3]}")
    if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        raise CheckpointError(f"{weights}: contains non-finite weights")
    return state


def load_checkpoint(path: str | Path, device: str = "cpu"):
    """Returns (model, cfg, normalizers, extra). Raises CheckpointError naming the bad file."""
    from .model import UVAModel

    path = Path(path)
    cfg, normalizers, meta = read_config(path)
    model = UVAModel(cfg)
    model.load_state_dict(_read_weights(path, model.state_dict()))
    return model.to(device).eval(), cfg, normalizers, meta


def load_vae(path: str | Path):
    """Returns (cfg, normalizers, extra, vae_state) reading only the frame VAE's tensors, so a
    trained VAE can be reused under a different transformer; `path` may hold the whole model or
    the VAE's tensors alone (`vae.` names)."""
    from .vae import build_vae

    path = Path(path)
    cfg, normalizers, meta = read_config(path)
    expected = build_vae(cfg).state_dict()
    return cfg, normalizers, meta, _read_weights(path, expected, prefix="vae.")
