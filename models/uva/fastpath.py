"""Inference fast paths: the same functions as the eager modules, with less overhead at batch 1.

* `FrameEncoder`: the frozen VAE's encoder (encoder + quant conv -> latent mean), traced,
  frozen and optimised for inference by TorchScript on CPU (convolutions prepacked for oneDNN;
  eager PyTorch runs most of these small convolutions at batch 1 on its slow im2col path:
  ~4.3 -> ~2.5 ms per 64 px frame on one EPYC core). Built once at policy load, checked against
  the eager encoder on a probe frame, and replaced by the eager encoder whenever tracing fails
  or disagrees (`reason` says why), so it can never change what is computed beyond float
  rounding (FAST_TOLERANCE).

* Precision (`resolve_precision`): where the processor computes bfloat16 natively (x86 CPUs
  with AVX512-BF16 or AMX, CUDA GPUs with bf16), the fast path runs the VAE encoder and the
  policy-mode transformer (`PolicyBackbone`) in bf16, with fp32 accumulation in oneDNN / cuBLAS;
  the action head and its DDIM loop stay fp32. On a 2-core AMD EPYC (AVX512-BF16) this took the
  transformer from 7.5 to 4.7 ms and a VAE frame from 3.5 to 2.5 ms. It moves a chunk by at most
  ~0.01 in normalised action units at equal sampling noise, 1/15 to 1/100 of what a different
  noise seed moves it (BF16_TOLERANCE; docs/realtime.md has the paired closed-loop scores).
  Elsewhere `auto` is fp32: emulated bf16 is slower than fp32.

The action head's fast sampling loop lives beside the head (heads.DiffusionSampler.sample).
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn as nn

from .vae import encode_frames, images_to_tensor

FAST_TOLERANCE = 1e-4
"""Max |fast - reference| accepted on scaled latents and on normalised actions (float32
rounding of a regrouped computation is ~1e-6; tests/test_realtime.py checks both)."""

PRECISIONS = ("auto", "fp32", "bf16")
BF16_TOLERANCE = 0.03
"""Max |bf16 path - fp32 reference| accepted on normalised actions ([-1, 1] = the demonstrated
range) of one chunk at equal sampling noise, and, relative to the largest latent, on VAE latents.
Measured on the shipped files over 74 closed-loop observations: actions at most 0.011 (median
0.002), against a median of 0.03 (PushT) and 0.29 (Panda) between two noise seeds."""


def native_bf16(device) -> bool:
    """Whether `device` computes bfloat16 natively: a CUDA GPU with bf16, or an x86 CPU with
    AVX512-BF16 or AMX tiles (oneDNN's bf16 kernels); emulated bf16 is slower than fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    probes = [getattr(torch.cpu, name, None) for name in
              ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(probe()) for probe in probes if probe is not None)


def resolve_precision(requested: str, device, fast: bool = True) -> tuple[str, str]:
    """("fp32" | "bf16", why) for a requested precision: `auto` is bf16 where the device computes
    it natively (native_bf16), else fp32; the reference path (fast=False) is always fp32."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if not fast:
        return "fp32", "reference path (fast=False) is fp32"
    if requested != "auto":
        return requested, f"{requested} requested"
    if native_bf16(device):
        return "bf16", f"auto: {torch.device(device).type} computes bf16 natively"
    return "fp32", f"auto: no native bf16 on {torch.device(device).type}"


def dtype_of(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bf16" else torch.float32


class PolicyBackbone:
    """UVAModel.policy_latent in a lower precision: a copy of the token fusion, encoder and
    decoder (not the VAE or the heads) in `dtype`; takes and returns fp32 tensors."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        skip = {id(m): None for m in (model.vae, model.video_head, model.action_head,
                                      model.inverse_action_head) if m is not None}
        self.dtype = dtype
        self.model = copy.deepcopy(model, memo=skip).to(dtype).eval()

    def policy_latent(self, history_latents: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        return self.model.policy_latent(history_latents.to(self.dtype),
                                        proprio.to(self.dtype)).float()


class _EncoderMean(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.encoder, self.quant_conv = vae.encoder, vae.quant_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        moments = self.encoder(x)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        return moments.chunk(2, dim=1)[0]  # DiagonalGaussianDistribution.mean


class FrameEncoder:
    """uint8 frames (N, S, S, 3) -> scaled fp32 latents (N, C, h, w), as vae.encode_frames.

    dtype: what the fast encoder computes in (bf16: a bf16 copy of the encoder; the reference
    path, fast=False in a call, is always the eager fp32 VAE)."""

    def __init__(self, vae, image_size: int, scale: float, device: torch.device,
                 fast: bool = True, dtype: torch.dtype = torch.float32):
        self.vae, self.scale, self.device = vae, scale, torch.device(device)
        self.dtype = dtype
        self.traced = None
        self.reason = "reference path requested" if not fast else ""
        if fast and self.device.type != "cpu":
            self.reason = "TorchScript freezing is used on CPU only; eager on " + self.device.type
            if dtype != torch.float32:
                self.traced = copy.deepcopy(_EncoderMean(vae)).to(dtype).eval()
                self.reason += f" ({dtype})"
        elif fast:
            self._build(image_size)

    def _build(self, image_size: int) -> None:
        probe = torch.Generator().manual_seed(0)
        frames = torch.randint(0, 256, (2, image_size, image_size, 3), generator=probe,
                               dtype=torch.uint8).to(self.device)
        x = images_to_tensor(frames)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # diffusers' shape asserts become constants in the trace: fine, shapes are fixed
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                module = _EncoderMean(self.vae).eval()
                if self.dtype != torch.float32:
                    module = copy.deepcopy(module).to(self.dtype)
                x = x.to(self.dtype)
                traced = torch.jit.optimize_for_inference(
                    torch.jit.freeze(torch.jit.trace(module, x[:1], check_trace=False)))
                got = torch.cat([traced(x[i:i + 1]) for i in range(2)] + [traced(x)]).float()
            want = encode_frames(self.vae, frames, self.scale)
            err = (got * self.scale - torch.cat([want, want])).abs().max().item()
        except Exception as e:  # any tracing/freezing failure: eager encoder, reason kept
            self.reason = f"tracing the VAE encoder failed ({type(e).__name__}: {e}); eager"
            return
        bound = FAST_TOLERANCE if self.dtype == torch.float32 else (
            BF16_TOLERANCE * max(1.0, want.abs().max().item()))
        if not err <= bound:
            self.reason = f"traced VAE encoder disagrees with eager ({err:.2e}); eager fp32"
            return
        self.traced = traced

    @property
    def fast(self) -> bool:
        return self.traced is not None

    def __call__(self, frames_uint8: torch.Tensor, fast: bool = True) -> torch.Tensor:
        if not (fast and self.traced is not None):
            return encode_frames(self.vae, frames_uint8, self.scale)
        return self.traced(images_to_tensor(frames_uint8).to(self.dtype)).float() * self.scale


class _SampleLoop(nn.Module):
    """ActionDiffusionHead.sample's fast loop from given starting noise (what gets traced): the
    condition readout, every step's modulations at once, then DDIM steps x = a*x + b*eps."""

    def __init__(self, head, coeffs: list[tuple[float, float]]):
        super().__init__()
        self.head, self.coeffs = head, coeffs
        self.register_buffer("timesteps", head.diffusion.sample_scheduler.timesteps.clone())

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        denoiser = self.head.denoiser
        mods = denoiser.step_conditions(self.timesteps, self.head.condition(z))
        return self.head.diffusion.ddim_steps(denoiser, x, mods, self.coeffs)


class ActionSampler:
    """The policy head's whole DDIM sampling (readout + every step) traced into one TorchScript
    graph on CPU: at batch 1 the head is ~90 small ops and eager dispatch is most of its time
    (3.4 -> 2.3 ms per chunk on one EPYC core). Same arithmetic as DiffusionSampler.sample's fast
    loop; checked against it at build on random inputs, and used only while the head's DDIM
    timesteps are the ones traced (a changed step count falls back to the eager loop). Not
    frozen: the graph reads the head's own parameters, so a change to them shows (freezing gained
    nothing measurable). Any failure leaves `traced` None with the reason, as FrameEncoder."""

    def __init__(self, head, device, fast: bool = True):
        self.head, self.traced, self.key = head, None, None
        self.reason = "reference path requested" if not fast else ""
        if fast and torch.device(device).type != "cpu":
            self.reason = "TorchScript freezing is used on CPU only; eager loop"
        elif fast:
            self._build(torch.device(device))

    def _build(self, device: torch.device) -> None:
        head = self.head
        g = torch.Generator().manual_seed(0)
        dim = head.horizon * head.action_dim
        z = torch.randn(2, head.n_cameras * head.n_frames * head.grid_size ** 2,
                        head.frame_conv[0].in_channels, generator=g).to(device)
        x = torch.randn(2, dim, generator=g).to(device)
        try:
            coeffs = head.diffusion.ddim_coefficients()
            loop = _SampleLoop(head, coeffs).eval()
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                traced = torch.jit.trace(loop, (z[:1], x[:1]), check_trace=False)
                got = torch.cat([traced(z[i:i + 1], x[i:i + 1]) for i in range(2)])
                want = torch.cat([loop(z[i:i + 1], x[i:i + 1]) for i in range(2)])
            err = (got - want).abs().max().item()
        except Exception as e:  # tracing, freezing, or a schedule without closed-form steps
            self.reason = f"tracing the action sampler failed ({type(e).__name__}: {e}); eager"
            return
        if not err <= FAST_TOLERANCE * (1 + want.abs().max().item()):
            self.reason = f"traced action sampler disagrees with eager ({err:.2e}); eager"
            return
        self.traced, self.key = traced, head.diffusion.timesteps_key()

    def sample(self, z: torch.Tensor, generator: torch.Generator | None, temperature: float,
               fast: bool = True) -> torch.Tensor:
        """As ActionDiffusionHead.sample (same noise draw from `generator`): (B, N, C) ->
        (B, horizon, action_dim) normalised; batch 1 through the traced graph."""
        head = self.head
        if not (fast and self.traced is not None and z.shape[0] == 1
                and head.diffusion.timesteps_key() == self.key):
            return head.sample(z, generator, temperature, fast=fast)
        x = head.diffusion.initial_noise(1, head.horizon * head.action_dim, generator, z,
                                         temperature)
        return self.traced(z, x).reshape(1, head.horizon, head.action_dim)
