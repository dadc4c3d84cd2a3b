#!/usr/bin/env bash
# Recipe 2 on one CUDA GPU inside a fixed wall-clock budget (a lent machine runs one command for
# at most 10 minutes, so the work is two commands on the same warm machine).
#
#   experiments/gpu_recipe.sh            VAE -> video -> joint for three runs sharing the card: PushT UVA
#                                    (all five modes), PushT UVA-action (policy mode only, same VAE,
#                                    batch and steps) and Panda UVA. The joint stage is sized from
#                                    the throughput the video stage measured (its log's time_s), so
#                                    the cosine schedule ends inside the budget; --max-minutes guards
#                                    the estimate.
#   experiments/gpu_recipe.sh continue   each joint run continued with --init for CONTINUE_STEPS more
#                                    steps (fresh cosine, seed 1), the three again side by side.
#   experiments/gpu_recipe.sh augment    (after extract-vaes) PushT at 200 demos side by side, same
#                                    VAE, data, batch and steps: plain, random-shift augmentation in
#                                    the video and joint stages, and the action head on its own
#                                    100-step training schedule (ARMS picks; scored with
#                                    experiments/augment/joint_shift.py).
#   experiments/gpu_recipe.sh extract-vaes   (here, before `ablations`) the shipped checkpoints' VAEs
#                                    alone -> runs/gpu_vae/<env> (2 MB each instead of 18 MB, so
#                                    data + wheels + VAEs fit the device's 64 MiB tree).
#   experiments/gpu_recipe.sh ablations  side by side: Panda UVA-action, the twin of the shipped Panda
#                                    run (its VAE, policy mode only, joint PANDA_JOINT_STEPS then
#                                    +CONTINUE_STEPS from it with seed 1, batch 128, as the shipped
#                                    file was made), and PushT UVA with patch_size 1 (64 tokens per
#                                    frame instead of 16) on the shipped PushT's VAE: video
#                                    VIDEO_STEPS, then a joint stage sized to the budget.
# Each returns the final EMA checkpoints as fp16 in a tar split into 15 MB parts (the device
# returns files of <= 16 MB) with every log; rollouts are scored on the CPU afterwards.
#
#   BUDGET_S=480 OUTDIR=$OUT RUNS=/tmp/runs experiments/gpu_recipe.sh
#   BUDGET_S=350 OUTDIR=$OUT RUNS=/tmp/runs experiments/gpu_recipe.sh continue
# Local dry run: SKIP_WHEELS=1 PY=.venv/bin/python DEVICE=cpu BUDGET_S=240 VAE_STEPS=30 ...
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
BUDGET_S=${BUDGET_S:-480}
DEVICE=${DEVICE:-cuda}
OUTDIR=${OUTDIR:-outputs/gpu_recipe}
PY=${PY:-python3}
VAE_STEPS=${VAE_STEPS:-4000}
VIDEO_STEPS=${VIDEO_STEPS:-200}
BATCH=${BATCH:-128}
CONTINUE_STEPS=${CONTINUE_STEPS:-5200}
RUNS=${RUNS:-runs/gpu}
EXPORT_S=${EXPORT_S:-75}  # kept back at the end for export + tar
V2='{"vae_block_channels":[16,32,64,64]}'
mkdir -p "$OUTDIR" "$RUNS"
LOGS="$RUNS/logs"; mkdir -p "$LOGS"
elapsed() { echo $(( $(date +%s) - T0 )); }
say() { echo "[gpu_recipe +$(elapsed)s] $*"; }

if [ -z "${SKIP_WHEELS:-}" ] && [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || { say "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/models${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, diffusers, zarr, uva.train; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
  || { say "imports failed"; exit 1; }
UVA="$PY -m uva.cli"

train() {  # train <name> <args...>: one stage, output to its own log
  local name=$1; shift
  $UVA train "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?; say "$name done rc=$rc"; tail -n 3 "$LOGS/$name.log"; return $rc
}
minutes_left() {  # minutes until the point that keeps EXPORT_S for the end, times a fraction
  $PY -c "print(max(0.05, ($BUDGET_S - $EXPORT_S - $(elapsed)) / 60 * $1))"
}

export_runs() {  # export_runs <tag> <run names...>: fp16 finals, throughput and logs -> OUTDIR
  local tag=$1; shift
  say "export $tag: fp16 finals, logs"
  local ship="$RUNS/ship_$tag"; rm -rf "$ship"; mkdir -p "$ship"
  $PY - "$RUNS" "$ship" "$BATCH" "$(elapsed)" "$@" <<'EOF'
import json, sys, torch
from pathlib import Path
from uva.checkpoint import load_checkpoint, save_checkpoint
runs, ship, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[5:]
info = {"batch_size": int(sys.argv[3]), "script_wall_s": int(sys.argv[4]), "stages": {},
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
for name in names:
    src = runs / name / "joint" / "final"
    if not (src / "model.safetensors").exists():
        print("missing", src)
        continue
    model, cfg, norms, meta = load_checkpoint(src)
    save_checkpoint(ship / name, model, cfg, norms, meta, dtype=torch.float16)
    for log in sorted((runs / name).glob("*/log.jsonl")):
        last = [json.loads(l) for l in log.read_text().splitlines() if l.strip()][-1]
        info["stages"][f"{name}/{log.parent.name}"] = {
            "steps": last["step"], "wall_s": last["time_s"],
            "steps_per_s": last["step"] / max(last["time_s"], 1e-9)}
(ship / "gpu_run.json").write_text(json.dumps(info, indent=1))
print(json.dumps(info, indent=1))
EOF
  tar -cf - -C "$RUNS" "ship_$tag" | split -b 15M - "$OUTDIR/ckpts_$tag.tar.part-"
  tar -czf "$OUTDIR/logs_$tag.tar.gz" -C "$RUNS" logs $(cd "$RUNS" && for n in "$@"; do
      ls -d "$n"/*/log.jsonl "$n"/*/loss_curves.png "$n"/train_summary.json 2>/dev/null; done)
  ls -la "$OUTDIR"
}

# Joint-stage steps for run $1: the video stage's steady-state rate, times $2 (how the card's
# share changes from the video stage to the joint stage), times 0.8 (a joint step also trains
# the action head), times the time left.
joint_steps() {
  $PY - "$RUNS/$1/video/log.jsonl" "$(minutes_left 1)" "$2" <<'EOF'
import json, sys
from fractions import Fraction
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
a, b = rows[len(rows) // 4], rows[-1]
rate = (b["step"] - a["step"]) / max(b["time_s"] - a["time_s"], 1e-6)
print(max(20, int(rate * float(Fraction(sys.argv[3])) * 0.8 * float(sys.argv[2]) * 60)))
EOF
}

if [ "${1:-}" = extract-vaes ]; then
  for env in pusht panda; do
    $PY - "models/checkpoints/$env" "runs/gpu_vae/$env" <<'EOF'
import sys, torch
from uva.checkpoint import load_vae, save_vae
cfg, norms, meta, state = load_vae(sys.argv[1])
save_vae(sys.argv[2], state, cfg, norms, {"vae_of": sys.argv[1]}, dtype=torch.float16)
print("wrote", sys.argv[2])
EOF
  done
  exit 0
fi

if [ "${1:-}" = ablations ]; then
  PANDA_JOINT_STEPS=${PANDA_JOINT_STEPS:-4107}
  say "panda_action: joint $PANDA_JOINT_STEPS + $CONTINUE_STEPS steps, policy mode only"
  (
    train panda_action_joint --data data/panda.zarr --out "$RUNS/panda_action" --stage joint \
        --vae-from runs/gpu_vae/panda --modes policy_model --joint-steps "$PANDA_JOINT_STEPS" \
        --batch-size "$BATCH" --ckpt-every 3000 --eval-every 1000 --device "$DEVICE" \
        --max-minutes "$(minutes_left 0.45)"
    mkdir -p "$RUNS/panda_action2" && cp "$RUNS/panda_action/latents.pt" "$RUNS/panda_action2/"
    train panda_action2_joint --data data/panda.zarr --out "$RUNS/panda_action2" --stage joint \
        --init "$RUNS/panda_action/joint/final" --modes policy_model \
        --joint-steps "$CONTINUE_STEPS" --seed 1 --batch-size "$BATCH" --ckpt-every 3000 \
        --eval-every 1000 --device "$DEVICE" --max-minutes "$(minutes_left 1)"
  ) &
  FINE='{"patch_size":1}'
  train pusht_fine_video --data data/pusht.zarr --out "$RUNS/pusht_fine" --stage video \
      --vae-from runs/gpu_vae/pusht --config "$FINE" --video-steps "$VIDEO_STEPS" \
      --batch-size "$BATCH" --ckpt-every 1000 --eval-every 1000 --device "$DEVICE" \
      --max-minutes "$(minutes_left 0.2)"
  N_FINE=$(joint_steps pusht_fine 1)
  say "pusht_fine: joint $N_FINE steps"
  train pusht_fine_joint --data data/pusht.zarr --out "$RUNS/pusht_fine" --stage joint \
      --batch-size "$BATCH" --ckpt-every 2000 --eval-every 500 --device "$DEVICE" \
      --joint-steps "$N_FINE" --max-minutes "$(minutes_left 1)"
  wait
  export_runs 3 panda_action2 pusht_fine
  say "done"
  exit 0
fi

if [ "${1:-}" = augment ]; then
  # PushT at 200 demos, side by side on the shipped PushT VAE: the plain recipe and the same with
  # random-shift augmentation (AUGMENT) in the video and joint stages; same data, seed, batch and
  # steps. Scored on the CPU afterwards: experiments/augment/joint_shift.py.
  AUGMENT=${AUGMENT:-'{"augment_shift_px":4,"augment_shift_copies":4}'}
  SCHEDULE=${SCHEDULE:-'{"action_train_diffusion_steps":100}'}
  ARMS=${ARMS:-plain shift schedule}
  for arm in $ARMS; do
    cfg=$([ "$arm" = shift ] && echo "$AUGMENT" || echo '{}')
    train "aug_${arm}_video" --data data/pusht.zarr --out "$RUNS/aug_$arm" --stage video \
        --vae-from runs/gpu_vae/pusht --config "$cfg" --video-steps "$VIDEO_STEPS" \
        --batch-size "$BATCH" --ckpt-every 1000 --eval-every 1000 --device "$DEVICE" \
        --max-minutes "$(minutes_left 0.25)" &
  done
  wait
  N_AUG=$(joint_steps aug_plain 1)  # both arms get the plain arm's count: equal steps
  say "augment: joint $N_AUG steps per arm"
  for arm in $ARMS; do
    cfg=$([ "$arm" = schedule ] && echo "$SCHEDULE" || echo '{}')
    train "aug_${arm}_joint" --data data/pusht.zarr --out "$RUNS/aug_$arm" --stage joint \
        --config "$cfg" \
        --joint-steps "$N_AUG" --batch-size "$BATCH" --ckpt-every 2000 --eval-every 500 \
        --device "$DEVICE" --max-minutes "$(minutes_left 1)" &
  done
  wait
  export_runs aug $(for arm in $ARMS; do echo "aug_$arm"; done)
  say "done"
  exit 0
fi

if [ "${1:-}" = continue ]; then
  say "continue: each joint run $CONTINUE_STEPS more steps from its final (fresh cosine, seed 1)"
  for name in pusht pusht_action panda; do
    env=${name%_action}
    mkdir -p "$RUNS/${name}2" && cp "$RUNS/$env/latents.pt" "$RUNS/${name}2/"  # same frozen VAE
    modes=$([ "$name" = pusht_action ] && echo "--modes policy_model" || true)
    train "${name}2_joint" --data "data/$env.zarr" --out "$RUNS/${name}2" --stage joint \
        --init "$RUNS/$name/joint/final" --joint-steps "$CONTINUE_STEPS" --seed 1 $modes \
        --batch-size "$BATCH" --ckpt-every 3000 --eval-every 1000 --device "$DEVICE" \
        --max-minutes "$(minutes_left 1)" &
  done
  wait
  export_runs 2 pusht2 pusht_action2 panda2
  say "done"
  exit 0
fi

say "stage 1: VAEs ($VAE_STEPS steps, capped at 1/5 of the budget)"
cap=$($PY -c "print($BUDGET_S / 5 / 60)")
for env in pusht panda; do
  train "${env}_vae" --data "data/$env.zarr" --out "$RUNS/$env" --stage vae --vae-steps "$VAE_STEPS" \
      --ckpt-every 1000 --eval-every 500 --max-minutes "$cap" --device "$DEVICE" --config "$V2" &
done
wait
say "stage 2: video-only ($VIDEO_STEPS steps, batch $BATCH)"
for env in pusht panda; do
  train "${env}_video" --data "data/$env.zarr" --out "$RUNS/$env" --stage video \
      --video-steps "$VIDEO_STEPS" --batch-size "$BATCH" --ckpt-every 1000 --eval-every 1000 \
      --max-minutes "$(minutes_left 0.2)" --device "$DEVICE" &
done
wait

# two runs share the card in the video stage, three in the joint stage
N_PUSHT=$(joint_steps pusht 2/3); N_PANDA=$(joint_steps panda 2/3); CAP=$(minutes_left 1)
say "stage 3: joint, PushT $N_PUSHT steps, Panda $N_PANDA steps, batch $BATCH, cap $CAP min"
JOINT=(--stage joint --batch-size "$BATCH" --ckpt-every 2000 --device "$DEVICE" --max-minutes "$CAP")
mkdir -p "$RUNS/pusht_action" && cp "$RUNS/pusht/latents.pt" "$RUNS/pusht_action/"  # same VAE
train pusht_joint --data data/pusht.zarr --out "$RUNS/pusht" "${JOINT[@]}" --joint-steps "$N_PUSHT" \
    --eval-every 500 &
train pusht_action_joint --data data/pusht.zarr --out "$RUNS/pusht_action" "${JOINT[@]}" \
    --joint-steps "$N_PUSHT" --eval-every 500 --init "$RUNS/pusht/vae/final" --modes policy_model &
train panda_joint --data data/panda.zarr --out "$RUNS/panda" "${JOINT[@]}" --joint-steps "$N_PANDA" \
    --eval-every 500 &
wait

export_runs 1 pusht pusht_action panda
say "done"
