#!/usr/bin/env bash
# Dev-only (never run in CI): every way to run CRAS inference on this CPU, in ONE run, paper
# configuration (WRN50-2, 288 px, 1536 dims, 15 classes, random weights), batch 1 and 8:
# cras's engines (candle, onnxruntime f32 and int8, openvino f32, bf16 and int8) next to ../shared/bench's
# peers (PyTorch fp32/bf16, ONNX Runtime, OpenVINO on the same math) and the authors' code.
#
# usage: dev/bench_cpu_engines.sh PEERS_VENV [AUTHORS_CODE_DIR] > figures.jsonl
#   PEERS_VENV: a virtualenv with torch torchvision onnx onnxscript onnxruntime openvino
#               (+ timm opencv-python-headless tqdm tensorboard for the authors' code)
#   CRAS_ENGINES: the cras engines to time, "engine precision" comma-separated (default: all six;
#               candle f32 alone takes longer than all the others together)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$1"; ref="${2:-}"
bench=../shared/bench
cargo build --release --quiet
export VIRTUAL_ENV="$venv"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
for b in 1 8; do
  IFS=, read -ra engines <<< "${CRAS_ENGINES:-candle f32,onnxruntime f32,onnxruntime int8,openvino f32,openvino bf16,openvino int8}"
  for e in "${engines[@]}"; do
    set -- $e
    target/release/cras bench --engine "$1" --precision "$2" --batch-size "$b" --repeats 3 \
      --device cpu --log warn --json "$tmp/x.json" >&2
    python3 -c "import json,sys; d=json.load(open('$tmp/x.json')); print(json.dumps(dict(engine='cras '+d['engine']+' '+d['precision'], batch=$b, s_per_img=round(d['inference_s_per_image'],4), latency_batch1_ms=round(d['latency_batch1_ms'],1), setup_s=round(d['engine_setup_s'],1))))"
  done
done
"$venv/bin/python" "$bench/cpu_peers.py" --batches 1,8 --iters 3
if [ -n "$ref" ]; then
  for b in 1 8; do "$venv/bin/python" "$bench/ref_speed.py" --ref-dir "$ref" --batch "$b" --iters 3; done
fi
