#!/usr/bin/env bash
# The GPU checks of one H100/H200 in at most 8 minutes: the gpu-marked tests, then a bf16 lra-bench
# sweep of every registered mechanism (+ vanilla_naive, + floor) at batch 32 (LRA Table 2) over
# 1K, 4K and 16K tokens into results/efficiency/<gpu>/ (<gpu>: nvidia-smi's name, lower case, runs of
# other characters as "-", e.g. nvidia-h100-80gb-hbm3).
#
#   bash scripts/gpu_bench.sh              # on the GPU machine, from anywhere in the checkout
#   bash scripts/gpu_bench.sh --print      # the commands it would run, nothing runs
#   bash scripts/gpu_bench.sh --dry-run    # the same entry points on the CPU, tiny sizes, a temp folder
#   bash scripts/gpu_bench.sh --overwrite  # write over an earlier run in results/efficiency/<gpu>/
#
# Budget, 480 s: the tests get at most TESTS_S, the sweep at most SWEEP_S, the report the rest. Each
# point is a fresh process (imports and CUDA start-up, a few seconds, then 1 warm-up and 5 timed calls
# per phase): 19 rows x 3 lengths = 57 points. Three lengths, not five: 95 points of start-up alone
# would take most of the budget. A point gets POINT_S seconds; a row that runs out of time or memory
# skips its longer lengths. Should the sweep still reach SWEEP_S, it is stopped, and table.md and the
# plots are rebuilt from the points measured so far (points.csv is written after every point).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
TESTS_S=90
SWEEP_S=330
POINT_S=40
DRY=0 PRINT=0 OVERWRITE=false
for arg in "$@"; do
  case $arg in
    --dry-run) DRY=1 ;;
    --print) PRINT=1 ;;
    --overwrite) OVERWRITE=true ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_bench.sh: unknown option '$arg'; valid: --dry-run, --print, --overwrite, --help" >&2; exit 2 ;;
  esac
done

if [ "$DRY" = 1 ]; then
  # CPU, tiny model and sizes, a temporary folder: the same commands with these settings swapped in,
  # and no 8-minute caps: a shared CPU may take longer than the GPU for the 19 points
  TESTS_S=600 SWEEP_S=3600
  out="${TMPDIR:-/tmp}/gpu_bench_dry.XXXXXX"
  [ "$PRINT" = 1 ] || out=$(mktemp -d "$out")
  tests=("$PY" -m pytest -m gpu -q --collect-only)
  sweep=("$PY" -m lra.bench device=cpu dtype=fp32 batch=2 "lengths=[64]" timeout_s=600 repeats=1 warmup=0
    model.n_layers=1 model.d_model=32 model.n_heads=2 model.d_mlp=64 model.d_head=32 cpu_threads=1
    "out_dir=$out" overwrite=true)
else
  if ! gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1) || [ -z "$gpu" ]; then
    if [ "$PRINT" = 1 ]; then gpu="NVIDIA <gpu name>"; else
      echo "gpu_bench.sh: nvidia-smi finds no GPU on this machine; run it on the GPU machine, or --dry-run here" >&2
      exit 2
    fi
  fi
  slug=$(printf '%s' "$gpu" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+|-+$//g')
  out=results/efficiency/$slug
  tests=("$PY" -m pytest -m gpu -q)
  sweep=("$PY" -m lra.bench device=cuda dtype=bf16 grid=fixed_batch batch=32 "lengths=[1024,4096,16384]"
    "timeout_s=$POINT_S" "out_dir=$out" "overwrite=$OVERWRITE")
fi
report=("$PY" -m lra.bench_report "$out")

echo "+ ${tests[*]}"
echo "+ ${sweep[*]}"
echo "+ ${report[*]}   # only if the sweep is stopped at ${SWEEP_S} s"
[ "$PRINT" = 1 ] && exit 0

if [ "$DRY" = 0 ] && [ "$OVERWRITE" = false ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  echo "gpu_bench.sh: $out already holds an earlier run; move it away, or pass --overwrite to write over it" >&2
  exit 2
fi
started=$SECONDS
status=0
timeout "$TESTS_S" "${tests[@]}" || status=$?
echo "gpu tests: exit $status after $((SECONDS - started)) s"
swept=0
timeout "$SWEEP_S" "${sweep[@]}" || swept=$?
if [ "$swept" = 124 ] && [ -f "$out/points.csv" ]; then
  echo "gpu_bench.sh: the sweep was stopped at $SWEEP_S s; table.md and the plots hold the points measured so far" >&2
  "${report[@]}"
elif [ "$swept" != 0 ]; then
  status=$swept
fi
echo "gpu_bench.sh: done in $((SECONDS - started)) s; results in $out (table.md, points.csv)"
exit "$status"
