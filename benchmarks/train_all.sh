#!/usr/bin/env bash
# Train (or resume) every shipped model in turn and install it into georefscale/models/.
# Rerun after an interruption: each run resumes from runs/<name>/checkpoint.pt.
set -euo pipefail
cd "$(dirname "$0")/.."
for name in ${MODELS:-refscale-s2-x4 noref-s2-x4 refscale-naip-x4 noref-naip-x4 refscale-s2-x2 noref-s2-x2}; do
  georefscale train --config "configs/$name.yaml" --out "runs/$name" --install --quiet
done
