#!/usr/bin/env bash
# Every CUDA check in one call (sized for under 9 minutes on one H100/H200):
#   1. the CUDA tests: stage-1 restriction under real --fp16, --memory-efficient-fp16, --bf16 and --amp;
#   2. fp16 training throughput of b2b_bert_base against stock fairseq roberta_base (bench/gpu_throughput.py);
#   3. the gpu preset of b2b-experiment (every method, S(6,256) -> T(6,512), fp16).
# Prints one JSON summary as its last line (and writes it to $OUT/gpu_check.json when $OUT is set).
#
#   bash bench/gpu_check.sh            # with fairseq-b2b installed in the current python (PYTHON=...)
#
# Without a GPU every step reports "skipped" and the preset is checked with --dry-run instead.
# Budgets per step (seconds) can be changed with GPU_CHECK_TEST_S / _BENCH_S / _PRESET_S.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUTDIR=${OUT:-runs/gpu_check}
mkdir -p "$OUTDIR"
BIN=$(dirname "$($PY -c 'import sys; print(sys.executable)')")
started=$(date +%s)
has_cuda=$($PY -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)

# 1. CUDA tests (they skip cleanly without a GPU)
timeout "${GPU_CHECK_TEST_S:-150}" $PY -m pytest -q -p no:cacheprovider tests/test_two_stage.py -k cuda \
    --junitxml "$OUTDIR/cuda_tests.xml" > "$OUTDIR/cuda_tests.log" 2>&1
tests_rc=$?

# 2. throughput, b2b vs stock, fp16
if [ "$has_cuda" = 1 ]; then
  timeout "${GPU_CHECK_BENCH_S:-120}" $PY bench/gpu_throughput.py --precision fp16 > "$OUTDIR/throughput.json" \
      2> "$OUTDIR/throughput.log"
  bench_rc=$?
else
  echo '{"skipped": "no CUDA GPU"}' > "$OUTDIR/throughput.json"; bench_rc=0
fi

# 3. the gpu preset (a dry run without a GPU)
if [ "$has_cuda" = 1 ]; then
  ( time timeout "${GPU_CHECK_PRESET_S:-420}" "$BIN/b2b-experiment" --preset gpu --output "$OUTDIR/gpu" ) \
      > "$OUTDIR/preset.log" 2>&1
  preset_rc=$?
else
  "$BIN/b2b-experiment" --preset gpu --output "$OUTDIR/gpu" --dry-run > "$OUTDIR/preset.log" 2>&1
  preset_rc=$?
fi

$PY - "$OUTDIR" "$tests_rc" "$bench_rc" "$preset_rc" "$has_cuda" "$started" <<'EOF'
import json, os, sys, time, xml.etree.ElementTree as ET
out, tests_rc, bench_rc, preset_rc, has_cuda, started = sys.argv[1], *map(int, sys.argv[2:])
summary = {"cuda": bool(has_cuda), "seconds": round(time.time() - started)}
try:
    suite = ET.parse(os.path.join(out, "cuda_tests.xml")).getroot().find("testsuite")
    summary["cuda_tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
except Exception as e:  # noqa: BLE001
    summary["cuda_tests"] = {"error": f"no junit report ({e})", "rc": tests_rc}
try:
    summary["throughput"] = json.load(open(os.path.join(out, "throughput.json")))
except Exception as e:  # noqa: BLE001
    summary["throughput"] = {"error": str(e), "rc": bench_rc}
res = os.path.join(out, "gpu", "results.json")
if os.path.exists(res):
    r = json.load(open(res))
    summary["gpu_preset"] = {fam: {"target_loss": g.get("target_loss"), "source_valid_loss": g.get("source_valid_loss"),
                                   "degenerate": g.get("degenerate"),
                                   "saving": {m: v.get("saving") for m, v in g["methods"].items()}}
                             for fam, g in r.items()}
else:
    summary["gpu_preset"] = {"rc": preset_rc, "ran": bool(has_cuda),
                             "log_tail": open(os.path.join(out, "preset.log")).read()[-400:]}
line = json.dumps(summary)
open(os.path.join(out, "gpu_check.json"), "w").write(line + "\n")
print(line)
EOF
