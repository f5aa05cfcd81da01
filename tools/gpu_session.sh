#!/usr/bin/env bash
# Everything a session with a GPU owes this project, in steps that each fit one
# call of the device tool (10 minutes a call, 30 minutes a session):
#
#   bash tools/gpu_session.sh build      # ~2-4 min: build the extension in place for this GPU
#   bash tools/gpu_session.sh test       # the whole pytest suite on the GPU (CUDA cases run, not skip)
#   bash tools/gpu_session.sh sanitize   # compute-sanitizer memcheck + racecheck on the CUDA kernels
#   bash tools/gpu_session.sh bench      # the fast-path issue's GPU regimes + the elementwise bandwidth
#   bash tools/gpu_session.sh rules      # re-measure the algorithm thresholds on the GPU
#
# Each step writes its log (and JSON where there is one) under $OUT (the device
# tool's output folder) or ./gpu-session-out, and prints the device, torch
# version and date first: copy the figures into docs/benchmarks.md with the
# command that made them. Steps after `build` reuse the in-place build, which
# the device tool keeps between calls while the machine stays warm.
set -uo pipefail
cd "$(dirname "$0")/.."
step="${1:-}"
case "$step" in
  build|test|sanitize|bench|rules) ;;
  *) echo "usage: bash tools/gpu_session.sh build|test|sanitize|bench|rules" >&2; exit 2 ;;
esac
out="${OUT:-gpu-session-out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

header() {
  python - <<'EOF'
import datetime, torch
name = torch.cuda.get_device_name() if torch.cuda.is_available() else "NO CUDA DEVICE"
print(f"# {name}, torch {torch.__version__} (CUDA {torch.version.cuda}), {datetime.datetime.now():%Y-%m-%d %H:%M}")
EOF
}

run() {  # run a command, log it under $out/$1.log, keep going on failure, remember the status
  local name="$1"; shift
  echo "## $name: $*" | tee -a "$out/$name.log"
  "$@" 2>&1 | tee -a "$out/$name.log"
  local status=${PIPESTATUS[0]}
  echo "## $name: exit $status" | tee -a "$out/$name.log"
  [ "$status" -eq 0 ] || failed=1
}

failed=0
header | tee "$out/$step.header"
case "$step" in
  build)
    # Hopper (H100/H200) only: one arch keeps the compile short.
    export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" FORCE_CUDA=1 MAX_JOBS="${MAX_JOBS:-16}"
    export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
    run build python setup.py build_ext --inplace
    run build python -c "import hoderiv_ext, torch; print(hoderiv_ext.build_info()); \
torch.ops.hoderiv_ext.jet_activation; assert torch.cuda.is_available()"
    ;;
  test)
    run test env HODERIV_EXPECT_CUDA_KERNELS=1 python -m pytest -q -rs
    ;;
  sanitize)
    # The CUDA cases of the kernel tests (~400; hypothesis' many examples left out: slow under the
    # sanitizer). Narrow with SANITIZE_K="cuda and jet" etc. if a tool outruns the 10-minute call.
    # The kernels use no shared memory, so racecheck should be clean by construction; run it anyway.
    for tool in memcheck racecheck; do
      run "sanitize-$tool" compute-sanitizer --tool "$tool" --error-exitcode 99 \
        python -m pytest -q -x -m cuda -k "${SANITIZE_K:-not hypothesis}" tests/ops tests/engines
    done
    ;;
  bench)
    # The fast-path issue's GPU regimes (forward, training step, peak memory, GEMM share of peak):
    # PINN-sized, full Hessian at d = 8, and wide.
    run bench-pinn python -m hoderiv_ext bench --device cuda -w laplacian training \
      --batch 65536 --dims 3 --widths 64 --depths 4 --output "$out/bench-pinn.json" --no-plot
    run bench-hessian python -m hoderiv_ext bench --device cuda -w hessian \
      --batch 65536 --dims 8 --widths 64 --depths 4 --output "$out/bench-hessian.json" --no-plot
    run bench-wide python -m hoderiv_ext bench --device cuda -w laplacian training \
      --batch 262144 --dims 3 --widths 256 --depths 6 --output "$out/bench-wide.json" --no-plot
    run bench-elementwise python benchmarks/bench_elementwise.py --device cuda --sizes 12 16 20 24 26
    ;;
  rules)
    # taylor.MIXED_MODE_SLOT_RATIO and reference.CUDA_BATCHED_BELOW_WORK were set on CPU or guessed.
    run rules-mixed python benchmarks/bench_taylor_algorithms.py --device cuda \
      --cases 2,64,65536 3,64,65536 4,64,65536 8,64,65536 16,128,16384
    run rules-reference python benchmarks/bench_reference_methods.py --device cuda
    ;;
esac
exit "$failed"
