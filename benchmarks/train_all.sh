#!/usr/bin/env bash
# Train (or resume) every shipped model in turn and install it into georefscale/models/.
# Rerun after an interruption: each run resumes from runs/<name>/checkpoint.sft.
set -euo pipefail
cd "$(dirname "$0")/.."
# The -jp2 pair fine-tunes the installed x4 pair (their `init`), so it comes after it.
for name in ${MODELS:-refscale-s2-x4 noref-s2-x4 refscale-naip-x4 noref-naip-x4 refscale-s2-x2 noref-s2-x2 refscale-s2-x4-jp2 noref-s2-x4-jp2}; do
  georefscale train --config "configs/$name.yaml" --out "runs/$name" --install --quiet
done
# The 60000-step x4 run on the fast training path (bf16 convolutions + torch.compile, 1 thread so
# a 2-core machine keeps a core free), not installed; rerun the same command to resume it:
#   nohup georefscale train --config configs/refscale-s2-x4-long.yaml \
#     --out runs/refscale-s2-x4-long --quiet > runs/refscale-s2-x4-long.out 2>&1 &
# then its no-reference twin with the same budget (configs/noref-s2-x4-long.yaml), the same way.
