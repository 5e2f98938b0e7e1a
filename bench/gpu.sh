#!/usr/bin/env bash
# vaekit on a GPU against PyTorch on CUDA, in one shot (about 8 minutes on a machine with an
# NVIDIA GPU and a warm cargo cache; a cold wgpu build takes longer on few cores):
#   1. builds the release binary with the wgpu (Vulkan) backend,
#   2. runs `python3 bench/compare.py --bench --gpu`: `vaekit --device wgpu bench` and
#      `pytorch_vae.py --bench --device cuda` for the conv and the mlp model, alternating, and
#      prints both sides' rates, the ratios and the share of torch.mm's peak on the GPU.
#
#   bash bench/gpu.sh                       # needs nvidia-smi and a Vulkan driver
#   ALLOW_SOFTWARE=1 bash bench/gpu.sh      # without an NVIDIA GPU: Mesa's software Vulkan,
#                                           # PyTorch on the CPU (tests the script, not the GPU)
# Settings (environment): DATA (an IDX folder, default Debian's Fashion-MNIST), ROUNDS (2),
# STEPS (20), REPS (3), VAEKIT_BIN (a prebuilt wgpu binary: skips step 1), PRECISION (fp32|bf16).
# Without PyTorch it prints vaekit's figures alone.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-/usr/share/datasets/fashion-mnist}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-20}
REPS=${REPS:-3}
PRECISION=${PRECISION:-fp32}

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
elif [ "${ALLOW_SOFTWARE:-0}" = 1 ]; then
    echo "GPU: none (ALLOW_SOFTWARE=1: software Vulkan for vaekit, the CPU for PyTorch)"
else
    echo "bench/gpu.sh: no NVIDIA GPU (nvidia-smi -L failed); set ALLOW_SOFTWARE=1 to test the script on software Vulkan" >&2
    exit 1
fi
if [ ! -d "$DATA" ]; then
    echo "bench/gpu.sh: $DATA: no such folder (set DATA to a folder of IDX files)" >&2
    exit 1
fi
if command -v vulkaninfo >/dev/null 2>&1; then
    echo "Vulkan: $(vulkaninfo --summary 2>/dev/null | grep -m1 -E 'deviceName' | sed 's/.*= //' || true)"
fi

start=$(date +%s)
if [ -z "${VAEKIT_BIN:-}" ]; then
    echo "building vaekit with --features wgpu (release)..."
    cargo build --release -q -p vaekit-cli --features wgpu
    VAEKIT_BIN="${CARGO_TARGET_DIR:-target}/release/vaekit"
fi
if [ ! -x "$VAEKIT_BIN" ]; then
    echo "bench/gpu.sh: $VAEKIT_BIN: not an executable" >&2
    exit 1
fi
export VAEKIT_BIN
echo "build: $(( $(date +%s) - start )) s"

python3 bench/compare.py --bench --gpu --skip-build --data "$DATA" --rounds "$ROUNDS" \
    --steps "$STEPS" --reps "$REPS" --precision "$PRECISION"
echo "total: $(( $(date +%s) - start )) s"
