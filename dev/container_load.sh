#!/usr/bin/env bash
# Dev-only (never run in CI): one container of the cras image under load, once per engine, for
# the figures of docs/deploy.md. The model folder is mounted at /models (model.safetensors), the
# container gets --cpus CPUS and --memory MEM like a pod's limits, and examples/serve_load posts
# IMAGE from CLIENTS concurrent clients for SECONDS; the server's resident memory (VmRSS of the
# container's process, seen from the host) is printed before and after.
# usage: dev/container_load.sh IMAGE_TAG MODEL_DIR IMAGE [SECONDS] [CLIENTS]
#        ENGINES (default "candle onnxruntime openvino"), CPUS (2), MEM (2g),
#        PODMAN_FLAGS (default "--runtime runc --cgroup-manager=cgroupfs")
set -euo pipefail
cd "$(dirname "$0")/.."
tag="$1"; models="$(realpath "$2")"; image="$3"; secs="${4:-30}"; clients="${5:-4}"
read -r -a pf <<<"${PODMAN_FLAGS:---runtime runc --cgroup-manager=cgroupfs}"
cargo build --quiet --example serve_load
load="${CARGO_TARGET_DIR:-target}/debug/examples/serve_load"
port=18390
for e in ${ENGINES:-candle onnxruntime openvino}; do
  name="cras-load-$$-$e"
  podman "${pf[@]}" run -d --name "$name" --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    --cpus "${CPUS:-2}" --memory "${MEM:-2g}" -p "127.0.0.1:$port:8080" -v "$models:/models:ro" \
    "$tag" --model /models/model.safetensors --addr 0.0.0.0:8080 --allow-remote --engine "$e" \
    --queue 256 --timeout-ms 120000 --log warn >/dev/null 2>&1
  trap 'podman "${pf[@]}" rm -f "$name" >/dev/null 2>&1' EXIT
  for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/v1/health" >/dev/null && break; sleep 1; done
  pid="$(podman "${pf[@]}" inspect --format '{{.State.Pid}}' "$name")"
  echo "== $e ($clients clients, $secs s, --cpus ${CPUS:-2})"
  "$load" --url "http://127.0.0.1:$port" --image "$image" --clients "$clients" --seconds "$secs" \
    --server-pid "$pid"
  podman "${pf[@]}" stats --no-stream --format '{{.Name}} mem {{.MemUsage}}' "$name" 2>/dev/null || true
  podman "${pf[@]}" rm -f "$name" >/dev/null 2>&1
done
