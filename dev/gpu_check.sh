#!/usr/bin/env bash
# The device check (issue 23): ONE run on the GPU machine that measures what cras does there, next
# to the authors' PyTorch code on the same GPU. Dev-only, never in CI. Prepare with
# dev/gpu_prepare.sh (CUDA build + the git-ignored carry folder gpu-carry/); see
# dev/cuda-build.md, "The device check".
#
#   OUT=<output folder> dev/gpu_check.sh [--device cuda] [--tiny] [--budget SECONDS]
#
# Steps, each under `timeout` (capped by what is left of --budget, default 480 s), each recorded
# in $OUT/steps.jsonl, its output in $OUT/logs/<step>.log; a failed or hung step never stops the
# next; the summary is written and printed whatever happened, and the script exits 0:
#  1 device facts                 -> device.json, device.txt (nvidia-smi, driver, CUDA libs, ldd)
#  2 f32 parity, the GPU against the same binary on the machine's CPU (reference figures made in
#    the same run: same binary, same generated images, no stale files): descriptors of 2 images
#    (+ each layer), one training step (loss, p_true, p_fake, a weight checksum), image scores of
#    the CPU-trained model                                  -> parity.json (tolerances: gpu_check.py)
#  3 MVTec-size synthetic set, 15 classes, 3630 train / 1725 test images, 512 px (resized to 329,
#    cropped to 288), written by `cras synth` in the background while 2 and 4 run  -> synth.json
#  4 `cras bench --device cuda` at batch 1 and 32, f32 (bf16 after step 5; a refusal is recorded)
#                                                           -> cras_bench_<prec>_b<batch>.json
#  5 the authors' code on the same GPU: inference at batch 1 and 32 (../shared/bench/ref_speed.py,
#    carried), training at batch 32 (dev/gpu_ref_train.py), both through dev/gpu_ref_run.py (stand-ins
#    for packages their modules import but the timed code never uses: tensorboard, pandas, ...)
#                                                  -> authors_infer_b1/b32.json, authors_train.json
#  6 `cras train` (paper configuration: WRN50-2, 288 px, 1536 dims, random backbone) for 3 epochs,
#    fewer if the bench figures say 3 would leave no time for step 7 (train_plan.json), on the
#    set, each epoch timed (--train-log)                    -> train_log.jsonl, train.json
#  7 `cras eval` of that model                              -> eval.json, eval_metrics.json
#  8 summary                                                -> summary.json + the table on stdout
#
# Options / environment:
#   --device D     cuda (default) or cpu (to test the script here; the "device" side is then the CPU)
#   --tiny         tiny sizes for a CPU test: 2 classes, 64 px model input, dims 256, 1 epoch, batch 4
#   --budget S     wall-clock budget of the whole run (default 480; the device tool allows 600)
#   OUT            output folder (required; the device tool sets it)
#   CRAS_BIN       the cras binary (default gpu-carry/cras, else target/release/cras)
#   GPU_CHECK_PYTHON  python with torch, torchvision, numpy (default python3)
#   REF_DIR        the authors' code (default gpu-carry/cras-ref); REF_SPEED: ref_speed.py
#                  (default gpu-carry/ref_speed.py)
#   WORK           scratch folder for data and models (default /tmp/cras-gpu-check; not returned)
#   GPU_CHECK_CLASSES  train and evaluate on this many classes whatever the plan says
set -u
cd "$(dirname "$0")/.."
DEVICE=cuda; TINY=0; BUDGET=480
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --tiny) TINY=1; shift ;;
    --budget) BUDGET="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
START=$(date +%s)
DEADLINE=$((START + BUDGET))
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
CRAS_BIN="${CRAS_BIN:-}"
if [ -z "$CRAS_BIN" ]; then
  if [ -x gpu-carry/cras ]; then CRAS_BIN=gpu-carry/cras; else CRAS_BIN=target/release/cras; fi
fi
CRAS_BIN="$(realpath -m "$CRAS_BIN")"
PY="${GPU_CHECK_PYTHON:-python3}"
REF_DIR="$(realpath -m "${REF_DIR:-gpu-carry/cras-ref}")"
REF_SPEED="$(realpath -m "${REF_SPEED:-gpu-carry/ref_speed.py}")"
WORK="${WORK:-/tmp/cras-gpu-check}"
rm -rf "$WORK"; mkdir -p "$WORK"
export LD_LIBRARY_PATH="/usr/local/cuda-13.0/targets/x86_64-linux/lib:/usr/lib:${LD_LIBRARY_PATH:-}"
export RUST_LOG="${RUST_LOG:-info}"

if [ "$TINY" = 1 ]; then
  NET=(--image-size 64 --dims 256)            # WRN50-2, layer2 + layer3 as on the device
  REF_SIZE=64
  SYNTH=(--classes 2 --train 8 --test-good 2 --test-defect 5 --size 96)
  N_TRAIN=16; N_TEST=14
  EPOCHS=1; BATCH=4; REPEATS=1; BIG=4; REF_ITERS=(2 1); REF_STEPS=2; TRAIN_BATCH=4; CACHE_MB=2048
else
  NET=()                                      # cras's defaults are the paper's
  REF_SIZE=288
  SYNTH=(--classes 15 --train 242 --test-good 40 --test-defect 75 --size 512)
  N_TRAIN=3630; N_TEST=1725                   # MVTec AD: 3629 / 1725
  EPOCHS=3; BATCH=32; REPEATS=5; BIG=32; REF_ITERS=(20 5); REF_STEPS=10; TRAIN_BATCH=32; CACHE_MB=49152
fi
export CRAS_BIN DEVICE WORK OUT PY REF_DIR REF_SPEED REF_SIZE EPOCHS BATCH REPEATS BIG TRAIN_BATCH CACHE_MB REF_STEPS N_TRAIN
export NET_S="${NET[*]:-}" SYNTH_S="${SYNTH[*]}"

echo "device check: device $DEVICE, tiny $TINY, budget ${BUDGET}s, cras $CRAS_BIN, python $PY, out $OUT"

# step NAME CAP COMMAND: runs COMMAND (a shell line) under timeout min(CAP, time left - 5 s),
# output to logs/NAME.log; appends {step, rc, seconds, limit_s, timed_out, note} to steps.jsonl.
step() {
  local name="$1" cap="$2" cmd="$3"
  local left=$((DEADLINE - $(date +%s) - 5))
  local lim=$((cap < left ? cap : left))
  local log="$OUT/logs/$name.log"
  if [ "$lim" -lt 3 ]; then
    echo "{\"step\":\"$name\",\"rc\":null,\"seconds\":0,\"limit_s\":0,\"timed_out\":false,\"note\":\"skipped: budget spent\"}" >> "$OUT/steps.jsonl"
    echo "[$name] skipped: budget spent"
    return 99
  fi
  local t0 t1 rc
  t0=$(date +%s.%N)
  timeout -k 5 "$lim" bash -c "$cmd" > "$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  local secs note timed
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
  timed=false; { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && timed=true
  note=""
  [ "$rc" != 0 ] && note=$(grep -v '^\s*$' "$log" | tail -1 | cut -c1-300 | sed 's/\\/\\\\/g; s/"/\\"/g; s/\x1b\[[0-9;]*m//g; s/\t/ /g')
  echo "{\"step\":\"$name\",\"rc\":$rc,\"seconds\":$secs,\"limit_s\":$lim,\"timed_out\":$timed,\"note\":\"$note\"}" >> "$OUT/steps.jsonl"
  echo "[$name] rc=$rc in ${secs}s (limit ${lim}s)${note:+: $note}"
  return "$rc"
}

# ---- 1 device facts
step device 30 '"$PY" dev/gpu_check.py device "$OUT" "$CRAS_BIN"; nvidia-smi -L 2>&1 || true'

# ---- 3 (background) the MVTec-size set: CPU work, overlapped with the parity and bench steps
(
  t0=$(date +%s.%N)
  timeout -k 5 $((BUDGET / 2)) nice -n 5 "$CRAS_BIN" synth --out "$WORK/mvtec" $SYNTH_S --seed 0 > "$OUT/logs/synth.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  line=$(grep -v '^\s*$' "$OUT/logs/synth.log" | tail -1 | sed 's/"/\\"/g')
  echo "{\"rc\":$rc,\"seconds\":$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}'),\"args\":\"$SYNTH_S\",\"line\":\"$line\"}" > "$OUT/synth.json"
) &
SYNTH_PID=$!

# ---- 2 parity: the same binary on this machine's CPU (ref/) and on the device (dev/)
parity_side() {  # parity_side DIR DEV
  local d="$WORK/parity/$1" dev="$2" i=0 img
  mkdir -p "$d"
  for img in "$WORK/parity/data/carpet_weave/test/good/000.png" "$WORK/parity/data/grid_mesh/test/hole/000.png"; do
    "$CRAS_BIN" --log warn embed --image "$img" --out "$d/embed_$i.npy" --write-layers --device "$dev" $NET_S || return 1
    i=$((i + 1))
  done
  "$CRAS_BIN" --log warn train --data "$WORK/parity/data" --out "$d/model.safetensors" --epochs 1 \
    --batch-size 8 --holdout 0 --device "$dev" --train-log "$d/train.jsonl" --quiet $NET_S || return 1
  "$CRAS_BIN" --log warn predict --model "$WORK/parity/ref/model.safetensors" --device "$dev" \
    --batch-size 4 "$WORK/parity/data/carpet_weave/test" "$WORK/parity/data/grid_mesh/test" > "$d/predict.jsonl"
}
export -f parity_side
step parity_data 30 '"$CRAS_BIN" synth --out "$WORK/parity/data" --classes 2 --train 4 --test-good 2 --test-defect 5 --size 320 --seed 7'
step parity_cpu 150 'parity_side ref cpu'
step parity_device 120 'parity_side dev "$DEVICE"'
step parity_compare 30 '"$PY" dev/gpu_check.py parity "$WORK/parity" "$OUT/parity.json"'
cat "$OUT/logs/parity_compare.log"

# ---- 4 cras bench on the device (the synthetic set first: its 16 threads would disturb the timing)
wait "$SYNTH_PID"
cat "$OUT/synth.json" 2>/dev/null; echo
bench() {  # bench PRECISION BATCH
  step "cras_bench_$1_b$2" 90 "\"\$CRAS_BIN\" bench --device \"\$DEVICE\" --precision $1 --batch-size $2 --repeats \$REPEATS --json \"\$OUT/cras_bench_$1_b$2.json\" \$NET_S"
}
bench f32 1
bench f32 "$BIG"

# ---- 5 the authors' code on the same device
ref_json() {  # ref_json NAME: the last JSON line of the step's log -> OUT/authors_NAME.json
  grep -s '^{' "$OUT/logs/authors_$1.log" | tail -1 > "$OUT/authors_$1.json.tmp" && [ -s "$OUT/authors_$1.json.tmp" ] \
    && mv "$OUT/authors_$1.json.tmp" "$OUT/authors_$1.json" || rm -f "$OUT/authors_$1.json.tmp"
}
if [ -f "$REF_DIR/cras.py" ] && [ -f "$REF_SPEED" ]; then
  step authors_infer_b1 60 '"$PY" dev/gpu_ref_run.py "$REF_SPEED" --ref-dir "$REF_DIR" --device "$DEVICE" --batch 1 --iters '"${REF_ITERS[0]}"' --size "$REF_SIZE"'
  ref_json infer_b1
  step "authors_infer_b$BIG" 90 '"$PY" dev/gpu_ref_run.py "$REF_SPEED" --ref-dir "$REF_DIR" --device "$DEVICE" --batch "$BIG" --iters '"${REF_ITERS[1]}"' --size "$REF_SIZE"'
  ref_json "infer_b$BIG"
  step authors_train 90 '"$PY" dev/gpu_ref_run.py dev/gpu_ref_train.py --ref-dir "$REF_DIR" --device "$DEVICE" --batch "$TRAIN_BATCH" --steps "$REF_STEPS" --size "$REF_SIZE"'
  ref_json train
else
  echo "{\"step\":\"authors\",\"rc\":null,\"seconds\":0,\"limit_s\":0,\"timed_out\":false,\"note\":\"skipped: $REF_DIR/cras.py or $REF_SPEED missing (run dev/gpu_prepare.sh)\"}" >> "$OUT/steps.jsonl"
  echo "[authors] skipped: $REF_DIR/cras.py or $REF_SPEED missing"
fi

# ---- 4b bf16 (after the authors' figures: candle refuses bf16 so far, in a few seconds)
bench bf16 1
bench bf16 "$BIG"

# ---- 6 train the paper configuration on the MVTec-size set, as many of EPOCHS epochs as leave
# time for the evaluation (estimated from this run's bench figures: gpu_check.py plan)
ALL_CLASSES=$(echo "$SYNTH_S" | awk '{for (i = 1; i < NF; i++) if ($i == "--classes") print $(i + 1)}')
read -r EPOCHS TRAIN_CAP N_CLASSES < <(timeout 30 "$PY" dev/gpu_check.py plan "$OUT" "$N_TRAIN" "$N_TEST" \
  "$EPOCHS" $((DEADLINE - $(date +%s) - 10)) "$ALL_CLASSES" 2>/dev/null || echo "$EPOCHS 300 $ALL_CLASSES")
N_CLASSES="${GPU_CHECK_CLASSES:-$N_CLASSES}"   # a forced number (to test the path)
CLASS_ARGS=""
if [ "$N_CLASSES" != "$ALL_CLASSES" ] && [ -d "$WORK/mvtec" ]; then  # the first N_CLASSES, sorted
  CLASS_ARGS="--classes $(ls "$WORK/mvtec" | sort | head -n "$N_CLASSES" | paste -sd, -)"
  N_TRAIN=$((N_TRAIN * N_CLASSES / ALL_CLASSES))
fi
export EPOCHS CLASS_ARGS N_TRAIN
echo "training plan: $EPOCHS epochs, $N_CLASSES of $ALL_CLASSES classes, limit ${TRAIN_CAP}s"
train_run() {
  local t0 t1
  t0=$(date +%s.%N)
  "$CRAS_BIN" train --data "$WORK/mvtec" --out "$WORK/model.safetensors" --epochs "$EPOCHS" \
    --batch-size "$BATCH" --holdout 0 --cache-mb "$CACHE_MB" --device "$DEVICE" \
    --train-log "$OUT/train_log.jsonl" --quiet $NET_S $CLASS_ARGS || return 1
  t1=$(date +%s.%N)
  echo "{\"seconds\":$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}'),\"epochs\":$EPOCHS,\"images\":$N_TRAIN,\"batch\":$BATCH,\"net\":\"$NET_S\",\"classes\":\"$CLASS_ARGS\"}" > "$OUT/train.json"
}
export -f train_run
if [ -d "$WORK/mvtec" ]; then
  step cras_train "$TRAIN_CAP" train_run
else
  echo '{"step":"cras_train","rc":null,"seconds":0,"limit_s":0,"timed_out":false,"note":"skipped: no synthetic set"}' >> "$OUT/steps.jsonl"
fi

# ---- 7 evaluate it
eval_run() {
  local t0 t1 n
  t0=$(date +%s.%N)
  "$CRAS_BIN" eval --model "$WORK/model.safetensors" --data "$WORK/mvtec" --out "$WORK/eval" \
    --batch-size "$BATCH" --gallery 0 --device "$DEVICE" --quiet $CLASS_ARGS || return 1
  t1=$(date +%s.%N)
  cp "$WORK/eval/metrics.json" "$OUT/eval_metrics.json"
  "$PY" - "$WORK/eval/metrics.json" "$t0" "$t1" "$OUT/eval.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
secs = float(sys.argv[3]) - float(sys.argv[2])
mean = m.get("mean") or {}
n = m.get("images") or sum(c.get("images", 0) for c in m.get("classes", []) if isinstance(c, dict))
t = m.get("timing") or {}
out = dict(seconds=secs, images=n or None, images_per_s=(n / secs if n else None),
           scoring_images_per_s=t.get("images_per_second"), scoring_s=t.get("seconds"),
           image_auroc=mean.get("image_auroc"), pixel_auroc=mean.get("pixel_auroc"), aupro=mean.get("aupro"))
json.dump(out, open(sys.argv[4], "w"))
print(json.dumps(out))
EOF
}
export -f eval_run
if [ -f "$WORK/model.safetensors" ]; then
  step cras_eval 600 eval_run  # whatever is left
else
  echo '{"step":"cras_eval","rc":null,"seconds":0,"limit_s":0,"timed_out":false,"note":"skipped: no trained model"}' >> "$OUT/steps.jsonl"
fi

# ---- 8 summary (always; its own short limit outside the budget)
timeout -k 5 60 "$PY" dev/gpu_check.py summary "$OUT" || echo "summary failed (rc $?): the per-step JSON files are in $OUT"
echo "total $(( $(date +%s) - START )) s"
exit 0
