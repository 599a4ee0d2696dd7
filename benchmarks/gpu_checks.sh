#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one run: the CUDA tests (with the engine and training
# tests), the engine speed benchmark on CUDA (fp32 / TF32 / bf16) and the training speed of the
# recipes' precision paths (fp32, bf16, bf16 + torch.compile) on the CPU and on CUDA in the same
# run. Writes logs and JSON into ${OUT:-benchmarks/results}.
# Needs the sample archive (GEOREFSCALE_DATA; the tests use its OSCD pisa and bercy pairs).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
mkdir -p "$out"
log="$out/gpu_checks.log"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$log"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" \
  2>&1 | tee -a "$log"
python3 -m pytest -p no:cacheprovider -q -m "not slow" tests/test_cuda.py tests/test_engine.py \
  tests/test_training.py -k "not catalog" 2>&1 | tee -a "$log"
python3 benchmarks/engine_speed.py --device cuda --repeats 10 \
  --out "$out/engine_speed_cuda.json" 2>&1 | tee -a "$log"
python3 benchmarks/train_speed.py --device cpu --device cuda \
  --out "$out/train_speed_gpu.json" 2>&1 | tee -a "$log"
python3 benchmarks/train_speed.py --device cuda --batch 64 --config refscale-s2-x4 \
  --out "$out/train_speed_cuda_b64.json" 2>&1 | tee -a "$log"
# issue #22: a two-layer product made on the CPU, grounded on CUDA (tile rows that differ; the
# bound kept or a clean refusal)
python3 benchmarks/layered_devices.py --site montpellier --site rio --site saclay_w \
  --out "$out/layered_devices.json" 2>&1 | tee -a "$log"
