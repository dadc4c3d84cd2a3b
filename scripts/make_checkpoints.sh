#!/usr/bin/env bash
# Remake the shipped checkpoints exactly as they were made (CPU, 1 torch thread per process).
# Stages ran as separate processes in parallel on a 2-core machine; see README for wall times.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
UVA=".venv/bin/uva --threads 1"
SMALL_VAE='{"vae_block_channels":[16,32,64,64]}'

for env in pusht panda; do
  n=$([ "$env" = pusht ] && echo 200 || echo 120)
  $UVA collect --env "$env" --episodes "$n" --out "data/$env.zarr"
  $UVA train --data "data/$env.zarr" --out "runs/$env" --stage vae --vae-steps 300 --config "$SMALL_VAE"
  $UVA train --data "data/$env.zarr" --out "runs/$env" --stage video --video-steps 200 --ckpt-every 100
  # UVA: all five task modes
  $UVA train --data "data/$env.zarr" --out "runs/$env" --stage joint --joint-steps 3500 \
      --ckpt-every 100 --eval-every 500 --max-minutes 75 &
  # UVA-action baseline: policy mode only, no video loss, from the same VAE
  $UVA train --data "data/$env.zarr" --out "runs/${env}_action" --stage joint --init "runs/$env/vae/final" \
      --modes policy_model --joint-steps 3500 --ckpt-every 100 --eval-every 500 --max-minutes 75 &
  wait
  for run in "$env" "${env}_action"; do
    $UVA eval --ckpt "runs/$run/joint/final" --env "$env" --episodes 50 --gifs 2 \
        --out "outputs/eval_$run" --data "data/$env.zarr"
  done
  .venv/bin/python scripts/ship_checkpoint.py --ckpt "runs/$env/joint/final" --env "$env" \
      --eval-json "outputs/eval_$env/eval.json" --out "models/checkpoints/$env"
done
