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

With `prepare --vae-steps N` both arms first get the same new frame VAE: the shipped one
fine-tuned N steps on both cameras' frames, its scene latents held near the shipped ones
(`finetune_vae`), because the shipped VAE was trained on scene frames only and reconstructs wrist
frames at ~14 dB, so with it the wrist tokens carry little.

Steps for the VAE fine-tune protocol (experiments/multicam/wrist_ablation_vae2cam.json):

    OMP_NUM_THREADS=2 python experiments/multicam/wrist_ablation.py prepare \
        --data data/panda2cam.zarr --work runs/wrist2 --vae-steps 800
    # each arm (scene: init_scene on runs/wrist2/scene.zarr; scene_wrist: init_scene_wrist on
    # data/panda2cam.zarr), one thread each, the two side by side:
    uva --threads 1 train --stage joint --init runs/wrist2/init_<arm> --data DATA \
        --out runs/wrist2/<arm> --joint-steps 1000 --batch-size 32 --ckpt-every 250 \
        --eval-every 250 --keep-every 500 --seed 0
    uva --threads 1 train --stage joint --init runs/wrist2/<arm>/joint/final --data DATA \
        --out runs/wrist2/<arm>_leg2 --joint-steps 1000 --batch-size 32 --ckpt-every 250 \
        --eval-every 250 --seed 1
    # evaluations, each `uva --threads 1 eval --env panda --episodes 50 --gifs 0 --ckpt CKPT
    # --seed SEED --out runs/wrist2/eval_<arm><TAG>`:
    #   _0: init_<arm>, 200000;  _500: <arm>/joint/milestones/step_00000500, 200000;
    #   _1000 / _1000b: <arm>/joint/final, 200000 / 300000;
    #   _2000_200000 / _2000_300000: <arm>_leg2/joint/final, 200000 / 300000
    python experiments/multicam/wrist_ablation.py report --work runs/wrist2 --data data/panda2cam.zarr \
        --tags _0 _500 _1000+_1000b _2000_200000+_2000_300000 \
        --out experiments/multicam/wrist_ablation_vae2cam.json --plot docs/media/panda_wrist_camera.png

The lr probe (wrist_ablation_vae2cam_lr2e-5.json) is the first leg again with `--lr 2e-5`, out
<arm>_lr2e-5, evaluated to eval_<arm>_lr2e-5_1000_<seed>, reported with
`--tags _lr2e-5_1000_200000+_lr2e-5_1000_300000`.

Steps for the shipped-VAE protocol (what made experiments/multicam/wrist_ablation.json; outputs under --work):

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


def finetune_vae(shipped: Path, data: Path, out: Path, steps: int, anchor: float,
                  batch: int = 32, lr: float = 2e-4, seed: int = 0) -> dict:
    """The shipped checkpoint with its frame VAE fine-tuned on both cameras' frames.

    Each step reconstructs `batch` scene and `batch` wrist frames (reconstruction + the VAE's KL,
    as the vae stage trains it) and, so that the shipped backbone keeps reading the scene camera
    it was trained on, pulls the scene frames' scaled latent means towards the shipped VAE's
    (`anchor` x their mean squared difference). The latent scale is kept. Frames of the
    shipped file's held-out episodes are never trained on; they give the PSNRs and the scene
    latent drift (RMS of the scaled-latent change; the scaled latents have std ~1)."""
    import copy

    from tqdm import trange
    from uva.checkpoint import load_checkpoint, save_checkpoint
    from uva.data import read_replay_buffer
    from uva.metrics import psnr
    from uva.vae import images_to_tensor

    model, cfg, normalizers, meta = load_checkpoint(shipped)
    model = model.float()
    old = copy.deepcopy(model.vae).requires_grad_(False).eval()
    buf = read_replay_buffer(data)
    val_eps = [int(e) for e in meta.get("val_episodes", [])]
    train_eps = [e for e in range(buf.n_episodes) if e not in val_eps]
    train, val = buf.frame_indices(train_eps), buf.frame_indices(val_eps)
    val = val[np.linspace(0, len(val) - 1, min(256, len(val))).astype(int)]
    cams = {c: torch.from_numpy(np.asarray(buf.images[c])) for c in ("scene", "wrist")}
    scale = cfg.latent_scale

    @torch.no_grad()
    def measure(vae) -> dict:
        res = {}
        for c, frames in cams.items():
            x = images_to_tensor(frames[val])
            mu = vae.encode(x).latent_dist.mean
            rec = vae.decode(mu).sample
            res[f"{c}_psnr_db"] = float(np.mean([psnr(rec[i], x[i]) for i in range(len(x))]))
            if c == "scene":
                ref = old.encode(x).latent_dist.mean
                res["scene_latent_drift_rms"] = float(((mu - ref) * scale).pow(2).mean().sqrt())
        return res

    before = measure(model.vae)
    vae = model.vae.requires_grad_(True).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = np.random.default_rng(seed)
    for step in (bar := trange(steps, desc="vae fine-tune")):
        rows = {c: np.sort(gen.choice(train, batch, replace=False)) for c in cams}
        xs, xw = (images_to_tensor(cams[c][rows[c]]) for c in ("scene", "wrist"))
        x = torch.cat([xs, xw])
        post = vae.encode(x).latent_dist
        recon = vae.decode(post.mean + post.std * torch.randn_like(post.mean)).sample
        rec_loss = torch.nn.functional.mse_loss(recon, x)
        kl = post.kl().mean() / x[0].numel()
        with torch.no_grad():
            ref = old.encode(xs).latent_dist.mean
        keep = ((post.mean[:batch] - ref) * scale).pow(2).mean()
        loss = rec_loss + cfg.vae_kl_weight * kl + anchor * keep
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(recon=f"{rec_loss.item():.4f}", keep=f"{keep.item():.4f}")
    vae.requires_grad_(False).eval()
    after = measure(vae)
    save_checkpoint(out, model, cfg, normalizers, _lineage(meta))
    return {"steps": steps, "batch_per_camera": batch, "lr": lr, "anchor": anchor,
            "held_out_episodes": val_eps, "before": before, "after": after}


def prepare(args) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    scene = work / "scene.zarr"
    if not scene.exists():
        scene_only(Path(args.data), scene)
    base = Path(args.shipped)
    if args.vae_steps:  # both arms start from the shipped file with a VAE that knows both cameras
        base = work / "shipped_vae2cam"
        if not base.exists():
            info = finetune_vae(Path(args.shipped), Path(args.data), base, args.vae_steps,
                                args.anchor)
            (work / "vae_finetune.json").write_text(json.dumps(info, indent=1) + "\n")
            print("vae fine-tune:", json.dumps(info, indent=1))
    for name, cams in (("init_scene", ["scene"]), ("init_scene_wrist", ["scene", "wrist"])):
        if not (work / name).exists():
            if cams == ["scene"]:
                from uva.checkpoint import load_checkpoint, save_checkpoint
                model, cfg, normalizers, meta = load_checkpoint(base)
                save_checkpoint(work / name, model.float(), cfg, normalizers, _lineage(meta))
                print(f"{name}: the weights of {base} in fp32")
            else:
                print(f"{name}:", graft(base, work / name, cams))


def _eval_summary(paths: list[Path]) -> dict:
    """Score summary of one or more evaluations (other seeds of one checkpoint), pooled."""
    rows = [r for path in paths for r in json.loads((path / "eval.json").read_text())["per_episode"]]
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


def plot(out: dict, tags: list[str], path: Path) -> None:
    """Success rate (± s.e.) against joint-stage steps of continuation, one line per arm; a
    tag's step count is its leading number (`_1000+_1000b` -> 1000)."""
    import re

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for arm, label in (("scene", "scene camera"), ("scene_wrist", "scene + wrist camera")):
        pts = sorted((int(re.match(r"_(\d+)", t).group(1)), out[f"{arm}{t}"]) for t in tags
                     if f"{arm}{t}" in out)
        ax.errorbar([s for s, _ in pts], [r["mean"] for _, r in pts],
                    yerr=[r["se"] for _, r in pts], marker="o", capsize=3,
                    label=f"{label} ({'/'.join(str(r['episodes']) for _, r in pts)} episodes)")
    ax.set_xlabel("joint-stage steps continued from the shipped backbone (batch 32)")
    ax.set_ylabel("pick-and-place success rate")
    ax.set_title("Panda: does a wrist camera help? (same demos, VAE, steps)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def report(args) -> None:
    work = Path(args.work)
    out = {"question": "Panda pick-and-place: scene camera vs scene + wrist camera",
           "protocol": __doc__.split("Steps")[0].strip(),
           "shipped_vae_psnr_db": vae_psnr(Path(args.shipped), Path(args.data))}
    if (work / "vae_finetune.json").exists():
        out["vae_finetune"] = json.loads((work / "vae_finetune.json").read_text())
    for arm in ("scene", "scene_wrist"):
        for tag in args.tags:  # "A+B": the evaluations eval_<arm>A and eval_<arm>B pooled
            evs = [work / f"eval_{arm}{t}" for t in tag.split("+")]
            if not all((ev / "eval.json").exists() for ev in evs):
                continue
            out[f"{arm}{tag}"] = _eval_summary(evs)
    for tag in args.tags:
        if f"scene{tag}" in out and f"scene_wrist{tag}" in out:
            a, b = out[f"scene{tag}"]["scores"], out[f"scene_wrist{tag}"]["scores"]
            d = np.asarray(b) - np.asarray(a)
            out[f"paired_difference{tag}"] = {"mean": float(d.mean()),
                                              "se": float(d.std(ddof=1) / math.sqrt(len(d)))}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if args.plot:
        plot(out, args.tags, Path(args.plot))
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
    a.add_argument("--vae-steps", type=int, default=0,
                   help="first fine-tune the shipped VAE on both cameras this many steps "
                   "(0: both arms keep the shipped VAE)")
    a.add_argument("--anchor", type=float, default=1.0,
                   help="weight keeping the scene frames' latents where the shipped VAE put them")
    r = sub.add_parser("report")
    r.add_argument("--work", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--data", required=True, help="the two-camera buffer (for the VAE check)")
    r.add_argument("--shipped", default=str(SHIPPED))
    r.add_argument("--tags", nargs="+", default=[""],
                   help="eval directory suffixes to report (eval_scene<TAG>, eval_scene_wrist<TAG>); "
                   "A+B pools two evaluations (other seeds) of the same checkpoint")
    r.add_argument("--plot", help="also draw success vs steps for the tags to this PNG")
    s = sub.add_parser("snapshot")
    s.add_argument("--state", required=True, help="<run>/joint/state/step_N (copy it first: "
                   "the run deletes older states)")
    s.add_argument("--out", required=True)
    args = p.parse_args()
    {"prepare": prepare, "report": report, "snapshot": snapshot}[args.cmd](args)


if __name__ == "__main__":
    main()
