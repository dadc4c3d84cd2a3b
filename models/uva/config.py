"""One config dataclass for the whole UVA model; it is saved inside every checkpoint.

Defaults are the architecture of the shipped models (configs/pusht.yaml; a recipe's `model:`
lists only what differs, e.g. Panda executes all 8 actions), the CPU-sized `small` model of
DESIGN.md §2. The structure follows the
reference UVA: each history frame is paired with one future frame token-by-token, and each future
frame owns `actions_per_frame` consecutive actions of the chunk.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import types
import typing
from dataclasses import dataclass, field

TASK_MODES = ("video_model", "dynamic_model", "policy_model", "inverse_model", "full_dynamic_model")
"""The five masked training tasks of UVA (names as in the reference implementation)."""


def check_camera_names(cameras) -> list[str]:
    """A config's camera list: a non-empty list of unique, non-empty names (strings)."""
    if isinstance(cameras, str) or not isinstance(cameras, (list, tuple)):
        raise ValueError(f"cameras must be a list of camera names, got {cameras!r}")
    cameras = list(cameras)
    if not cameras:
        raise ValueError("cameras must name at least one camera")
    bad = [c for c in cameras if not isinstance(c, str) or not c.strip()]
    if bad:
        raise ValueError(f"camera names must be non-empty strings, got {bad!r}")
    duplicates = sorted({c for c in cameras if cameras.count(c) > 1})
    if duplicates:
        raise ValueError(f"camera names must be unique; repeated: {duplicates}")
    return cameras


@dataclass
class UVAConfig:
    # --- observation / action structure
    # camera names, in token order: each camera's frames get their own tokens (cameras x frames x
    # spatial). One camera costs exactly what a camera-less model did; a config without the key
    # (every checkpoint before cameras existed) is one camera named "scene"
    cameras: list[str] = field(default_factory=lambda: ["scene"])
    image_size: int = 64
    n_frames: int = 2  # history frames == future frames (paired per token)
    actions_per_frame: int = 4  # env steps between frames; the chunk has n_frames * this actions
    action_dim: int = 2
    proprio_dim: int = 2
    # --- frame VAE (diffusers AutoencoderKL, trained by `uva train --stage vae`)
    vae_block_channels: tuple[int, ...] = (16, 32, 64, 64)
    vae_latent_channels: int = 4
    vae_kl_weight: float = 1e-6
    latent_scale: float = 1.0  # 1/std of the VAE latents, measured on the dataset
    patch_size: int = 2  # latent pixels per token side (MAR patchify)
    # --- transformer (MAR-style bidirectional encoder + decoder)
    width: int = 256
    encoder_depth: int = 3
    decoder_depth: int = 3
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    # --- diffusion heads
    video_head_width: int = 256
    video_head_depth: int = 3
    action_head_width: int = 256
    action_head_depth: int = 3
    action_conv_channels: int = 64  # the action head's conv readout (flattened grid per frame)
    # inverse dynamics decoded by its own action head (same shape) instead of the policy's: the
    # two uses read different latents, and fitting both in one head traded one for the other
    # (docs/findings.md); False = one head for both, as the paper. The shipped PushT file splits
    # it off in a head stage (configs/pusht.yaml)
    inverse_action_head: bool = False
    # scale of the action head's starting noise (inference only): 1 = the trained distribution;
    # lower keeps successive chunks nearer the mode instead of switching between modes (on PushT
    # 0.5 and 0 were no better, docs/findings.md)
    action_temperature: float = 1.0
    train_diffusion_steps: int = 1000
    # the action head's own DDPM training schedule; None = train_diffusion_steps (one schedule
    # for both heads, as the paper and every checkpoint written before the field existed).
    # Diffusion Policy trains its actions on 100 steps; on PushT at 200 demos a fresh policy head
    # on 100 beat one on 1 000 by +0.041 +- 0.019 (docs/findings.md)
    action_train_diffusion_steps: int | None = None
    video_inference_steps: int = 10
    action_inference_steps: int = 10
    video_unmask_iterations: int = 4  # MAR unmasking passes of UVAModel.sample_video
    # scale of the video head's starting noise: 0 = the deterministic DDIM prediction (measured
    # closer to the real future than 1.0 on both envs, docs/findings.md), 1 = full sampling
    video_temperature: float = 0.0
    diffusion_batch_mul: int = 2  # noise draws per target per step, as in MAR's DiffLoss
    # --- masking law: ratio ~ truncated normal(1.0, std) restricted to [min, 1]
    mask_ratio_min: float = 0.7
    mask_ratio_std: float = 0.25
    # --- which task modes are trained, and how often (stage 2 default: all five)
    task_weights: dict[str, float] = field(
        default_factory=lambda: {m: 1.0 for m in TASK_MODES}
    )
    # --- image augmentation of the transformer stages (video, joint; never the head stage or
    # inference, training.augment): every training episode encoded `augment_shift_copies` more
    # times, each copy shifted by one random offset of up to `augment_shift_px` pixels, drawn
    # beside the original windows. 0 = off, as in the shipped recipes
    augment_shift_px: int = 0
    augment_shift_copies: int = 0
    # --- execution hint for controllers: how many steps of each chunk to run before re-planning
    # (4 of 8 on PushT scored 0.272 vs 0.205; Panda keeps 8, its recipe says so)
    n_action_steps: int = 4

    def __post_init__(self):
        check_fields(self)
        self.cameras = check_camera_names(self.cameras)
        unknown = set(self.task_weights) - set(TASK_MODES)
        if unknown:
            raise ValueError(f"unknown task modes {sorted(unknown)}; valid: {TASK_MODES}")
        if self.image_size % (self.vae_downsample * self.patch_size):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by VAE downsample "
                f"{self.vae_downsample} x patch_size {self.patch_size}"
            )
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} must be divisible by num_heads {self.num_heads}")
        if self.tokens_per_frame % self.actions_per_frame:
            raise ValueError(
                f"tokens per frame ({self.tokens_per_frame}) must be a multiple of "
                f"actions_per_frame ({self.actions_per_frame}) so each action tiles whole tokens"
            )
        if not 1 <= self.n_action_steps <= self.horizon:
            raise ValueError(f"n_action_steps must be in [1, {self.horizon}]")
        for sampled, trained, what in (
                (self.video_inference_steps, self.train_diffusion_steps, "video"),
                (self.action_inference_steps, self.action_diffusion_steps, "action")):
            if sampled > trained:
                raise ValueError(f"{what}_inference_steps ({sampled}) cannot exceed the "
                                 f"{what} head's training schedule ({trained} steps)")
        if self.action_temperature < 0 or self.video_temperature < 0:
            raise ValueError("action_temperature and video_temperature must be >= 0")

    # --- derived sizes
    @property
    def vae_downsample(self) -> int:
        return 2 ** (len(self.vae_block_channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.vae_downsample

    @property
    def grid_size(self) -> int:
        """Tokens per side of one frame."""
        return self.latent_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid_size**2

    @property
    def n_cameras(self) -> int:
        return len(self.cameras)

    @property
    def tokens_per_camera(self) -> int:
        """Tokens of one camera's frames (history and future frames are paired per token)."""
        return self.n_frames * self.tokens_per_frame

    @property
    def n_tokens(self) -> int:
        """Tokens the transformer attends over: cameras x frames x spatial."""
        return self.n_cameras * self.tokens_per_camera

    @property
    def token_dim(self) -> int:
        return self.vae_latent_channels * self.patch_size**2

    @property
    def action_diffusion_steps(self) -> int:
        """The DDPM training schedule length of the action head(s)."""
        if self.action_train_diffusion_steps is None:
            return self.train_diffusion_steps
        return self.action_train_diffusion_steps

    @property
    def horizon(self) -> int:
        return self.n_frames * self.actions_per_frame

    @property
    def active_modes(self) -> list[str]:
        return [m for m in TASK_MODES if self.task_weights.get(m, 0.0) > 0]

    # --- serialisation
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["vae_block_channels"] = list(self.vae_block_channels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def check_partial(cls, d: dict) -> None:
        """Check a dict of field overrides (e.g. `uva train --config`) key by key: unknown
        names, types and ranges, without the checks that need the whole config. A removed
        option is refused whatever its value (an override asks for something)."""
        cls._check_keys(d, "overrides", "unknown config fields")
        retired = sorted(set(d) & set(REMOVED_FIELDS))
        if retired:
            raise ValueError(_removed_message(retired[0], d[retired[0]]))
        hints = typing.get_type_hints(cls)
        for name, value in d.items():
            _check_value(name, value, hints[name])

    @classmethod
    def from_dict(cls, d: dict) -> "UVAConfig":
        """The config a checkpoint's (or a recipe's) dict describes. A removed option naming
        the behaviour that stayed (e.g. `action_pooling: flatten`, in every file written while
        the option existed) is dropped; any other value is refused: that model cannot be built."""
        cls._check_keys(d, "config", "config has unknown keys")
        for name in sorted(set(d) & set(REMOVED_FIELDS)):
            kept = REMOVED_FIELDS[name]
            if type(d[name]) is not type(kept) or d[name] != kept:
                raise ValueError(_removed_message(name, d[name]))
        return cls(**{k: v for k, v in d.items() if k not in REMOVED_FIELDS})

    @classmethod
    def _check_keys(cls, d, what: str, unknown_message: str) -> None:
        """`d` is a dict naming only fields of the config, current or removed (TypeError /
        ValueError otherwise)."""
        if not isinstance(d, dict):
            raise TypeError(f"{what} must be a JSON object, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)} - set(REMOVED_FIELDS)
        if unknown:
            raise ValueError(f"{unknown_message} {sorted(unknown)}")


REMOVED_FIELDS: dict[str, object] = {"action_pooling": "flatten", "action_denoiser": "mlp",
                                     "action_proprio": False}
"""Action-head options that lost in experiments (docs/findings.md) and were removed, with the
value that names what the action head still does: a flattened conv readout of each frame's grid
(not `mean` or `attention`), an MLP-AdaLN denoiser (not `unet`; a copy lives in experiments/),
no proprio fed to the head directly."""


def _removed_message(name: str, value) -> str:
    return (f"config field '{name}' ({json.dumps(value)}): this ablation option was removed; "
            f"uva's action head is always {name}={json.dumps(REMOVED_FIELDS[name])} "
            f"(docs/findings.md)")


# ---------------------------------------------------------------------------- field checks
# Every field is checked against its annotation (int, float, bool, str, tuple[...], dict[...]),
# so a new field is covered without an entry here: bool is never accepted for a number nor a
# number for a bool, numbers must be finite, and ints and floats must be >= 0 unless a range
# below says otherwise ((low, high), inclusive, None = open; EXCLUSIVE_LOW lists strict lows).
# A field whose value may be negative needs an entry (low None). Ints are also capped at
# INT_MAX (a size no model here reaches), so a damaged file cannot ask for absurd allocations.
FIELD_RANGES: dict[str, tuple[float | None, float | None]] = {
    "image_size": (1, None), "n_frames": (1, None), "actions_per_frame": (1, None),
    "action_dim": (1, None), "proprio_dim": (1, None), "vae_latent_channels": (1, None),
    "patch_size": (1, None), "width": (1, None), "encoder_depth": (1, None),
    "decoder_depth": (1, None), "num_heads": (1, None), "video_head_width": (1, None),
    "video_head_depth": (1, None), "action_head_width": (1, None), "action_head_depth": (1, None),
    "action_conv_channels": (1, None),
    "n_action_steps": (1, None), "vae_block_channels": (1, None),
    # loops run this many times per inference: bounded so a damaged file cannot hang a node
    "train_diffusion_steps": (1, 100_000), "action_train_diffusion_steps": (1, 100_000),
    "video_inference_steps": (1, 10_000),
    "action_inference_steps": (1, 10_000), "video_unmask_iterations": (1, 10_000),
    "diffusion_batch_mul": (1, 1024),
    "augment_shift_px": (0, 64), "augment_shift_copies": (0, 64),
    "latent_scale": (0.0, None), "mlp_ratio": (0.0, None), "mask_ratio_std": (0.0, None),
    "dropout": (0.0, 1.0), "mask_ratio_min": (0.0, 1.0),
}
INT_MAX = 2**20
EXCLUSIVE_LOW = {"latent_scale", "mlp_ratio", "mask_ratio_std"}
"""Fields whose lower bound is excluded (a zero scale or spread is meaningless)."""


def _type_error(name: str, value, expected: str) -> TypeError:
    return TypeError(f"field '{name}' must be {expected}, got {value!r} "
                     f"({type(value).__name__})")


def _check_number(name: str, value, kind: type):
    """`value` as a Python int or float, refusing bools, strings and non-finite numbers."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _type_error(name, value, "an integer" if kind is int else "a number")
    if kind is int:
        if not isinstance(value, numbers.Integral):
            raise _type_error(name, value, "an integer")
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"field '{name}' must be finite, got {value}")
    low, high = FIELD_RANGES.get(name, (0, None))
    if kind is int:
        high = INT_MAX if high is None else min(high, INT_MAX)
    strict = name in EXCLUSIVE_LOW
    if low is not None and (value < low or (strict and value == low)):
        raise ValueError(f"field '{name}' must be {'>' if strict else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"field '{name}' must be <= {high}, got {value}")
    return value


def _check_value(name: str, value, tp):
    """`value` checked (and normalised: tuples, Python numbers) against annotation `tp`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _check_value(name, value, option)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise TypeError("; ".join(errors))
    if tp is bool:
        if not isinstance(value, bool) and type(value).__name__ != "bool_":  # numpy's bool too
            raise _type_error(name, value, "true or false")
        return bool(value)
    if tp in (int, float):
        return _check_number(name, value, tp)
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(name, value, "a string")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            raise _type_error(name, value, "a list")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"field '{name}' must have {len(args)} entries, got {len(value)}")
            items = [_check_value(name, v, a) for v, a in zip(value, args)]
        else:
            items = [_check_value(name, v, args[0]) for v in value] if args else list(value)
        if not items and name in FIELD_RANGES:
            raise ValueError(f"field '{name}' must not be empty")
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(name, value, "an object")
        key_t, val_t = args or (typing.Any, typing.Any)
        return {_check_value(name, k, key_t): _check_value(name, v, val_t)
                for k, v in value.items()}
    if isinstance(tp, type) and not isinstance(value, tp):
        raise _type_error(name, value, tp.__name__)
    return value


def check_fields(cfg) -> None:
    """Type- and range-check every dataclass field of `cfg` in place (TypeError / ValueError
    naming the field)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        setattr(cfg, f.name, _check_value(f.name, getattr(cfg, f.name), hints[f.name]))
