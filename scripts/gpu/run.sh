#!/usr/bin/env bash
# Device check for a GPU machine (no network, no crates there).
#
# On the CPU machine:   scripts/gpu/run.sh build     # builds the stripped CUDA binary into .gpu/
# On the GPU machine:   scripts/gpu/run.sh run       # parity on CUDA, then timings (≈ minutes)
#
# The binary JIT-compiles kernels through NVRTC (burn 0.21): the GPU host needs libcuda and libnvrtc.
set -euo pipefail
cd "$(dirname "$0")/../.."
case "${1:-}" in
  build)
    # Bind the CUDA version of the GPU host's driver (format MAJOR0MINOR0; 12080 = CUDA 12.8).
    export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-12080}"
    cargo build --release --no-default-features --features cuda --example gpu
    mkdir -p .gpu/fixtures
    cp target/release/examples/gpu .gpu/gpu
    cp -r tests/fixtures/models .gpu/fixtures/
    ls -la .gpu/gpu
    ;;
  run)
    ldconfig -p | grep -q libnvrtc || echo "warning: libnvrtc not found by ldconfig (set LD_LIBRARY_PATH)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    # FiTv2: device parity, XL/2 forward timings, a 28-step sample (cheapest first).
    timeout 240 .gpu/gpu --backend cuda all .gpu/fixtures || echo "FiTv2 checks failed or timed out (exit $?)"
    # FLUX.1-dev sized DiT, random bf16 weights: one step at 1024², 2048², 4096².
    timeout 240 .gpu/gpu --backend cuda flux-step || echo "FLUX step failed or timed out (exit $?)"
    # T5-XXL (512 tokens) and CLIP-L (77 tokens), random bf16 weights.
    timeout 90 .gpu/gpu --backend cuda text-encoders || echo "text encoders failed or timed out (exit $?)"
    ;;
  *)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
