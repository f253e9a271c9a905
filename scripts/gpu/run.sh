#!/usr/bin/env bash
# Device check for a GPU machine (no network, no crates there).
#
# On the CPU machine:   scripts/gpu/run.sh build     # builds the stripped CUDA binaries (gpu, train) into .gpu/
# On the GPU machine:   scripts/gpu/run.sh run       # parity on CUDA, then timings (≈ minutes)
#                       scripts/gpu/run.sh train S D # trains the shapes model for ≈ S seconds into D
#
# The binary JIT-compiles kernels through NVRTC (burn 0.21): the GPU host needs libcuda and libnvrtc.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Unpacks .gpu/NAME.xz (with Python's lzma: xz may be missing on the GPU host).
unpack() {
  for name in "$@"; do
    [ -x ".gpu/$name" ] && continue
    python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
      ".gpu/$name.xz" ".gpu/$name"
    chmod +x ".gpu/$name"
  done
}
case "${1:-}" in
  build)
    # Bind the CUDA version of the GPU host's driver (format MAJOR0MINOR0; 12080 = CUDA 12.8).
    # The H200 machines here run driver 580 (CUDA 13.0), so 13000 is the default.
    export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
    cargo build --release --no-default-features --features cuda,train,text --example gpu --example train
    target="${CARGO_TARGET_DIR:-target}"
    mkdir -p .gpu
    cp "$target/release/examples/gpu" .gpu/gpu
    cp "$target/release/examples/train" .gpu/train
    strip .gpu/gpu .gpu/train
    # The device call carries at most 64 MiB: ship the binaries xz-compressed (≈ 6 MB each).
    xz -T0 -6 -f .gpu/gpu .gpu/train
    ls -la .gpu/
    ;;
  run)
    unpack gpu
    # Time caps (seconds) of the three parts: FITV2_S, FLUX_S, TEXT_S (240, 240, 90).
    ldconfig -p | grep -q libnvrtc || echo "warning: libnvrtc not found by ldconfig (set LD_LIBRARY_PATH)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    # FiTv2: device parity, XL/2 forward timings, a 28-step sample (cheapest first).
    timeout "${FITV2_S:-240}" .gpu/gpu --backend cuda all tests/fixtures || echo "FiTv2 checks failed or timed out (exit $?)"
    # FLUX.1-dev sized DiT, random bf16 weights: one step at 1024², 2048², 4096².
    timeout "${FLUX_S:-240}" .gpu/gpu --backend cuda flux-step || echo "FLUX step failed or timed out (exit $?)"
    # T5-XXL (512 tokens) and CLIP-L (77 tokens), random bf16 weights.
    timeout "${TEXT_S:-90}" .gpu/gpu --backend cuda text-encoders || echo "text encoders failed or timed out (exit $?)"
    ;;
  train)
    # Trains the shapes FiTv2 (dype_lab::train) on CUDA within a time budget:
    #   scripts/gpu/run.sh train SECONDS OUT_DIR [BATCH]
    # A 200-step run at constant lr measures the step rate; the run then resumes to the most steps
    # that fit, cooling the lr down to 0 over its last 35 % (the same run as one command
    # `train --steps N --cooldown C:N`, which the exported bundle records).
    unpack train
    budget="${2:?seconds}"; out="${3:?out dir}"; batch="${4:-64}"
    deadline=$((SECONDS + budget))
    log="$out.log"
    mkdir -p "$out"
    .gpu/train --backend cuda --steps 200 --batch "$batch" --out "$out" --checkpoint-every 50 \
      --gate 0 2>&1 | tee "$log"
    t1=$(sed -n 's/^step 100: .*, \([0-9.]*\) s elapsed)$/\1/p' "$log")
    t2=$(sed -n 's/^step 200: .*, \([0-9.]*\) s elapsed)$/\1/p' "$log")
    # Steps that fit: leave 45 s for the gate and the export, and the first run's warm-up again.
    plan=$(python3 -c "
r=($t2-$t1)/100; warm=max($t1-100*r,0); left=$deadline-$SECONDS-45-warm
n=200+int(left/r)//100*100; n=min(max(n,300),30000); c=max(200,(n-int(0.35*n))//100*100)
print(f'{n} {c} {r:.4f} {warm:.1f}')")
    read -r steps cool rate warm <<<"$plan"
    echo "step rate ${rate} s/step (warm-up ${warm} s): resuming to ${steps} steps, cool-down ${cool}:${steps}"
    .gpu/train --backend cuda --resume --steps "$steps" --cooldown "$cool:$steps" --out "$out" \
      --checkpoint-every 500 --gate 8 --export "$out/bundle" 2>&1 | tee -a "$log"
    ;;
  *)
    echo "usage: $0 build|run|train SECONDS OUT_DIR [BATCH]" >&2
    exit 2
    ;;
esac
