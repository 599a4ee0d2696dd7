#!/usr/bin/env bash
# Train (or resume) every shipped model in turn and install it into georefscale/models/.
# Rerun after an interruption: each run resumes from runs/<name>/checkpoint.sft.
set -euo pipefail
cd "$(dirname "$0")/.."
# The -jp2 pair fine-tunes the installed x4 pair (their `init`), so it comes after it.
for name in ${MODELS:-refscale-s2-x4 noref-s2-x4 refscale-naip-x4 noref-naip-x4 refscale-s2-x2 noref-s2-x2 refscale-s2-x4-jp2 noref-s2-x4-jp2}; do
  georefscale train --config "configs/$name.yaml" --out "runs/$name" --install --quiet
done
