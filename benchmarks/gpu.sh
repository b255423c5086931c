#!/usr/bin/env bash
# Issue 15's GPU figures in one prepared run: benchmarks/vs_pytorch.py with the
# engine on the GPU and plain PyTorch on the same GPU beside it, K up to 4,096.
#
#   bash benchmarks/gpu.sh [more vs_pytorch.py flags; later flags win]
#
# Needs the project's dependencies with a CUDA build of jax, and torch (CUDA
# if PyTorch is to run on the GPU; otherwise pass --torch-device cpu). On a
# machine without the package installed: pip install --no-deps -e . (plus an
# ml-collections wheel where the registries cannot be reached).
#
# The engine vectorises blocks of up to 1,024 runs (ntdh-sweep --vmap_size
# 1024: a GPU wants wide blocks; the CPU default of 16 would run K = 4,096 as
# 256 small blocks one after another). Above K = 1,024 the engine is timed on
# one 100-epoch segment and scaled (marked †, as on the CPU); PyTorch is timed
# on its first 4 units and extrapolated (marked *). Prints the same tables as on the CPU; the header
# names the GPU. Smoke run on a CPU (what the test does):
#   bash benchmarks/gpu.sh --ks 2 --epochs 2 --torch-max 1 --peak-repeats 1 \
#     --torch-device cpu
set -euo pipefail
cd "$(dirname "$0")/.."
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null \
  | head -n 1 || true)"
python benchmarks/vs_pytorch.py --ks 1,16,64,256,1024,4096 \
  --vmap-size 1024 --engine-max 1024 --torch-max 4 --torch-device cuda \
  --device-note "GPU: ${gpu:-none found}" "$@"
