#!/usr/bin/env bash
# device=cuda on a tiny run of each experiment family, the fast-path equality on CUDA, and the
# benchmarks timed on the GPU, and a slice of the IC-recall paper preset (its two largest
# sizes, seed 0) to time its probes there. Prepared to finish in ~9 minutes on one GPU; every step has its
# own time limit, and a step that fails or times out is reported and the script goes on.
#
#   bash benchmarks/gpu_check.sh            (from the repository root; writes to ${OUT:-/tmp})
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" FACTLAB_PROGRESS=0
OUT_DIR="${OUT:-/tmp}/gpu_check"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/summary.txt"
: > "$LOG"
note() { echo "$*" | tee -a "$LOG"; }
step() {  # step LABEL SECONDS CMD...
  local label=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT_DIR/$label.log" 2>&1
  local rc=$?
  local state=ok; [ $rc -eq 124 ] && state="TIMEOUT(${limit}s)"; [ $rc -ne 0 ] && [ $rc -ne 124 ] && state="FAIL(rc=$rc)"
  note "$(printf '%-28s %-14s %4ds' "$label" "$state" $((SECONDS - start)))"
  [ "$state" = ok ] || tail -5 "$OUT_DIR/$label.log" | sed 's/^/    /' | tee -a "$LOG"
}
note "gpu_check $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.cuda.get_device_name())" 2>&1 | tee -a "$LOG" || exit 1
step fast_path_equality 60 python -m pytest -q -p no:cacheprovider tests/test_fast_paths.py -k "cuda and not every_experiment"
# one tiny run per family (quick default knobs, one seed, few steps where a knob exists)
run() { local name=$1; shift; step "run_$name" 35 python -m factlab run "$name" --no-progress --force --out "$OUT_DIR/runs/$name" seeds=0 device=cuda "$@"; }
run capacity-mlp d=8,16 train.steps=200
run recall-tradeoff heads=2,4 widths=16,32 train.steps=200
run recall-sequential train.steps=200
run induction-head train.steps=40 train.eval_every=20
run hijack-length train.steps=40 train.eval_every=20
run ic-recall
run extraction
step bench_train_step 100 python benchmarks/bench_train_step.py --device cuda
step bench_recall 60 python benchmarks/bench_recall.py --device cuda --quick
step bench_ic_search 60 python benchmarks/bench_ic_search.py --device cuda --subjects 1024 --d 256 --no-search
# the paper preset's costliest sizes; a timeout is expected, the finished probes are the timing
step paper_slice 120 python -m factlab run ic-recall-samples scale=paper arms=qk sizes=4096,8192 d_sweep= \
  seeds=0 device=cuda --no-progress --out "$OUT_DIR/runs/paper_slice"
python - "$OUT_DIR/runs/paper_slice/probes.jsonl" >> "$LOG" 2>&1 <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"paper probe {r['key']}: {r['outcome']}, {r['steps']} steps, {r['wall_s']} s")
PY
note "logs: $OUT_DIR"
for f in bench_train_step bench_recall bench_ic_search; do echo "== $f" >> "$LOG"; cat "$OUT_DIR/$f.log" >> "$LOG"; done
