#!/usr/bin/env bash
# Regenerate every table and figure of docs/experiments.md into docs/experiments/results/.
# One script at a time, torch on one thread (EXPERIMENT_THREADS): the machine may be training.
# Models that are not shipped yet are skipped (their experiments keep their previous results).
set -euo pipefail
cd "$(dirname "$0")"
shipped() { [ -f "../../georefscale/models/$1.safetensors" ]; }

python table1_complexity.py
if shipped refscale-s2-x4; then
  python fig4_latent_samples.py --model refscale-s2-x4
  python fig5_temperature.py --model refscale-s2-x4
  python fig6_misalignment.py --model refscale-s2-x4
else
  echo "refscale-s2-x4 not shipped yet: Figs. 4-6 skipped" >&2
fi
python table2_compression.py --methods bicubic,noref-s2-x4,refscale-s2-x4
python reference_bound.py
if shipped refscale-naip-x4; then
  python reference_age.py
  python fig5_temperature.py --data naip --model refscale-naip-x4
  python fig6_misalignment.py --data naip --model refscale-naip-x4
fi
if shipped refscale-s2-x4 && shipped noref-s2-x4; then
  python training_curves.py --curve "RefScale x4=refscale-s2-x4" --curve "no-ref x4=noref-s2-x4" \
    --name training_curves_shipped_x4
fi
if shipped refscale-s2-x2; then
  python fig5_temperature.py --model refscale-s2-x2
fi
if shipped refscale-s2-x2 && shipped noref-s2-x2; then
  python training_curves.py --curve "RefScale x2=refscale-s2-x2" --curve "no-ref x2=noref-s2-x2" \
    --name training_curves_shipped_x2
fi
