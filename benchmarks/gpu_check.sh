#!/usr/bin/env bash
# The first-GPU check in one command (benchmarks/gpu_check.py says what it runs):
#   python benchmarks/gpu_wheels.py                    # where there is network: gpu-wheels/
#   bash benchmarks/gpu_check.sh --out gpu_check.json  # on the CUDA machine, ~8 minutes
#   bash benchmarks/gpu_check.sh --dry-run             # anywhere: the plan, the wheels, the GPU
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
# python3 on the GPU image is the interpreter that holds its CUDA torch
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
