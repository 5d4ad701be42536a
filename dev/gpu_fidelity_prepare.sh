#!/usr/bin/env bash
# CPU side of the issue-25 device run (dev/gpu_fidelity.sh). Dev-only, never in CI.
# Fills the git-ignored folder gpu-carry/fidelity/ that travels to the GPU machine:
#
#   realistic/    the benchmark's images and masks (dev/realistic_bench.py), without the 263 MB
#                 backbone file
#   bn.pt         the backbone in small form: its BatchNorm buffers and the SHA-256 of its state
#                 dict (dev/realistic_bench.py --export-bn); the device rebuilds it and says
#                 whether it is the original to the bit
#   cras.xz       the CPU build of cras (xz; 5 MB), cras.source the commit it was built from
#   cras-ref/     the authors' code (github.com/cqylunlun/CRAS: .py files and LICENSE; never
#                 committed)
#
# then checks the device tool's 64 MiB limit (the tracked tree travels too) and prints the call.
#
#   BENCH=/work/bench/realistic CRAS_REF=/work/cras-ref PYTHON=/work/venv-torch/bin/python \
#     dev/gpu_fidelity_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH:-/work/bench/realistic}"
CRAS_REF="${CRAS_REF:-/work/cras-ref}"
PY="${PYTHON:-python3}"
dst=gpu-carry/fidelity
git check-ignore -q gpu-carry || { echo "gpu-carry/ is not git-ignored" >&2; exit 1; }
rm -rf "$dst"
mkdir -p "$dst/realistic" "$dst/cras-ref/datasets"
nice cargo build --release --locked --quiet
xz -T0 -6 -c target/release/cras > "$dst/cras.xz"
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo -dirty)" > "$dst/cras.source"
for c in "$BENCH"/*/; do
  [ -d "$c/train" ] && cp -r "$c" "$dst/realistic/"
done
"$PY" dev/realistic_bench.py --out "$BENCH" --export-bn "$dst/bn.pt"
cp "$CRAS_REF"/*.py "$CRAS_REF/LICENSE" "$dst/cras-ref/"
cp "$CRAS_REF"/datasets/*.py "$dst/cras-ref/datasets/"
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carry=$(du -sb gpu-carry | cut -f1)
total=$((tree + carry))
echo "travels: tracked tree $((tree / 1048576)) MiB + gpu-carry $((carry / 1048576)) MiB = $((total / 1048576)) MiB (limit 64)"
[ "$total" -le $((64 * 1048576)) ] || { echo "over the device tool's 64 MiB: remove other things from gpu-carry/" >&2; exit 1; }
cat <<CALL
device run:
  command:   bash dev/gpu_fidelity.sh --budget 480
  carry:     ["gpu-carry/fidelity"]
  timeout_s: 560
then: tar xzf <files_at>/seeds.tar.gz and
  python dev/fidelity_seeds.py report --results <the CPU folders>,results
CALL
