#!/usr/bin/env bash
# CPU side of the device check (issue 23; dev/cuda-build.md, "The device check"). Dev-only.
# Fills the git-ignored folder gpu-carry/ that travels to the GPU machine with the working tree:
#
#   gpu-carry/cras          the CUDA build of cras (cargo build --release --features cuda in
#                           target/cuda, built without a CUDA toolkit by dev/cuda-env.sh), stripped
#   gpu-carry/cras.source   the commit it was built from
#   gpu-carry/cras-ref/     the authors' code (github.com/cqylunlun/CRAS: its .py files and
#                           LICENSE only; never committed)
#   gpu-carry/ref_speed.py  ../shared/bench/ref_speed.py (the authors' inference timing)
#
# then checks the device tool's 64 MiB carry limit and prints the `run` call that does the check.
#
#   dev/gpu_prepare.sh [--no-build]
#     --no-build   copy the carried files only (keeps gpu-carry/cras if there; a CPU test of
#                  dev/gpu_check.sh sets CRAS_BIN=target/release/cras instead)
#   CRAS_REF       the authors' checkout (default /work/cras-ref)
#   REF_SPEED_SRC  ref_speed.py (default ../shared/bench/ref_speed.py, else /work/shared/bench/)
#   CUDA13_COMPRESS=1  smaller device code (see dev/cuda-env.sh); builds in target/cuda-small
#
# The CUDA build takes ~13 minutes of 2 cores cold (nice'd here).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=1
[ "${1:-}" = --no-build ] && BUILD=0
CRAS_REF="${CRAS_REF:-/work/cras-ref}"
REF_SPEED_SRC="${REF_SPEED_SRC:-../shared/bench/ref_speed.py}"
[ -f "$REF_SPEED_SRC" ] || REF_SPEED_SRC=/work/shared/bench/ref_speed.py  # from a worktree
LIMIT=$((64 * 1024 * 1024))
mkdir -p gpu-carry
git check-ignore -q gpu-carry || { echo "gpu-carry/ is not git-ignored: add /gpu-carry to .gitignore" >&2; exit 1; }

if [ "$BUILD" = 1 ]; then
  # shellcheck source=cuda-env.sh
  source dev/cuda-env.sh
  tdir=target/cuda
  [ "${CUDA13_COMPRESS:-0}" = 1 ] && tdir=target/cuda-small
  CARGO_TARGET_DIR="$tdir" nice -n 10 cargo build --release --locked --features cuda
  strip -o gpu-carry/cras.tmp "$tdir/release/cras"
  mv gpu-carry/cras.tmp gpu-carry/cras
  # Which source the binary is (the device check records it in device.json).
  echo "$(git rev-parse HEAD) $(git status --porcelain --untracked-files=no | wc -l) files changed, built $(date -u +%FT%TZ)" > gpu-carry/cras.source
  # The binary must want the driver's libcuda.so.1 and the CUDA 13 runtime libraries by soname.
  readelf -d gpu-carry/cras | grep NEEDED | grep -E 'cuda|cublas|curand|nvrtc' || {
    echo "gpu-carry/cras links no CUDA library: not a CUDA build" >&2; exit 1; }
  # The device runs Ubuntu 24.04 (glibc 2.39): the binary must not want a newer glibc.
  glibc=$(objdump -T gpu-carry/cras | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -1)
  printf '%s\n' "$glibc" GLIBC_2.39 | sort -V -C || { echo "gpu-carry/cras wants $glibc (> the device's 2.39)" >&2; exit 1; }
fi

# The authors' code: sources only (no figures, results or checkpoints).
[ -f "$CRAS_REF/cras.py" ] || { echo "$CRAS_REF/cras.py missing: set CRAS_REF to a checkout of github.com/cqylunlun/CRAS" >&2; exit 1; }
rm -rf gpu-carry/cras-ref
mkdir -p gpu-carry/cras-ref
(cd "$CRAS_REF" && find . -name '*.py' -not -path './.git/*' -print0 | xargs -0 cp --parents -t "$OLDPWD/gpu-carry/cras-ref")
cp "$CRAS_REF/LICENSE" gpu-carry/cras-ref/ 2>/dev/null || true
git -C "$CRAS_REF" rev-parse HEAD > gpu-carry/cras-ref/COMMIT 2>/dev/null || true
[ -f "$REF_SPEED_SRC" ] || { echo "$REF_SPEED_SRC missing (../shared/bench/ref_speed.py)" >&2; exit 1; }
cp "$REF_SPEED_SRC" gpu-carry/ref_speed.py

# The carry limit (the working tree's tracked files travel besides, outside it).
size=$(du -sb gpu-carry | cut -f1)
echo "gpu-carry: $((size / 1024)) KiB of $((LIMIT / 1024)) KiB allowed"
du -ab gpu-carry | sort -rn | head -5
if [ "$size" -gt "$LIMIT" ]; then
  echo "gpu-carry is over the 64 MiB carry limit: rebuild with CUDA13_COMPRESS=1 dev/gpu_prepare.sh" >&2
  exit 1
fi
[ -x gpu-carry/cras ] || echo "WARNING: gpu-carry/cras missing (run without --no-build first)" >&2

cat <<'EOF'

The device check, ONE call of the device tool (`run`), from the repository root:
  command:   bash dev/gpu_check.sh --device cuda --budget 480
  carry:     ["gpu-carry"]
  timeout_s: 560
  kind:      nvidia-h200   (or leave it out: an H100 does too; say which card gave the figures)
Everything comes back under $OUT (summary.json, the table at the end of the output); give the
machine back (give_back) unless you rerun at once.
EOF
