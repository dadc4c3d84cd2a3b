"""Checkpoints: a directory with `model.safetensors`, `config.json` and `normalizer.json`.

Every file is written to a temp file in the same directory and renamed into place (uva.fsutil),
so a crash never leaves a half-written file under the final name; config.json, written last,
records the sha256 of model.safetensors (`weights_sha256`).

Loading checks everything and names the file and the problem (CheckpointError): the type and
range of every config field (UVAConfig's own checks), normaliser stats (finite, 1-D, of the
config's dimensions, low <= high per dimension: equal = a constant dimension), the weights'
hash, tensor names and shapes against the model the config builds, and finite weights. A
checkpoint without `weights_sha256` (written before it existed) still loads, with an
UnverifiedCheckpointWarning: its integrity cannot be checked; re-save it to add the hash.
"""
from __future__ import annotations

import hashlib
import json
import math
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes, save_file

from .config import UVAConfig
from .fsutil import atomic_write, atomic_write_json
from .normalizer import MinMaxNormalizer

WEIGHTS, CONFIG, NORMALIZER = "model.safetensors", "config.json", "normalizer.json"
HASH_KEY = "weights_sha256"
STEP_KEYS = ("steps", "total_steps", "backbone_total_steps")
"""config.json counters that must be non-negative integers when present."""


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt or does not match its config."""


class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint without a weights hash was loaded: its integrity was not checked."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def random_checkpoint(path: str | Path, cfg: UVAConfig | None = None, seed: int = 0) -> None:
    """A randomly initialised checkpoint with unit normalizers (for benchmarks and tests)."""
    from .model import UVAModel
    cfg = cfg or UVAConfig()
    torch.manual_seed(seed)
    norms = {"action": MinMaxNormalizer(np.zeros(cfg.action_dim), np.ones(cfg.action_dim)),
             "proprio": MinMaxNormalizer(np.zeros(cfg.proprio_dim), np.ones(cfg.proprio_dim))}
    save_checkpoint(path, UVAModel(cfg), cfg, norms, {"note": "random init"})


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
    digest = {}

    def write_weights(tmp):
        save_file(tensors, tmp)
        digest["sha256"] = file_sha256(tmp)

    atomic_write(path / WEIGHTS, write_weights)
    atomic_write_json(path / NORMALIZER, {k: n.to_dict() for k, n in normalizers.items()})
    atomic_write_json(path / CONFIG, {"uva_config": cfg.to_dict(), **(extra or {}),
                                      HASH_KEY: digest["sha256"]})


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
    if not isinstance(meta, dict) or "uva_config" not in meta:
        raise CheckpointError(f"{path / CONFIG}: no 'uva_config' object")
    try:
        cfg = UVAConfig.from_dict(meta.pop("uva_config"))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path / CONFIG}: invalid UVA config ({e})") from e
    _check_meta(path / CONFIG, meta)
    normalizers = _read_normalizers(path / NORMALIZER, cfg)
    return cfg, normalizers, meta


def _check_meta(where: Path, meta: dict) -> None:
    for key in STEP_KEYS:
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0):
            raise CheckpointError(f"{where}: '{key}' must be a non-negative integer, got {value!r}")
    digest = meta.get(HASH_KEY)
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64
                                   and all(c in "0123456789abcdef" for c in digest)):
        raise CheckpointError(f"{where}: '{HASH_KEY}' must be 64 hex digits, got {digest!r}")


def _stats(where: Path, key: str, raw: dict, side: str, dim: int) -> np.ndarray:
    values = raw.get(side) if isinstance(raw, dict) else None
    if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise CheckpointError(f"{where}: '{key}.{side}' must be a list of {dim} numbers")
    if len(values) != dim:
        raise CheckpointError(f"{where}: '{key}.{side}' has {len(values)} values, the config "
                              f"needs {dim}")
    try:
        stats = np.asarray(values, dtype=np.float64)
    except OverflowError:
        stats = np.array([math.inf])
    if not np.isfinite(stats).all():
        raise CheckpointError(f"{where}: '{key}.{side}' contains NaN or infinity")
    return stats


def _read_normalizers(where: Path, cfg: UVAConfig) -> dict[str, MinMaxNormalizer]:
    """The action and proprio stats: finite, the config's dimensions, low <= high."""
    raw = _read_json(where)
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where}: must be a JSON object of normalizers")
    dims = {"action": cfg.action_dim, "proprio": cfg.proprio_dim}
    for key in dims:
        if key not in raw:
            raise CheckpointError(f"{where}: '{key}' stats missing")
    normalizers = {}
    for key in raw:
        low_raw = raw[key].get("low") if isinstance(raw[key], dict) else None
        dim = dims.get(key, len(low_raw) if isinstance(low_raw, list) else 0)
        low, high = (_stats(where, key, raw[key], side, dim) for side in ("low", "high"))
        swapped = np.flatnonzero(low > high)
        if len(swapped):
            raise CheckpointError(f"{where}: '{key}' low > high in dimensions "
                                  f"{swapped.tolist()[:5]} (swapped stats?)")
        normalizers[key] = MinMaxNormalizer(low, high)
    return normalizers


def _read_weights(path: Path, expected: dict[str, torch.Tensor], prefix: str = "",
                  digest: str | None = None) -> dict:
    """The tensors of `path`/model.safetensors whose names start with `prefix` (prefix removed),
    checked against `digest` (sha256 of the file's bytes), `expected` (names and shapes) and for
    non-finite values."""
    weights = path / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing")
    try:
        data = weights.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{weights}: cannot read ({e})") from e
    if digest is None:
        warnings.warn(f"{path / CONFIG} has no '{HASH_KEY}': the weights' integrity is not "
                      f"checked (re-save the checkpoint to add it)", UnverifiedCheckpointWarning,
                      stacklevel=3)
    elif hashlib.sha256(data).hexdigest() != digest:
        raise CheckpointError(f"{weights}: content does not match the sha256 recorded in "
                              f"{path / CONFIG} (corrupted or replaced file); restore the "
                              f"checkpoint from its source")
    try:
        state = load_bytes(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
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
    digest = meta.pop(HASH_KEY, None)
    # the file is checked against the model's shapes built on the meta device (no memory), so
    # a config that disagrees with its weights is refused before anything is allocated
    with _building(path, "model"), torch.device("meta"):
        expected = UVAModel(cfg).state_dict()
    state = _read_weights(path, expected, digest=digest)
    with _building(path, "model"):
        model = UVAModel(cfg)
    model.load_state_dict(state)
    return model.to(device).eval(), cfg, normalizers, meta


@contextmanager
def _building(path: Path, what: str):
    try:
        yield
    except (TypeError, ValueError, RuntimeError, AssertionError, MemoryError,
            OverflowError) as e:  # torch.nn asserts some of its own size rules
        raise CheckpointError(f"{path / CONFIG}: the config does not build a {what} "
                              f"({type(e).__name__}: {e})") from e


def load_vae(path: str | Path):
    """Returns (cfg, normalizers, extra, vae_state) reading only the frame VAE's tensors, so a
    trained VAE can be reused under a different transformer; `path` may hold the whole model or
    the VAE's tensors alone (`vae.` names)."""
    from .vae import build_vae

    path = Path(path)
    cfg, normalizers, meta = read_config(path)
    digest = meta.pop(HASH_KEY, None)
    with _building(path, "VAE"), torch.device("meta"):
        expected = build_vae(cfg).state_dict()
    return cfg, normalizers, meta, _read_weights(path, expected, prefix="vae.", digest=digest)
