#!/usr/bin/env bash
# The KW fast path on one CUDA GPU, in under 8 minutes (H100-class GPU):
#   1. pinned to the official formulation over the layer shapes of
#      KW-ResNet50 1x (outputs and gradients; float32, fp16 and bf16
#      autocast);
#   2. KW-ResNet50 1x against ResNet50 at the paper's batch sizes
#      (inference 100, training 128 or the largest that fits): throughput
#      and peak CUDA memory, as the paper's Tables 12 and 16.
# Needs PyTorch with CUDA only (torchvision if present; no MMEngine, MMCV,
# MMDetection or MMPretrain). Run from anywhere in the repository:
#
#   bash tools/analysis_tools/gpu_check.sh              # the full check
#   bash tools/analysis_tools/gpu_check.sh --rounds 20  # options: --help
#   PYTHON=.venv/bin/python bash tools/analysis_tools/gpu_check.sh \
#       --device cpu --quick                            # the script itself
#
# Exit status: 0 if every pinned layer is within tolerance, else 1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PYTHON="${PYTHON:-python}"

if command -v nvidia-smi > /dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version \
        --format=csv,noheader || true
fi

# gpu_check.py refuses --device cuda (the default) without a GPU in one
# line.
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON}" tools/analysis_tools/gpu_check.py "$@"
