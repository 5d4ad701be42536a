#!/usr/bin/env bash
# Issue 25 on the GPU machine (dev-only, never in CI): many end-to-end seeds of both codes on the
# realistic benchmark within one device call. The authors' code runs on the GPU (their PyTorch,
# float32: TF32 off), several processes sharing it; cras (the CPU build) runs one seed per core
# on the machine's other cores. Each seed writes dev/fidelity_seeds.py's JSON; at the end they are
# packed into $OUT/seeds.tar.gz (the device returns at most 8 files), with run.log and
# summary.json (the device, whether the rebuilt backbone is the original to the bit, the seeds
# done, their wall times).
#
# The carried folder (dev/gpu_fidelity_prepare.sh fills it): gpu-carry/fidelity/ with the
# benchmark's images (realistic/), its backbone in small form (bn.pt: BatchNorm buffers + the
# state dict's SHA-256; dev/realistic_bench.py --export-bn), the cras binary (cras.xz) and the
# authors' code (cras-ref/). Seeds start at --first-seed (default 1000, clear of the CPU runs),
# worker i taking first + i, first + i + workers, ...; a worker starts no seed that would end
# after the budget (by its previous seed's time), and whatever still runs then is stopped.
#
#   bash dev/gpu_fidelity.sh [--budget 480] [--authors-workers 5] [--cras-workers 11]
#        [--first-seed 1000] [--epochs 40] [--device cuda]
#   PYTHON  the interpreter with torch (default python3; the device's holds it)
#
# The CPU test: OUT=/tmp/gf PYTHON=/work/venv-torch/bin/python bash dev/gpu_fidelity.sh
#   --device cpu --budget 300 --authors-workers 1 --cras-workers 1 --epochs 2
set -uo pipefail
cd "$(dirname "$0")/.."
budget=480 aw=5 cw=11 first=1000 epochs=40 device=cuda
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) budget=$2 ;; --authors-workers) aw=$2 ;; --cras-workers) cw=$2 ;;
    --first-seed) first=$2 ;; --epochs) epochs=$2 ;; --device) device=$2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
PY="${PYTHON:-python3}"
carry="$PWD/gpu-carry/fidelity"
out="${OUT:-/tmp/gpu_fidelity_out}"
mkdir -p "$out"
work="$(mktemp -d)"
start=$(date +%s)
deadline=$((start + budget))
log() { echo "$(date -u +%T) +$(($(date +%s) - start))s $*" | tee -a "$out/run.log"; }

pack() {
  tar czf "$out/seeds.tar.gz" -C "$work" results logs 2>/dev/null
  "$PY" - "$work" "$out" "$same" "$device" "$start" <<'EOF'
import glob, json, os, sys, time
work, out, same, device, start = sys.argv[1:]
seeds = {}
for code in ("authors", "cras"):
    runs = [json.load(open(p)) for p in glob.glob(os.path.join(work, "results", f"{code}_*.json"))]
    seeds[code] = {"n": len(runs), "seeds": sorted(r["seed"] for r in runs),
                   "seconds": sorted(round(r.get("seconds", 0)) for r in runs),
                   "image_auroc_mean": sum(r["image_auroc"] for r in runs) / len(runs) if runs else None}
facts = {"backbone_identical": same == "0", "authors_device": device,
         "wall_s": round(time.time() - float(start))}
try:
    import torch
    facts.update(torch=torch.__version__, cuda=torch.cuda.is_available(),
                 gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
except Exception as e:  # noqa: BLE001
    facts["torch_error"] = str(e)
json.dump({"facts": facts, "seeds": seeds}, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(json.dumps({"facts": facts, **{k: {"n": v["n"], "image_auroc_mean": v["image_auroc_mean"]}
                                     for k, v in seeds.items()}}))
EOF
}
same=9
trap 'pack; rm -rf "$work"' EXIT
trap 'exit 143' TERM INT

# 1. The benchmark: the carried images, the backbone rebuilt from its small form.
mkdir -p "$work/bench" "$work/results" "$work/logs"
cp -r "$carry/realistic/." "$work/bench/"
"$PY" dev/realistic_bench.py --out "$work/bench" --rebuild-backbone "$carry/bn.pt" >> "$out/run.log" 2>&1
same=$?
log "backbone rebuilt (0: identical to the original, 3: differs): $same"
# 2. The cras binary.
"$PY" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
  "$carry/cras.xz" "$work/cras" && chmod +x "$work/cras"
log "cras $(cat "$carry/cras.source" 2>/dev/null): $("$work/cras" --version 2>&1)"

# 3. The workers.
seeds_of() { seq -s, "$1" "$2" $(($1 + 100000)) | cut -d, -f1-400; }
common=(--bench "$work/bench" --results "$work/results" --threads 1 --epochs "$epochs" --deadline "$deadline")
for i in $(seq 0 $((aw - 1))); do
  timeout $((budget + 60)) "$PY" dev/fidelity_seeds.py authors --device "$device" --ref "$carry/cras-ref" \
    --seeds "$(seeds_of $((first + i)) "$aw")" "${common[@]}" > "$work/logs/authors_$i.log" 2>&1 &
done
for j in $(seq 0 $((cw - 1))); do
  timeout $((budget + 60)) "$PY" dev/fidelity_seeds.py cras --cras "$work/cras" \
    --seeds "$(seeds_of $((first + j)) "$cw")" "${common[@]}" > "$work/logs/cras_$j.log" 2>&1 &
done
log "started $aw authors workers ($device) and $cw cras workers (cpu), seeds from $first, $epochs epochs, budget ${budget}s"
while [ "$(date +%s)" -lt "$deadline" ] && [ -n "$(jobs -rp)" ]; do
  sleep 10
  log "done: authors $(ls "$work/results" | grep -c '^authors_'), cras $(ls "$work/results" | grep -c '^cras_')"
done
# Whatever still runs would end after the budget: stop it (its seed is lost, the others are kept).
# (this run's workers only: their command lines name this run's folder)
for p in $(jobs -rp); do kill -TERM "$p" 2>/dev/null; done
pkill -TERM -f -- "--results $work/results" 2>/dev/null
pkill -TERM -f -- "$work/cras" 2>/dev/null
sleep 2
log "stopped; authors $(ls "$work/results" | grep -c '^authors_'), cras $(ls "$work/results" | grep -c '^cras_') seeds"
