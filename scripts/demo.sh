#!/usr/bin/env bash
# The main job on the embedded default: pretrain a tiny base on synthetic identities, then make it
# forget person_00 with ODE adapters. Leaves TensorBoard events and adapters under runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/setup.sh | tail -n 1)"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
"$PY" -m legato_pl fit --config configs/pretrain_demo.yaml "$@"
"$PY" -m legato_pl fit --config configs/demo.yaml
"$PY" -m legato_pl sample --base_model runs/demo/base --artifact runs/demo/adapters \
  --identities person_00 person_01 person_02 --strengths 0 0.25 0.5 0.75 1 --out runs/demo/samples.png
echo "done: tensorboard --logdir runs/demo ; adapters in runs/demo/adapters ; grid in runs/demo/samples.png"
