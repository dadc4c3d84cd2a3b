"""Does a wrist camera help the Panda pick-and-place? Scene-only vs scene + wrist, same demos,
same init, same training steps.

Full UVA training of a Panda model is a GPU job (configs/panda.yaml). On a CPU the comparison
is made as a continuation of the shipped backbone, the same for both arms:

* **scene**: the shipped `models/checkpoints/panda` continued with the joint stage on the scene
  camera of the demos;
* **scene+wrist**: the same weights grafted into a two-camera model (`cameras: [scene, wrist]`)
  and continued with the joint stage, same steps, batch and seed, on both cameras of the same
  demos. What the shipped file has is copied; what a second camera adds starts neutral: the
  camera embeddings at zero and the action head's wrist columns of `frame_fc` at zero, so at
  step 0 the action head reads the scene camera exactly as the shipped file does (the
  transformer already attends over the wrist tokens).

Steps (what made experiments/multicam/wrist_ablation.json; outputs under --work):

    python experiments/multicam/wrist_ablation.py prepare --data data/panda2cam.zarr --work runs/wrist
    uva --threads 1 train --stage joint --init runs/wrist/init_scene --data runs/wrist/scene.zarr \
        --out runs/wrist/scene600 --joint-steps 600 --batch-size 32 --ckpt-every 200 --seed 0
    uva --threads 1 train --stage joint --init runs/wrist/init_scene_wrist --data data/panda2cam.zarr \
        --out runs/wrist/scene_wrist600 --joint-steps 600 --batch-size 32 --ckpt-every 200 --seed 0
    # part-way: copy <run>/joint/state/step_00000400 aside before the run deletes it, then
    python experiments/multicam/wrist_ablation.py snapshot --state COPY --out runs/wrist/ckpt_scene_400
    uva --threads 1 eval --env panda --ckpt CKPT --episodes 50 --seed 200000 --out runs/wrist/eval_<arm><tag>
    python experiments/multicam/wrist_ablation.py report --work runs/wrist --data data/panda2cam.zarr \
        --tags _400 _600 --out experiments/multicam/wrist_ablation.json

where data/panda2cam.zarr is `uva collect --env panda --episodes 120 --seed 0 --cameras
scene,wrist` (the shipped model's 120 demo seeds, now with a wrist camera).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "panda"


def scene_only(src: Path, dst: Path) -> None:
    """The same buffer with only its scene camera (one-camera layout, `img`)."""
    from uva.data import read_replay_buffer, write_replay_buffer
    buf = read_replay_buffer(src)
    ends = np.asarray(buf.episode_ends)
    starts = np.concatenate([[0], ends[:-1]])
    episodes = []
    for s, e in zip(starts, ends):
        episodes.append({"img": buf.images["scene"][s:e], "state": buf.state[s:e],
                         "action": buf.action[s:e]})
    attrs = {k: v for k, v in buf.attrs.items() if k != "cameras"}
    write_replay_buffer(dst, episodes, {**attrs, "cameras": ["scene"]})


def _lineage(meta: dict) -> dict:
    """What a continued checkpoint keeps of its init's metadata (held-out split, step counts)."""
    return {k: v for k, v in meta.items()
            if k in ("stage", "steps", "total_steps", "val_episodes", "weights")}


def graft(shipped: Path, out: Path, cameras: list[str]) -> dict:
    """The shipped one-camera weights in a len(cameras)-camera model, new parts neutral."""
    from uva.checkpoint import load_checkpoint, save_checkpoint
    from uva.config import UVAConfig
    from uva.model import UVAModel

    model1, cfg1, normalizers, meta = load_checkpoint(shipped)
    model1 = model1.float()
    cfg = UVAConfig.from_dict({**cfg1.to_dict(), "cameras": cameras})
    model = UVAModel(cfg)
    src, dst = model1.state_dict(), model.state_dict()
    copied, new = [], []
    for name, t in dst.items():
        if name in src and src[name].shape == t.shape:
            dst[name] = src[name].clone()
            copied.append(name)
        elif name.endswith("frame_fc.weight"):
            w = torch.zeros_like(t)
            w[:, :src[name].shape[1]] = src[name]          # features are (camera, feature)
            dst[name] = w
            copied.append(name + " (scene columns; others 0)")
        elif "camera_pos" in name:
            dst[name] = torch.zeros_like(t)
            new.append(name + " (0)")
        else:
            raise SystemExit(f"graft: no rule for {name} {tuple(t.shape)}")
    model.load_state_dict(dst)
    save_checkpoint(out, model, cfg, normalizers, _lineage(meta))
    return {"copied": len(copied), "new": new}


def snapshot(args) -> None:
    """A joint-stage training state (<run>/joint/state/step_N) -> a checkpoint of its EMA
    weights, the kind a finished stage writes, to evaluate a run part-way."""
    from diffusers.training_utils import EMAModel
    from uva.checkpoint import load_checkpoint, save_checkpoint
    model, cfg, normalizers, meta = load_checkpoint(args.state)
    params = [p for n, p in model.named_parameters() if not n.startswith("vae.")]  # joint stage
    ts = torch.load(Path(args.state) / "train_state.pt", map_location="cpu", weights_only=False)
    ema = EMAModel(params, decay=0.999, use_ema_warmup=True)
    ema.load_state_dict(ts["ema"])
    ema.copy_to(params)
    meta = {k: v for k, v in meta.items() if k != "weights_sha256"}
    save_checkpoint(args.out, model, cfg, normalizers, {**meta, "steps": ts["step"],
                                                        "weights": "ema"})
    print(f"{args.out}: EMA weights at step {ts['step']}")


def prepare(args) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    scene = work / "scene.zarr"
    if not scene.exists():
        scene_only(Path(args.data), scene)
    for name, cams in (("init_scene", ["scene"]), ("init_scene_wrist", ["scene", "wrist"])):
        if not (work / name).exists():
            if cams == ["scene"]:
                from uva.checkpoint import load_checkpoint, save_checkpoint
                model, cfg, normalizers, meta = load_checkpoint(args.shipped)
                save_checkpoint(work / name, model.float(), cfg, normalizers, _lineage(meta))
                print(f"{name}: the shipped weights in fp32")
            else:
                print(f"{name}:", graft(Path(args.shipped), work / name, cams))


def _eval_summary(path: Path) -> dict:
    m = json.loads((path / "eval.json").read_text())
    rows = m["per_episode"]
    scores = [float(r["score"]) for r in rows]
    n = len(scores)
    return {"episodes": n, "successes": int(sum(bool(r["success"]) for r in rows)),
            "mean": float(np.mean(scores)),
            "se": float(np.std(scores, ddof=1) / math.sqrt(n)) if n > 1 else None,
            "scores": scores, "seeds": [r["seed"] for r in rows]}


def vae_psnr(shipped: Path, data: Path, n: int = 256) -> dict:
    """Reconstruction PSNR (dB) of the shipped frame VAE on n random frames of each camera."""
    from uva.checkpoint import load_checkpoint
    from uva.data import read_replay_buffer
    from uva.metrics import psnr_uint8
    from uva.vae import decode_latents, encode_frames
    model, cfg, _, _ = load_checkpoint(shipped)
    model = model.float()
    buf = read_replay_buffer(data)
    idx = np.sort(np.random.default_rng(0).choice(len(buf.action), n, replace=False))
    out = {}
    for cam, frames in buf.images.items():
        f = torch.from_numpy(frames[idx])
        with torch.no_grad():
            rec = decode_latents(model.vae, encode_frames(model.vae, f, cfg.latent_scale),
                                 cfg.latent_scale).numpy()
        out[cam] = float(np.mean([psnr_uint8(rec[i], f[i].numpy()) for i in range(n)]))
    return out


def report(args) -> None:
    work = Path(args.work)
    out = {"question": "Panda pick-and-place: scene camera vs scene + wrist camera",
           "protocol": __doc__.split("Steps")[0].strip(),
           "shipped_vae_psnr_db": vae_psnr(Path(args.shipped), Path(args.data))}
    for arm in ("scene", "scene_wrist"):
        for tag in args.tags:
            ev = work / f"eval_{arm}{tag}"
            if not (ev / "eval.json").exists():
                continue
            out[f"{arm}{tag}"] = _eval_summary(ev)
    for tag in args.tags:
        if f"scene{tag}" in out and f"scene_wrist{tag}" in out:
            a, b = out[f"scene{tag}"]["scores"], out[f"scene_wrist{tag}"]["scores"]
            d = np.asarray(b) - np.asarray(a)
            out[f"paired_difference{tag}"] = {"mean": float(d.mean()),
                                              "se": float(d.std(ddof=1) / math.sqrt(len(d)))}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: (v if not isinstance(v, dict) else
                          {kk: vv for kk, vv in v.items() if kk not in ("scores", "seeds")})
                      for k, v in out.items() if k != "protocol"}, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--data", required=True, help="a two-camera (scene, wrist) Panda buffer")
    a.add_argument("--work", required=True)
    a.add_argument("--shipped", default=str(SHIPPED))
    r = sub.add_parser("report")
    r.add_argument("--work", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--data", required=True, help="the two-camera buffer (for the VAE check)")
    r.add_argument("--shipped", default=str(SHIPPED))
    r.add_argument("--tags", nargs="+", default=[""],
                   help="eval directory suffixes to report (eval_scene<TAG>, eval_scene_wrist<TAG>)")
    s = sub.add_parser("snapshot")
    s.add_argument("--state", required=True, help="<run>/joint/state/step_N (copy it first: "
                   "the run deletes older states)")
    s.add_argument("--out", required=True)
    args = p.parse_args()
    {"prepare": prepare, "report": report, "snapshot": snapshot}[args.cmd](args)


if __name__ == "__main__":
    main()
