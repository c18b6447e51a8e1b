#!/usr/bin/env bash
# The GPU checks in one short run, for a session that is lent one GPU
# (issue 17's figures, and the GPU path of the tests):
#
#   1. our VAAL loop side by side with the VAAL authors' loop
#      (bench/engine.py --only-reference): images/s and the ratio, same
#      architecture and batch (target: at least 3x on one H100);
#   2. the --fast round and the reference-size round with the task model on
#      the 50,000-image CIFAR-10 pool (bench/engine.py --only-rounds;
#      target for the reference size: 60 s on one H100). Should it pass its
#      limit, step 1's images/s still give its VAE part: 7,657 iterations of
#      512 images;
#   3. the GPU path of tests/test_accel.py on the GPU (VAAL_TEST_DEVICE=cuda):
#      the settings "auto" picks, the device cache equal to the memmap, bf16
#      keeping float32's queue quality, fp16 with its gradient scaler.
#
# Each step runs under its own time limit, so the run ends with the figures
# of the steps that finished whatever one of them does (about 9 minutes in
# all at most). It prints as it goes; with $OUT set (the device tool's
# output folder) it also leaves there each step's log and the results JSON.
#
#   bash bench/gpu.sh --prepare   here, before the device call: copies the
#                                 CIFAR-10 tarball into .device/ (ignored by
#                                 git), which the call then carries
#   device run: command "bash bench/gpu.sh", carry [".device"], timeout_s 590
#   bash bench/gpu.sh --smoke     on a CPU: every step, at a tiny size, to
#                                 check this script (a few minutes)
#
# The device's image has its own Python with PyTorch, torchvision, NumPy,
# Pillow, scikit-learn and pytest: all these steps need (step 0 checks).
set -uo pipefail
cd "$(dirname "$0")/.."

TAR_HERE=../shared/datasets/cifar10-jpg.tar.gz
CARRIED=.device/cifar10-jpg.tar.gz
mode=${1:-gpu}
case "$mode" in
  gpu|--prepare|--smoke) ;;
  *) echo "error: unknown option '$mode': run bash bench/gpu.sh (on the GPU), --prepare or --smoke"; exit 2 ;;
esac

if [ "$mode" = --prepare ]; then
  [ -f "$TAR_HERE" ] || { echo "error: $TAR_HERE not found: the CIFAR-10 JPEG tarball is needed"; exit 1; }
  mkdir -p .device && cp "$TAR_HERE" "$CARRIED"
  echo "ready: $CARRIED ($(du -h "$CARRIED" | cut -f1)); carry [\".device\"] in the device call"
  exit 0
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ "$mode" = --smoke ] && PY=.venv/bin/python
LOGS=${OUT:-$(mktemp -d)}
mkdir -p "$LOGS"
CIFAR=${TMPDIR:-/tmp}/cifar10
export PYTHONUNBUFFERED=1
# cuBLAS reads this when it starts: deterministic matrix products for the
# test that compares two rounds bit for bit.
export CUBLAS_WORKSPACE_CONFIG=:4096:8

if [ "$mode" = --smoke ]; then
  DEVICE=cpu; T_TESTS=600; T_REF=300; T_ROUNDS=300
  TEST_ARGS=(-k "not bf16_and_channels_last")  # the 3-seed simulation: minutes on a CPU, covered by make test
  REF_ARGS=(--repeats 1 --ref-iters 1 --ref-images 1256 --no-write)  # no-write: keep this CPU's figures
  ROUND_ARGS=(--round-pool 2000 --no-write)
else
  DEVICE=cuda; T_TESTS=180; T_REF=120; T_ROUNDS=240
  TEST_ARGS=()
  REF_ARGS=(--repeats 3 --ref-iters 100)
  ROUND_ARGS=(--round-pool 50000 --default-round)
fi

step() {  # step NAME SECONDS COMMAND...: runs it under a time limit, logs it, says how it ended
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (at most ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$LOGS/$name.log"
  local rc=${PIPESTATUS[0]}
  local how="ok"
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && how="stopped at its time limit"
  [ "$rc" != 0 ] && [ "$how" = ok ] && how="failed (exit $rc)"
  echo "=== $name: $how after $((SECONDS - t0)) s"
  echo "$name $how $((SECONDS - t0))s" >> "$LOGS/summary.txt"
}

echo "=== 0. the machine and its Python"
{ command -v nvidia-smi >/dev/null && nvidia-smi -L; } || echo "(no nvidia-smi)"
"$PY" - <<'EOF' || { echo "error: this Python lacks a package the checks need (above)"; exit 1; }
import numpy, PIL, sklearn, threadpoolctl, pytest, pytest_timeout, torch, torchvision
print(f"python {__import__('sys').version.split()[0]}, torch {torch.__version__}, torchvision "
      f"{torchvision.__version__}, numpy {numpy.__version__}, scikit-learn {sklearn.__version__}")
if torch.cuda.is_available():
    print(f"{torch.cuda.get_device_name(0)}, capability {torch.cuda.get_device_capability(0)}, "
          f"bf16 {torch.cuda.is_bf16_supported()}")
EOF
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "error: PyTorch sees no CUDA GPU here; on a CPU use --smoke"; exit 1
fi
# The tests read the tarball from ../shared where this checkout's own machine
# keeps it, else from the carried copy (tests/conftest.py: VAAL_CIFAR_TAR).
if [ ! -f "$TAR_HERE" ]; then
  [ -f "$CARRIED" ] || { echo "error: no $TAR_HERE and no $CARRIED: run 'bash bench/gpu.sh --prepare' here and carry .device"; exit 1; }
  TAR_HERE=$PWD/$CARRIED
  export VAAL_CIFAR_TAR=$TAR_HERE
fi
if [ ! -d "$CIFAR/train" ]; then
  mkdir -p "$CIFAR" && tar -xzf "$TAR_HERE" -C "$CIFAR" || { echo "error: cannot extract $TAR_HERE"; exit 1; }
fi
: > "$LOGS/summary.txt"

step 1-versus-reference "$T_REF" "$PY" bench/engine.py --device $DEVICE --cifar "$CIFAR" --only-reference \
  "${REF_ARGS[@]}"
step 2-rounds "$T_ROUNDS" "$PY" bench/engine.py --device $DEVICE --cifar "$CIFAR" --only-rounds "${ROUND_ARGS[@]}"
step 3-tests "$T_TESTS" env VAAL_TEST_DEVICE=$DEVICE "$PY" -m pytest -q -p no:cacheprovider tests/test_accel.py \
  "${TEST_ARGS[@]}"

[ "$mode" != --smoke ] && [ -f "bench/results/engine-$DEVICE.json" ] && [ -n "${OUT:-}" ] && \
  cp "bench/results/engine-$DEVICE.json" "$OUT/"
echo "=== summary (logs in $LOGS)"
cat "$LOGS/summary.txt"
