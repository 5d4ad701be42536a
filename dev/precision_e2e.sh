#!/usr/bin/env bash
# Dev-only (never in CI): end to end on a real test set, one quiet run: every engine x precision
# on realistic models and the demo; raw (--confirm-band 0), default, and with the measured band
# accepted (--confirm-band <band>) where the default refuses. Run from a folder holding `cras`
# (release build), s<seed>.safetensors and s<seed>-q.safetensors (`cras quantize`),
# demo.safetensors and demo-q.safetensors; candle f32 references in ev/<model>-candle.
#
# usage: BENCH=/path/realistic DEMO=/path/demo/data SEEDS="0" dev/precision_e2e.sh
#        (VIRTUAL_ENV: the runtimes), then python3 dev/precision_report.py e2e
R="--data $BENCH --batch-vote --vote-group 32 --reference-masks --gallery 0 --device cpu --log info"
D="--data $DEMO --gallery 0 --device cpu --log info"
O=e2e; mkdir -p $O
run() { local name=$1 m=$2; shift 2; [ -f $O/$name.out ] && return
  /usr/bin/time -f "%e s" ./cras eval --model $m --out $O/$name "$@" > $O/$name.out 2>&1; }
measured() { grep -o "measured confirmation band of [0-9.]*" $1 | grep -o "[0-9.]*$"; }
one() { # name model quantized-model args
  local n=$1 m=$2 q=$3; shift 3
  run $n-onnxruntime-f32 $m "$@" --engine onnxruntime
  run $n-openvino-f32 $m "$@" --engine openvino
  for p in bf16 int8; do
    local mm=$m; [ $p = int8 ] && mm=$q
    for e in openvino onnxruntime; do
      [ $p = bf16 ] && [ $e = onnxruntime ] && continue
      run $n-$e-$p-raw $mm "$@" --engine $e --precision $p --confirm-band 0
      run $n-$e-$p-default $mm "$@" --engine $e --precision $p
      b=$(measured $O/$n-$e-$p-default.out)
      [ -n "$b" ] && run $n-$e-$p-band $mm "$@" --engine $e --precision $p --confirm-band $b
    done
  done
}
for s in ${SEEDS:-0}; do one s$s s$s.safetensors s$s-q.safetensors $R; done
one demo demo.safetensors demo-q.safetensors $D
for d in ev/*-candle ev/*-candle.out; do ln -sf ../$d $O/; done
echo done > $O/done
