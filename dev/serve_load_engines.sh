#!/usr/bin/env bash
# Dev-only (never run in CI): `cras serve` under load with each engine, one after the other.
# usage: dev/serve_load_engines.sh MODEL IMAGE [SECONDS] [CLIENTS] -- engines as "candle:f32 openvino:bf16 ..."
#        (ENGINES env, default "candle:f32 onnxruntime:f32 openvino:f32 openvino:bf16")
set -euo pipefail
cd "$(dirname "$0")/.."
model="$1"; image="$2"; secs="${3:-30}"; clients="${4:-8}"
cargo build --release --quiet --bin cras --example serve_load
for ep in ${ENGINES:-candle:f32 onnxruntime:f32 openvino:f32 openvino:bf16}; do
  e="${ep%%:*}"; p="${ep##*:}"
  target/release/cras serve --model "$model" --addr 127.0.0.1:18181 --engine "$e" --precision "$p" \
    --max-batch 8 --max-wait-ms 10 --queue 256 --timeout-ms 120000 --log warn &
  pid=$!
  for _ in $(seq 1 120); do curl -sf http://127.0.0.1:18181/v1/health >/dev/null && break; sleep 1; done
  echo "== $e $p ($clients clients, $secs s)"
  target/release/examples/serve_load --url http://127.0.0.1:18181 --image "$image" \
    --clients "$clients" --seconds "$secs" --server-pid "$pid"
  kill -TERM "$pid"; wait "$pid" || true
done
