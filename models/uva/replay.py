"""`uva replay-eval`: evaluate a checkpoint on a rosbag2 recording before trusting it on the arm.

Offline mode reads the bag directly and rebuilds every control-time observation with the policy
node's own alignment code (uva.control.align_history), then compares each predicted chunk with
what the robot actually did next. Reports are written to a temp directory and renamed into place,
so a failed run never leaves a report that looks complete.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import franka
from .fsutil import atomic_output, atomic_write_json, check_out
from .control import StampedBuffer, align_history, camera_set_reason
from .images import resize
from .metrics import psnr_uint8
from .policy import load_policy
from .rosbag import BagError, BagWriter, read_streams
from .topic_map import TopicMap, load_topic_map

def _interp(joints: list[tuple[float, np.ndarray]], times: np.ndarray) -> np.ndarray:
    t = np.array([s for s, _ in joints])
    q = np.stack([v for _, v in joints])
    return np.stack([np.interp(times, t, q[:, j]) for j in range(q.shape[1])], axis=1)


def _window(policy, cameras: dict, states: np.ndarray) -> dict:
    """predict_action input from per-camera frames (already at the model's size): the array for a
    one-camera checkpoint, {camera: frames} by name for several (docs/multicam.md)."""
    if len(policy.cfg.cameras) == 1:
        return {"image": cameras[policy.cfg.cameras[0]], "state": states}
    return {"images": {c: cameras[c] for c in policy.cfg.cameras}, "state": states}


def offline_metrics(policy, streams, topics: TopicMap, max_video_windows: int = 16) -> dict:
    """Rebuild every control tick's observation from the bag with the node's alignment code (every
    mapped camera in one align_history call, the topic map's first camera the anchor), predict a
    chunk and compare it with the measured joints that followed; also the hold-last baseline
    (the current state held for the whole chunk: what the controller does without a policy)."""
    cfg = policy.cfg
    dt = 1.0 / topics.control_rate_hz
    stride_s = cfg.actions_per_frame * dt
    names_cam = list(streams.cameras) if streams.cameras else list(cfg.cameras)
    frames = streams.cameras or {names_cam[0]: streams.images}
    buffers = {c: StampedBuffer(horizon_s=30) for c in names_cam}
    joint_buf = StampedBuffer(horizon_s=30)
    first = frames[names_cam[0]]
    t0 = first[0][0] + (cfg.n_frames - 1) * stride_s
    t_end = streams.joints[-1][0] - cfg.horizon * dt
    ticks = np.arange(t0, t_end, cfg.n_action_steps * dt)
    if len(ticks) == 0:
        raise BagError(f"bag too short: needs > {cfg.horizon * dt + (cfg.n_frames - 1) * stride_s:.1f}s")
    next_frame = {c: 0 for c in names_cam}
    jj = 0
    preds, actuals, holds, stamps, skipped = [], [], [], [], 0
    video_rows = set(np.linspace(0, len(ticks) - 1, min(max_video_windows, len(ticks))).astype(int).tolist())
    fwd, copy, inv = [], [], []
    frame_times = {c: np.array([t for t, _ in frames[c]]) for c in names_cam}
    for k, now in enumerate(tqdm(ticks, desc="replay offline")):
        for c in names_cam:
            stream, i = frames[c], next_frame[c]
            while i < len(stream) and stream[i][0] <= now + 1e-9:
                buffers[c].push(*stream[i])
                i += 1
            next_frame[c] = i
        while jj < len(streams.joints) and streams.joints[jj][0] <= now + 1e-9:
            joint_buf.push(*streams.joints[jj])
            jj += 1
        obs, _ = align_history([buffers[c] for c in names_cam], joint_buf, now, cfg.n_frames,
                               stride_s, topics.sync_slop_s, topics.max_obs_age_s,
                               camera_names=names_cam)
        if obs is None:
            skipped += 1
            continue
        history = {c: np.stack([resize(cams[j], cfg.image_size) for cams in obs.images])
                   for j, c in enumerate(names_cam)}
        window = _window(policy, history, obs.states)
        pred = policy.predict_action(window, seed=k)
        actual = _interp(streams.joints, obs.stamp + dt * np.arange(1, cfg.horizon + 1))
        preds.append(pred)
        actuals.append(actual)
        holds.append(np.repeat(obs.states[-1:], cfg.horizon, 0))
        stamps.append(obs.stamp)
        if k in video_rows:
            future_t = obs.stamp + stride_s * np.arange(1, cfg.n_frames + 1)
            future = {}
            for c in names_cam:
                idx = [int(np.argmin(np.abs(frame_times[c] - t))) for t in future_t]
                future[c] = np.stack([resize(frames[c][i][1], cfg.image_size) for i in idx])
            predicted = policy.predict_video(window, actions=actual, seed=k)
            if not isinstance(predicted, dict):
                predicted = {cfg.cameras[0]: predicted}
            fwd.append(float(np.mean([psnr_uint8(predicted[c], future[c]) for c in cfg.cameras])))
            copy.append(float(np.mean([psnr_uint8(np.repeat(history[c][-1:], cfg.n_frames, 0),
                                                  future[c]) for c in cfg.cameras])))
            inv_in = future[cfg.cameras[0]] if len(cfg.cameras) == 1 else \
                {c: future[c] for c in cfg.cameras}
            inv.append(float(np.abs(policy.inverse_dynamics(inv_in, seed=k) - actual).mean()))
    if not preds:
        raise BagError("no control tick had an aligned observation (check topics and stamps)")
    preds, actuals, holds = np.stack(preds), np.stack(actuals), np.stack(holds)  # (N, H, D)
    err, hold_err = preds - actuals, holds - actuals
    names = list(topics.joint_names)
    report = {
        "ticks": len(ticks), "evaluated": len(preds), "skipped_unaligned": skipped,
        "cameras": names_cam,
        "per_joint_mae": dict(zip(names, np.abs(err).mean((0, 1)).tolist())),
        "per_joint_rmse": dict(zip(names, np.sqrt((err ** 2).mean((0, 1))).tolist())),
        "mae": float(np.abs(err).mean()),
        "mae_vs_horizon_step": np.abs(err).mean((0, 2)).tolist(),
        # the baseline a chunk must beat: hold the current state (the controller holding)
        "hold_last_mae": float(np.abs(hold_err).mean()),
        "hold_last_per_joint_mae": dict(zip(names, np.abs(hold_err).mean((0, 1)).tolist())),
        "hold_last_mae_vs_horizon_step": np.abs(hold_err).mean((0, 2)).tolist(),
        "forward_dynamics_psnr_db": float(np.mean(fwd)) if fwd else None,
        "copy_last_frame_psnr_db": float(np.mean(copy)) if copy else None,
        "inverse_dynamics_mae": float(np.mean(inv)) if inv else None,
        "video_windows": len(fwd),
    }
    grip = [i for i, n in enumerate(names) if "finger" in n or "gripper" in n]
    if grip:
        g = grip[0]
        mid = (policy.action_norm.low[g] + policy.action_norm.high[g]) / 2
        report["gripper_accuracy"] = float(((preds[..., g] > mid) == (actuals[..., g] > mid)).mean())
    return report, err, np.array(stamps), preds[:, 0], actuals[:, 0]


def check_cameras(topics: TopicMap, cfg, ckpt) -> None:
    """The topic map must name the checkpoint's cameras (by name, any order), as the policy node
    requires of its camera_names; a map written before cameras were named (`image_topic`) is one
    camera "scene", the name of every checkpoint from before cameras existed."""
    reason = camera_set_reason(topics.camera_names, list(cfg.cameras))
    if reason:
        raise BagError(f"topic map {reason.replace('the checkpoint', f'checkpoint {ckpt}', 1)}; "
                       f"name the map's cameras (cameras: {{name: topic}}) as the checkpoint does")


def _plots(out: Path, err: np.ndarray, stamps, preds, actuals, names) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = np.arange(1, err.shape[1] + 1)
    for j, n in enumerate(names):
        ax.plot(steps, np.abs(err[:, :, j]).mean(0), label=n)
    ax.set_xlabel("chunk step")
    ax.set_ylabel("MAE (rad / m)")
    ax.set_title("action error vs horizon")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "error_vs_horizon.png", dpi=100)
    plt.close(fig)
    n = len(names)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.3 * n), sharex=True)
    for j, ax in enumerate(np.atleast_1d(axes)):
        ax.plot(stamps - stamps[0], actuals[:, j], "k-", lw=1, label="recorded")
        ax.plot(stamps - stamps[0], preds[:, j], "r.", ms=3, label="predicted")
        ax.set_ylabel(names[j], fontsize=6)
    np.atleast_1d(axes)[0].legend(fontsize=6)
    np.atleast_1d(axes)[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(out / "joint_traces.png", dpi=100)
    plt.close(fig)
    return ["error_vs_horizon.png", "joint_traces.png"]


def replay_eval(bag: str, ckpt: str, out: str, mode: str = "offline",
                topic_map: str | None = None, overwrite: bool = False) -> dict:
    """Write the report directory `out` (refused if it exists, unless `overwrite`; never one
    holding the bag, checkpoint or topic map), whole or not at all."""
    if mode not in ("offline", "realtime"):
        raise ValueError(f"unknown mode '{mode}' (offline or realtime)")
    inputs = (bag, ckpt, topic_map)
    check_out(out, overwrite, inputs)
    topics = load_topic_map(topic_map)
    if mode == "realtime" and len(topics.cameras) != 1:
        raise BagError(f"--mode realtime replays one camera; the topic map names "
                       f"{topics.camera_names} (offline mode reads several)")
    policy = load_policy(ckpt)
    check_cameras(topics, policy.cfg, ckpt)
    names = list(topics.joint_names)
    if len(names) != policy.cfg.action_dim:
        raise BagError(f"{len(names)} joint_names but checkpoint {ckpt} has action_dim "
                       f"{policy.cfg.action_dim}")
    trained = trained_joint_names(ckpt)
    if trained and trained != names:
        raise BagError(f"checkpoint {ckpt} was trained on joints {trained}; the topic map's "
                       f"joint_names are {names}")
    streams = read_streams(bag, dict(topics.cameras), topics.joint_states_topic, names)
    report, err, stamps, preds, actuals = offline_metrics(policy, streams, topics)
    report.update({"bag": str(bag), "checkpoint": str(ckpt), "mode": mode, "topics": topics.to_dict(),
                   "message_counts": streams.counts})
    with atomic_output(out, overwrite, inputs) as tmp:
        tmp.mkdir()
        if mode == "realtime":
            report["realtime"] = run_realtime(bag, ckpt, topic_map, tmp)
        report["complete"] = True
        plots = _plots(tmp, err, stamps, preds, actuals, names)
        atomic_write_json(tmp / "report.json", report)
        lines = ["# UVA replay evaluation\n", f"- bag: `{bag}`", f"- checkpoint: `{ckpt}`",
                 f"- control ticks evaluated: {report['evaluated']} (skipped "
                 f"{report['skipped_unaligned']})", f"- cameras: {', '.join(report['cameras'])}",
                 f"- action MAE: {report['mae']:.4f} (hold-last baseline "
                 f"{report['hold_last_mae']:.4f})"]
        if report["forward_dynamics_psnr_db"] is not None:
            lines.append(f"- forward dynamics PSNR: {report['forward_dynamics_psnr_db']:.2f} dB "
                         f"(copy-last-frame {report['copy_last_frame_psnr_db']:.2f} dB)")
        lines += ["", "| joint | MAE | RMSE | hold-last MAE |", "|---|---|---|---|"]
        lines += [f"| {n} | {report['per_joint_mae'][n]:.4f} | {report['per_joint_rmse'][n]:.4f} "
                  f"| {report['hold_last_per_joint_mae'][n]:.4f} |" for n in names]
        lines += [""] + [f"![{p}]({p})" for p in plots]
        (tmp / "report.md").write_text("\n".join(lines) + "\n")
    return {k: v for k, v in report.items() if k not in ("topics",)}


def trained_joint_names(ckpt) -> list[str] | None:
    """The joint names an imported dataset gave the checkpoint (config.json `dataset`), if any."""
    try:
        meta = json.loads((Path(ckpt) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    names = (meta.get("dataset") or {}).get("joint_names")
    return list(names) if names else None


def run_realtime(bag: str, ckpt: str, topic_map: str | None, work: Path) -> dict:
    """Replay over DDS with the policy node (ROS side: uva_bringup.replay_realtime; this core
    package never imports rclpy, it only starts that tool)."""
    import subprocess
    import sys
    cmd = [sys.executable, "-m", "uva_bringup.replay_realtime", "--bag", str(bag), "--ckpt",
           str(ckpt), "--out", str(work / "realtime.json"), "--log", str(work / "policy_node.log")]
    if topic_map:
        cmd += ["--topics", str(topic_map)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BagError(f"realtime replay failed: {res.stderr.strip()[-800:]}")
    return json.loads((work / "realtime.json").read_text())


def write_expert_bag(path: str, episodes: int = 2, seed: int = 200000, storage: str = "mcap",
                     extra_joint: bool = True) -> dict:
    """Drive the simulated Panda with the scripted expert and record it as a rosbag2 (camera,
    joint_states with franka_ros2 names, the commanded trajectory), the way a lab records demos."""
    from .envs.panda import PandaEnv
    env = PandaEnv()
    names = franka.ARM_JOINTS + franka.FINGER_JOINTS if extra_joint else franka.MODEL_JOINTS
    dt_ns = int(1e9 / env.control_hz)
    t_ns = 1_700_000_000 * 10**9
    counts = 0
    with BagWriter(path, storage) as bag:
        bag.add_topic("/camera/color/image_raw", "sensor_msgs/msg/Image")
        bag.add_topic("/joint_states", "sensor_msgs/msg/JointState")
        for ep in range(episodes):
            obs = env.reset(seed + ep)
            for _ in range(env.max_steps):
                q = list(obs.state) + ([obs.state[7]] if extra_joint else [])
                bag.write("/joint_states", t_ns, bag.joint_state(t_ns, names, q))
                bag.write("/camera/color/image_raw", t_ns, bag.image(t_ns, obs.image))
                counts += 1
                res = env.step(env.expert_action())
                obs = res.obs
                t_ns += dt_ns
                if res.done:
                    break
            t_ns += 2 * 10**9  # a gap between episodes (the alignment skips across it)
    env.close()
    return {"bag": str(path), "episodes": episodes, "steps": counts}
