#!/usr/bin/env bash
# Dev-only (never in CI): cras's OpenVINO bf16 / int8 and ONNX Runtime int8 / f32 against the best
# peer (../shared/bench's OpenVINO bf16 on the same math), paper configuration, batch 1 and 8, in
# interleaved rounds so that the machine's drift falls on both sides of each ratio.
#
# usage: dev/int8_pairs.sh PEERS_VENV [ROUNDS] > pairs.jsonl   (VIRTUAL_ENV: cras's runtimes)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$1"; rounds="${2:-3}"
bench="$(cd .. && pwd)/shared/bench"
cargo build --release --quiet
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$rounds"); do
  for b in 1 8; do
    for e in "openvino bf16" "openvino int8" "onnxruntime int8" "onnxruntime f32"; do
      set -- $e
      target/release/cras bench --engine "$1" --precision "$2" --batch-size "$b" --repeats 3 \
        --device cpu --log warn --json "$tmp/x.json" > /dev/null
      python3 -c "import json; d=json.load(open('$tmp/x.json')); print(json.dumps(dict(round=$r, engine='cras '+d['engine']+' '+d['precision'], batch=$b, s_per_img=round(d['inference_s_per_image'],4))))"
    done
    "$venv/bin/python" "$bench/cpu_peers.py" --batches "$b" --iters 3 --engines openvino \
      | sed "s/^{/{\"round\": $r, /"
  done
done
